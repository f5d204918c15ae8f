"""Talking to node servers: signed requests over pooled connections.

:class:`NodeClient` is what every daemon uses to reach another node's
server (Swift's ``direct_client``), and this module builds every path of
the node API, so that the server's routes and the clients' requests
share one spelling of each::

    /healthcheck
    /objects/<device>/<partition>/<account>/<container>/<object>
    /objects/<device>/<partition>[/<suffix>-<suffix>...]   (REPLICATE)
    /object-suffixes/<device>/<partition>/<suffix>         (listing)
    /object-sync/<device>/<partition>[/check|/pull]        (sync)
    /db-sync/<datadir>/<device>/<partition>[/<hash>]       (DB sync)
    /containers/<device>/<partition>/<account>/<container>
    /container-rows/<device>/<partition>/<account>/<container>/<object>
    /accounts/<device>/<partition>/<account>
    /account-rows/<device>/<partition>/<account>/<container>

The object routes above are storage policy 0's; policy N's take ``-N``
on their prefix (``/objects-1``, ``/object-suffixes-1``,
``/object-sync-1``: :func:`policy_prefix`).

Connections are kept alive per node (urllib3) and reused; bodies are
streamed both ways.
"""

import hashlib
import json
import urllib.parse

import urllib3
from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import fencing
from coordsync.common import signing

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 65536
HEALTHCHECK = '/healthcheck'
OBJECTS = '/objects'
OBJECT_SUFFIXES = '/object-suffixes'
OBJECT_SYNC = '/object-sync'
DB_SYNC = '/db-sync'
CONTAINERS = '/containers'
CONTAINER_ROWS = '/container-rows'
SYNC_STATE = '/sync-state'
ACCOUNTS = '/accounts'
ACCOUNT_ROWS = '/account-rows'
# NOTE: nodes whose idle connections are kept; beyond it the least
# recently used node's are closed.
MAX_NODES = 512
# NOTE: urllib3 sends "Content-Length: 0" with a bodiless request of any
# other method; it is signed, so the client sets it itself.
_METHODS_WITHOUT_BODY = ('GET', 'HEAD', 'DELETE', 'TRACE', 'OPTIONS',
                         'CONNECT')


class NodeError(exceptions.CoordsyncError):
    """A node could not be reached, did not answer in time, or refused.

    ``fenced`` is True when the node refused the request's fencing token
    (a newer holder of the item's lock talked to it).
    """

    def __init__(self, message, fenced=False):
        super().__init__(message)
        self.fenced = fenced


def _quote(text):
    return urllib.parse.quote(text, safe='')


def policy_prefix(prefix, policy=0):
    """The route prefix of a storage policy's object routes: ``prefix``
    for policy 0, ``prefix-N`` for policy N (``/objects-1``)."""
    return prefix if not policy else '%s-%d' % (prefix, int(policy))


def object_path(device, partition, account, container, obj, policy=0):
    """The quoted request path of an object on a device."""
    return '%s/%s/%d/%s' % (
        policy_prefix(OBJECTS, policy), _quote(device), partition,
        urllib.parse.quote('%s/%s/%s' % (account, container, obj),
                           safe='/'))


def replicate_path(device, partition, suffixes=(), policy=0):
    """REPLICATE path of a partition, naming the suffixes to rehash."""
    path = '%s/%s/%d' % (policy_prefix(OBJECTS, policy), _quote(device),
                         partition)
    if suffixes:
        path += '/' + '-'.join(suffixes)
    return path


def suffix_path(device, partition, suffix, policy=0):
    """Path of the object listing of one suffix."""
    return '%s/%s/%d/%s' % (policy_prefix(OBJECT_SUFFIXES, policy),
                            _quote(device), partition, suffix)


def sync_path(device, partition, action=None, policy=0):
    """Path of a partition's sync requests (push; ``check``, ``pull``)."""
    path = '%s/%s/%d' % (policy_prefix(OBJECT_SYNC, policy),
                         _quote(device), partition)
    return path + '/' + action if action else path


def container_path(device, partition, account, container):
    """Path of a container database on a device (container routes)."""
    return '%s/%s/%d/%s/%s' % (CONTAINERS, _quote(device), partition,
                               _quote(account), _quote(container))


def sync_state_path(device, partition, account, container):
    """Path of a container replica's sync state (container sync)."""
    return '%s/%s/%d/%s/%s' % (SYNC_STATE, _quote(device), partition,
                               _quote(account), _quote(container))


def container_row_path(device, partition, account, container, obj):
    """Path of an object's row in a container database (object
    updates)."""
    return '%s/%s/%d/%s/%s/%s' % (
        CONTAINER_ROWS, _quote(device), partition, _quote(account),
        _quote(container), urllib.parse.quote(obj, safe='/'))


def account_path(device, partition, account):
    """Path of an account database on a device (account routes)."""
    return '%s/%s/%d/%s' % (ACCOUNTS, _quote(device), partition,
                            _quote(account))


def account_row_path(device, partition, account, container):
    """Path of a container's row in an account database."""
    return '%s/%s/%d/%s/%s' % (ACCOUNT_ROWS, _quote(device), partition,
                               _quote(account), _quote(container))


def db_sync_path(datadir, device, partition, name_hash=None):
    """Path of a container or account database replica's sync requests
    (``/db-sync/<datadir>/<device>/<partition>[/<hash>]``)."""
    path = '%s/%s/%s/%d' % (DB_SYNC, _quote(datadir), _quote(device),
                            partition)
    return path + '/' + name_hash if name_hash else path


def node_label(node):
    return '%s:%s/%s' % (node['ip'], node['port'], node['device'])


class Response:
    """Status, headers (lower-cased keys) and the unread body of a reply.

    Read the body (``read``, ``iter_body``, ``json``) or ``close()`` it:
    a fully read reply gives its connection back to the pool for the
    next request to that node; one closed early closes the connection.
    """

    def __init__(self, resp, label, on_close=None, signature=None):
        self._resp = resp
        self._label = label
        # The signature the request was sent with.
        self.signature = signature
        self._on_close = on_close
        self._finished = False
        self.status = resp.status
        self.headers = {k.lower(): v
                        for k, v in resp.headers.itermerged()}

    def read(self):
        try:
            data = self._resp.read()
            self._finished = True
            return data
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise NodeError('reading from %s: %s' % (
                self._label, _reason(err))) from err
        finally:
            self.close()

    def iter_body(self, chunk_size=CHUNK_SIZE):
        try:
            while True:
                try:
                    chunk = self._resp.read(chunk_size)
                except (urllib3.exceptions.HTTPError, OSError) as err:
                    raise NodeError('reading from %s: %s' % (
                        self._label, _reason(err))) from err
                if not chunk:
                    self._finished = True
                    return
                yield chunk
        finally:
            self.close()

    def read_some(self, amount):
        """Up to ``amount`` bytes of the body, ``b''`` at its end (for a
        :class:`~coordsync.obj.syncstream.StreamReader`)."""
        if self._resp is None:
            return b''
        try:
            data = self._resp.read(amount)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise NodeError('reading from %s: %s' % (
                self._label, _reason(err))) from err
        if not data:
            self._finished = True
        return data

    def json(self):
        return json.loads(self.read().decode('utf-8'))

    def close(self):
        resp, self._resp = self._resp, None
        if resp is None:
            return
        try:
            if self._finished:
                pass
            elif resp.length_remaining == 0:
                resp.read()  # NOTE: no body (HEAD, 204): no I/O.
            else:
                # NOTE: an unread body would be the next reply's start.
                resp.close()
            resp.release_conn()
        except (urllib3.exceptions.HTTPError, OSError):
            resp.close()
            resp.release_conn()
        finally:
            if self._on_close is not None:
                self._on_close()

    def __del__(self):
        # NOTE: a reply dropped unread must not hold its node's slot.
        if getattr(self, '_resp', None) is not None:
            self.close()


class NodeClient:
    """Signed requests to node servers, with connect and answer timeouts.

    :param conf: ConfigOpts with ``cluster_secret`` and ``[client]``.
    :param member_id: this process's coordination member id, sent (and
        signed) in ``X-Coordsync-Member`` so a node can tell who sent a
        request, e.g. one it fenced.
    """

    def __init__(self, conf, member_id=None):
        if not conf.cluster_secret:
            raise exceptions.ConfigError(
                '[DEFAULT] cluster_secret is required to talk to nodes')
        self._secret = conf.cluster_secret
        # NOTE: sync streams are signed with it too (coordsync.obj.sync).
        self.secret = conf.cluster_secret
        self.conn_timeout = conf.client.conn_timeout
        self.node_timeout = conf.client.node_timeout
        self.member_id = member_id
        self._per_node = conf.client.connections_per_node
        self._slots = {}
        self._pools = urllib3.PoolManager(
            num_pools=MAX_NODES, maxsize=self._per_node, block=False,
            retries=False, timeout=urllib3.Timeout(
                connect=self.conn_timeout, read=self.node_timeout))

    def signed_headers(self, method, path, query='', headers=None,
                       body=None, fence=None):
        """The headers to send: ``headers`` plus framing, member, fence
        and the signature over them."""
        headers = dict(headers or {})
        present = {k.lower() for k in headers}
        if 'content-length' not in present:
            if isinstance(body, bytes):
                headers['Content-Length'] = str(len(body))
            elif body is None and \
                    method.upper() not in _METHODS_WITHOUT_BODY:
                headers['Content-Length'] = '0'
        if isinstance(body, bytes) and 'etag' not in present:
            # NOTE: the signed ETag is what binds a write to its body.
            headers['ETag'] = hashlib.md5(body).hexdigest()
        if self.member_id:
            headers[signing.MEMBER_HEADER] = urllib.parse.quote(
                self.member_id, safe='@')
        if fence is not None:
            headers.update(fence.headers())
        headers.update(signing.sign(self._secret, method, path, query,
                                    headers))
        return headers

    def request(self, node, method, path, headers=None, body=None,
                query='', fence=None, replication=False, stream=None):
        """Send a request; return a :class:`Response` (caller reads it).

        ``body`` is bytes or an iterable of bytes (sent chunked unless a
        Content-Length header is given). ``fence`` (a
        :class:`~coordsync.common.fencing.Fence`) is sent and signed
        with it. ``replication`` marks a replication push (signed, in
        the query): without a fence, a node refuses it into a partition
        whose lock holder is working there (``[server] fence_lease``).
        ``stream(signature)``, instead of ``body``, makes the body (an
        iterable, sent chunked) from the request's signature, which a
        sync stream's own signature builds on.
        Raises NodeError when the node cannot be reached or is too slow.
        """
        if replication:
            query = fencing.with_replication(query)
        # NOTE: a stream is sent chunked: no Content-Length is signed.
        headers = self.signed_headers(method, path, query, headers,
                                      body if stream is None else (), fence)
        if stream is not None:
            body = stream(headers[signing.SIGNATURE_HEADER])
        return self._send(node, method, path, query, headers, body)

    def _send(self, node, method, path, query, headers, body):
        """The transport: one request on a pooled connection."""
        url = 'http://%s:%s%s' % (_host(node['ip']), node['port'], path)
        if query:
            url += '?' + query
        chunked = (body is not None and not isinstance(body, bytes)
                   and 'content-length' not in {k.lower() for k in headers})
        release = self._take_slot(node)
        try:
            resp = self._pools.urlopen(
                method, url, body=body, headers=headers, chunked=chunked,
                redirect=False, preload_content=False,
                decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            release()
            raise NodeError('%s %s on %s: %s' % (
                method, path, node_label(node),
                _reason(err))) from err
        except BaseException:
            release()
            raise
        return Response(resp, node_label(node), release,
                        headers.get(signing.SIGNATURE_HEADER))

    def _take_slot(self, node):
        """Wait for one of the node's connections; return its release.

        NOTE: this bounds the connections to a node (and so what this
        process costs that node's ``max_connections``); urllib3 itself
        would open more and log a warning for each one it closes. The
        wait is bounded: a caller holding every slot and asking for one
        more gets an error, not a deadlock.
        """
        key = (node['ip'], node['port'])
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = concurrency.Semaphore(self._per_node)
        if not slots.acquire(timeout=self.node_timeout):
            raise NodeError('%s: %d requests to it still open after %ss'
                            % (node_label(node), self._per_node,
                               self.node_timeout))
        released = []

        def release():
            if not released:
                released.append(True)
                slots.release()
        return release

    def call(self, node, method, path, **kwargs):
        """Like :meth:`request` but read the whole body: (status, hdrs, b)."""
        resp = self.request(node, method, path, **kwargs)
        return resp.status, resp.headers, resp.read()

    def _get_json(self, node, method, path, fence):
        resp = self.request(node, method, path, fence=fence)
        if resp.status != 200:
            reason = resp.read()[:200].decode('utf-8', 'replace').strip()
            raise NodeError('%s %s on %s: %s %s' % (
                method, path, node_label(node), resp.status, reason),
                fenced=is_fenced(resp))
        return resp.json()

    def replicate(self, node, partition, suffixes=(), fence=None,
                  policy=0):
        """Suffix hashes of ``partition`` of storage policy ``policy`` on
        ``node`` (recomputing some)."""
        return self._get_json(node, 'REPLICATE', replicate_path(
            node['device'], partition, suffixes, policy=policy), fence)

    def list_suffix(self, node, partition, suffix, fence=None, policy=0):
        """``{obj_hash: {'timestamp', 'deleted'}}`` of a suffix of
        storage policy ``policy`` on a node."""
        return self._get_json(node, 'GET', suffix_path(
            node['device'], partition, suffix, policy=policy), fence)

def is_fenced(resp):
    """Did the node refuse the request's fencing token?"""
    return resp.status == 409 and resp.headers.get(
        fencing.FENCED_HEADER.lower()) == 'true'


def _host(ip):
    return '[%s]' % ip if ':' in ip else ip


def _reason(err):
    """The socket's reason, without urllib3's pool and connection repr."""
    text = str(getattr(err, 'reason', None) or err) or type(err).__name__
    return text.split('): ', 1)[-1]


def concurrent_map(func, items):
    """Apply ``func`` to every item concurrently; results in order."""
    pool = concurrency.GreenPool(max(1, len(items)))
    return list(pool.imap(func, items))
