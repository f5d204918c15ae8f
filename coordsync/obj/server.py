"""The node server: the backend HTTP API every storage node runs.

Object routes (all signed, see :mod:`coordsync.common.signing`; paths
built by :mod:`coordsync.common.direct_client`)::

    GET|HEAD  /healthcheck                          (unsigned)
    GET|HEAD  /metrics                              (unsigned)
    GET       /recon/<kind>                         (recon facts, JSON)
    PUT|GET|HEAD|DELETE /objects/<dev>/<part>/<account>/<container>/<obj>
    REPLICATE /objects/<dev>/<part>[/<suffix>-<suffix>...]
    GET       /object-suffixes/<dev>/<part>/<suffix>    (object listing)
    POST      /object-sync/<dev>/<part>/check  (missing check, JSON)
    PUT       /object-sync/<dev>/<part>        (push: a sync stream)
    POST      /object-sync/<dev>/<part>/pull   (pull: a sync stream back)

Those are storage policy 0's. Every policy N > 0 the config declares
(``[storage-policy:N]``) has the same routes under ``/objects-N``,
``/object-suffixes-N`` and ``/object-sync-N``, over its own directory
(``<dev>/objects-N/``); their replication fences name policy N
(``coordsync/replicate/N/<part>``). A policy this node does not know has
no route: 404.

Container and account routes come from :mod:`coordsync.container.server`.
An object PUT or DELETE naming its container replicas
(``X-Container-*``) sends them the object's row once the write is on
disk (:mod:`coordsync.obj.updates`), recorded under the object's
policy; one missed is saved as an async pending of that policy.

The sync requests are described in :mod:`coordsync.obj.sync`; a pushed
stream is written by :mod:`coordsync.obj.receiver`, the one code path
for replicated writes.

``/recon/<kind>`` serves :class:`~coordsync.common.recon.NodeFacts`
(a worker's last pass, disk, quarantined, async, ringmd5, server): 404
for a kind it does not know or has no data of. ``/healthcheck`` also
answers 503 while ``mount_check`` is on and a device directory is not a
mount point.

Every path component is validated before anything touches a disk; a bad
request gets a 4xx with a one-line reason and changes nothing. Writes
carry ``X-Timestamp``; a write not newer than what is stored gets 409.
An unknown or unmounted device gets 507. Signatures and fencing tokens
are checked by :class:`~coordsync.common.wsgi.NodeApp` for every route.
"""

import hashlib
import json
import re
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import recon
from coordsync.common import signing
from coordsync.common import storage_policy
from coordsync.common import timestamp
from coordsync.common import wsgi
from coordsync.common.wsgi import HTTPError
from coordsync.container import replication as db_replication
from coordsync.container import server as container_server
from coordsync.obj import diskfile
from coordsync.obj import layout
from coordsync.obj import receiver
from coordsync.obj import sync
from coordsync.obj import syncstream
from coordsync.obj import updates

LOG = logging.getLogger(__name__)

RECON = '/recon'
MAX_ACCOUNT_LENGTH = layout.MAX_ACCOUNT_LENGTH
MAX_CONTAINER_LENGTH = layout.MAX_CONTAINER_LENGTH
MAX_OBJECT_LENGTH = layout.MAX_OBJECT_LENGTH
META_PREFIX = 'x-object-meta-'
_CONTENT_LENGTH_RE = re.compile(r'[0-9]{1,19}\Z')
_ETAG_RE = re.compile(r'[0-9a-f]{32}\Z')


def _check_name(kind, value, max_length, allow_slash=False):
    """Validate an account, container or object name (already decoded)."""
    try:
        return layout.check_name(kind, value, max_length, allow_slash)
    except ValueError as err:
        raise HTTPError(400, str(err)) from None


def _check_device(device):
    try:
        return layout.check_device(device)
    except ValueError as err:
        raise HTTPError(400, 'bad device: %s' % err) from None


def _check_partition(text):
    try:
        return int(layout.check_partition(text))
    except ValueError as err:
        raise HTTPError(400, 'bad partition: %s' % err) from None


def _check_suffixes(text):
    suffixes = text.split('-')
    for suffix in suffixes:
        if not layout.is_suffix(suffix):
            raise HTTPError(400, 'bad suffix %r' % suffix[:16])
    return suffixes


def _device_partition(parts, shape):
    """Check the number of ``parts`` and their device and partition."""
    if len(parts) < 2:
        raise HTTPError(400, 'expected %s' % shape)
    return {'device': _check_device(parts[0]),
            'partition': _check_partition(parts[1])}


# -- parsing each route's path ------------------------------------------------

def parse_object(parts):
    args = _device_partition(parts, '/<device>/<partition>/<account>/'
                                    '<container>/<object>')
    if len(parts) < 5:
        raise HTTPError(400, 'expected /<device>/<partition>/<account>/'
                             '<container>/<object>')
    args['account'] = _check_name('account', parts[2], MAX_ACCOUNT_LENGTH)
    args['container'] = _check_name('container', parts[3],
                                    MAX_CONTAINER_LENGTH)
    args['obj'] = _check_name('object', '/'.join(parts[4:]),
                              MAX_OBJECT_LENGTH, allow_slash=True)
    return args


def parse_replicate(parts):
    shape = '/<device>/<partition>[/<suffix>-<suffix>...]'
    args = _device_partition(parts, shape)
    if len(parts) > 3:
        raise HTTPError(400, 'expected %s' % shape)
    args['suffixes'] = _check_suffixes(parts[2]) if len(parts) == 3 \
        else ()
    return args


def parse_suffix(parts):
    shape = '/<device>/<partition>/<suffix>'
    args = _device_partition(parts, shape)
    if len(parts) != 3:
        raise HTTPError(400, 'expected %s' % shape)
    suffixes = _check_suffixes(parts[2])
    if len(suffixes) != 1:
        raise HTTPError(400, 'list one suffix at a time')
    args['suffix'] = suffixes[0]
    return args


SYNC_ACTIONS = ('check', 'pull')


def parse_sync(parts):
    shape = '/<device>/<partition>[/check|/pull]'
    args = _device_partition(parts, shape)
    if len(parts) > 3 or (len(parts) == 3 and parts[2] not in SYNC_ACTIONS):
        raise HTTPError(400, 'expected %s' % shape)
    args['action'] = parts[2] if len(parts) == 3 else None
    return args


def parse_recon(parts):
    """``/recon/<kind>``: one short lower-case word (no path, no dots)."""
    if len(parts) != 1 or not recon.KIND_RE.match(parts[0]):
        raise HTTPError(400, 'expected /recon/<kind>, one of: %s'
                        % ', '.join(recon.KINDS))
    return {'kind': parts[0]}


# -- headers and disk errors --------------------------------------------------

def _x_timestamp(req):
    value = req.header('X-Timestamp')
    if value is None:
        raise HTTPError(400, 'missing X-Timestamp')
    try:
        return timestamp.Timestamp(value)
    except ValueError as err:
        raise HTTPError(400, 'bad X-Timestamp: %s' % err) from None


def _container_targets(req):
    try:
        return updates.container_targets(req.header)
    except ValueError as err:
        raise HTTPError(400, str(err)) from None


def _stored_at(err):
    """``X-Backend-Timestamp`` of the version that made ``err``, if any."""
    if err.timestamp is None:
        return {}
    return {'X-Backend-Timestamp': err.timestamp.normal}


def _http_error(err):
    """The HTTPError answering a disk error (or a ValueError: 400)."""
    if isinstance(err, (exceptions.DiskFileDeviceUnavailable,
                        exceptions.DiskFileNoSpace)):
        return HTTPError(507, str(err))
    if isinstance(err, exceptions.DiskFileDeleted):
        return HTTPError(404, 'deleted', _stored_at(err))
    if isinstance(err, exceptions.DiskFileCorrupt):
        return HTTPError(404, 'not found (quarantined)')
    if isinstance(err, exceptions.DiskFileNotFound):
        return HTTPError(404, 'not found')
    if isinstance(err, exceptions.DiskFileConflict):
        return HTTPError(409, 'a newer or equal version is stored',
                         _stored_at(err))
    if isinstance(err, exceptions.DiskFileMismatch):
        return HTTPError(422 if err.header == 'ETag' else 499, str(err))
    if isinstance(err, exceptions.DiskFileCollision):
        return HTTPError(409, str(err))
    if isinstance(err, ValueError):
        return HTTPError(400, str(err))
    return HTTPError(500, 'disk error: %s' % err)


def _metadata_headers(metadata):
    headers = {'X-Timestamp': metadata['X-Timestamp'],
               'Content-Type': metadata.get('Content-Type',
                                            'application/octet-stream'),
               'ETag': metadata.get('ETag', ''),
               'Content-Length': str(metadata.get('Content-Length', 0))}
    for key, value in metadata.items():
        if key.lower().startswith(META_PREFIX):
            headers[key] = value
    return headers


def _put_metadata(req, when):
    metadata = {'X-Timestamp': when.normal,
                'Content-Type': req.header('Content-Type')
                or 'application/octet-stream'}
    length = req.header('Content-Length')
    chunked = 'chunked' in (req.header('Transfer-Encoding') or '')
    if length in (None, '') and not chunked:
        raise HTTPError(411, 'Content-Length or chunked encoding required')
    if length not in (None, ''):
        if not _CONTENT_LENGTH_RE.match(length):
            raise HTTPError(400, 'bad Content-Length')
        metadata['Content-Length'] = int(length)
    etag = req.header('ETag')
    if etag:
        etag = etag.strip('"').lower()
        if not _ETAG_RE.match(etag):
            raise HTTPError(400, 'bad ETag')
        metadata['ETag'] = etag
    for key, value in req.env.items():
        if key.startswith('HTTP_X_OBJECT_META_'):
            name = 'X-Object-Meta-' + key[19:].replace('_', '-').title()
            metadata[name] = value
    return metadata


# -- the handlers -------------------------------------------------------------

class IncomingSlots:
    """Sync requests being served by a node, counted across the route
    sets of all its policies: ``max_incoming`` bounds the node's load,
    not each policy's."""

    def __init__(self):
        self.count = 0


class ObjectRoutes:
    """The object handlers of one storage policy of a node, over its
    DiskFileManager.

    :param secret: the cluster secret, which signs sync streams.
    :param max_incoming: sync requests served at the same time (503
        beyond).
    :param replay_window: seconds a pushed stream's request signature is
        remembered, to refuse it sent again (at least the allowed clock
        skew, both ways).
    :param policy: the storage policy index served (route prefixes,
        fences, container rows); ``manager`` must be that policy's.
    :param slots: an :class:`IncomingSlots` shared with the node's other
        policies (a fresh one when omitted).
    """

    def __init__(self, manager, logger=None, secret='', max_incoming=4,
                 replay_window=600.0, container_updates=None, policy=0,
                 slots=None):
        self.manager = manager
        self.policy = policy
        # An updates.ContainerUpdates: object rows to container replicas.
        self.container_updates = container_updates
        self.log = logger or LOG
        self.secret = secret.encode('utf-8')
        self.max_incoming = max_incoming
        self._slots = slots if slots is not None else IncomingSlots()
        self.replay_window = replay_window
        self._seen = {}

    @property
    def incoming(self):
        """Sync requests in progress on the node (every policy)."""
        return self._slots.count

    @incoming.setter
    def incoming(self, value):
        self._slots.count = value

    def routes(self):
        """The route set to add to a :class:`~coordsync.common.wsgi.NodeApp`.
        """
        def route(methods, prefix, handler, parse):
            return wsgi.Route(methods, direct_client.policy_prefix(
                prefix, self.policy), handler, parse, policy=self.policy)
        return [
            route(('PUT', 'GET', 'HEAD', 'DELETE'), direct_client.OBJECTS,
                  self.object, parse_object),
            route(('REPLICATE',), direct_client.OBJECTS, self.replicate,
                  parse_replicate),
            route(('GET',), direct_client.OBJECT_SUFFIXES,
                  self.list_suffix, parse_suffix),
            route(('PUT', 'POST'), direct_client.OBJECT_SYNC,
                  self.sync_request, parse_sync),
        ]

    def _call(self, func, *args):
        """Run a disk call off the hub; map disk errors to HTTP."""
        try:
            return concurrency.run_in_thread(func, *args)
        except (exceptions.DiskFileError, ValueError) as err:
            raise _http_error(err) from None

    def object(self, req, args):
        if req.method == 'PUT':
            # NOTE: headers are checked before the disk is looked at.
            when = _x_timestamp(req)
            metadata = _put_metadata(req, when)
            targets = _container_targets(req)
            reply = self.put(req, self._diskfile(args), when, metadata)
            self._update_container('PUT', args, targets, when, metadata)
            return reply
        if req.method == 'DELETE':
            when = _x_timestamp(req)
            targets = _container_targets(req)
            reply = self.delete(self._diskfile(args), when)
            self._update_container('DELETE', args, targets, when)
            return reply
        return self.get(req, self._diskfile(args))

    def _update_container(self, op, args, targets, when, metadata=None):
        """After a write is on disk: its row to the container replicas
        the request named (:mod:`coordsync.obj.updates`)."""
        if targets is None or self.container_updates is None:
            return
        self.container_updates.update(
            op, args['device'], args['account'], args['container'],
            args['obj'], updates.row_headers(op, when, metadata,
                                             self.policy),
            targets, self.policy)

    def _diskfile(self, args):
        return self._call(self.manager.diskfile, args['device'],
                          args['partition'], args['account'],
                          args['container'], args['obj'])

    def put(self, req, df, when, metadata):
        self._reject_stale(df, when)
        with self._call(df.writer, metadata) as writer:
            for chunk in req.body_chunks():
                self._call(writer.write, chunk)
            # NOTE: a sender paused mid-body (SIGSTOP, GC) may have lost
            # its item to a newer holder since the request was admitted.
            req.recheck_fence()
            stored = self._call(writer.commit)
        # NOTE: the container row takes the stored size and ETag.
        metadata.update(stored)
        return 201, {'ETag': stored['ETag']}, []

    def _reject_stale(self, df, when, tombstone=False):
        """409 before writing anything that could never be stored.

        Returns whether an object (not a tombstone) is stored now. A
        tombstone wins a tie with data, as on disk.
        """
        try:
            stored = timestamp.Timestamp(
                self._call(df.read_metadata)['X-Timestamp'])
            exists = True
        except HTTPError as err:
            if err.status != 404:
                raise
            stored = err.headers.get('X-Backend-Timestamp')
            stored = stored and timestamp.Timestamp(stored)
            exists = False
        tie_wins = tombstone and exists
        if stored and (stored > when or (stored == when and not tie_wins)):
            raise HTTPError(409, 'a newer or equal version is stored',
                            {'X-Backend-Timestamp': stored.normal})
        return exists

    def get(self, req, df):
        reader = self._call(df.reader)
        headers = _metadata_headers(reader.metadata)
        if req.method == 'HEAD':
            reader.close()
            return 200, headers, []
        return 200, headers, reader

    def delete(self, df, when):
        # NOTE: checked first so a stale DELETE writes no temporary file.
        existed = self._reject_stale(df, when, tombstone=True)
        self._call(df.delete, when)
        return (204 if existed else 404), {}, []

    def replicate(self, req, args):
        hashes = self._call(self.manager.get_hashes, args['device'],
                            args['partition'], args['suffixes'])
        return wsgi.json_response(200, hashes)

    def list_suffix(self, req, args):
        listing = self._call(self.manager.list_suffix, args['device'],
                             args['partition'], args['suffix'])
        return wsgi.json_response(200, listing)

    # -- partition sync (see coordsync.obj.sync) ---------------------------

    def sync_request(self, req, args):
        if (req.method == 'PUT') != (args['action'] is None):
            raise HTTPError(400, 'PUT pushes a stream; POST checks or '
                                 'pulls (/check, /pull)')
        # NOTE: an unknown or unmounted device answers 507 before any
        # body is read.
        self._call(self.manager.require_device, args['device'])
        if args['action'] == 'check':
            return self.sync_check(req, args)
        release = self._take_incoming()
        try:
            if args['action'] == 'pull':
                reply = self.sync_pull(req, args, release)
                release = None  # NOTE: the reply's iterable releases it.
                return reply
            return self.sync_push(req, args)
        finally:
            if release is not None:
                release()

    def _take_incoming(self):
        """Count one more sync request in; its release, or 503."""
        if self.incoming >= self.max_incoming:
            raise HTTPError(503, 'busy: %d sync requests in progress'
                            % self.incoming, {'Retry-After': '1'})
        self.incoming += 1
        released = []

        def release():
            if not released:
                released.append(True)
                self.incoming -= 1
        return release

    def _json_body(self, req, limit=sync.MAX_CHECK_BODY):
        """The request's JSON body, checked against its signed ETag."""
        etag = (req.header('ETag') or '').strip('"').lower()
        if not _ETAG_RE.match(etag):
            raise HTTPError(400, 'a JSON body needs its ETag')
        body = bytearray()
        for chunk in req.body_chunks():
            body += chunk
            if len(body) > limit:
                raise HTTPError(413, 'body larger than %d bytes' % limit)
        if hashlib.md5(body, usedforsecurity=False).hexdigest() != etag:
            raise HTTPError(422, 'body does not match its ETag')
        try:
            return json.loads(body.decode('utf-8'))
        except ValueError as err:
            raise HTTPError(400, 'bad JSON body: %s' % err) from None

    def sync_check(self, req, args):
        """Which offered objects this node wants, and what it has newer
        than the offer or outside it, under the listed suffixes."""
        data = self._json_body(req)
        try:
            suffixes, offer = _parse_check(data)
        except (ValueError, KeyError, TypeError) as err:
            raise HTTPError(400, 'bad check: %s' % err) from None
        local = self._call(self._list_suffixes, args['device'],
                           args['partition'], suffixes)
        want = sorted(h for h, version in offer.items()
                      if h not in local or version > local[h])
        newer = {h: [when.normal, deleted]
                 for h, (when, deleted) in local.items()
                 if h not in offer or (when, deleted) > offer[h]}
        return wsgi.json_response(200, {'want': want, 'newer': newer})

    def _list_suffixes(self, device, partition, suffixes):
        found = {}
        for suffix in suffixes:
            for obj_hash, entry in self.manager.list_suffix(
                    device, partition, suffix).items():
                found[obj_hash] = (timestamp.Timestamp(entry['timestamp']),
                                   entry['deleted'])
        return found

    def _seen_before(self, signature):
        """Remember a pushed stream's signatures (of the request and of
        the stream); True if seen already."""
        now = time.monotonic()
        if len(self._seen) > 10000:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
        if self._seen.get(signature, 0) > now:
            return True
        self._seen[signature] = now + self.replay_window
        return False

    def sync_push(self, req, args):
        """Write a pushed stream; answer a status per object."""
        signature = req.header(signing.SIGNATURE_HEADER)
        reader = syncstream.StreamReader(
            _input_reader(req), self.secret,
            sync.seed(sync.PUSH_SEED, signature))

        def admit():
            # NOTE: a replay is the same request with the same stream:
            # two pushes signed in the same second differ by their
            # stream's signature.
            if self._seen_before((signature, reader.signature)):
                raise HTTPError(401, 'replayed sync request')
            req.recheck_fence()
        started = time.monotonic()
        try:
            received = receiver.receive(
                self.manager, args['device'], args['partition'], reader,
                admit=admit)
        except syncstream.StreamError as err:
            raise HTTPError(400, 'bad sync stream: %s' % err) from None
        except (exceptions.DiskFileError, ValueError) as err:
            raise _http_error(err) from None
        self.log.debug('Sync push into %s/%s%s: %d objects, %d stored in '
                       '%.3fs (publishing %.3fs)', args['device'],
                       args['partition'], _policy_note(self.policy),
                       len(received.results),
                       received.stored, time.monotonic() - started,
                       received.publish_seconds)
        return wsgi.json_response(200, {
            'results': received.results, 'stored': received.stored,
            'bytes': received.bytes_stored})

    def sync_pull(self, req, args, release):
        """A stream of the newest versions of the asked hashes."""
        data = self._json_body(req)
        hashes = data.get('hashes') if isinstance(data, dict) else None
        if not isinstance(hashes, list) or not all(
                isinstance(h, str) and layout.is_hash(h) for h in hashes):
            raise HTTPError(400, 'bad pull: "hashes" must list object '
                                 'hashes')
        signature = req.header(signing.SIGNATURE_HEADER)
        entries = sync.object_entries(self.manager, args['device'],
                                      args['partition'], hashes)
        body = syncstream.encode(entries, self.secret,
                                 sync.seed(sync.PULL_SEED, signature))
        return 200, {'Content-Type': sync.STREAM_TYPE}, \
            _Releasing(body, release)


def _policy_note(policy):
    """`` of policy N`` for a log line of policy N > 0, else nothing."""
    return ' of policy %d' % policy if policy else ''


class _Releasing:
    """A reply body that calls ``release`` once sent or dropped."""

    def __init__(self, body, release):
        self._body = body
        self._release = release

    def __iter__(self):
        return iter(self._body)

    def close(self):
        try:
            self._body.close()
        finally:
            self._release()


def _input_reader(req):
    """``read(n)`` of the request body; a client gone is a StreamError
    (the stream is cut)."""
    wsgi_input = req.env['wsgi.input']

    def read(amount):
        try:
            return wsgi_input.read(amount)
        except (OSError, ValueError) as err:
            raise syncstream.StreamError('client disconnected: %s'
                                         % err) from None
    return read


def _parse_check(data):
    """``(suffixes, {hash: (Timestamp, deleted)})`` of a check body."""
    if not isinstance(data, dict):
        raise ValueError('a check is a JSON object')
    suffixes = data['suffixes']
    if not isinstance(suffixes, list) or not all(
            isinstance(s, str) and layout.is_suffix(s) for s in suffixes):
        raise ValueError('"suffixes" must list suffixes')
    suffixes = sorted(set(suffixes))
    if not isinstance(data.get('offer'), dict):
        raise ValueError('"offer" must be an object')
    listed = set(suffixes)
    offer = {}
    for obj_hash, (when, deleted) in data['offer'].items():
        if not layout.is_hash(obj_hash) or obj_hash[-3:] not in listed:
            raise ValueError('offered hash %r is not under the suffixes'
                             % obj_hash[:40])
        if not isinstance(deleted, bool) or not isinstance(when, str):
            raise ValueError('an offer is [timestamp, deleted]')
        offer[obj_hash] = (timestamp.Timestamp(when), deleted)
    return suffixes, offer


class NodeServer(wsgi.NodeApp):
    """The WSGI application of one storage node: the node API with the
    object routes of every storage policy of ``conf``.

    :param conf: ConfigOpts with the node, cluster and server options.
    :param manager: a :class:`~coordsync.obj.diskfile.DiskFileManager`
        (made from ``conf`` when omitted); the other policies' come
        from its ``for_policy``.
    :param token_store: see :class:`~coordsync.common.wsgi.NodeApp`.
    """

    def __init__(self, conf, manager=None, logger=None, token_store=None):
        if not conf.cluster_secret:
            raise exceptions.ConfigError(
                '[DEFAULT] cluster_secret is required by the node server')
        super().__init__(conf, logger=logger, token_store=token_store)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.container_updates = updates.ContainerUpdates.from_conf(
            conf, self.manager, self.log)
        self.policies = storage_policy.from_conf(conf)
        slots = IncomingSlots()
        for policy in self.policies:
            self.add_routes(ObjectRoutes(
                self.manager.for_policy(policy.index), self.log,
                secret=conf.cluster_secret,
                max_incoming=conf.replicator.max_incoming,
                replay_window=2.0 * conf.server.max_clock_skew,
                container_updates=self.container_updates,
                policy=policy.index, slots=slots).routes())
        self.add_routes(container_server.ContainerRoutes(
            conf, self.manager, self.log).routes())
        self.add_routes(container_server.AccountRoutes(
            conf, self.manager, self.log).routes())
        self.add_routes(db_replication.DbSyncRoutes(
            self.manager, self.log, conf.hash_path_prefix,
            conf.hash_path_suffix).routes())
        self.facts = recon.NodeFacts(conf)
        self.add_routes([wsgi.Route(('GET',), RECON, self.recon,
                                    parse_recon)])

    def recon(self, req, args):
        """One kind of recon facts of this node, as JSON."""
        try:
            found = concurrency.run_in_thread(self.facts.get, args['kind'])
        except recon.NotFound as err:
            raise HTTPError(404, str(err)) from None
        except (OSError, ValueError) as err:
            raise HTTPError(500, 'cannot read recon %s: %s'
                            % (args['kind'], err)) from None
        return wsgi.json_response(200, found)

    def health_problems(self):
        """The app's checks, and devices unmounted under mount_check."""
        problems = super().health_problems()
        unmounted = self.facts.unmounted()
        if unmounted:
            problems.append('device(s) not mounted: %s'
                            % ', '.join(unmounted))
        return problems

    def open(self):
        """Create what the server needs on disk, and remove temporary
        files that crashed writes left (older than TMP_MAX_AGE: a
        replicator of this node may be writing some now)."""
        super().open()
        self.manager.cleanup_all_tmp(self.log)
