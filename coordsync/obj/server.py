"""The node server: the backend HTTP API every storage node runs.

Object routes (all signed, see :mod:`coordsync.common.signing`; paths
built by :mod:`coordsync.common.direct_client`)::

    GET|HEAD  /healthcheck                          (unsigned)
    PUT|GET|HEAD|DELETE /objects/<dev>/<part>/<account>/<container>/<obj>
    REPLICATE /objects/<dev>/<part>[/<suffix>-<suffix>...]
    GET       /object-suffixes/<dev>/<part>/<suffix>    (object listing)
    GET|HEAD  /object-hashes/<dev>/<part>/<suffix>/<hash>  (newest file)

Every path component is validated before anything touches a disk; a bad
request gets a 4xx with a one-line reason and changes nothing. Writes
carry ``X-Timestamp``; a write not newer than what is stored gets 409.
An unknown or unmounted device gets 507. Signatures and fencing tokens
are checked by :class:`~coordsync.common.wsgi.NodeApp` for every route.
"""

import re
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import timestamp
from coordsync.common import wsgi
from coordsync.common.wsgi import HTTPError
from coordsync.obj import diskfile
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

MAX_ACCOUNT_LENGTH = 256
MAX_CONTAINER_LENGTH = 256
MAX_OBJECT_LENGTH = 1024
META_PREFIX = 'x-object-meta-'
POLICY = 0  # NOTE: objects/ is policy 0, the only one so far.
_CONTENT_LENGTH_RE = re.compile(r'[0-9]{1,19}\Z')
_ETAG_RE = re.compile(r'[0-9a-f]{32}\Z')


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


def parse_hash(parts):
    shape = '/<device>/<partition>/<suffix>/<hash>'
    args = _device_partition(parts, shape)
    if len(parts) != 4:
        raise HTTPError(400, 'expected %s' % shape)
    suffix, obj_hash = parts[2], parts[3]
    if not layout.is_suffix(suffix) or not layout.is_hash(obj_hash) \
            or not obj_hash.endswith(suffix):
        raise HTTPError(400, 'bad object hash %r' % obj_hash[:40])
    args['obj_hash'] = obj_hash
    return args


# -- headers and disk errors --------------------------------------------------

def _x_timestamp(req):
    value = req.header('X-Timestamp')
    if value is None:
        raise HTTPError(400, 'missing X-Timestamp')
    try:
        return timestamp.Timestamp(value)
    except ValueError as err:
        raise HTTPError(400, 'bad X-Timestamp: %s' % err) from None


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

class ObjectRoutes:
    """The object handlers of a node, over one DiskFileManager."""

    def __init__(self, manager, logger=None):
        self.manager = manager
        self.log = logger or LOG

    def routes(self):
        """The route set to add to a :class:`~coordsync.common.wsgi.NodeApp`.
        """
        def route(methods, prefix, handler, parse):
            return wsgi.Route(methods, prefix, handler, parse,
                              policy=POLICY)
        return [
            route(('PUT', 'GET', 'HEAD', 'DELETE'), direct_client.OBJECTS,
                  self.object, parse_object),
            route(('REPLICATE',), direct_client.OBJECTS, self.replicate,
                  parse_replicate),
            route(('GET',), direct_client.OBJECT_SUFFIXES,
                  self.list_suffix, parse_suffix),
            route(('GET', 'HEAD'), direct_client.OBJECT_HASHES,
                  self.get_by_hash, parse_hash),
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
            return self.put(req, self._diskfile(args), when, metadata)
        if req.method == 'DELETE':
            return self.delete(self._diskfile(args), _x_timestamp(req))
        return self.get(req, self._diskfile(args))

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

    def get_by_hash(self, req, args):
        """The newest version of an object found by hash (replication).

        The name travels in ``X-Object-Name`` (quoted), also on the 404 of
        a tombstone, so the puller can store either by name.
        """
        df = self._call(self.manager.diskfile_by_hash, args['device'],
                        args['partition'], args['obj_hash'])
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


class NodeServer(wsgi.NodeApp):
    """The WSGI application of one storage node: the node API with the
    object routes.

    :param conf: ConfigOpts with the node, cluster and server options.
    :param manager: a :class:`~coordsync.obj.diskfile.DiskFileManager`
        (made from ``conf`` when omitted).
    :param token_store: see :class:`~coordsync.common.wsgi.NodeApp`.
    """

    def __init__(self, conf, manager=None, logger=None, token_store=None):
        if not conf.cluster_secret:
            raise exceptions.ConfigError(
                '[DEFAULT] cluster_secret is required by the node server')
        super().__init__(conf, logger=logger, token_store=token_store)
        self.manager = manager or diskfile.DiskFileManager(
            conf.devices, mount_check=conf.mount_check,
            reclaim_age=conf.reclaim_age,
            hash_prefix=conf.hash_path_prefix,
            hash_suffix=conf.hash_path_suffix, logger=self.log)
        self.add_routes(ObjectRoutes(self.manager, self.log).routes())
