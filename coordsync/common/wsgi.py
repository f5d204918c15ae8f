"""The node API's HTTP plumbing: routes, signatures, fences, errors.

A node server is a :class:`NodeApp` to which route sets are added::

    app = NodeApp(conf)
    app.add_routes(object_routes)      # a list of Route
    app.add_routes(container_routes)   # later, the same way

Each :class:`Route` names its methods, a path prefix of one segment
(``/objects``), a ``parse(parts)`` that validates the rest of the path
into keyword arguments (raising :class:`HTTPError` 400), and a
``handler(req, args)`` returning ``(status, headers, body)``. A request
goes through, in order:

1. the route: unknown prefix -> 404, method not routed there -> 405;
2. the signature (:mod:`coordsync.common.signing`) unless the route is
   unsigned (the health check, the metrics) -> 401;
3. ``parse`` -> 400, before anything touches a disk;
4. the fence (:mod:`coordsync.common.fencing`): a request carrying
   ``X-Coordsync-Item`` and ``X-Coordsync-Token`` is admitted through the
   node's token store -> 400 if malformed or naming another partition,
   409 with ``X-Coordsync-Fenced: true`` if a newer token was accepted;
   a replication write without a token (``?replication=true``) into a
   partition whose lock holder sent a tokened request here less than
   ``[server] fence_lease`` seconds ago, or whose lock another member
   holds as this node's coordinator reads it -> the same 409;
5. the handler.

Every error is a status and a one-line text body; an unexpected
exception is logged with its traceback and answered with a one-line 500.

**Health and metrics.** ``GET|HEAD /healthcheck`` (unsigned) answers
``200 OK``, or 503 with the reasons on one line while the node should be
out of its load balancer: the ``[server] drain_file`` exists, the
coordination backend has been out of reach longer than ``[server]
healthcheck_coordination_limit`` (:attr:`NodeApp.coordinator`), or what
a subclass adds (:meth:`NodeApp.health_problems`: unmounted devices).
``GET /metrics`` (unsigned, as Prometheus scrapes) is the process's
:mod:`coordsync.common.metrics` in the text format. Every request
answered through the app counts in ``coordsync_http_requests_total``
by route prefix (``unknown`` for any other path, so a scan of random
paths adds no series), method and status, and in the request duration
histogram; every fence refusal in ``coordsync_fencing_refusals_total
{side="server"}``.

**Access log.** Every request, refused ones included, writes one line
at INFO to the logger ``coordsync.access`` once its answer is sent
(``[server] access_log``; a connection answered 503 beyond
``max_connections`` too). Ten fields separated by one space, none of
which contains a space::

    1700000000.123 PUT "/objects/sda/7/AUTH_a/c/o" 201 0 12.5
        n1@host.3f2a coordsync/replicate/0/7 1700000000123456789
        10.0.0.2

1. time the request arrived: Unix seconds with milliseconds;
2. method;
3. path and query as sent (percent-quoted; anything else quoted too),
   in double quotes, cut to :data:`MAX_LOG_PATH` characters and ``...``;
4. status;
5. body bytes sent;
6. duration in milliseconds, until the last byte was handed over;
7. sender's member id, from the signed ``X-Coordsync-Member`` (``-``
   when absent or the signature did not verify);
8. item and 9. token of the request's fence (``-`` when none; given
   also when the fence was refused);
10. client address.

Fields 7 and 8 are percent-quoted like the path, so a line always splits
into ten fields on spaces.
"""

import dataclasses
import functools
import json
import os
import socket
import time
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import fencing
from coordsync.common import metrics
from coordsync.common import signing

LOG = logging.getLogger(__name__)

HEALTHCHECK = '/healthcheck'
HEALTHCHECK_BODY = b'OK\n'
METRICS = '/metrics'
# Methods counted by name in the metrics; any other is "other".
METRIC_METHODS = ('GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'REPLICATE')
MAX_MEMBER_LENGTH = 256
# NOTE: a connection beyond [server] max_connections gets this long to
# send its request head, so a health check can still be told apart.
WHEN_FULL_TIMEOUT = 2.0
MAX_HEAD = 16384
MAX_DRAIN = 2 ** 20
ACCESS_LOGGER = 'coordsync.access'
MAX_LOG_PATH = 256
WRITE_METHODS = ('PUT', 'POST', 'DELETE')
# Kept as they are in a logged path or field; anything else is quoted.
_LOG_SAFE = "/:@!$&'()*+,;=-._~"

STATUS_TEXT = {
    200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request',
    401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
    409: 'Conflict', 411: 'Length Required', 412: 'Precondition Failed',
    413: 'Request Entity Too Large', 422: 'Unprocessable Entity',
    499: 'Client Disconnect', 500: 'Internal Server Error',
    503: 'Service Unavailable', 507: 'Insufficient Storage',
}


def status_line(code):
    return '%d %s' % (code, STATUS_TEXT.get(code, 'Unknown'))


class HTTPError(Exception):
    """An answer other than success: status, one-line reason, headers."""

    def __init__(self, status, reason, headers=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def _decode_path(env):
    """PATH_INFO as text: WSGI hands it over as latin-1-decoded bytes."""
    raw = env.get('PATH_INFO', '')
    try:
        return raw.encode('latin-1').decode('utf-8')
    except UnicodeError:
        raise HTTPError(400, 'path is not valid UTF-8') from None


class Request:
    """What a handler needs of one request."""

    def __init__(self, env):
        self.env = env
        self.method = env['REQUEST_METHOD']
        self.path = _decode_path(env)
        if not self.path.startswith('/'):
            raise HTTPError(400, 'path must start with /')
        self.fence = None
        # Set by NodeApp for a fenced request: admit the fence again.
        self.recheck_fence = _nothing
        self.member = None

    def header(self, name):
        return env_header(self.env, name)

    def raw_path(self):
        return self.env.get('RAW_PATH_INFO') or urllib.parse.quote(
            self.path)

    def body_chunks(self, chunk_size=65536):
        """The request body, chunk by chunk (499 if the client left)."""
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


def env_header(env, name):
    """A request header's value from a WSGI environ, None if absent."""
    key = name.upper().replace('-', '_')
    # NOTE: WSGI keeps these two out of the HTTP_ namespace (PEP 3333).
    if key in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
        return env.get(key)
    return env.get('HTTP_' + key)


def json_response(status, payload):
    body = json.dumps(payload, sort_keys=True).encode('utf-8')
    return status, {'Content-Type': 'application/json'}, [body]


def no_parts(parts):
    """``parse`` of a route that takes nothing after its prefix."""
    if parts:
        raise HTTPError(400, 'nothing may follow this path')
    return {}


@dataclasses.dataclass(frozen=True)
class Route:
    """One entry of the routing table.

    ``policy`` is the storage policy of a route set serving one (object
    routes: 0); a ``coordsync/replicate/<policy>/<partition>`` fence
    must name it and the request's partition.

    ``lock_item(args)``, for a route set replicating under locks of
    another kind (``coordsync/replicate-container/<partition>``), names
    the item of a request from its parsed path: a fence must name that
    item, and a token-less replication write waits for its lease.
    """

    methods: tuple
    prefix: str
    handler: object
    parse: object = no_parts
    signed: bool = True
    policy: object = None
    lock_item: object = None


class Router:
    """(method, first path segment) -> :class:`Route`."""

    def __init__(self):
        self._routes = {}

    def add(self, route):
        if not route.prefix.startswith('/') or '/' in route.prefix[1:]:
            raise ValueError('a prefix is one path segment: %r'
                             % route.prefix)
        by_method = self._routes.setdefault(route.prefix, {})
        for method in route.methods:
            if method in by_method:
                raise ValueError('%s %s is routed twice'
                                 % (method, route.prefix))
            by_method[method] = route

    def match(self, method, path):
        """``(route, parts after the prefix)`` or HTTPError 404/405."""
        first, _, rest = path[1:].partition('/')
        by_method = self._routes.get('/' + first)
        if by_method is None:
            raise HTTPError(404, 'no such path: /%s' % urllib.parse.quote(
                first[:64], safe=''))
        route = by_method.get(method)
        if route is None:
            allowed = ', '.join(sorted(by_method))
            raise HTTPError(405, '/%s takes %s' % (first, allowed),
                            {'Allow': allowed})
        return route, rest.split('/') if rest else []

    def label(self, path):
        """The route prefix of ``path`` for the metrics: one of the
        routed prefixes, else ``unknown`` (bounded label values)."""
        first = '/' + path[1:].partition('/')[0]
        return first if first in self._routes else 'unknown'


class NodeApp:
    """The WSGI application of one node: see the module docstring.

    :param conf: ConfigOpts with the cluster and ``[server]`` options.
    :param token_store: a :class:`~coordsync.common.fencing.TokenStore`
        (made from ``[server] fence_db`` when omitted; the file is
        created at the first fenced request or by :meth:`open`).
    :param access_log: the logger of the access lines (the
        ``coordsync.access`` logger when omitted).
    """

    def __init__(self, conf, logger=None, token_store=None,
                 access_log=None):
        self.conf = conf
        self.log = logger or LOG
        self.access_log = access_log or logging.getLogger(ACCESS_LOGGER)
        self.token_store = token_store or fencing.TokenStore(
            conf.server.fence_db, logger=self.log)
        # The clock leases are measured with (tests set another).
        self.clock = time.time
        # ``lock_holder(item)``: who holds a lock now, None if nobody;
        # raises CoordsyncError when it cannot tell. Set by the process
        # to its coordinator's; None: the lease alone holds static
        # writes back.
        self.lock_holder = None
        # The process's Coordinator (its ``unreachable_for()`` is what
        # the health check reads), or ``coordination_state``: a callable
        # returning those seconds. Neither: the backend is not checked.
        self.coordinator = None
        self.coordination_state = None
        self.router = Router()
        self.add_routes([Route(('GET', 'HEAD'), HEALTHCHECK,
                               self.healthcheck, signed=False),
                         Route(('GET', 'HEAD'), METRICS, self.metrics,
                               signed=False)])

    def add_routes(self, routes):
        for route in routes:
            self.router.add(route)

    def open(self):
        """Create what the app needs on disk now (the token store)."""
        self.token_store.open()

    # -- health and metrics -------------------------------------------------

    def unreachable_for(self):
        """Seconds the coordination backend has been out of reach of
        this process (0 when it answers), None when unknown."""
        state = self.coordination_state
        if state is None and self.coordinator is not None:
            state = self.coordinator.unreachable_for
        if state is None:
            return None
        try:
            return float(state())
        except Exception as err:
            # NOTE: a health check must answer, whatever broke.
            self.log.warning('Cannot read the coordination state: %s', err)
            return None

    def health_problems(self):
        """Why this node should be out of its load balancer now (one
        short phrase each); empty when healthy. Subclasses add their
        own checks."""
        problems = []
        drain = self.conf.server.drain_file
        if drain and os.path.exists(drain):
            problems.append('draining: drain file %s exists' % drain)
        limit = self.conf.server.healthcheck_coordination_limit
        gone = self.unreachable_for()
        if limit and gone is not None and gone > limit:
            problems.append('coordination backend unreachable for %.0fs '
                            '(limit %gs)' % (gone, limit))
        return problems

    def health(self):
        """``(status, body)`` of the health check: 200 ``OK``, or 503
        with every reason on one line."""
        try:
            problems = self.health_problems()
        except Exception:
            self.log.exception('Health check failed')
            problems = ['health check failed (logged)']
        if not problems:
            return 200, HEALTHCHECK_BODY
        return 503, ('; '.join(' '.join(p.split()) for p in problems)
                     + '\n').encode('utf-8')

    def healthcheck(self, req, args):
        status, body = self.health()
        return status, {'Content-Type': 'text/plain; charset=utf-8'}, [body]

    def metrics(self, req, args):
        return 200, {'Content-Type': metrics.CONTENT_TYPE}, [
            metrics.get().render()]

    # -- WSGI ---------------------------------------------------------------

    def __call__(self, env, start_response):
        arrived, started = time.time(), time.monotonic()
        req = None
        try:
            req = Request(env)
            status, headers, body = self.handle(req)
        except HTTPError as err:
            status, headers, body = self._error(env, err)
        except Exception:
            self.log.exception('%s %s: unexpected error',
                               env.get('REQUEST_METHOD'),
                               env.get('PATH_INFO', '')[:256])
            status, headers, body = self._error(
                env, HTTPError(500, 'internal error (logged)'))
        if isinstance(body, list):
            headers.setdefault('Content-Length',
                               str(sum(len(b) for b in body)))
        self._count(env, status, started)
        start_response(status_line(status), list(headers.items()))
        if env['REQUEST_METHOD'] == 'HEAD':
            if hasattr(body, 'close'):
                body.close()
            body = []
        if not self.conf.server.access_log:
            return body
        return LoggedBody(body, functools.partial(
            self._log_access, env, req, status, arrived, started))

    def _count(self, env, status, started):
        """The request in the HTTP metrics (never fails the request)."""
        try:
            route = self.router.label(env.get('PATH_INFO', ''))
            method = env.get('REQUEST_METHOD')
            if method not in METRIC_METHODS:
                method = 'other'
            record = metrics.get()
            record.http_requests.labels(route, method, str(status)).inc()
            record.http_duration.labels(route).observe(
                time.monotonic() - started)
        except Exception as err:
            self.log.warning('Cannot count a request in the metrics: %s',
                             err)

    def _log_access(self, env, req, status, arrived, started, sent):
        log_access(self.access_log, arrived, env.get('REQUEST_METHOD'),
                   _logged_target(env), status, sent,
                   time.monotonic() - started,
                   req.member if req is not None else None,
                   req.fence if req is not None else None,
                   env.get('REMOTE_ADDR'))

    def _error(self, env, err):
        headers = dict(err.headers)
        headers['Content-Type'] = 'text/plain; charset=utf-8'
        reason = ' '.join(err.reason.split())
        if err.status >= 500 and err.status != 503:
            self.log.error('%s %s: %s', env.get('REQUEST_METHOD'),
                           env.get('PATH_INFO', '')[:256], reason)
        return err.status, headers, [(reason + '\n').encode('utf-8')]

    def handle(self, req):
        """``(status, headers, body)`` of a :class:`Request`, or
        HTTPError."""
        route, parts = self.router.match(req.method, req.path)
        if route.signed:
            self._authenticate(req)
        args = route.parse(parts)
        if route.signed:
            self._admit(req, route, args)
        return route.handler(req, args)

    # -- who sent it, and may it -------------------------------------------

    def _authenticate(self, req):
        reason = signing.verify(
            self.conf.cluster_secret, req.method, req.raw_path(),
            req.env.get('QUERY_STRING', ''), req.header,
            self.conf.server.max_clock_skew)
        if reason:
            raise HTTPError(401, reason)
        member = req.header(signing.MEMBER_HEADER)
        if member is not None:
            if (len(member) > MAX_MEMBER_LENGTH or not member.isascii()
                    or not member.isprintable()):
                raise HTTPError(400, 'bad %s' % signing.MEMBER_HEADER)
            req.member = urllib.parse.unquote(member)

    def _admit(self, req, route, args):
        try:
            fence = fencing.from_headers(req.header)
        except ValueError as err:
            raise HTTPError(400, str(err)) from None
        if fence is None:
            item = self._leased_item(req, route, args)
            if item is not None:
                self.enforce_lease(req, item)
                req.recheck_fence = functools.partial(self.enforce_lease,
                                                      req, item)
            return
        # NOTE: kept before it is admitted: the access log names the
        # fence of a refused request too.
        req.fence = fence
        _check_target(fence, route, args)
        self.enforce_fence(req, fence)
        req.recheck_fence = functools.partial(self.enforce_fence, req, fence)

    def enforce_fence(self, req, fence):
        """409 (fenced) unless ``fence`` is at least the newest token
        this node accepted for its item; records it if newer.

        Handlers call it again right before they commit a write whose
        body took time to arrive: the item may have moved meanwhile.
        """
        if fence is None:
            return
        try:
            ok, highest = self.token_store.admit(fence.item, fence.token)
        except fencing.TokenStoreError as err:
            self._store_unavailable(req, err)
        if not ok:
            metrics.get().fencing_refusals.labels('server').inc()
            self.log.warning('Fenced %s %s from %s: token %d for %s is '
                             'older than %d', req.method, req.path[:256],
                             req.member or 'an unnamed member',
                             fence.token, fence.item, highest)
            raise HTTPError(409, 'fenced: token %d for %s is older than %d'
                            % (fence.token, fence.item, highest),
                            {fencing.FENCED_HEADER: 'true'})

    def _leased_item(self, req, route, args):
        """The item whose lease a token-less write must wait for, if any.

        NOTE: only writes that say they are replication pushes
        (``?replication=true``, signed) wait, not every write without a
        token: the quorum object client's PUTs and DELETEs (users'
        writes) carry no token either and must never be refused because
        a partition is being repaired. Telling them apart by sender
        instead (a member id, a role) would not do: a node does not
        know a sender's roles, and a process writing for users may be a
        member too. A push knows what it is, and says so. Reads never
        wait: a static pass's REPLICATE and listings change no object.
        """
        if (req.method not in WRITE_METHODS
                or (route.policy is None and route.lock_item is None)
                or 'partition' not in args
                or not fencing.is_replication(req.env.get('QUERY_STRING'))):
            return None
        if route.lock_item is not None:
            return route.lock_item(args)
        return fencing.replicate_item(route.policy, args['partition'])

    def enforce_lease(self, req, item):
        """409 (fenced) if a coordinated holder works on ``item``, for a
        write made without the lock (static rule) into it.

        Two signs, either enough: (1) this node admitted a tokened
        request for ``item`` less than ``[server] fence_lease`` seconds
        ago; (2) the lock is held now by another member, as this node's
        coordinator reads it from the backend (:attr:`lock_holder`). The
        second covers a holder that has not talked to this node yet — a
        node that took the lock after ZooKeeper came back, while the
        sender has not reconnected and still runs a static pass. When
        the backend cannot tell (this node is cut off from it too, or
        it cannot list locks), the lease alone decides.
        """
        lease = fencing.fence_lease(self.conf)
        try:
            admitted_at = self.token_store.admitted_at(item) if lease \
                else None
        except fencing.TokenStoreError as err:
            self._store_unavailable(req, err)
        if admitted_at is not None:
            ago = self.clock() - admitted_at
            # NOTE: abs: after the clock stepped back, a time "in the
            # future" holds for at most a lease (or until the holder's
            # next request sets it again), not for as long as the step.
            if abs(ago) < lease:
                metrics.get().fencing_refusals.labels('server').inc()
                self.log.warning('Fenced token-less %s %s from %s: %s had '
                                 'a tokened request %.1fs ago', req.method,
                                 req.path[:256],
                                 req.member or 'an unnamed member', item,
                                 ago)
                raise HTTPError(
                    409, 'fenced: %s had a tokened request %.1fs ago; '
                    'replication writes without a token wait %gs'
                    % (item, ago, lease), {fencing.FENCED_HEADER: 'true'})
        holder = self._holder_of(item)
        if holder is not None and holder != req.member:
            metrics.get().fencing_refusals.labels('server').inc()
            self.log.warning('Fenced token-less %s %s from %s: %s is held '
                             'by %s', req.method, req.path[:256],
                             req.member or 'an unnamed member', item, holder)
            raise HTTPError(409, 'fenced: %s is locked by %s'
                            % (item, holder), {fencing.FENCED_HEADER: 'true'})

    def _holder_of(self, item):
        """Who holds ``item``'s lock, None if nobody or unknown."""
        if self.lock_holder is None:
            return None
        try:
            return self.lock_holder(item)
        except exceptions.CoordsyncError:
            return None

    def _store_unavailable(self, req, err):
        self.log.error('Cannot check fence of %s %s: %s', req.method,
                       req.path[:256], err)
        raise HTTPError(503, 'fencing token store unavailable') from None


def _nothing():
    return None


def _check_target(fence, route, args):
    """A replicate fence must name the partition (and policy) served;
    a route naming its lock item, that item."""
    if route.lock_item is not None:
        expected = route.lock_item(args)
        if fence.item != expected:
            raise HTTPError(400, '%s does not match %s' % (fence.item,
                                                           expected))
        return
    target = fence.replicate_target()
    if target is None or 'partition' not in args:
        return
    policy, partition = target
    same = (partition.isdigit() and int(partition) == args['partition']
            and (route.policy is None or policy == str(route.policy)))
    if not same:
        raise HTTPError(400, '%s does not match partition %d%s' % (
            fence.item, args['partition'], '' if route.policy is None
            else ' of policy %s' % route.policy))


# -- the access log -----------------------------------------------------------

class LoggedBody:
    """A response body that calls ``done(bytes_sent)`` once, when the
    server closes it (PEP 3333: always, even if sending failed)."""

    def __init__(self, body, done):
        self._body = body
        self._done = done
        self.sent = 0

    def __iter__(self):
        for chunk in self._body:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            if hasattr(self._body, 'close'):
                self._body.close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done(self.sent)


def log_access(logger, arrived, method, target, status, sent, duration,
               member, fence, client):
    """Write one access line (format: the module docstring).

    ``target`` is the path and query as sent, ``duration`` in seconds,
    ``fence`` a :class:`~coordsync.common.fencing.Fence` or None.
    """
    if len(target) > MAX_LOG_PATH:
        target = target[:MAX_LOG_PATH] + '...'
    logger.info('%.3f %s "%s" %d %d %.1f %s %s %s %s', arrived,
                _log_field(method), target, status, sent, duration * 1000,
                _log_field(member), _log_field(fence and fence.item),
                fence.token if fence else '-', _log_field(client))


def _log_field(text):
    """``text`` percent-quoted so it holds no space; ``-`` if empty."""
    if not text:
        return '-'
    return urllib.parse.quote(text, safe=_LOG_SAFE)


def _logged_target(env):
    """The request's path and query as sent, quoted for the log."""
    raw = env.get('RAW_PATH_INFO') or env.get('PATH_INFO', '')
    if env.get('QUERY_STRING'):
        raw += '?' + env['QUERY_STRING']
    return _quoted_target(raw.encode('latin-1', 'replace'))


def _quoted_target(raw):
    # NOTE: % and ? are kept: the target is quoted already as sent.
    return urllib.parse.quote(raw[:MAX_LOG_PATH + 1],
                              safe=_LOG_SAFE + '%?')


# -- serving ------------------------------------------------------------------

def answer_when_full(client, access_log=None, health=None):
    """Answer a connection beyond ``max_connections``: the health check
    still gets its answer (``health()``: ``(status, body)``, 200 ``OK``
    when not given), anything else 503; then close. The answer goes
    to ``access_log`` (see :func:`log_access`) when one is given."""
    arrived, started = time.time(), time.monotonic()
    client.settimeout(WHEN_FULL_TIMEOUT)
    head = b''
    try:
        while b'\r\n\r\n' not in head and len(head) < MAX_HEAD:
            chunk = client.recv(4096)
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        pass
    words = head.split(b'\r\n', 1)[0].split()
    method = words[0] if words else b''
    target = words[1].split(b'?')[0] if len(words) > 1 else b''
    if method in (b'GET', b'HEAD') and target == HEALTHCHECK.encode():
        status, body = health() if health is not None else (
            200, HEALTHCHECK_BODY)
    else:
        status, body = 503, b'too many connections\n'
    sent = b'' if method == b'HEAD' else body
    client.sendall(('HTTP/1.1 %s\r\nContent-Type: text/plain; '
                    'charset=utf-8\r\nContent-Length: %d\r\n'
                    'Connection: close\r\n\r\n' % (status_line(status),
                                                   len(body))).encode()
                   + sent)
    if access_log is not None:
        log_access(access_log, arrived, method.decode('latin-1'),
                   _quoted_target(words[1] if len(words) > 1 else b''),
                   status, len(sent), time.monotonic() - started, None,
                   None, _peer(client))
    # NOTE: closing with an unread request body would reset the
    # connection, and the client could lose the answer before reading it;
    # so some of it is read and dropped (a bounded amount, for a bounded
    # time: a big upload may still see a reset instead).
    client.shutdown(socket.SHUT_WR)
    drained, deadline = 0, time.monotonic() + WHEN_FULL_TIMEOUT
    try:
        while drained < MAX_DRAIN and time.monotonic() < deadline:
            chunk = client.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except TimeoutError:
        pass


def _peer(client):
    try:
        return client.getpeername()[0]
    except (OSError, IndexError, TypeError):
        return None


class WSGIService:
    """Serves a WSGI app on ``bind_ip:bind_port`` in a green thread."""

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
        access_log = getattr(self.app, 'access_log', None) \
            if self.conf.server.access_log else None
        self._thread = concurrency.spawn(
            concurrency.serve_wsgi, self._sock, self.app,
            EventletLog(self.log), self.conf.server.max_connections,
            self.conf.server.client_timeout,
            functools.partial(answer_when_full, access_log=access_log,
                              health=getattr(self.app, 'health', None)))

    def stop(self):
        if self._thread is not None:
            concurrency.kill(self._thread)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class EventletLog:
    """eventlet.wsgi's own lines: access lines and chatter at debug
    level, its errors as errors."""

    def __init__(self, logger):
        self._log = logger

    def info(self, message, *args):
        self._log.debug('wsgi: %s', message.rstrip())

    debug = info

    def error(self, message, *args):
        self._log.error('wsgi: %s', message.rstrip())

    def warning(self, message, *args):
        self._log.warning('wsgi: %s', message.rstrip())

    def write(self, message):
        self.info(message)
