"""The node server: the backend HTTP API every storage node runs.

Routes (all but the health check must be signed, see
:mod:`coordsync.common.signing`)::

    GET       /healthcheck
    PUT|GET|HEAD|DELETE /<device>/<partition>/<account>/<container>/<obj>
    REPLICATE /<device>/<partition>[/<suffix>-<suffix>...]
    GET       /<device>/<partition>/<suffix>     (object listing of a suffix)
    GET       /<device>/<partition>/<suffix>/<hash>  (newest file, by hash)

Every path component is validated before anything touches a disk; a bad
request gets a 4xx with a one-line reason and changes nothing. Writes
carry ``X-Timestamp``; a write not newer than what is stored gets 409.
An unknown or unmounted device gets 507.
"""

import json
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import signing
from coordsync.common import timestamp
from coordsync.obj import diskfile
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

MAX_ACCOUNT_LENGTH = 256
MAX_CONTAINER_LENGTH = 256
MAX_OBJECT_LENGTH = 1024
CHUNK_SIZE = 65536
META_PREFIX = 'x-object-meta-'


class HTTPError(Exception):
    def __init__(self, status, reason, headers=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


STATUS_TEXT = {
    200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request',
    401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
    409: 'Conflict', 411: 'Length Required', 412: 'Precondition Failed',
    413: 'Request Entity Too Large', 422: 'Unprocessable Entity',
    499: 'Client Disconnect', 500: 'Internal Server Error',
    507: 'Insufficient Storage',
}


def _status_line(code):
    return '%d %s' % (code, STATUS_TEXT.get(code, 'Unknown'))


def _check_name(kind, value, max_length, allow_slash=False):
    """Validate an account, container or object name (already decoded)."""
    if not value:
        raise HTTPError(400, 'empty %s name' % kind)
    if len(value.encode('utf-8')) > max_length:
        raise HTTPError(400, '%s name longer than %d bytes'
                        % (kind, max_length))
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise HTTPError(400, 'control character in %s name' % kind)
    parts = value.split('/') if allow_slash else [value]
    if '/' in value and not allow_slash:
        raise HTTPError(400, 'slash in %s name' % kind)
    if any(p in ('', '.', '..') for p in parts):
        raise HTTPError(400, 'empty, "." or ".." segment in %s name' % kind)
    return value


def _decode_path(env):
    """PATH_INFO as text: WSGI hands it over as latin-1-decoded bytes."""
    raw = env.get('PATH_INFO', '')
    try:
        return raw.encode('latin-1').decode('utf-8')
    except UnicodeError:
        raise HTTPError(400, 'path is not valid UTF-8') from None


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
            raise HTTPError(400, 'bad suffix %r' % suffix)
    return suffixes


def _x_timestamp(env, required=True):
    value = env.get('HTTP_X_TIMESTAMP')
    if value is None:
        if required:
            raise HTTPError(400, 'missing X-Timestamp')
        return None
    try:
        return timestamp.Timestamp(value)
    except ValueError as err:
        raise HTTPError(400, 'bad X-Timestamp: %s' % err) from None


class Request:
    """What a handler needs of one request, validated."""

    def __init__(self, env):
        self.env = env
        self.method = env['REQUEST_METHOD']
        self.path = _decode_path(env)
        if not self.path.startswith('/'):
            raise HTTPError(400, 'path must start with /')
        self.parts = self.path[1:].split('/')

    def header(self, name):
        key = name.upper().replace('-', '_')
        # NOTE: WSGI keeps these two out of the HTTP_ namespace (PEP 3333).
        if key in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            return self.env.get(key)
        return self.env.get('HTTP_' + key)

    def raw_path(self):
        return self.env.get('RAW_PATH_INFO') or urllib.parse.quote(
            self.path)


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


def _json_response(status, payload):
    body = json.dumps(payload, sort_keys=True).encode('utf-8')
    return status, {'Content-Type': 'application/json'}, [body]


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


class NodeServer:
    """The WSGI application of one node.

    :param conf: ConfigOpts with the node, cluster and server options.
    :param manager: a :class:`~coordsync.obj.diskfile.DiskFileManager`
        (made from ``conf`` when omitted).
    """

    def __init__(self, conf, manager=None, logger=None):
        self.conf = conf
        self.log = logger or LOG
        if not conf.cluster_secret:
            raise exceptions.ConfigError(
                '[DEFAULT] cluster_secret is required by the node server')
        self.manager = manager or diskfile.DiskFileManager(
            conf.devices, mount_check=conf.mount_check,
            reclaim_age=conf.reclaim_age,
            hash_prefix=conf.hash_path_prefix,
            hash_suffix=conf.hash_path_suffix, logger=self.log)

    def __call__(self, env, start_response):
        try:
            status, headers, body = self.handle(env)
        except HTTPError as err:
            status, headers = err.status, dict(err.headers)
            headers['Content-Type'] = 'text/plain; charset=utf-8'
            body = [(err.reason + '\n').encode('utf-8')]
            if status >= 500:
                self.log.error('%s %s: %s', env.get('REQUEST_METHOD'),
                               env.get('PATH_INFO'), err.reason)
        if isinstance(body, list):
            headers.setdefault('Content-Length',
                               str(sum(len(b) for b in body)))
        start_response(_status_line(status), list(headers.items()))
        if env['REQUEST_METHOD'] == 'HEAD':
            if hasattr(body, 'close'):
                body.close()
            return []
        return body

    def handle(self, env):
        req = Request(env)
        if req.path == '/healthcheck':
            if req.method not in ('GET', 'HEAD'):
                raise HTTPError(405, 'healthcheck is GET or HEAD')
            return 200, {'Content-Type': 'text/plain'}, [b'OK\n']
        self._authenticate(req)
        if req.method == 'REPLICATE':
            return self.replicate(req)
        if len(req.parts) == 3 and req.method == 'GET':
            return self.list_suffix(req)
        if len(req.parts) == 4 and req.method in ('GET', 'HEAD'):
            return self.get_by_hash(req)
        if len(req.parts) < 5:
            raise HTTPError(400, 'expected /<device>/<partition>/<account>/'
                                 '<container>/<object>')
        handler = {'PUT': self.put, 'GET': self.get, 'HEAD': self.get,
                   'DELETE': self.delete}.get(req.method)
        if handler is None:
            raise HTTPError(405, 'method %s not allowed' % req.method)
        return handler(req, self._object(req))

    def _authenticate(self, req):
        reason = signing.verify(
            self.conf.cluster_secret, req.method, req.raw_path(),
            req.env.get('QUERY_STRING', ''), req.header,
            self.conf.server.max_clock_skew)
        if reason:
            raise HTTPError(401, reason)

    def _object(self, req):
        device = _check_device(req.parts[0])
        partition = _check_partition(req.parts[1])
        account = _check_name('account', req.parts[2], MAX_ACCOUNT_LENGTH)
        container = _check_name('container', req.parts[3],
                                MAX_CONTAINER_LENGTH)
        obj = _check_name('object', '/'.join(req.parts[4:]),
                          MAX_OBJECT_LENGTH, allow_slash=True)
        return self._call(self.manager.diskfile, device, partition,
                          account, container, obj)

    def _call(self, func, *args):
        """Run a disk call off the hub; map disk errors to HTTP."""
        try:
            return concurrency.run_in_thread(func, *args)
        except (exceptions.DiskFileError, ValueError) as err:
            raise _http_error(err) from None

    def _put_metadata(self, req, when):
        metadata = {'X-Timestamp': when.normal,
                    'Content-Type': req.header('Content-Type')
                    or 'application/octet-stream'}
        length = req.env.get('CONTENT_LENGTH')
        chunked = 'chunked' in (req.header('Transfer-Encoding') or '')
        if length in (None, '') and not chunked:
            raise HTTPError(411, 'Content-Length or chunked encoding '
                                 'required')
        if length not in (None, ''):
            if not length.isdigit():
                raise HTTPError(400, 'bad Content-Length')
            metadata['Content-Length'] = int(length)
        etag = req.header('ETag')
        if etag:
            etag = etag.strip('"').lower()
            if len(etag) != 32 or any(c not in '0123456789abcdef'
                                      for c in etag):
                raise HTTPError(400, 'bad ETag')
            metadata['ETag'] = etag
        for key, value in req.env.items():
            if key.startswith('HTTP_X_OBJECT_META_'):
                name = 'X-Object-Meta-' + key[19:].replace('_', '-').title()
                metadata[name] = value
        return metadata

    def _body_chunks(self, req):
        wsgi_input = req.env['wsgi.input']
        while True:
            try:
                chunk = wsgi_input.read(CHUNK_SIZE)
            except (OSError, ValueError) as err:
                raise HTTPError(499, 'client disconnected: %s'
                                % err) from None
            if not chunk:
                return
            yield chunk

    def put(self, req, df):
        when = _x_timestamp(req.env)
        metadata = self._put_metadata(req, when)
        self._reject_stale(df, when)
        with self._call(df.writer, metadata) as writer:
            for chunk in self._body_chunks(req):
                self._call(writer.write, chunk)
            stored = self._call(writer.commit)
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

    def delete(self, req, df):
        when = _x_timestamp(req.env)
        # NOTE: checked first so a stale DELETE writes no temporary file.
        existed = self._reject_stale(df, when, tombstone=True)
        self._call(df.delete, when)
        return (204 if existed else 404), {}, []

    def replicate(self, req):
        if len(req.parts) not in (2, 3):
            raise HTTPError(400, 'expected REPLICATE /<device>/<partition>'
                                 '[/<suffix>-<suffix>...]')
        device = _check_device(req.parts[0])
        partition = _check_partition(req.parts[1])
        recalculate = _check_suffixes(req.parts[2]) \
            if len(req.parts) == 3 else ()
        hashes = self._call(self.manager.get_hashes, device, partition,
                            recalculate)
        return _json_response(200, hashes)

    def get_by_hash(self, req):
        """The newest version of an object found by hash (replication).

        The name travels in ``X-Object-Name`` (quoted), also on the 404 of
        a tombstone, so the puller can store either by name.
        """
        device = _check_device(req.parts[0])
        partition = _check_partition(req.parts[1])
        suffix = _check_suffixes(req.parts[2])[0]
        obj_hash = req.parts[3]
        if not layout.is_hash(obj_hash) or not obj_hash.endswith(suffix):
            raise HTTPError(400, 'bad object hash %r' % obj_hash)
        df = self._call(self.manager.diskfile_by_hash, device, partition,
                        obj_hash)
        try:
            reader = concurrency.run_in_thread(df.reader)
        except exceptions.DiskFileDeleted as err:
            error = _http_error(err)
            error.headers['X-Object-Name'] = urllib.parse.quote(
                (err.metadata or {}).get('name', ''))
            raise error from None
        except (exceptions.DiskFileError, ValueError) as err:
            raise _http_error(err) from None
        headers = _metadata_headers(reader.metadata)
        headers['X-Object-Name'] = urllib.parse.quote(
            reader.metadata['name'])
        if req.method == 'HEAD':
            reader.close()
            return 200, headers, []
        return 200, headers, reader

    def list_suffix(self, req):
        device = _check_device(req.parts[0])
        partition = _check_partition(req.parts[1])
        suffix = _check_suffixes(req.parts[2])
        if len(suffix) != 1:
            raise HTTPError(400, 'list one suffix at a time')
        listing = self._call(self.manager.list_suffix, device, partition,
                             suffix[0])
        return _json_response(200, listing)


class WSGIService:
    """Serves a NodeServer on ``bind_ip:bind_port`` in a green thread."""

    def __init__(self, conf, app, logger=None):
        self.conf = conf
        self.app = app
        self.log = logger or LOG
        self._sock = None
        self._thread = None

    def start(self):
        address = (self.conf.bind_ip, self.conf.bind_port)
        self._sock = concurrency.listen(address,
                                        backlog=self.conf.server.backlog)
        self.log.info('Node server listening on %s:%d', *address)
        self._thread = concurrency.spawn(
            concurrency.serve_wsgi, self._sock, self.app, _WSGILog(self.log),
            self.conf.server.max_clients)

    def stop(self):
        if self._thread is not None:
            concurrency.kill(self._thread)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _WSGILog:
    """eventlet.wsgi writes its own lines; route them to debug logging."""

    def __init__(self, logger):
        self._log = logger

    def write(self, message):
        self._log.debug('wsgi: %s', message.rstrip())
