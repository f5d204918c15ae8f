"""Talking to node servers: one signed request to one node.

:class:`NodeClient` is what every daemon uses to reach another node's
server (Swift's ``direct_client``).
"""

import http.client
import json
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import signing

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 65536


class NodeError(exceptions.CoordsyncError):
    """A node could not be reached or did not answer in time."""


def object_path(device, partition, account, container, obj):
    """The quoted request path of an object on a device."""
    return '/%s/%d/%s' % (
        urllib.parse.quote(device, safe=''), partition,
        urllib.parse.quote('%s/%s/%s' % (account, container, obj),
                           safe='/'))


def node_label(node):
    return '%s:%s/%s' % (node['ip'], node['port'], node['device'])


class Response:
    """Status, headers (lower-cased keys) and the unread body of a reply."""

    def __init__(self, conn, resp):
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def read(self):
        try:
            return self._resp.read()
        finally:
            self.close()

    def iter_body(self, chunk_size=CHUNK_SIZE):
        try:
            while True:
                chunk = self._resp.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def json(self):
        return json.loads(self.read().decode('utf-8'))

    def close(self):
        self._conn.close()


class NodeClient:
    """Signed requests to node servers, with connect and answer timeouts."""

    def __init__(self, conf):
        if not conf.cluster_secret:
            raise exceptions.ConfigError(
                '[DEFAULT] cluster_secret is required to talk to nodes')
        self._secret = conf.cluster_secret
        self.conn_timeout = conf.client.conn_timeout
        self.node_timeout = conf.client.node_timeout

    def request(self, node, method, path, headers=None, body=None,
                query=''):
        """Send a request; return a :class:`Response` (caller reads it).

        ``body`` is bytes or an iterable of bytes (sent chunked unless a
        Content-Length header is given). Raises NodeError when the node
        cannot be reached or is too slow.
        """
        headers = dict(headers or {})
        headers.update(signing.sign(self._secret, method, path, query,
                                    headers.get('X-Timestamp', '')))
        url = path + ('?' + query if query else '')
        conn = http.client.HTTPConnection(node['ip'], node['port'],
                                          timeout=self.conn_timeout)
        try:
            conn.connect()
            conn.sock.settimeout(self.node_timeout)
            chunked = (body is not None and not isinstance(body, bytes)
                       and 'Content-Length' not in headers)
            conn.request(method, url, body=body, headers=headers,
                         encode_chunked=chunked)
            return Response(conn, conn.getresponse())
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise NodeError('%s %s on %s: %s' % (
                method, path, node_label(node), err or type(err).__name__)
            ) from err

    def call(self, node, method, path, **kwargs):
        """Like :meth:`request` but read the whole body: (status, hdrs, b)."""
        resp = self.request(node, method, path, **kwargs)
        return resp.status, resp.headers, resp.read()

    def _get_json(self, node, method, path):
        resp = self.request(node, method, path)
        if resp.status != 200:
            resp.close()
            raise NodeError('%s %s on %s: %s'
                            % (method, path, node_label(node), resp.status))
        return resp.json()

    def replicate(self, node, partition, suffixes=()):
        """Suffix hashes of ``partition`` on ``node`` (recomputing some)."""
        path = '/%s/%d' % (urllib.parse.quote(node['device'], safe=''),
                           partition)
        if suffixes:
            path += '/' + '-'.join(suffixes)
        return self._get_json(node, 'REPLICATE', path)

    def list_suffix(self, node, partition, suffix):
        """``{obj_hash: {'timestamp', 'deleted'}}`` of a suffix on a node."""
        path = '/%s/%d/%s' % (urllib.parse.quote(node['device'], safe=''),
                              partition, suffix)
        return self._get_json(node, 'GET', path)


def concurrent_map(func, items):
    """Apply ``func`` to every item concurrently; results in order."""
    pool = concurrency.GreenPool(max(1, len(items)))
    return list(pool.imap(func, items))
