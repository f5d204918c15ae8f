"""Container and account routes of the node server.

Deviations from the shared spec (issue 9), kept small on purpose:

* Account updates: the container server looks the account up in the
  account ring itself (the spec's "simpler" choice) and sends the row to
  every replica, waiting ``[server] account_update_timeout``; failures
  are logged, never fatal. When every replica took it, the container's
  ``reported`` figures are set, so the replicator does not report the
  same figures again.
* ``limit``: 0 is accepted too (an empty listing, as Swift); above
  10,000 is 412 (as Swift), anything not digits 400. A delimiter longer
  than one character is 412 (as Swift).
* Account PUT on a recently deleted account answers 409 (Swift: 403,
  which the node API has no text for).
* A container PUT over a container that is still deleted after it (a
  stale PUT) answers 409, as Swift.
* ``PUT /account-rows/...`` takes an optional X-Timestamp: when the
  container's figures were taken (``reported_at``; now if absent).

**Storage policies** (issue 11, Swift's container server):

* A container PUT names its policy with ``X-Backend-Storage-Policy-
  Index`` (the user chose one) or ``X-Backend-Storage-Policy-Default``
  (the proxy's default, for a container the user named no policy for);
  an index this node does not know is 400. A new container takes the
  index, else the default. A live container keeps its policy: a PUT
  naming another index is 409 (``X-Backend-Storage-Policy-Index`` says
  which it has), one naming none or the same is 202. A deleted
  container put again (recreated) takes the new policy, and the PUT's
  timestamp as its status change.
* HEAD and GET of a container answer what the reconciler needs to pick
  the policy when replicas disagree (see
  :func:`coordsync.reconciler.queue.winning_policy`):
  ``X-Backend-Storage-Policy-Index``, ``X-Backend-Put-Timestamp``,
  ``-Delete-Timestamp``, ``-Status-Changed-At`` and
  ``X-Backend-Deleted`` (``true`` on the 404 of a deleted container
  whose database exists, ``false`` otherwise).
* Auto-create (Swift's ``auto_create_account_prefix``): an object row
  for a container that has no database, in an account whose name starts
  with ``.`` (the reconciler's ``.misplaced_objects``), creates it
  first, with the row's policy and timestamp, and reports it to the
  account. In other accounts such a row is 404.
* Account HEAD and GET add, per policy the account has containers of,
  ``X-Backend-Storage-Policy-<index>-Container-Count``, ``-Object-Count``
  and ``-Bytes-Used``; the proxy names them
  (``X-Account-Storage-Policy-<name>-...``).

Routes (all signed; paths from :mod:`coordsync.common.direct_client`)::

    PUT|DELETE|HEAD|GET|POST /containers/<dev>/<part>/<a>/<c>
    PUT|DELETE               /container-rows/<dev>/<part>/<a>/<c>/<obj>
    PUT|DELETE|HEAD|GET|POST /accounts/<dev>/<part>/<a>
    PUT                      /account-rows/<dev>/<part>/<a>/<c>
    GET|PUT                  /sync-state/<dev>/<part>/<a>/<c>

``/sync-state`` is container sync's (:mod:`coordsync.sync.state`): GET
answers the replica's id, highest row and sync state; PUT merges a
newer state and is fenced with the container's sync lock
(``coordsync/sync/<a>/<c>``), so a paused former holder cannot write
an old state over its successor's.

Every path part, header and query argument is checked before any disk
is touched: bad input is a 4xx and changes nothing. An unknown or
unmounted device is 507. Database work (SQLite) runs in the thread pool,
never on the hub, one thread call per request. A damaged database is
quarantined by the broker and answered 404 (the replicator rebuilds it
from a peer).
"""

import collections
import datetime
import json
import os
import re
import threading
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync.common import direct_client
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import timestamp
from coordsync.common import wsgi
from coordsync.common.wsgi import HTTPError
from coordsync.container import backend
from coordsync.container import replication
from coordsync.obj import layout
from coordsync.obj import updates
from coordsync.sync import state as sync_state

LOG = logging.getLogger(__name__)

LISTING_LIMIT = 10000
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_QUERY_VALUE = 1024
MAX_CONTENT_TYPE = 256
MAX_ETAG = 128
MAX_BROKERS = 256
# A sync state with a full retry set of long names stays far below.
MAX_SYNC_STATE = 8 * 2 ** 20
FORMATS = ('json', 'plain')
LISTING_ARGS = ('format', 'prefix', 'delimiter', 'marker', 'end_marker',
                'limit', 'reverse')
_DIGITS_RE = re.compile(r'[0-9]{1,19}\Z')
_POLICY_RE = re.compile(r'[0-9]{1,9}\Z')
_TRUE = ('true', '1', 'yes', 'on', 't', 'y')
_FALSE = ('false', '0', 'no', 'off', 'f', 'n', '')

CONTAINER_SYSTEM_HEADERS = ('X-Container-Read', 'X-Container-Write',
                            'X-Container-Sync-To', 'X-Container-Sync-Key')
# Swift's auto_create_account_prefix: object rows create the containers
# of these accounts (the reconciler's queue) instead of being refused.
AUTO_CREATE_ACCOUNT_PREFIX = '.'
POLICY_INDEX_HEADER = 'X-Backend-Storage-Policy-Index'
POLICY_DEFAULT_HEADER = 'X-Backend-Storage-Policy-Default'
# Per-policy account figures, by index (the proxy knows the names).
POLICY_STAT_HEADER = 'X-Backend-Storage-Policy-%d-%s'


# -- paths ------------------------------------------------------------------

def _name(kind, value, max_length, allow_slash=False):
    try:
        return layout.check_name(kind, value, max_length, allow_slash)
    except ValueError as err:
        raise HTTPError(400, str(err)) from None


def _device_partition(parts, count, shape, rest_joins=False):
    if len(parts) < count or (len(parts) > count and not rest_joins):
        raise HTTPError(400, 'expected %s' % shape)
    try:
        device = layout.check_device(parts[0])
    except ValueError as err:
        raise HTTPError(400, 'bad device: %s' % err) from None
    try:
        partition = int(layout.check_partition(parts[1]))
    except ValueError as err:
        raise HTTPError(400, 'bad partition: %s' % err) from None
    return {'device': device, 'partition': partition}


def parse_container(parts):
    args = _device_partition(parts, 4, '/<device>/<partition>/<account>/'
                                       '<container>')
    args['account'] = _name('account', parts[2], layout.MAX_ACCOUNT_LENGTH)
    args['container'] = _name('container', parts[3],
                              layout.MAX_CONTAINER_LENGTH)
    return args


def parse_container_row(parts):
    args = _device_partition(parts, 5, '/<device>/<partition>/<account>/'
                                       '<container>/<object>',
                             rest_joins=True)
    args['account'] = _name('account', parts[2], layout.MAX_ACCOUNT_LENGTH)
    args['container'] = _name('container', parts[3],
                              layout.MAX_CONTAINER_LENGTH)
    args['obj'] = _name('object', '/'.join(parts[4:]),
                        layout.MAX_OBJECT_LENGTH, allow_slash=True)
    return args


def parse_account(parts):
    args = _device_partition(parts, 3, '/<device>/<partition>/<account>')
    args['account'] = _name('account', parts[2], layout.MAX_ACCOUNT_LENGTH)
    return args


def parse_account_row(parts):
    return parse_container(parts)


# -- headers and queries ------------------------------------------------------

def _timestamp(req, name, required=True):
    value = req.header(name)
    if value is None:
        if required:
            raise HTTPError(400, 'missing %s' % name)
        return None
    try:
        return timestamp.Timestamp(value)
    except ValueError as err:
        raise HTTPError(400, 'bad %s: %s' % (name, err)) from None


def _count(req, name, required=True):
    value = req.header(name)
    if value is None:
        if required:
            raise HTTPError(400, 'missing %s' % name)
        return None
    if not _DIGITS_RE.match(value.strip()):
        raise HTTPError(400, 'bad %s' % name)
    return int(value)


def _policy(req, name=POLICY_INDEX_HEADER, policies=None):
    """The policy index a header names, None without it (400 if not an
    index, or, given ``policies``, not one of theirs)."""
    value = req.header(name)
    if value is None:
        return None
    if not _POLICY_RE.match(value.strip()):
        raise HTTPError(400, 'bad %s' % name)
    index = int(value)
    if policies is not None and policies.get_by_index(index) is None:
        raise HTTPError(400, '%s: no storage policy %d on this node'
                        % (name, index))
    return index


def _text_header(req, name, max_length, required=True):
    value = req.header(name)
    if value is None:
        if required:
            raise HTTPError(400, 'missing %s' % name)
        return None
    if len(value) > max_length or not value.isprintable():
        raise HTTPError(400, 'bad %s' % name)
    return value


def _header_name(env_key):
    return env_key[5:].replace('_', '-').title()


def _metadata(req, kind, when, system=()):
    """``{header name: (value, timestamp)}`` of the request's metadata
    headers (``X-<Kind>-Meta-*``, ``X-<Kind>-Sysmeta-*``, ``system``);
    ``X-Remove-<Kind>-Meta-*`` and empty values delete keys. Swift's
    limits apply (400).

    NOTE: sysmeta (the sync points of container sync) is only ever
    sent by the proxy and the daemons: a node request is signed with
    the cluster secret, and the proxy drops it from users' requests.
    """
    prefix = 'X-%s-Meta-' % kind.title()
    sysmeta = 'X-%s-Sysmeta-' % kind.title()
    remove = 'X-Remove-%s-Meta-' % kind.title()
    found = {}
    size = 0
    for key, value in req.env.items():
        if not key.startswith('HTTP_X_'):
            continue
        name = _header_name(key)
        if name.startswith(remove):
            name, value = prefix + name[len(remove):], ''
        elif name in system:
            pass
        elif not name.startswith((prefix, sysmeta)):
            continue
        start = next((p for p in (prefix, sysmeta) if name.startswith(p)),
                     '')
        short = name[len(start):]
        if start and not short:
            raise HTTPError(400, 'metadata name cannot be empty')
        if len(short) > MAX_META_NAME_LENGTH:
            raise HTTPError(400, 'metadata name too long: %s...'
                            % name[:64])
        if len(value) > MAX_META_VALUE_LENGTH:
            raise HTTPError(400, 'metadata value too long: %s' % name[:64])
        if not value.isprintable():
            raise HTTPError(400, 'control character in metadata %s'
                            % name[:64])
        size += len(short) + len(value)
        found[name] = (value, when.normal)
    if len(found) > MAX_META_COUNT:
        raise HTTPError(400, 'too many metadata items; max %d'
                        % MAX_META_COUNT)
    if size > MAX_META_OVERALL_SIZE:
        raise HTTPError(400, 'total metadata too large; max %d'
                        % MAX_META_OVERALL_SIZE)
    return found


def parse_listing_query(query):
    """The listing arguments of a query string (4xx if bad)."""
    try:
        pairs = urllib.parse.parse_qsl(query or '', keep_blank_values=True,
                                       strict_parsing=False,
                                       errors='strict')
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, 'query is not valid UTF-8') from None
    args = {}
    for key, value in pairs:
        if key not in LISTING_ARGS:
            continue
        if key in args:
            raise HTTPError(400, '%s given twice' % key)
        if len(value) > MAX_QUERY_VALUE:
            raise HTTPError(400, '%s longer than %d' % (key,
                                                        MAX_QUERY_VALUE))
        if '\x00' in value:
            raise HTTPError(400, 'NUL in %s' % key)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise HTTPError(400, '%s is not valid UTF-8' % key)
        args[key] = value
    fmt = args.get('format', 'plain').lower() or 'plain'
    if fmt not in FORMATS:
        raise HTTPError(400, 'format must be json or plain')
    limit = args.get('limit', '')
    if limit == '':
        limit = LISTING_LIMIT
    elif not limit.isascii() or not limit.isdigit() or len(limit) > 9:
        raise HTTPError(400, 'limit must be a whole number')
    else:
        limit = int(limit)
        if limit > LISTING_LIMIT:
            raise HTTPError(412, 'maximum limit is %d' % LISTING_LIMIT)
    delimiter = args.get('delimiter') or None
    if delimiter is not None and (len(delimiter) > 1
                                  or ord(delimiter) > 254):
        raise HTTPError(412, 'bad delimiter')
    reverse = args.get('reverse', '').lower()
    if reverse not in _TRUE + _FALSE:
        raise HTTPError(400, 'reverse must be true or false')
    return {'format': fmt, 'limit': limit,
            'marker': args.get('marker') or None,
            'end_marker': args.get('end_marker') or None,
            'prefix': args.get('prefix') or None,
            'delimiter': delimiter, 'reverse': reverse in _TRUE}


def isoformat(when):
    """Swift's ``last_modified``: UTC, always with microseconds."""
    moment = datetime.datetime.fromtimestamp(
        float(timestamp.Timestamp(when)), datetime.timezone.utc)
    return moment.replace(tzinfo=None).isoformat(timespec='microseconds')


def _listing_reply(entries, fmt, to_json, headers):
    if fmt == 'json':
        rows = [{'subdir': e['subdir']} if 'subdir' in e else to_json(e)
                for e in entries]
        body = json.dumps(rows).encode('utf-8')
        headers['Content-Type'] = 'application/json; charset=utf-8'
        return 200, headers, [body]
    headers['Content-Type'] = 'text/plain; charset=utf-8'
    if not entries:
        return 204, headers, []
    body = ''.join('%s\n' % e.get('subdir', e.get('name'))
                   for e in entries).encode('utf-8')
    return 200, headers, [body]


def _object_json(entry):
    return {'name': entry['name'], 'hash': entry['etag'],
            'bytes': entry['size'], 'content_type': entry['content_type'],
            'last_modified': isoformat(entry['created_at'])}


def _container_json(entry):
    return {'name': entry['name'], 'count': entry['count'],
            'bytes': entry['bytes'],
            'last_modified': isoformat(entry['last_modified'])}


# -- shared machinery ---------------------------------------------------------

class _Brokers:
    """A small LRU of brokers, so a busy database keeps its idle
    connections between requests."""

    def __init__(self, size=MAX_BROKERS):
        self.size = size
        self._brokers = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, cls, path, account, container=None, logger=None):
        key = (cls, path)
        with self._lock:
            broker = self._brokers.pop(key, None)
            if broker is None:
                broker = cls(path, account=account, container=container,
                             logger=logger)
            self._brokers[key] = broker
            evicted = []
            while len(self._brokers) > self.size:
                evicted.append(self._brokers.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return broker


class _DatabaseRoutes:
    """What container and account routes share: devices, brokers,
    errors."""

    def __init__(self, conf, manager, logger=None, node_client=None):
        self.conf = conf
        self.manager = manager
        self.log = logger or LOG
        self.brokers = _Brokers()
        self._client = node_client
        self.quarantined = 0

    @property
    def client(self):
        if self._client is None:
            self._client = direct_client.NodeClient(self.conf)
        return self._client

    def dev_path(self, device):
        path = self.manager.get_dev_path(device)
        if path is None:
            raise HTTPError(507, 'device %s is not available' % device)
        return path

    def call(self, func, *args):
        """Run ``func`` in the thread pool; database errors -> HTTP."""
        try:
            return concurrency.run_in_thread(func, *args)
        except backend.DatabaseNotFound:
            raise HTTPError(404, 'not found') from None
        except backend.DatabaseCorrupt as err:
            self.quarantined += 1
            self.log.error('%s', err)
            raise HTTPError(404, 'not found (quarantined)') from None
        except backend.DatabaseError as err:
            raise HTTPError(503, 'database unavailable: %s' % err) from None
        except ValueError as err:
            raise HTTPError(400, str(err)) from None
        except OSError as err:
            raise HTTPError(507 if err.errno in (28, 122) else 500,
                            'disk error: %s' % err) from None


def _stat_headers(info, metadata, kind):
    headers = {
        'X-Timestamp': info['created_at'],
        'X-PUT-Timestamp': info['put_timestamp'],
        'X-Backend-Put-Timestamp': info['put_timestamp'],
        'X-Backend-Delete-Timestamp': info['delete_timestamp'],
        'X-Backend-Status-Changed-At': info['status_changed_at'],
        'X-Backend-Deleted': 'false',
    }
    if kind == 'container':
        headers.update({
            'X-Container-Object-Count': str(info['object_count']),
            'X-Container-Bytes-Used': str(info['bytes_used']),
            'X-Backend-Storage-Policy-Index':
                str(info['storage_policy_index'])})
    else:
        headers.update({
            'X-Account-Container-Count': str(info['container_count']),
            'X-Account-Object-Count': str(info['object_count']),
            'X-Account-Bytes-Used': str(info['bytes_used'])})
    for key, (value, _ts) in metadata.items():
        # NOTE: container sync's state is read through /sync-state: it
        # can be larger than a header may be.
        if value != '' and key != sync_state.STATE_KEY:
            headers[key] = value
    return headers


def _deleted_error(info, kind):
    headers = _stat_headers(info, {}, kind)
    headers['X-Backend-Deleted'] = 'true'
    return HTTPError(404, '%s deleted' % kind, headers)


def _policy_stat_headers(stats):
    """The account's per-policy figures (``{index: {'container_count',
    'object_count', 'bytes_used'}}``) as backend headers."""
    headers = {}
    for index, figures in sorted(stats.items()):
        for key in ('container_count', 'object_count', 'bytes_used'):
            name = POLICY_STAT_HEADER % (index, key.replace('_', '-')
                                         .title())
            headers[name] = str(figures[key])
    return headers


# -- containers ---------------------------------------------------------------

class ContainerRoutes(_DatabaseRoutes):
    """The container handlers of a node.

    :param account_ring: the account ring (read from ``[DEFAULT]
        account_ring_file`` when omitted and the file exists).
    :param policies: the :class:`~coordsync.common.storage_policy.
        StoragePolicies` a container PUT may name (default: the
        config's).
    """

    def __init__(self, conf, manager, logger=None, node_client=None,
                 account_ring=None, policies=None):
        super().__init__(conf, manager, logger, node_client)
        self._account_ring = account_ring
        self._ring_warned = False
        self._policies = policies

    @property
    def policies(self):
        if self._policies is None:
            self._policies = storage_policy.from_conf(self.conf)
        return self._policies

    def routes(self):
        return [
            wsgi.Route(('PUT', 'DELETE', 'HEAD', 'GET', 'POST'),
                       direct_client.CONTAINERS, self.container,
                       parse_container),
            wsgi.Route(('PUT', 'DELETE'), direct_client.CONTAINER_ROWS,
                       self.object_row, parse_container_row),
            wsgi.Route(('GET', 'PUT'), direct_client.SYNC_STATE,
                       self.sync_state, parse_container,
                       lock_item=_sync_lock_item),
        ]

    def broker(self, args):
        path = backend.container_db_path(
            self.dev_path(args['device']), args['partition'],
            args['account'], args['container'],
            prefix=self.conf.hash_path_prefix,
            suffix=self.conf.hash_path_suffix)
        return self.brokers.get(backend.ContainerBroker, path,
                                args['account'], args['container'],
                                self.log)

    def container(self, req, args):
        handler = getattr(self, 'container_' + req.method.lower())
        return handler(req, args)

    # -- PUT, DELETE, POST ---------------------------------------------------

    def container_put(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        requested = _policy(req, POLICY_INDEX_HEADER, self.policies)
        default = _policy(req, POLICY_DEFAULT_HEADER, self.policies)
        metadata = _metadata(req, 'container', when,
                             CONTAINER_SYSTEM_HEADERS)
        broker = self.broker(args)
        status, info = self.call(_put_container, broker, when, requested,
                                 default, metadata)
        self.update_account(broker, args, info)
        return status, {}, []

    def container_delete(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        broker = self.broker(args)
        info = self.call(_delete_container, broker, when)
        self.update_account(broker, args, info)
        return 204, {}, []

    def container_post(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        metadata = _metadata(req, 'container', when,
                             CONTAINER_SYSTEM_HEADERS)
        broker = self.broker(args)
        self.call(_post_db, broker, metadata, 'container')
        return 204, {}, []

    # -- HEAD, GET -----------------------------------------------------------

    def container_head(self, req, args):
        broker = self.broker(args)
        info, metadata = self.call(_live_info, broker, 'container')
        headers = _stat_headers(info, metadata, 'container')
        headers['Content-Type'] = 'text/plain; charset=utf-8'
        return 204, headers, []

    def container_get(self, req, args):
        query = parse_listing_query(req.env.get('QUERY_STRING'))
        broker = self.broker(args)
        info, metadata, entries = self.call(_list_container, broker, query)
        return _listing_reply(entries, query['format'], _object_json,
                              _stat_headers(info, metadata, 'container'))

    # -- object rows ---------------------------------------------------------

    def object_row(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        # NOTE: not checked against this node's policies: a row is a
        # fact an object server recorded; refusing it would only leave
        # it in an async pending while this node's config catches up.
        policy = _policy(req) or 0
        if req.method == 'DELETE':
            row = {'name': args['obj'], 'created_at': when.normal,
                   'size': 0, 'content_type': 'application/deleted',
                   'etag': 'noetag', 'deleted': 1,
                   'storage_policy_index': policy}
        else:
            row = {'name': args['obj'], 'created_at': when.normal,
                   'size': _count(req, 'X-Size'),
                   'content_type': _text_header(req, 'X-Content-Type',
                                                MAX_CONTENT_TYPE),
                   'etag': _text_header(req, 'X-Etag', MAX_ETAG),
                   'deleted': 0, 'storage_policy_index': policy}
        broker = self.broker(args)
        autocreate = args['account'].startswith(AUTO_CREATE_ACCOUNT_PREFIX)
        info = self.call(_merge_row, broker, row, autocreate)
        if info is not None:
            self.update_account(broker, args, info)
        return (204 if req.method == 'DELETE' else 201), {}, []

    # -- container sync state ------------------------------------------------

    def sync_state(self, req, args):
        """GET: this replica's id, highest row and sync state (what a
        container's sync holder reads of each replica); PUT: merge a
        newer state (``{"state": json, "timestamp": ts}``), fenced by
        the container's sync lock."""
        broker = self.broker(args)
        if req.method == 'GET':
            found = self.call(_sync_state_of, broker)
            return 200, {'Content-Type': 'application/json'}, [
                json.dumps(found).encode('utf-8')]
        body = replication.json_body(req, MAX_SYNC_STATE)
        text, when = body.get('state'), body.get('timestamp')
        if not isinstance(when, str):
            raise HTTPError(400, 'body must be {"state": ..., '
                                 '"timestamp": ...}')
        if not isinstance(text, str) or sync_state.decode(text) is None:
            raise HTTPError(400, 'not a sync state')
        req.recheck_fence()
        self.call(broker.update_metadata,
                  {sync_state.STATE_KEY: (text, when)})
        return 204, {}, []

    # -- account updates -----------------------------------------------------

    def account_ring(self):
        ring = self._account_ring
        if ring is None:
            path = self.conf.account_ring_file
            if not os.path.exists(path):
                if not self._ring_warned:
                    self._ring_warned = True
                    self.log.warning('No account ring at %s: containers '
                                     'are not reported to accounts', path)
                return None
            ring = self._account_ring = ring_mod.Ring(
                path, self.conf.hash_path_prefix,
                self.conf.hash_path_suffix)
        try:
            if ring.has_changed():
                ring.reload()
        except Exception as err:
            self.log.warning('Cannot reload the account ring: %s', err)
        return ring

    def update_account(self, broker, args, info):
        """Send the container's row to its account replicas; note it as
        reported when every replica took it."""
        ring = self.account_ring()
        if ring is None or info is None:
            return
        part, nodes = ring.get_nodes(args['account'])
        headers = {
            'X-Put-Timestamp': info['put_timestamp'],
            'X-Delete-Timestamp': info['delete_timestamp'],
            'X-Object-Count': str(info['object_count']),
            'X-Bytes-Used': str(info['bytes_used']),
            'X-Backend-Storage-Policy-Index':
                str(info['storage_policy_index']),
            'X-Timestamp': timestamp.Timestamp.now().normal}
        requests = [(node, 'PUT', direct_client.account_row_path(
            node['device'], part, args['account'], args['container']),
            headers) for node in nodes]
        statuses = updates.send_all(self.client, requests,
                                    self.conf.server.account_update_timeout,
                                    self.log)
        if all(s is not None and 200 <= s < 300 for s in statuses):
            try:
                concurrency.run_in_thread(
                    broker.reported, info['put_timestamp'],
                    info['delete_timestamp'], info['object_count'],
                    info['bytes_used'])
            except backend.DatabaseError as err:
                self.log.warning('Cannot note the report of %s: %s',
                                 broker.db_file, err)
        else:
            self.log.warning('Account update of /%s/%s: %d of %d replicas '
                             'took it; the container replicator reports '
                             'it later', args['account'], args['container'],
                             sum(1 for s in statuses if s and s < 300),
                             len(statuses))


def _sync_lock_item(args):
    return sync_state.lock_name(args['account'], args['container'])


def _sync_state_of(broker):
    info = broker.get_info()
    text, when = broker.metadata.get(sync_state.STATE_KEY, ('', None))
    return {'id': info['id'], 'max_row': broker.get_max_row(),
            'state': text or None, 'state_timestamp': when,
            'deleted': broker.is_deleted()}


def _put_container(broker, when, requested, default, metadata):
    """Create, recreate or put again a container (see the module
    docstring for its policy): ``(201 or 202, info)``; 409, changing
    nothing, for another policy than a live container's or a PUT older
    than the container's delete."""
    policy = requested if requested is not None else (default or 0)
    created = False
    if not broker.exists():
        try:
            broker.initialize(when.normal, policy)
            created = True
        except backend.DatabaseConflict:
            pass
    if not created:
        info = broker.get_info()
        recreated = broker.is_deleted()
        if recreated:
            if timestamp.Timestamp(info['delete_timestamp']) > when:
                raise HTTPError(409, 'container deleted after this PUT')
            # NOTE: as Swift, only a deleted container changes policy;
            # the PUT's time becomes its status change, which
            # winning_policy ranks a recreate by.
            broker.set_storage_policy_index(policy, when.normal)
        elif (requested is not None
                and requested != info['storage_policy_index']):
            raise HTTPError(409, 'container exists with storage policy %d'
                            % info['storage_policy_index'], {
                                POLICY_INDEX_HEADER:
                                    str(info['storage_policy_index'])})
        broker.update_put_timestamp(when.normal)
        if broker.is_deleted():
            raise HTTPError(409, 'container deleted after this PUT')
        created = recreated
    if metadata:
        broker.update_metadata(metadata)
    return (201 if created else 202), broker.get_info()


def _delete_container(broker, when):
    if not broker.exists() or broker.is_deleted():
        raise HTTPError(404, 'not found')
    if not broker.empty():
        raise HTTPError(409, 'container not empty')
    broker.delete_db(when.normal)
    return broker.get_info()


def _live_info(broker, kind):
    info = broker.get_info()
    deleted = (broker.is_status_deleted() if kind == 'account'
               else broker.is_deleted())
    if deleted:
        raise _deleted_error(info, kind)
    return info, broker.metadata


def _post_db(broker, metadata, kind):
    _live_info(broker, kind)
    if metadata:
        broker.update_metadata(metadata)


def _list_container(broker, query):
    info, metadata = _live_info(broker, 'container')
    entries = broker.list_objects_iter(
        query['limit'], query['marker'], query['end_marker'],
        query['prefix'], query['delimiter'], query['reverse'])
    return info, metadata, entries


def _merge_row(broker, row, autocreate=False):
    """Merge an object row; with ``autocreate``, a container without a
    database is created first (its info is returned then, to report it
    to the account; None otherwise)."""
    created = None
    if autocreate and not broker.exists():
        try:
            broker.initialize(row['created_at'],
                              row['storage_policy_index'])
        except backend.DatabaseConflict:
            pass
        else:
            created = True
    broker.merge_items([row])
    return broker.get_info() if created else None


# -- accounts -----------------------------------------------------------------

class AccountRoutes(_DatabaseRoutes):
    """The account handlers of a node."""

    def routes(self):
        return [
            wsgi.Route(('PUT', 'DELETE', 'HEAD', 'GET', 'POST'),
                       direct_client.ACCOUNTS, self.account, parse_account),
            wsgi.Route(('PUT',), direct_client.ACCOUNT_ROWS,
                       self.container_row, parse_account_row),
        ]

    def broker(self, args):
        path = backend.account_db_path(
            self.dev_path(args['device']), args['partition'],
            args['account'], prefix=self.conf.hash_path_prefix,
            suffix=self.conf.hash_path_suffix)
        return self.brokers.get(backend.AccountBroker, path,
                                args['account'], logger=self.log)

    def account(self, req, args):
        return getattr(self, 'account_' + req.method.lower())(req, args)

    def account_put(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        metadata = _metadata(req, 'account', when)
        status = self.call(_put_account, self.broker(args), when, metadata)
        return status, {}, []

    def account_delete(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        self.call(_delete_account, self.broker(args), when)
        return 204, {}, []

    def account_post(self, req, args):
        when = _timestamp(req, 'X-Timestamp')
        metadata = _metadata(req, 'account', when)
        self.call(_post_db, self.broker(args), metadata, 'account')
        return 204, {}, []

    def account_head(self, req, args):
        info, metadata, stats = self.call(_account_info, self.broker(args))
        headers = _stat_headers(info, metadata, 'account')
        headers.update(_policy_stat_headers(stats))
        headers['Content-Type'] = 'text/plain; charset=utf-8'
        return 204, headers, []

    def account_get(self, req, args):
        query = parse_listing_query(req.env.get('QUERY_STRING'))
        info, metadata, stats, entries = self.call(
            _list_account, self.broker(args), query)
        headers = _stat_headers(info, metadata, 'account')
        headers.update(_policy_stat_headers(stats))
        return _listing_reply(entries, query['format'], _container_json,
                              headers)

    def container_row(self, req, args):
        put = _timestamp(req, 'X-Put-Timestamp')
        delete = _timestamp(req, 'X-Delete-Timestamp')
        reported = _timestamp(req, 'X-Timestamp', required=False)
        row = {'name': args['container'], 'put_timestamp': put.normal,
               'delete_timestamp': delete.normal,
               'object_count': _count(req, 'X-Object-Count'),
               'bytes_used': _count(req, 'X-Bytes-Used'),
               'storage_policy_index': _policy(req) or 0,
               'reported_at': (reported or timestamp.Timestamp.now()).normal}
        self.call(_put_container_row, self.broker(args), row,
                  reported or max(put, delete))
        return 201, {}, []


def _put_account(broker, when, metadata):
    created = False
    if not broker.exists():
        try:
            broker.initialize(when.normal)
            created = True
        except backend.DatabaseConflict:
            pass
    if not created:
        if broker.is_status_deleted():
            raise HTTPError(409, 'account recently deleted')
        broker.update_put_timestamp(when.normal)
    if metadata:
        broker.update_metadata(metadata)
    return 201 if created else 202


def _delete_account(broker, when):
    if not broker.exists() or broker.is_status_deleted():
        raise HTTPError(404, 'not found')
    broker.delete_db(when.normal)


def _account_info(broker):
    info, metadata = _live_info(broker, 'account')
    return info, metadata, broker.get_policy_stats()


def _list_account(broker, query):
    info, metadata, stats = _account_info(broker)
    entries = broker.list_containers_iter(
        query['limit'], query['marker'], query['end_marker'],
        query['prefix'], query['delimiter'], query['reverse'])
    return info, metadata, stats, entries


def _put_container_row(broker, row, when):
    """Swift's account autocreate: the first container row creates the
    account database."""
    if not broker.exists():
        try:
            broker.initialize(when.normal)
        except backend.DatabaseConflict:
            pass
    elif broker.is_status_deleted():
        raise HTTPError(404, 'account deleted')
    broker.merge_items([row])
