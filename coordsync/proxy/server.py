"""The Swift-compatible API: a WSGI application over the node servers.

::

    GET|HEAD            /healthcheck               (no auth)
    GET|HEAD            /info                      (no auth; capabilities)
    GET                 /auth/v1.0                 (tempauth: a token)
    GET|HEAD|POST       /v1/<account>
    GET|HEAD|PUT|POST|DELETE /v1/<account>/<container>[/<object>]

Every request under ``/v1`` goes through, in order: header sizes (400),
the path (400 for a bad account, container or object name: empty,
``.``/``..`` segments, control characters, too long), the token (401
without a valid one; 403 for another account, or for a non-.admin user
whom the container's ACLs do not let in), then the method's own checks
(metadata limits, Content-Length, listing arguments, timestamps: 4xx),
and only then a node is asked to change anything. Writes are stamped by
the proxy (``X-Timestamp``, strictly increasing in this process).

**Container sync.** A request with ``X-Container-Sync-Auth``, or with
``X-Container-Sync-Key`` and no token, comes from another cluster's
sync daemon: it must authenticate against the target container's
``X-Container-Sync-Key`` (see :class:`~coordsync.proxy.auth.SyncAuth`;
401 if not, nothing changed) and may only PUT, DELETE, GET or HEAD
objects, HEAD the container, and POST its ``X-Container-Sync-Point:
<source> <value>`` (403 for anything else). Only such a request may
bring its own ``X-Timestamp`` (an object PUT or DELETE keeps it, as
the source's row says when it was written); any other request carrying
one gets 400. Sync points are stored as ``X-Container-Sysmeta-Sync-
Point-<source>`` and shown to sync requests only, as
``X-Container-Sync-Point-<source>``; users never see or set sysmeta.

**Storage policies** (Swift's). A container PUT may name its policy
with ``X-Storage-Policy: <name>`` (any case; 400 for an unknown name, and
for a deprecated policy when the container is new); without it a new
(or deleted and recreated) container gets the default policy, an
existing one keeps its own. The container servers refuse another
policy than a live container has (409, passed on). A POST may not
change the policy (400 naming another; the same name, or a container
that does not exist, go through as without it). Container HEAD and GET
show ``X-Storage-Policy``; account HEAD and GET show Swift's
``X-Account-Storage-Policy-<name>-Container-Count``, ``-Object-Count``
and ``-Bytes-Used``; ``/info`` lists the policies. An object request
(container sync's included) reads its container's policy (the cached
container info the request needs anyway) and goes to that policy's
ring and routes; 503 if this proxy has no such policy.

Answers follow Swift's: statuses (201/202 for a container PUT, 204 for
DELETE and POST of containers and accounts, 202 for an object POST, 206
for a range, 416 for an unsatisfiable one, 412 for bad listing
arguments, 411 without a length, 413 beyond ``max_file_size``, 422 for
an ETag mismatch), headers (``X-Container-Object-Count``, ``ETag``,
``Last-Modified``, ``X-Timestamp``, ``X-Trans-Id``...), listings in
plain text, JSON or XML.

**Access log.** One line per request at INFO to the logger
``coordsync.proxy.access``, nine space-separated fields::

    1700000000.123 PUT "/v1/AUTH_test/c/o" 201 0 12.5 test:tester
        tx3f2a...-0065a1b2c3 127.0.0.1

arrival time, method, path and query as sent (quoted, cut to 256
characters), status, body bytes sent, duration in ms, the user (``-``
if none), the transaction id (also in ``X-Trans-Id``), client address.
Tokens and keys travel in headers and are never logged.
"""

import email.utils
import hashlib
import json
import math
import mimetypes
import os
import re
import secrets
import tempfile
import time
import urllib.parse
from xml.sax import saxutils

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import version
from coordsync.common import storage_policy
from coordsync.common import timestamp
from coordsync.common import wsgi
from coordsync.obj import client as object_client
from coordsync.obj import layout
from coordsync.proxy import auth as auth_mod
from coordsync.proxy import backend as backend_mod
from coordsync.sync import realms as realms_mod

LOG = logging.getLogger(__name__)
ACCESS_LOGGER = 'coordsync.proxy.access'

CHUNK_SIZE = 65536
# Object bodies up to this size are kept in memory between the client
# and the object nodes; larger ones go to a temporary file.
MEMORY_BODY = 2 ** 20
MAX_HEADER_SIZE = 8192
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
LISTING_LIMIT = 10000
MAX_LOG_PATH = 256
AUTH_PATHS = ('/auth/v1.0', '/auth/v1.0/', '/v1.0', '/v1.0/')
API_METHODS = ('GET', 'HEAD', 'PUT', 'POST', 'DELETE')
_LOG_SAFE = "/:@!$&'()*+,;=-._~%?"
_CONTAINER_HEADERS = ('x-container-read', 'x-container-write',
                      'x-container-sync-to', 'x-container-sync-key')
SYNC_POINT_HEADER = 'X-Container-Sync-Point'
POLICY_HEADER = 'X-Storage-Policy'
BACKEND_POLICY_INDEX = 'X-Backend-Storage-Policy-Index'
BACKEND_POLICY_DEFAULT = 'X-Backend-Storage-Policy-Default'
# The account servers' per-policy figures, by policy index.
_BACKEND_POLICY_STAT = re.compile(
    r'x-backend-storage-policy-([0-9]{1,9})-'
    r'(container-count|object-count|bytes-used)\Z')
SYNC_POINT_SYSMETA = 'X-Container-Sysmeta-Sync-Point-'
SYNC_REFUSED = ('X-Container-Sync-Auth header not valid%s; contact '
                'cluster operator for support.')
_SYNC_POINT = re.compile(r'([0-9a-f]{8,40}) (.{1,200})')
_SYNC_OWN_HEADERS = ('x-container-sync-auth', 'x-container-sync-key',
                     'x-container-sync-point')
# Headers that would change a container: a sync request may not send them.
_CONTAINER_CHANGES = ('x-container-', 'x-remove-', 'x-storage-policy',
                      'x-versions-', 'x-history-')

STATUS_TEXT = dict(wsgi.STATUS_TEXT)
STATUS_TEXT.update({
    202: 'Accepted', 206: 'Partial Content', 304: 'Not Modified',
    403: 'Forbidden', 406: 'Not Acceptable', 408: 'Request Timeout',
    416: 'Requested Range Not Satisfiable', 501: 'Not Implemented',
})

FORMATS = {'plain': 'text/plain; charset=utf-8',
           'json': 'application/json; charset=utf-8',
           'xml': 'application/xml; charset=utf-8'}


class HTTPError(Exception):
    """An answer other than success: status, one-line reason, headers."""

    def __init__(self, status, reason=None, headers=None):
        super().__init__(reason or STATUS_TEXT.get(status, 'Error'))
        self.status = status
        self.reason = reason or STATUS_TEXT.get(status, 'Error')
        self.headers = headers or {}


class Request:
    """What the controllers need of one request."""

    def __init__(self, env):
        self.env = env
        self.method = env['REQUEST_METHOD']
        try:
            self.path = env.get('PATH_INFO', '').encode(
                'latin-1').decode('utf-8')
        except UnicodeError:
            raise HTTPError(412, 'Invalid UTF8 in path') from None
        self.user = None
        # True once authenticated as a container sync request.
        self.sync = False
        self._params = None

    def header(self, name):
        return wsgi.env_header(self.env, name)

    def headers(self):
        """``{lower-case name: value}`` of every request header."""
        found = {}
        for key, value in self.env.items():
            if key.startswith('HTTP_'):
                found[key[5:].replace('_', '-').lower()] = value
            elif key in ('CONTENT_TYPE', 'CONTENT_LENGTH') and value:
                found[key.replace('_', '-').lower()] = value
        raw = self.env.get('headers_raw')
        if raw is not None and not any(k.lower() == 'content-type'
                                       for k, _ in raw):
            # NOTE: eventlet.wsgi puts text/plain in CONTENT_TYPE when the
            # request has none; Swift guesses from the name instead.
            found.pop('content-type', None)
        return found

    @property
    def params(self):
        """The query arguments (412 if not UTF-8 or holding NUL)."""
        if self._params is None:
            try:
                pairs = urllib.parse.parse_qsl(
                    self.env.get('QUERY_STRING', ''),
                    keep_blank_values=True, errors='strict')
            except (UnicodeError, ValueError):
                raise HTTPError(412, 'Invalid UTF8 in query') from None
            if any('\x00' in k or '\x00' in v for k, v in pairs):
                raise HTTPError(412, 'NUL in query')
            self._params = dict(pairs)
        return self._params

    def body_chunks(self, chunk_size=CHUNK_SIZE):
        wsgi_input = self.env['wsgi.input']
        while True:
            try:
                chunk = wsgi_input.read(chunk_size)
            except (OSError, ValueError) as err:
                raise HTTPError(499, 'client disconnected: %s'
                                % err) from None
            if not chunk:
                return
            yield chunk


# -- small helpers ------------------------------------------------------------

def last_modified(when):
    """HTTP date of a timestamp (rounded up to the second, as Swift)."""
    return email.utils.formatdate(math.ceil(float(when)), usegmt=True)


def _title(name):
    return '-'.join(p.capitalize() for p in name.split('-'))


def _log_field(text):
    if not text:
        return '-'
    return urllib.parse.quote(text, safe=_LOG_SAFE.replace('%?', ''))


def _logged_target(env):
    raw = env.get('RAW_PATH_INFO') or env.get('PATH_INFO', '')
    if env.get('QUERY_STRING'):
        raw += '?' + env['QUERY_STRING']
    raw = raw.encode('latin-1', 'replace')
    text = urllib.parse.quote(raw[:MAX_LOG_PATH + 1], safe=_LOG_SAFE)
    if len(text) > MAX_LOG_PATH:
        text = text[:MAX_LOG_PATH] + '...'
    return text


def check_metadata(headers, kind):
    """400 unless the ``X-<kind>-Meta-*`` headers keep Swift's limits.
    Returns ``{Title-Cased name: value}`` to store (``X-Remove-...``
    become empty values: deleted)."""
    prefix = 'x-%s-meta-' % kind
    remove = 'x-remove-%s-meta-' % kind
    found = {}
    size = 0
    for key, value in headers.items():
        if key.startswith(remove):
            key, value = prefix + key[len(remove):], ''
        elif not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if not name:
            raise HTTPError(400, 'Metadata name cannot be empty')
        if len(name) > MAX_META_NAME_LENGTH:
            raise HTTPError(400, 'Metadata name too long; max %d'
                            % MAX_META_NAME_LENGTH)
        if len(value) > MAX_META_VALUE_LENGTH:
            raise HTTPError(400, 'Metadata value longer than %d'
                            % MAX_META_VALUE_LENGTH)
        size += len(name) + len(value)
        found[_title(key)] = value
    if len(found) > MAX_META_COUNT:
        raise HTTPError(400, 'Too many metadata items; max %d'
                        % MAX_META_COUNT)
    if size > MAX_META_OVERALL_SIZE:
        raise HTTPError(400, 'Total metadata too large; max %d'
                        % MAX_META_OVERALL_SIZE)
    return found


def parse_range(header, length):
    """``(start, end)`` inclusive of a single ``bytes=`` range, None to
    send the whole body (absent, malformed or several ranges: RFC 7233
    lets a server ignore them), or 416 (HTTPError) if unsatisfiable."""
    if not header or not header.strip().lower().startswith('bytes='):
        return None
    specs = header.strip()[6:].split(',')
    if len(specs) != 1:
        return None
    first, dash, last = specs[0].strip().partition('-')
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or last.isdigit()) \
            or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise _unsatisfiable(length)
        return max(0, length - suffix), length - 1
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    if start >= length:
        raise _unsatisfiable(length)
    end = length - 1 if end is None else end
    return start, min(end, length - 1)


def _unsatisfiable(length):
    return HTTPError(416, 'Requested range not satisfiable',
                     {'Content-Range': 'bytes */%d' % length})


def _slice(chunks, start, end):
    """Bytes ``start`` to ``end`` (inclusive) of a chunk iterator; the
    iterator is closed when done."""
    offset = 0
    try:
        for chunk in chunks:
            lo, hi = offset, offset + len(chunk)
            offset = hi
            if hi <= start:
                continue
            yield chunk[max(0, start - lo):min(len(chunk), end + 1 - lo)]
            if hi > end:
                return
    finally:
        close = getattr(chunks, 'close', None)
        if close is not None:
            close()


class Stamper:
    """Timestamps for writes, strictly increasing in this process: two
    writes of one name through it never tie."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._last = None

    def __call__(self):
        now = timestamp.Timestamp.now(self.clock)
        if self._last is not None and now <= self._last:
            ticks = round(float(self._last) * timestamp.TICKS_PER_SECOND)
            now = timestamp.Timestamp(timestamp._format(ticks + 1))
        self._last = now
        return now


class Spool:
    """An uploaded body on its way to the object nodes: in memory up to
    :data:`MEMORY_BODY`, then in a temporary file; length and MD5."""

    def __init__(self, memory=MEMORY_BODY):
        self.memory = memory
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._buf = bytearray()
        self._file = None

    def write(self, chunk):
        self._md5.update(chunk)
        self.size += len(chunk)
        if self._file is None and len(self._buf) + len(chunk) \
                <= self.memory:
            self._buf += chunk
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix='coordsync-proxy-')
            concurrency.run_in_thread(self._file.write, bytes(self._buf))
            self._buf = bytearray()
        concurrency.run_in_thread(self._file.write, chunk)

    @property
    def etag(self):
        return self._md5.hexdigest()

    def body(self):
        """A fresh body: bytes, or an iterator over the file."""
        if self._file is None:
            return bytes(self._buf)
        concurrency.run_in_thread(self._file.flush)
        return self._iter_file()

    def _iter_file(self):
        fd = self._file.fileno()
        offset = 0
        while offset < self.size:
            chunk = concurrency.run_in_thread(
                os.pread, fd, min(CHUNK_SIZE, self.size - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


# -- the application ----------------------------------------------------------

class ProxyApp:
    """The Swift API (see the module docstring).

    :param conf: ConfigOpts with ``[proxy]``.
    :param backend: a :class:`~coordsync.proxy.backend.Backend`.
    :param auth: a :class:`~coordsync.proxy.auth.TokenAuth`.
    :param realms: the container sync :class:`~coordsync.sync.realms.
        Realms` (default: ``[DEFAULT] container_sync_realms_file``).
    :param nonces: the :class:`~coordsync.sync.realms.NonceCache` of
        sync requests (default: one of ``container_sync_auth_window``).
    :param policies: the :class:`~coordsync.common.storage_policy.
        StoragePolicies` (default: the config's); the backend has an
        object ring for each.
    """

    def __init__(self, conf, backend, auth, logger=None, access_log=None,
                 clock=time.time, realms=None, nonces=None, policies=None):
        self.conf = conf
        self.backend = backend
        self.policies = policies if policies is not None \
            else storage_policy.from_conf(conf)
        self.auth = auth
        self.log = logger or LOG
        self.access_log = access_log or logging.getLogger(ACCESS_LOGGER)
        self.clock = clock
        self.stamp = Stamper(clock)
        self.max_file_size = conf.proxy.max_file_size
        self.recheck = conf.proxy.recheck_container_existence
        # (account, container) -> (expires, headers): containers seen.
        self._containers = {}
        if realms is None:
            realms = realms_mod.Realms(conf.container_sync_realms_file)
        if nonces is None:
            nonces = realms_mod.NonceCache(conf.container_sync_auth_window)
        self.realms = realms
        self.sync_auth = auth_mod.SyncAuth(realms, nonces,
                                           conf.allowed_sync_hosts, clock)

    @classmethod
    def from_conf(cls, conf):
        """The app of a config: policies, rings (an object ring per
        policy), node client and users loaded (ConfigError, PolicyError,
        RingError on trouble)."""
        from coordsync.common import direct_client
        from coordsync.common import ring as ring_mod

        def load(path):
            return ring_mod.Ring(path, conf.hash_path_prefix,
                                 conf.hash_path_suffix)
        policies = storage_policy.from_conf(conf)
        backend = backend_mod.Backend(
            direct_client.NodeClient(conf), policies.load_rings(conf),
            load(conf.container_ring_file), load(conf.account_ring_file))
        users = auth_mod.parse_users(conf.proxy.users)
        if not users:
            LOG.warning('No [proxy] users: nobody can authenticate')
        auth = auth_mod.TokenAuth(users, conf.proxy.token_ttl,
                                  conf.proxy.max_tokens)
        return cls(conf, backend, auth, policies=policies)

    # -- WSGI -----------------------------------------------------------------

    def __call__(self, env, start_response):
        arrived, started = time.time(), time.monotonic()
        trans_id = 'tx%s-%010x' % (secrets.token_hex(10), int(arrived))
        req = None
        try:
            req = Request(env)
            status, headers, body = self.handle(req)
        except HTTPError as err:
            status, headers, body = self._error(err)
        except Exception:
            self.log.exception('%s %s: unexpected error (%s)',
                               env.get('REQUEST_METHOD'),
                               env.get('PATH_INFO', '')[:256], trans_id)
            status, headers, body = self._error(HTTPError(500))
        headers['X-Trans-Id'] = trans_id
        headers['X-Openstack-Request-Id'] = trans_id
        if isinstance(body, (list, tuple)):
            headers.setdefault('Content-Length',
                               str(sum(len(b) for b in body)))
        if env['REQUEST_METHOD'] == 'HEAD':
            if hasattr(body, 'close'):
                body.close()
            body = []
        start_response('%d %s' % (status, STATUS_TEXT.get(status, 'Unknown')),
                       list(headers.items()))
        if not self.conf.proxy.access_log:
            return body
        user = req.user if req is not None else None
        return wsgi.LoggedBody(body, lambda sent: self.access_log.info(
            '%.3f %s "%s" %d %d %.1f %s %s %s', arrived,
            _log_field(env.get('REQUEST_METHOD')), _logged_target(env),
            status, sent, (time.monotonic() - started) * 1000,
            _log_field(user), trans_id, _log_field(env.get('REMOTE_ADDR'))))

    def _error(self, err):
        headers = dict(err.headers)
        headers['Content-Type'] = 'text/plain; charset=utf-8'
        if err.status == 401:
            headers.setdefault('Www-Authenticate', 'Swift realm="unknown"')
        if err.status == 304:
            return err.status, headers, []
        reason = ' '.join(str(err.reason).split())
        if err.status >= 500 and err.status != 503:
            self.log.error('%s', reason)
        return err.status, headers, [(reason + '\n').encode('utf-8')]

    def handle(self, req):
        path = req.path
        if path == '/healthcheck':
            self._allow(req, ('GET', 'HEAD'))
            return 200, {'Content-Type': 'text/plain'}, [b'OK']
        if path in ('/info', '/info/'):
            self._allow(req, ('GET', 'HEAD'))
            return self.info()
        if path in AUTH_PATHS:
            self._allow(req, ('GET', 'HEAD'))
            return self.authenticate(req)
        if path == '/v1' or path.startswith('/v1/'):
            return self.api(req)
        raise HTTPError(404, 'no such path')

    @staticmethod
    def _allow(req, methods):
        if req.method not in methods:
            raise HTTPError(405, '%s takes %s' % (req.path[:64],
                                                  ', '.join(methods)),
                            {'Allow': ', '.join(methods)})

    # -- /info and auth -------------------------------------------------------

    def info(self):
        body = {
            'swift': {
                'version': version.version_string(),
                'max_file_size': self.max_file_size,
                'max_meta_name_length': MAX_META_NAME_LENGTH,
                'max_meta_value_length': MAX_META_VALUE_LENGTH,
                'max_meta_count': MAX_META_COUNT,
                'max_meta_overall_size': MAX_META_OVERALL_SIZE,
                'max_header_size': MAX_HEADER_SIZE,
                'max_object_name_length': layout.MAX_OBJECT_LENGTH,
                'max_container_name_length': layout.MAX_CONTAINER_LENGTH,
                'max_account_name_length': layout.MAX_ACCOUNT_LENGTH,
                'container_listing_limit': LISTING_LIMIT,
                'account_listing_limit': LISTING_LIMIT,
                'valid_api_versions': ['v1', 'v1.0'],
                'policies': self._policy_info(),
                'allow_account_management': False,
                'account_autocreate': True,
                'strict_cors_mode': True,
            },
            'tempauth': {'account_acls': False},
        }
        data = json.dumps(body, sort_keys=True).encode('utf-8')
        return 200, {'Content-Type': FORMATS['json']}, [data]

    def _policy_info(self):
        """Swift's /info entry of each policy: ``default`` and
        ``deprecated`` are only given when true."""
        found = []
        for policy in self.policies:
            entry = {'name': policy.name, 'aliases': policy.name}
            if policy.is_default:
                entry['default'] = True
            if policy.is_deprecated:
                entry['deprecated'] = True
            found.append(entry)
        return found

    def authenticate(self, req):
        label = req.header('X-Auth-User') or req.header('X-Storage-User')
        key = req.header('X-Auth-Key') or req.header('X-Storage-Pass')
        if not label or not key:
            raise HTTPError(401, 'X-Auth-User and X-Auth-Key required')
        found = self.auth.authenticate(label, key)
        if found is None:
            self.log.info('Authentication refused for user %r',
                          label[:64])
            raise HTTPError(401, 'bad credentials')
        token, identity = found
        req.user = identity.label
        url = '%s/v1/%s' % (self._url_base(req),
                            urllib.parse.quote(identity.user.storage_account))
        return 200, {'X-Auth-Token': token, 'X-Storage-Token': token,
                     'X-Auth-Token-Expires': str(int(self.auth.ttl)),
                     'X-Storage-Url': url,
                     'Content-Type': 'text/plain; charset=utf-8'}, []

    def _url_base(self, req):
        if self.conf.proxy.storage_url_base:
            return self.conf.proxy.storage_url_base.rstrip('/')
        host = req.header('Host') or ''
        if not host or len(host) > 256 or not all(
                c.isalnum() or c in '.-:[]' for c in host):
            host = '%s:%d' % (self.conf.proxy.bind_ip,
                              self.conf.proxy.bind_port)
        return 'http://' + host

    # -- /v1 ------------------------------------------------------------------

    def api(self, req):
        for key, value in req.env.items():
            if key.startswith('HTTP_') and len(value) > MAX_HEADER_SIZE:
                raise HTTPError(400, 'Header value too long: %s'
                                % key[5:][:64])
        if req.method not in API_METHODS:
            raise HTTPError(405, 'method not allowed',
                            {'Allow': ', '.join(API_METHODS)})
        account, container, obj = self._split(req.path)
        if auth_mod.SyncAuth.is_sync_request(req.headers()):
            self._authenticate_sync(req, account, container, obj)
        else:
            self._authorize(req, account, container, obj)
            if req.header('X-Timestamp') is not None:
                raise HTTPError(400, 'X-Timestamp is only accepted on '
                                     'container sync requests')
        if obj:
            return self.object_request(req, account, container, obj)
        if container:
            return self.container_request(req, account, container)
        return self.account_request(req, account)

    def _authorize(self, req, account, container, obj):
        """The token's user may do this (else 401 or 403)."""
        token = req.header('X-Auth-Token') or req.header('X-Storage-Token')
        identity = self.auth.identify(token)
        if identity is not None:
            req.user = identity.label
        acls = None
        if identity is None and token:
            raise HTTPError(401, 'invalid or expired token')
        if self.auth.needs_acls(identity, account, container, obj,
                                req.method):
            info = self._container_info(account, container)
            if info is not None:
                acls = (info.get('x-container-read'),
                        info.get('x-container-write'))
        denied = self.auth.authorize(identity, account, container, obj,
                                     req.method, acls)
        if denied:
            raise HTTPError(denied, 'token required' if denied == 401
                            else 'not allowed')

    def _authenticate_sync(self, req, account, container, obj):
        """A container sync request may do this (403) and authenticates
        against the container's sync key (401; 503 when too many are
        in flight to remember their nonces)."""
        if not _sync_may(req, container, obj):
            raise HTTPError(403, 'not allowed to container sync requests')
        info = self._container_info(account, container) or {}
        try:
            req.user = self.sync_auth.check(
                req.method, urllib.parse.quote(req.path), req.headers(),
                req.env.get('REMOTE_ADDR'), info.get('x-container-sync-key'))
        except auth_mod.SyncRefused as err:
            self.log.info('container sync %s %s from %s refused: %s',
                          req.method, req.path[:256],
                          req.env.get('REMOTE_ADDR'), err)
            if str(err) == realms_mod.TOO_MANY:
                raise HTTPError(503, realms_mod.TOO_MANY,
                                {'Retry-After': '10'}) from None
            raise HTTPError(401, SYNC_REFUSED % (
                ' (replayed)' if str(err) == realms_mod.REPLAYED
                else '')) from None
        req.sync = True

    @staticmethod
    def _split(path):
        """``(account, container or None, object or None)`` of a /v1
        path, each checked (400)."""
        rest = path[len('/v1/'):] if path.startswith('/v1/') else ''
        account, _, rest = rest.partition('/')
        container, _, obj = rest.partition('/')
        try:
            layout.check_name('account', account, layout.MAX_ACCOUNT_LENGTH)
            if container:
                layout.check_name('container', container,
                                  layout.MAX_CONTAINER_LENGTH)
            elif obj:
                raise ValueError('empty container name')
            if obj:
                layout.check_name('object', obj, layout.MAX_OBJECT_LENGTH,
                                  allow_slash=True)
        except ValueError as err:
            raise HTTPError(400, 'Invalid path: %s' % err) from None
        return account, container or None, obj or None

    # -- accounts -------------------------------------------------------------

    def account_request(self, req, account):
        if req.method in ('GET', 'HEAD'):
            return self.account_get(req, account)
        if req.method == 'POST':
            return self.account_post(req, account)
        raise HTTPError(405, 'accounts are created by their first '
                             'container', {'Allow': 'GET, HEAD, POST'})

    def account_get(self, req, account):
        query = None
        fmt = None
        if req.method == 'GET':
            fmt = self._format(req)
            query = self._listing_query(req)
        reply = self._read(self.backend.account_read, req.method, account,
                           query=query)
        if reply.status == 404:
            # NOTE: Swift's account_autocreate: an account nobody wrote
            # to yet is an empty one.
            now = self.stamp()
            headers = {'X-Account-Container-Count': '0',
                       'X-Account-Object-Count': '0',
                       'X-Account-Bytes-Used': '0',
                       'X-Timestamp': now.normal,
                       'X-Put-Timestamp': now.normal}
            rows = []
        else:
            headers = self._info_headers(reply.headers, 'account')
            headers.update(self._policy_stats(reply.headers))
            rows = self._rows(reply) if req.method == 'GET' else []
        if req.method == 'HEAD':
            headers['Content-Type'] = FORMATS['plain']
            return 204, headers, []
        return self._listing(fmt, 'account', account, rows, headers,
                             limit_zero=req.params.get('limit') == '0')

    def account_post(self, req, account):
        metadata = check_metadata(req.headers(), 'account')
        headers = dict(metadata, **{'X-Timestamp': self.stamp().normal})
        status = self.backend.account_write('POST', account, headers)
        if status == 404:
            put = {'X-Timestamp': headers['X-Timestamp']}
            status = self.backend.account_write('PUT', account, put)
            if status // 100 == 2:
                headers['X-Timestamp'] = self.stamp().normal
                status = self.backend.account_write('POST', account,
                                                    headers)
        return self._write_answer(status, 204)

    # -- containers -----------------------------------------------------------

    def container_request(self, req, account, container):
        if req.method in ('GET', 'HEAD'):
            return self.container_get(req, account, container)
        if req.sync:
            return self.container_sync_point(req, account, container)
        headers = {}
        if req.method in ('PUT', 'POST'):
            given = req.headers()
            headers.update(check_metadata(given, 'container'))
            for name in _CONTAINER_HEADERS:
                remove = name.replace('x-', 'x-remove-', 1)
                if name in given:
                    headers[_title(name)] = given[name]
                elif remove in given:
                    headers[_title(name)] = ''
            policy = self._named_policy(given)
            if req.method == 'PUT':
                headers.update(self._put_policy(account, container,
                                                policy))
            elif policy is not None:
                self._check_post_policy(account, container, policy)
            if headers.get('X-Container-Sync-To'):
                self._check_sync_to(headers['X-Container-Sync-To'])
        headers['X-Timestamp'] = self.stamp().normal
        self._containers.pop((account, container), None)
        status = self.backend.container_write(req.method, account,
                                              container, headers)
        self._containers.pop((account, container), None)
        if req.method == 'PUT':
            if status in (201, 202):
                return status, {'Content-Type': FORMATS['plain']}, []
            if status == 409 and BACKEND_POLICY_INDEX in headers:
                raise HTTPError(409, 'Container exists with another '
                                     'storage policy')
            return self._write_answer(status, status)
        return self._write_answer(status, 204)

    def _named_policy(self, given):
        """The policy ``X-Storage-Policy`` names (None without it or
        empty, as Swift); 400 for an unknown name."""
        name = given.get(POLICY_HEADER.lower())
        if not name:
            return None
        policy = self.policies.get_by_name(name)
        if policy is None:
            raise HTTPError(400, "Invalid %s '%s'" % (POLICY_HEADER,
                                                      name[:64]))
        return policy

    def _put_policy(self, account, container, policy):
        """The container servers' policy headers of a container PUT:
        the user's choice (which a live container of another policy
        refuses), else the default, which only a new or recreated
        container takes (as Swift's proxy)."""
        if policy is None:
            return {BACKEND_POLICY_DEFAULT: str(self.policies.default.index)}
        if policy.is_deprecated:
            # NOTE: an existing container of it may be put again; only a
            # new one may not choose it. Asked afresh, not from the cache.
            self._containers.pop((account, container), None)
            if self._container_info(account, container) is None:
                raise HTTPError(400, "Storage Policy '%s' is deprecated"
                                % policy.name)
        return {BACKEND_POLICY_INDEX: str(policy.index)}

    def _check_post_policy(self, account, container, policy):
        """A POST cannot change a container's policy (400); naming the
        one it has changes nothing, and a missing container is the
        POST's 404 (swiftclient's ``swift post`` then PUTs it)."""
        self._containers.pop((account, container), None)
        info = self._container_info(account, container)
        if info is not None and policy.index != self._policy_index(info):
            raise HTTPError(400, 'Will not change policy: the container '
                                 'has another storage policy')

    @staticmethod
    def _policy_index(info):
        """The policy index of container info (0 if not given)."""
        value = info.get(BACKEND_POLICY_INDEX.lower(), '0')
        try:
            return int(value)
        except ValueError:
            raise HTTPError(503, 'backend gave a bad storage policy index '
                                 '%r' % value[:32]) from None

    def container_get(self, req, account, container):
        query = None
        fmt = None
        if req.method == 'GET':
            fmt = self._format(req)
            query = self._listing_query(req)
        reply = self._read(self.backend.container_read, req.method,
                           account, container, query=query)
        if reply.status == 404:
            raise HTTPError(404, 'container not found')
        headers = self._info_headers(reply.headers, 'container')
        if req.sync:
            headers.update(_sync_points(reply.headers))
        if req.method == 'HEAD':
            headers['Content-Type'] = FORMATS['plain']
            return 204, headers, []
        return self._listing(fmt, 'container', container, self._rows(reply),
                             headers,
                             limit_zero=req.params.get('limit') == '0')

    def _check_sync_to(self, value):
        """400 unless ``value`` is a sync target of a known realm or an
        allowed host (as Swift)."""
        self.realms.reload_if_changed()
        try:
            realms_mod.parse_sync_to(value, self.realms,
                                     self.conf.allowed_sync_hosts)
        except ValueError as err:
            raise HTTPError(400, str(err)) from None

    def container_sync_point(self, req, account, container):
        """Store a sync request's ``X-Container-Sync-Point: <source>
        <value>`` (how far the source container has synced here) as
        sysmeta; no other change."""
        found = _SYNC_POINT.fullmatch(req.header(SYNC_POINT_HEADER) or '')
        if found is None or not found.group(2).isprintable():
            raise HTTPError(400, '%s must be "<source> <value>": 8 to 40 '
                                 'hex digits, then at most 200 printable '
                                 'characters' % SYNC_POINT_HEADER)
        source, value = found.groups()
        headers = {SYNC_POINT_SYSMETA + source: value,
                   'X-Timestamp': self.stamp().normal}
        self._containers.pop((account, container), None)
        status = self.backend.container_write('POST', account, container,
                                              headers)
        self._containers.pop((account, container), None)
        return self._write_answer(status, 204)

    def _container_info(self, account, container):
        """The container's HEAD headers (cached), None if it does not
        exist; 503 when no replica answers."""
        key = (account, container)
        cached = self._containers.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        reply = self._read(self.backend.container_read, 'HEAD', account,
                           container)
        if reply.status == 404:
            return None
        if self.recheck > 0:
            if len(self._containers) > 10000:
                self._containers.clear()
            self._containers[key] = (now + self.recheck, reply.headers)
        return reply.headers

    def _read(self, func, *args, **kwargs):
        reply = func(*args, **kwargs)
        if reply.status == 503:
            raise HTTPError(503, 'no replica answered')
        if reply.status // 100 != 2 and reply.status != 404:
            self.log.warning('backend answered %d to a read',
                             reply.status)
            raise HTTPError(503 if reply.status >= 500 else reply.status,
                            'backend: %d' % reply.status)
        return reply

    def _info_headers(self, backend_headers, kind):
        headers = {}
        sysmeta = 'x-%s-sysmeta-' % kind
        for key, value in backend_headers.items():
            if key.startswith(sysmeta):
                continue
            if key.startswith('x-%s-' % kind) or key in (
                    'x-timestamp', 'x-put-timestamp'):
                headers[_title(key)] = value
        headers.pop('X-Container-Sync-Key', None)
        if kind == 'container':
            policy = self.policies.get_by_index(
                self._policy_index(backend_headers))
            if policy is not None:
                headers[POLICY_HEADER] = policy.name
        put = backend_headers.get('x-put-timestamp') or \
            backend_headers.get('x-timestamp')
        if put:
            try:
                headers['Last-Modified'] = last_modified(
                    timestamp.Timestamp(put))
            except ValueError:
                pass
        headers['Accept-Ranges'] = 'bytes'
        return headers

    def _policy_stats(self, backend_headers):
        """Swift's ``X-Account-Storage-Policy-<name>-<figure>`` of the
        account servers' per-index figures (policies this proxy does not
        know are left out)."""
        headers = {}
        for key, value in backend_headers.items():
            found = _BACKEND_POLICY_STAT.match(key)
            if found is None:
                continue
            policy = self.policies.get_by_index(int(found.group(1)))
            if policy is not None:
                headers[_title('x-account-storage-policy-%s-%s' % (
                    policy.name, found.group(2)))] = value
        return headers

    # -- listings -------------------------------------------------------------

    @staticmethod
    def _format(req):
        fmt = req.params.get('format')
        if fmt is not None:
            fmt = fmt.lower()
            return fmt if fmt in FORMATS else 'plain'
        accept = (req.header('Accept') or '').lower()
        if 'application/json' in accept:
            return 'json'
        if 'application/xml' in accept or 'text/xml' in accept:
            return 'xml'
        return 'plain'

    @staticmethod
    def _listing_query(req):
        """The backend query of a listing (412 for bad arguments, as
        Swift's container server)."""
        params = req.params
        query = {'format': 'json'}
        limit = params.get('limit')
        if limit is not None and limit != '':
            if not limit.isdigit() or not limit.isascii():
                raise HTTPError(412, 'Bad limit: %r' % limit[:32])
            if int(limit) > LISTING_LIMIT:
                raise HTTPError(412, 'Maximum limit is %d' % LISTING_LIMIT)
            # NOTE: the nodes take 1..10000; limit=0 lists nothing.
            query['limit'] = str(max(1, int(limit)))
        delimiter = params.get('delimiter')
        if delimiter:
            if len(delimiter) > 1 or ord(delimiter) > 254:
                raise HTTPError(412, 'Bad delimiter')
            query['delimiter'] = delimiter
        for name in ('prefix', 'marker', 'end_marker'):
            value = params.get(name)
            if value:
                if len(value.encode('utf-8')) > layout.MAX_OBJECT_LENGTH:
                    raise HTTPError(412, '%s too long' % name)
                query[name] = value
        reverse = params.get('reverse', '').lower()
        if reverse in ('1', 'true', 'yes', 'on', 't', 'y'):
            query['reverse'] = 'true'
        return query

    @staticmethod
    def _rows(reply):
        try:
            rows = json.loads(reply.body.decode('utf-8')) if reply.body \
                else []
        except ValueError:
            raise HTTPError(503, 'backend listing is not JSON') from None
        if not isinstance(rows, list):
            raise HTTPError(503, 'backend listing is not a list')
        return rows

    @staticmethod
    def _listing(fmt, kind, name, rows, headers, limit_zero=False):
        if limit_zero:
            rows = []
        headers['Content-Type'] = FORMATS[fmt]
        if fmt == 'json':
            return 200, headers, [json.dumps(rows).encode('utf-8')]
        if fmt == 'xml':
            return 200, headers, [_xml_listing(kind, name, rows)]
        if not rows:
            return 204, headers, []
        text = ''.join('%s\n' % (r.get('name') or r.get('subdir', ''))
                       for r in rows)
        return 200, headers, [text.encode('utf-8')]

    # -- objects --------------------------------------------------------------

    def object_request(self, req, account, container, obj):
        if req.method in ('GET', 'HEAD'):
            return self.object_get(req, account, container, obj)
        if req.method == 'PUT':
            return self.object_put(req, account, container, obj)
        if req.method == 'POST':
            return self.object_post(req, account, container, obj)
        return self.object_delete(req, account, container, obj)

    def _write_timestamp(self, req):
        """The proxy's stamp, or the one an authenticated container sync
        request brings (400 if malformed)."""
        given = req.header('X-Timestamp') if req.sync else None
        if given is None:
            return self.stamp()
        try:
            return timestamp.Timestamp(given)
        except ValueError as err:
            raise HTTPError(400, 'X-Timestamp should be a UNIX timestamp '
                                 'float value; was %r (%s)'
                            % (given[:32], err)) from None

    def _object_policy(self, account, container):
        """The policy index an object of the container is stored under:
        404 if the container does not exist, 503 if this proxy has no
        such policy (or no ring for it)."""
        info = self._container_info(account, container)
        if info is None:
            raise HTTPError(404, 'container not found')
        index = self._policy_index(info)
        if self.policies.get_by_index(index) is None \
                or index not in self.backend.object_rings:
            self.log.warning('/%s/%s has storage policy %d, unknown to this '
                             'proxy', account, container, index)
            raise HTTPError(503, 'container has storage policy %d, unknown '
                                 'to this proxy' % index)
        return index

    def object_get(self, req, account, container, obj):
        newest = None
        policy = self._object_policy(account, container)
        try:
            if req.method == 'HEAD':
                newest, found = self.backend.object_head_newest(
                    account, container, obj, policy=policy)
                found = None if found is None else (found, iter(()))
            else:
                found = self.backend.object_get(account, container, obj,
                                                policy=policy)
        except object_client.QuorumError as err:
            self.log.warning('%s', err)
            raise HTTPError(503, 'no object replica answered') from None
        if found is None:
            # NOTE: a sync sender asks before it sends a row again: a
            # tombstone's timestamp tells it the DELETE is there.
            raise HTTPError(404, 'object not found', {
                'X-Backend-Timestamp': newest.normal}
                if newest is not None and req.sync else {})
        stored, chunks = found
        headers = self._object_headers(stored)
        length = int(stored.get('content-length') or 0)
        etag = stored.get('etag', '')
        self._check_conditions(req, etag, chunks)
        try:
            wanted = parse_range(req.header('Range'), length) \
                if req.header('Range') else None
        except HTTPError:
            _close(chunks)
            raise
        if wanted is None:
            headers['Content-Length'] = str(length)
            return 200, headers, chunks
        start, end = wanted
        headers['Content-Length'] = str(end - start + 1)
        headers['Content-Range'] = 'bytes %d-%d/%d' % (start, end, length)
        return 206, headers, _slice(chunks, start, end)

    @staticmethod
    def _object_headers(stored):
        headers = {'Content-Type': stored.get('content-type',
                                              'application/octet-stream'),
                   'ETag': stored.get('etag', ''),
                   'X-Timestamp': stored.get('x-timestamp', ''),
                   'Accept-Ranges': 'bytes'}
        try:
            headers['Last-Modified'] = last_modified(
                timestamp.Timestamp(stored.get('x-timestamp')))
        except (TypeError, ValueError):
            pass
        for key, value in stored.items():
            if key.startswith('x-object-meta-'):
                headers[_title(key)] = value
        return headers

    @staticmethod
    def _check_conditions(req, etag, chunks):
        if_match = req.header('If-Match')
        if if_match is not None:
            tags = [t.strip().strip('"') for t in if_match.split(',')]
            if '*' not in tags and etag not in tags:
                _close(chunks)
                raise HTTPError(412, 'If-Match failed', {'ETag': etag})
        if_none = req.header('If-None-Match')
        if if_none is not None:
            tags = [t.strip().strip('"') for t in if_none.split(',')]
            if '*' in tags or etag in tags:
                _close(chunks)
                raise HTTPError(304, 'Not modified', {'ETag': etag})

    def object_put(self, req, account, container, obj, body=None,
                   metadata=None, content_type=None, policy=None):
        """PUT an object; ``body`` (a Spool), ``metadata`` and
        ``content_type`` are given by a POST, which rewrites the newest
        version (of the container's ``policy``, which it read)."""
        if req.header('X-Copy-From') is not None:
            raise HTTPError(501, 'server-side copy is not supported')
        given = req.headers()
        if body is None:
            length = given.get('content-length')
            chunked = 'chunked' in given.get('transfer-encoding', '')
            if length in (None, '') and not chunked:
                raise HTTPError(411, 'Content-Length or chunked encoding '
                                     'required')
            if length not in (None, ''):
                if not length.isdigit() or not length.isascii() \
                        or len(length) > 19:
                    raise HTTPError(400, 'Invalid Content-Length')
                if int(length) > self.max_file_size:
                    raise HTTPError(413, 'Your request is too large')
            metadata = check_metadata(given, 'object')
        etag = given.get('etag') if body is None else None
        if etag is not None:
            etag = etag.strip('"').lower()
        when = self._write_timestamp(req)
        if policy is None:
            policy = self._object_policy(account, container)
        if body is None:
            content_type = given.get('content-type')
        if body is None and (not content_type or given.get(
                'x-detect-content-type', '').lower() in ('true', '1')):
            content_type = mimetypes.guess_type(obj)[0] \
                or 'application/octet-stream'
        if not content_type or any(ord(c) < 32 for c in content_type):
            raise HTTPError(400, 'Invalid Content-Type')
        spool = body
        try:
            if spool is None:
                spool = self._read_body(req, length)
            if etag is not None and etag != spool.etag:
                raise HTTPError(422, 'Unprocessable Entity: ETag mismatch')
            headers = {'X-Timestamp': when.normal,
                       'Content-Type': content_type,
                       'Content-Length': str(spool.size),
                       'ETag': spool.etag}
            headers.update(metadata)
            statuses, replicas = self.backend.object_write(
                'PUT', account, container, obj, headers, spool.body,
                policy=policy)
        finally:
            if spool is not None and body is None:
                spool.close()
        ok = sum(1 for s in statuses if s == 201)
        quorum = backend_mod.quorum_size(replicas)
        answer = {'ETag': spool.etag, 'Last-Modified': last_modified(when),
                  'X-Timestamp': when.normal,
                  'Content-Type': FORMATS['plain']}
        if ok >= quorum:
            return 201, answer, []
        if sum(1 for s in statuses if s in (201, 409)) >= quorum:
            # NOTE: as Swift: a newer version was there already.
            return 202, answer, []
        status = backend_mod.best_status(statuses, replicas)
        self.log.warning('PUT /%s/%s/%s: statuses %s', account, container,
                         obj, statuses)
        raise HTTPError(status if status // 100 == 4 else 503,
                        'object write failed')

    def _read_body(self, req, length):
        expected = int(length) if length not in (None, '') else None
        spool = Spool()
        try:
            for chunk in req.body_chunks():
                spool.write(chunk)
                if spool.size > self.max_file_size:
                    raise HTTPError(413, 'Your request is too large')
                if expected is not None and spool.size > expected:
                    raise HTTPError(400, 'body longer than Content-Length')
        except BaseException:
            spool.close()
            raise
        if expected is not None and spool.size != expected:
            spool.close()
            raise HTTPError(499, 'client disconnected: %d of %d bytes'
                            % (spool.size, expected))
        return spool

    def object_post(self, req, account, container, obj):
        """Swift's object POST: new metadata (and Content-Type), body
        kept; done here by rewriting the newest version."""
        metadata = check_metadata(req.headers(), 'object')
        policy = self._object_policy(account, container)
        try:
            found = self.backend.object_get(account, container, obj,
                                            policy=policy)
        except object_client.QuorumError:
            raise HTTPError(503, 'no object replica answered') from None
        if found is None:
            raise HTTPError(404, 'object not found')
        stored, chunks = found
        spool = Spool()
        try:
            for chunk in chunks:
                spool.write(chunk)
            meta = {k: v for k, v in metadata.items() if v}
            content_type = req.headers().get('content-type') or stored.get(
                'content-type')
            self.object_put(req, account, container, obj, body=spool,
                            metadata=meta, content_type=content_type,
                            policy=policy)
        finally:
            spool.close()
        return 202, {'Content-Type': FORMATS['plain']}, []

    def object_delete(self, req, account, container, obj):
        when = self._write_timestamp(req)
        policy = self._object_policy(account, container)
        statuses, replicas = self.backend.object_write(
            'DELETE', account, container, obj,
            {'X-Timestamp': when.normal}, policy=policy)
        status = backend_mod.best_status(statuses, replicas)
        if status // 100 == 2:
            return 204, {'Content-Type': FORMATS['plain'],
                         'X-Timestamp': when.normal}, []
        if status in (404, 409):
            # NOTE: a tombstone was written all the same (404) or lost
            # to a newer write (409): its timestamp tells which.
            raise HTTPError(status, 'not found' if status == 404
                            else 'a newer version is stored',
                            {'X-Timestamp': when.normal})
        raise HTTPError(status if status // 100 == 4 else 503,
                        'object delete failed')

    def _write_answer(self, status, success):
        if status // 100 == 2:
            return success, {'Content-Type': FORMATS['plain']}, []
        if status == 503:
            raise HTTPError(503, 'no quorum of replicas answered')
        raise HTTPError(status)


def _sync_may(req, container, obj):
    """Is this something a container sync request may do? Objects:
    PUT, DELETE, GET, HEAD; the container: HEAD, and a POST of its sync
    point and nothing else."""
    if obj:
        return req.method in ('PUT', 'DELETE', 'GET', 'HEAD')
    if not container or req.method not in ('HEAD', 'POST'):
        return False
    if req.method == 'HEAD':
        return True
    given = req.headers()
    return SYNC_POINT_HEADER.lower() in given and not any(
        key.startswith(_CONTAINER_CHANGES) and key not in _SYNC_OWN_HEADERS
        for key in given)


def _sync_points(backend_headers):
    """``{X-Container-Sync-Point-<source>: value}`` of a container's
    stored sync points (backend headers have lower-case names)."""
    prefix = SYNC_POINT_SYSMETA.lower()
    return {'%s-%s' % (SYNC_POINT_HEADER, key[len(prefix):]): value
            for key, value in backend_headers.items()
            if key.startswith(prefix)}


def _close(chunks):
    close = getattr(chunks, 'close', None)
    if close is not None:
        close()


def _xml_listing(kind, name, rows):
    quote = saxutils.escape
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           '<%s name=%s>' % (kind, saxutils.quoteattr(name))]
    item = 'object' if kind == 'container' else 'container'
    for row in rows:
        if 'subdir' in row:
            out.append('<subdir name=%s><name>%s</name></subdir>' % (
                saxutils.quoteattr(row['subdir']), quote(row['subdir'])))
            continue
        out.append('<%s>' % item)
        for key, value in row.items():
            out.append('<%s>%s</%s>' % (key, quote(str(value)), key))
        out.append('</%s>' % item)
    out.append('</%s>' % kind)
    return ''.join(out).encode('utf-8')

