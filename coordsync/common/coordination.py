"""Membership in the coordination group, heartbeats, reconnects and locks.

A :class:`Coordinator` is one process's seat in the group. It wraps a tooz
driver and adds what tooz leaves to its users:

* a member id unique per process (``<node>@<host>.<boot id>``), so a node
  restarted after a crash never collides with its own dead session
  (tooz raises MemberAlreadyExist);
* a membership check on every heartbeat, because tooz does not rejoin by
  itself after a lost session; a member that finds itself missing joins
  again;
* jittered exponential reconnects, ``min(max, uniform(initial, prev*3))``,
  with kazoo's own retries capped so no call waits for minutes;
* fencing: every lock remembers the *epoch* it was taken in, and any outage
  (connection suspended, session lost, a failed heartbeat) starts a new
  epoch. A lock from an earlier epoch is no longer owned, whatever tooz
  says (a lost ZooKeeper session leaves ``lock.acquired`` True);
* try-locks that behave the same on every backend: ``False`` when held
  elsewhere, :class:`~coordsync.exceptions.CoordinationUnavailable` when
  the backend cannot answer; taken a window at a time, each grant with a
  fencing token that only grows per lock name. On ZooKeeper they are
  plain ephemeral znodes (:mod:`coordsync.common.zklocks`); elsewhere
  they are tooz's locks (:class:`ToozLocks`).

States, as the heartbeat loop moves between them::

    DISCONNECTED --start ok, joined--> HEALTHY
    HEALTHY --error / suspended / session lost--> OUTAGE (epoch + 1)
    OUTAGE --backend answers, member (re)joined--> HEALTHY
    any --stop()--> STOPPED (locks released, group left)

One line is logged when an outage starts and one when it ends, never one
per heartbeat.
"""

import functools
import inspect
import os
import random
import socket
import time
import urllib.parse
import uuid

import tooz
import tooz.coordination
from kazoo import client as kazoo_client
from kazoo import exceptions as kazoo_exceptions
from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync import version
from coordsync.common import embedded
from coordsync.common import metrics
from coordsync.common import zklocks

LOG = logging.getLogger(__name__)

# Errors that mean "the backend did not answer", whichever driver raised.
BACKEND_ERRORS = (tooz.ToozError, kazoo_exceptions.KazooException,
                  OSError, TimeoutError, concurrency.Timeout)
ZOOKEEPER_SCHEMES = ('zookeeper', 'kazoo')
ZOOKEEPER_PORT = 2181
# NOTE: during an outage a process asks the ZooKeeper servers whether
# they serve again at most this often (see Coordinator.backend_back).
PROBE_EVERY = 0.5


def make_member_id(node_name, host=None, boot_id=None):
    host = host or socket.gethostname()
    boot_id = boot_id or uuid.uuid4().hex[:12]
    return '%s@%s.%s' % (node_name, host, boot_id)


def redact_url(url):
    """The backend URL without credentials or query, safe to log."""
    parts = urllib.parse.urlsplit(url)
    # NOTE: not parts.hostname/.port: an ensemble's netloc lists several
    # hosts (``zk1:2181,zk2:2181``), which .port refuses.
    netloc = parts.netloc.rpartition('@')[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, '',
                                    ''))


def zookeeper_hosts(url):
    """``[(host, port)]`` of a ZooKeeper backend URL: the hosts of its
    netloc (``zk1:2181,zk2:2181``) and of its ``hosts=`` query; [] for
    another backend or a host list that cannot be read."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ZOOKEEPER_SCHEMES:
        return []
    specs = parts.netloc.rpartition('@')[2].split(',')
    for value in urllib.parse.parse_qs(parts.query).get('hosts', []):
        specs += value.split(',')
    hosts = []
    for spec in filter(None, (s.strip() for s in specs)):
        if spec.startswith('['):
            host, _, rest = spec[1:].partition(']')
            port = rest[1:] if rest.startswith(':') else ''
        else:
            host, _, port = spec.partition(':')
        if not host or (port and not port.isdigit()):
            return []
        hosts.append((host, int(port or ZOOKEEPER_PORT)))
    return hosts


def zookeeper_serving(host, port, timeout):
    """Does the ZooKeeper server at ``host:port`` serve clients (is it in
    a quorum)? Asked with its ``srvr`` four-letter word (allowed by
    default since ZooKeeper 3.5): True, False, or None when the server
    answers but not to ``srvr`` (not in ``4lw.commands.whitelist``)."""
    answer = b''
    try:
        with socket.create_connection((host, port), timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b'srvr')
            while len(answer) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False if not answer else None
    if b'Mode:' in answer:
        return True
    if b'not currently serving' in answer:
        return False
    return None


class Backoff:
    """Jittered exponential delays between reconnect attempts.

    Each delay is ``min(cap, uniform(base, previous * 3))`` (the
    "decorrelated jitter" of manila's coordinator), so a fleet that lost
    its backend at the same instant does not come back in lock-step.
    """

    def __init__(self, base, cap, rng=random):
        self._base = base
        self._cap = cap
        self._rng = rng
        self._previous = base

    def next(self):
        delay = min(self._cap,
                    self._rng.uniform(self._base, self._previous * 3))
        self._previous = delay
        return delay

    def reset(self):
        self._previous = self._base


def driver_options(url, conf):
    """Keyword options for ``tooz.coordination.get_coordinator``.

    The session timeout goes in as tooz's ``timeout`` unless the URL names
    one. For ZooKeeper, kazoo's reconnect backoff (which otherwise grows
    to an hour) is capped, and under eventlet the eventlet handler is used
    (with the threading handler lock throughput falls ~10x).
    """
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    options = {}
    if 'timeout' not in query:
        options['timeout'] = conf.coordination.session_timeout
    if parts.scheme in ZOOKEEPER_SCHEMES:
        options['connection_retry'] = {
            'max_tries': -1,
            'delay': conf.coordination.initial_reconnect_backoff,
            'backoff': 2,
            'max_jitter': 0.5,
            'max_delay': conf.coordination.max_reconnect_backoff,
        }
        if concurrency.is_monkey_patched() and 'handler' not in query:
            options['handler'] = 'eventlet'
            # kazoo insists the retry sleeps like its handler does.
            options['connection_retry']['sleep_func'] = (
                concurrency.kazoo_sleep_func())
    return options


def connect(conf, member_id):
    """Start a tooz driver for ``member_id``; raise CoordinationUnavailable.

    The session timeout is also the file backend's liveness window, so
    readers (coordsync-status) must use the same value as members do.
    """
    url = conf.coordination.backend_url
    options = driver_options(url, conf)
    try:
        if urllib.parse.urlsplit(url).scheme == embedded.SCHEME:
            driver = embedded.make_driver(url, member_id.encode('utf-8'),
                                          options)
        else:
            driver = tooz.coordination.get_coordinator(
                url, member_id.encode('utf-8'), **options)
        driver.start(start_heart=False)
    except BACKEND_ERRORS as err:
        raise exceptions.CoordinationUnavailable(
            'coordination backend %s unreachable: %s'
            % (redact_url(url), err)) from err
    except (ValueError, RuntimeError) as err:
        # stevedore cannot load the scheme, or a driver rejects the URL.
        raise exceptions.ConfigError(
            'bad [coordination] backend_url %s: %s'
            % (redact_url(url), err)) from err
    return driver


def read_members(driver, group, timeout):
    """``{member_id: capabilities}`` of every live member of ``group``."""
    result = driver.get_members_with_capabilities(group.encode('utf-8'))
    members = result.get(timeout=timeout)
    return {_text(member): caps for member, caps in members.items()}


def check_lock_name(name):
    """Lock names are ``coordsync/<kind>/...``: no empty or dot parts."""
    parts = name.split('/') if isinstance(name, str) else None
    if not parts or any(p in ('', '.', '..') for p in parts):
        raise ValueError('bad lock name %r' % (name,))


def static_after(conf):
    """``[coordination] static_after``, three session timeouts unless
    set."""
    value = conf.coordination.static_after
    return 3.0 * conf.coordination.session_timeout if value is None \
        else value


def settle_after_static(conf):
    """How long a member back from an outage past ``static_after`` waits
    before it takes locks.

    Other nodes may still be in a static pass, writing without locks:
    they reconnect within one reconnect delay (at most
    ``max_reconnect_backoff``) plus an attempt (``session_timeout`` at
    most), and end their static work at its next write. A lock taken
    before that would not keep those writes out of its item.
    """
    coordination = conf.coordination
    return (coordination.max_reconnect_backoff + coordination.heartbeat
            + min(coordination.session_timeout, 5.0))


def _reason(err):
    """A non-empty text for an error (some kazoo errors have none)."""
    text = str(err).strip()
    name = type(err).__name__
    return '%s: %s' % (name, text) if text else name


def _text(value):
    return value.decode('utf-8') if isinstance(value, bytes) else value


def kazoo_client_of(driver):
    """The KazooClient of tooz's ZooKeeper driver, None for others."""
    client = getattr(driver, '_coord', None)
    return client if isinstance(client, kazoo_client.KazooClient) else None


class _HeldLock:
    __slots__ = ('grant', 'epoch')

    def __init__(self, grant, epoch):
        self.grant = grant
        self.epoch = epoch


class _ToozGrant:
    __slots__ = ('tooz_lock', 'token')

    def __init__(self, tooz_lock, token):
        self.tooz_lock = tooz_lock
        self.token = token


class ToozLocks:
    """tooz's own locks, for every backend but ZooKeeper.

    Same interface as :class:`~coordsync.common.zklocks.ZooKeeperLocks`.
    tooz's generic locks expose no grant counter, so the token is
    ``time.time_ns()`` read after the grant: on one machine (the embedded
    backend) the clock orders grants; Redis and etcd clusters need their
    members' clocks kept in sync (NTP) for tokens to grow across nodes.

    :param healthy: callable; releases wait for the backend's answer
        only while it is True.
    """

    def __init__(self, driver, op_timeout, logger, healthy):
        self._driver = driver
        self._op_timeout = op_timeout
        self.log = logger
        self._healthy = healthy

    def take(self, names):
        grants = {}
        try:
            for name in names:
                grants[name] = self._take(name)
        except BaseException:
            for grant in grants.values():
                if grant is not None:
                    self.release(grant)
            raise
        return grants

    def _take(self, name):
        tooz_lock = self._driver.get_lock(name.encode('utf-8'))
        try:
            taken = self._bounded_acquire(name, tooz_lock)
        except tooz.coordination.LockAcquireFailed:
            taken = False
        except BACKEND_ERRORS as err:
            raise exceptions.CoordinationUnavailable(
                'cannot take lock %s: %s' % (name, err)) from err
        return _ToozGrant(tooz_lock, time.time_ns()) if taken else None

    def _bounded_acquire(self, name, tooz_lock):
        """tooz's non-blocking acquire, given up after the op timeout.

        NOTE: kazoo retries a lock acquire for as long as the connection
        is down, so a try-lock begun just before an outage would hold its
        caller (a whole replication pass) until the backend is back. The
        attempt goes on in a green thread of its own; a lock it still
        gets after we gave up is released as soon as it has it.
        """
        attempt = concurrency.spawn(tooz_lock.acquire, blocking=False)
        with concurrency.Timeout(self._op_timeout, False):
            return attempt.wait()
        attempt.link(self._release_abandoned, name, tooz_lock)
        raise exceptions.CoordinationUnavailable(
            'no answer taking lock %s within %.1fs' % (name,
                                                       self._op_timeout))

    def _release_abandoned(self, attempt, name, tooz_lock):
        try:
            taken = attempt.wait()
        except (tooz.coordination.LockAcquireFailed, *BACKEND_ERRORS):
            return
        if taken:
            self._release_tooz_lock(name, tooz_lock)

    def release(self, grant):
        # NOTE: during an outage a release may block until the backend is
        # back, and an outage may begin during the call; a green thread
        # finishes it meanwhile.
        releasing = concurrency.spawn(self._release_tooz_lock,
                                      grant.tooz_lock.name,
                                      grant.tooz_lock)
        if self._healthy():
            with concurrency.Timeout(self._op_timeout, False):
                releasing.wait()

    def _release_tooz_lock(self, name, tooz_lock):
        try:
            tooz_lock.release()
        except BACKEND_ERRORS as err:
            self.log.warning('Could not release lock %s: %s', _text(name),
                             err)

    def owns(self, grant):
        return True

    def flush(self):
        """Nothing to do: tooz releases at once."""

    close = flush

    def list_locks(self):
        """Always ``[]``: tooz cannot list the locks held on a backend."""
        return []

    def holder_of(self, name):
        """tooz cannot tell who holds a lock without trying to take it."""
        raise exceptions.CoordinationUnavailable(
            'this backend cannot tell who holds a lock')


class Coordinator:
    """This process's membership in the group, and its locks.

    :param conf: the ConfigOpts from ``prepare_service``.
    :param roles: what this process does (``server``, ``replicator``...),
        published in the capabilities.
    :param devices: device names this node serves, published too.
    """

    def __init__(self, conf, roles=(), devices=(), logger=None, rng=random,
                 clock=time.time):
        self.conf = conf
        self.log = logger or LOG
        self.group = conf.coordination.group
        self.member_id = make_member_id(conf.node_name)
        self.roles = list(roles)
        self.devices = list(devices)
        self.started_at = clock()
        self.epoch = 0
        self._clock = clock
        self._rng = rng
        self._backoff = Backoff(conf.coordination.initial_reconnect_backoff,
                                conf.coordination.max_reconnect_backoff, rng)
        self._op_timeout = max(1.0, min(5.0,
                                        conf.coordination.session_timeout
                                        / 2.0))
        self._driver = None
        self._locks = None
        self._joined = False
        self._outage_since = None
        self._unreachable_since = None
        self._settle_until = 0.0
        self._hosts = zookeeper_hosts(conf.coordination.backend_url)
        self._probing = False
        self._probed_at = None
        self._backend_serving = False
        self._outages = 0
        self._stopping = False
        self._loop_thread = None
        self._held = {}
        self._progress = {}
        self._published_at = None
        self._progress_dirty = True

    # -- state ------------------------------------------------------------

    @property
    def healthy(self):
        """True when joined and no outage is in progress."""
        return self._joined and self._outage_since is None

    @property
    def state(self):
        if self._stopping:
            return 'stopped'
        return 'healthy' if self.healthy else 'outage'

    def unreachable_for(self):
        """Seconds the backend has failed to answer this process, 0 if it
        answers.

        NOTE: not the same as "not healthy". A process whose session
        expired (it was paused past the session timeout, or a ZooKeeper
        leader election took too long) is unhealthy until it has
        rejoined, yet the backend answers it and every other node is
        coordinated: that is no reason for a lockless static pass. Only
        failed attempts count, from the first one of the current streak,
        so time spent paused between two attempts does not.
        """
        if self._unreachable_since is None or self.healthy:
            return 0.0
        return time.monotonic() - self._unreachable_since

    def settling(self):
        """Seconds left before this member takes locks again after an
        outage past ``static_after`` (0 if none): see
        :func:`settle_after_static`."""
        left = self._settle_until - time.monotonic()
        return left if left > 0 else 0.0

    @property
    def static_allowed(self):
        """True once the backend was unreachable for ``static_after``,
        unless it was seen serving again (:meth:`backend_back`)."""
        return (not self.healthy
                and self.unreachable_for() >= static_after(self.conf)
                and not self.backend_back())

    def backend_back(self):
        """During this process's outage, was a ZooKeeper server of the
        backend found serving clients again (its last probe)?

        Other nodes may then be reconnecting and taking locks while this
        process still waits for its own reconnect (its backoff, a slow
        attempt on a loaded machine): unlocked static work must end now,
        not when this process is back in the group. A probe (``srvr``
        to each server, :func:`zookeeper_serving`) runs in the
        background at most every :data:`PROBE_EVERY` seconds, so asking
        before every static write costs nothing. Always False for other
        backends and when healthy.
        """
        if not self._hosts or self.healthy or self._stopping:
            return False
        now = time.monotonic()
        if not self._probing and (self._probed_at is None
                                  or now - self._probed_at >= PROBE_EVERY):
            self._probing = True
            self._probed_at = now
            concurrency.spawn(self._probe)
        return self._backend_serving

    def _probe(self):
        try:
            timeout = min(1.0, self._op_timeout)
            self._backend_serving = any(
                zookeeper_serving(host, port, timeout)
                for host, port in self._hosts)
        finally:
            self._probing = False

    # -- life cycle -------------------------------------------------------

    def start(self, wait=None):
        """Start the heartbeat loop; optionally wait to be joined.

        Returns True once joined, False if ``wait`` seconds passed first
        (the loop keeps trying in the background either way).
        """
        self._stopping = False
        self._loop_thread = concurrency.spawn(self._run)
        if wait is None:
            return self.healthy
        deadline = time.monotonic() + wait
        while not self.healthy and time.monotonic() < deadline:
            concurrency.sleep(0.05)
        return self.healthy

    def stop(self):
        """Release every held lock, leave the group, close the driver."""
        self._stopping = True
        if self._loop_thread is not None:
            concurrency.kill(self._loop_thread)
            self._loop_thread = None
        for name in list(self._held):
            self.release(name)
        if self._locks is not None:
            self._locks.close()
        driver, self._driver = self._driver, None
        if driver is None:
            return
        if self._joined:
            try:
                driver.leave_group(self.group.encode('utf-8')).get(
                    timeout=self._op_timeout)
                self.log.info('Left coordination group %s as %s',
                              self.group, self.member_id)
            except BACKEND_ERRORS as err:
                self.log.warning('Could not leave group %s cleanly: %s',
                                 self.group, err)
        self._joined = False
        # NOTE: tooz's stop leaves every group it believes joined and waits
        # for the answer without a timeout, so during an outage it would
        # never return. By a session timeout the group has dropped us.
        limit = max(self._op_timeout, self.conf.coordination.session_timeout)
        timer = concurrency.Timeout(limit)
        try:
            driver.stop()
        except concurrency.Timeout as err:
            if err is not timer:
                raise
            self.log.warning('Coordination driver not stopped after %ss; '
                             'leaving it', limit)
        except BACKEND_ERRORS as err:
            self.log.warning('Could not stop coordination driver: %s', err)
        finally:
            timer.cancel()

    def _run(self):
        # NOTE: joins are jittered so nodes started together spread out.
        concurrency.sleep(self._rng.uniform(
            0, self.conf.coordination.initial_reconnect_backoff))
        while not self._stopping:
            delay = self.step()
            concurrency.sleep(delay)

    def step(self):
        """One heartbeat: connect, check membership, publish; next delay."""
        failure = None
        try:
            if self._driver is None:
                self._connect()
            if not self._is_member():
                self._join()
            self._publish_if_due()
            self._driver.heartbeat()
        except (exceptions.CoordinationUnavailable, *BACKEND_ERRORS) as err:
            failure = err
        # NOTE: logged outside the except block: oslo.log would append the
        # traceback, and an outage is an expected state, not a bug.
        if failure is not None:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            self._begin_outage(_reason(failure))
            return self._backoff.next()
        if (self._unreachable_since is not None
                and time.monotonic() - self._unreachable_since
                >= static_after(self.conf)):
            # NOTE: out of reach long enough for a static pass, here and
            # maybe on other nodes, which reconnect within their
            # backoff: until then a lock taken here does not keep their
            # unlocked writes out.
            self._settle_until = time.monotonic() + settle_after_static(
                self.conf)
        self._unreachable_since = None
        self._backend_serving = False
        self._end_outage()
        metrics.get().coordination_healthy.set(1)
        self._backoff.reset()
        # Releases a failure kept back (ZooKeeper) are retried here too.
        self._locks.flush()
        return self.conf.coordination.heartbeat

    def _connect(self):
        driver = connect(self.conf, self.member_id)
        self._watch_session(driver)
        self._driver = driver
        self._locks = self._lock_table(driver)
        try:
            driver.create_group(self.group.encode('utf-8')).get(
                timeout=self._op_timeout)
        except tooz.coordination.GroupAlreadyExist:
            pass

    def _lock_table(self, driver):
        client = kazoo_client_of(driver)
        if client is None:
            return ToozLocks(driver, self._op_timeout, self.log,
                             lambda: self.healthy)
        return zklocks.ZooKeeperLocks(client, self.group, self.member_id,
                                      self._op_timeout, self.log)

    def _watch_session(self, driver):
        # NOTE: tooz hides kazoo's session events; without them a lost
        # session is noticed only at the next membership check. The
        # listener only flips flags: kazoo forbids blocking in it.
        client = kazoo_client_of(driver)
        if client is not None:
            client.add_listener(self._on_kazoo_state)

    def _on_kazoo_state(self, state):
        if state in ('SUSPENDED', 'LOST'):
            self._begin_outage('ZooKeeper session %s' % state.lower())

    def _is_member(self):
        if not self._joined:
            return False
        result = self._driver.get_members(self.group.encode('utf-8'))
        members = {_text(m) for m in result.get(timeout=self._op_timeout)}
        if self.member_id in members:
            return True
        self._joined = False
        self._begin_outage('member %s no longer in group %s (session lost)'
                           % (self.member_id, self.group))
        return False

    def _join(self):
        group = self.group.encode('utf-8')
        caps = self._capabilities()
        try:
            self._driver.join_group(group, caps).get(
                timeout=self._op_timeout)
        except tooz.coordination.GroupNotCreated:
            try:
                self._driver.create_group(group).get(
                    timeout=self._op_timeout)
            except tooz.coordination.GroupAlreadyExist:
                pass
            self._driver.join_group(group, caps).get(
                timeout=self._op_timeout)
        except tooz.coordination.MemberAlreadyExist:
            # Our own session survived: just refresh what we publish.
            self._driver.update_capabilities(group, caps).get(
                timeout=self._op_timeout)
        if not self._joined and self._outages == 0:
            self.log.info('Joined coordination group %s as %s (backend %s)',
                          self.group, self.member_id,
                          redact_url(self.conf.coordination.backend_url))
        self._joined = True
        self._published_at = self._clock()
        self._progress_dirty = False

    def _begin_outage(self, reason):
        if self._outage_since is not None or self._stopping:
            return
        self._outage_since = time.monotonic()
        self._outages += 1
        metrics.get().outages.inc()
        metrics.get().coordination_healthy.set(0)
        # NOTE: every lock taken before this instant may be lost; workers
        # holding one must stop touching its item (fencing).
        self.epoch += 1
        self.log.warning(
            'Coordination outage started: %s (backend %s); reconnecting '
            'with backoff between %ss and %ss', reason,
            redact_url(self.conf.coordination.backend_url),
            self.conf.coordination.initial_reconnect_backoff,
            self.conf.coordination.max_reconnect_backoff)

    def _end_outage(self):
        if self._outage_since is None:
            return
        duration = time.monotonic() - self._outage_since
        self._outage_since = None
        metrics.get().reconnects.inc()
        self.log.info('Coordination outage ended after %.1fs: member %s is '
                      'in group %s again', duration, self.member_id,
                      self.group)

    # -- capabilities and progress ----------------------------------------

    def _capabilities(self):
        return {
            'version': version.version_string(),
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'node': self.conf.node_name,
            'started_at': self.started_at,
            'updated_at': self._clock(),
            'roles': self.roles,
            'devices': self.devices,
            'outages': self._outages,
            'progress': {k: dict(v) for k, v in self._progress.items()},
        }

    def set_progress(self, worker, **fields):
        """Record a worker's live progress; published at the next beat."""
        self._progress.setdefault(worker, {}).update(fields)
        self._progress_dirty = True

    def _publish_if_due(self):
        interval = self.conf.coordination.progress_interval
        due = (self._published_at is None
               or self._clock() - self._published_at >= interval)
        if not (self._progress_dirty or due):
            return
        self._driver.update_capabilities(
            self.group.encode('utf-8'), self._capabilities()).get(
                timeout=self._op_timeout)
        self._published_at = self._clock()
        self._progress_dirty = False

    def members(self):
        """``{member_id: capabilities}`` of the live members of the group."""
        self._require_healthy()
        try:
            return read_members(self._driver, self.group, self._op_timeout)
        except BACKEND_ERRORS as err:
            raise exceptions.CoordinationUnavailable(str(err)) from err

    # -- locks --------------------------------------------------------------

    def _require_healthy(self):
        if not self.healthy or self._driver is None:
            raise exceptions.CoordinationUnavailable(
                'not joined to coordination group %s' % self.group)

    def try_lock(self, name):
        """Take lock ``name`` if free: True if taken, False if held.

        Raises CoordinationUnavailable when the backend cannot answer, so
        the caller can fall back to its static rule instead of guessing.
        """
        return self.try_lock_many([name])[name] is not None

    def try_lock_many(self, names):
        """Try-lock a window of names: ``{name: token or None}``.

        None: held elsewhere, or already held by us. The token of a grant
        is an int that only grows for a name (fencing): node servers
        refuse writes carrying an older one. Raises
        CoordinationUnavailable when the backend cannot answer; whatever
        was granted by then has been released.
        """
        names = list(dict.fromkeys(names))
        for name in names:
            check_lock_name(name)
        self._require_healthy()
        # NOTE: the epoch is read before asking: a grant that crosses an
        # outage belongs to the old epoch and is fenced at once.
        epoch = self.epoch
        grants = self._locks.take([n for n in names if n not in self._held])
        tokens = {}
        for name in names:
            grant = grants.get(name)
            if grant is not None:
                self._held[name] = _HeldLock(grant, epoch)
            tokens[name] = None if grant is None else grant.token
        return tokens

    def token(self, name):
        """The fencing token of held lock ``name`` (None if not held)."""
        held = self._held.get(name)
        return None if held is None else held.grant.token

    def acquire(self, name, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever) for lock ``name``.

        Built from try-locks with a short jittered poll so that every
        backend behaves alike and an outage never blocks the caller inside
        a driver call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.healthy and self.try_lock(name):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            concurrency.sleep(self._rng.uniform(0.05, 0.25))

    def release(self, name):
        """Give lock ``name`` back: True if it was held.

        Never raises for backend errors. On ZooKeeper the delete is
        buffered and sent with others within ~20 ms (see
        :meth:`flush_releases`); after a lost session there is nothing
        left to delete.
        """
        held = self._held.pop(name, None)
        if held is None:
            return False
        self._locks.release(held.grant)
        return True

    def flush_releases(self):
        """Send the buffered releases now (never raises)."""
        if self._locks is not None:
            self._locks.flush()

    def is_still_owner(self, name):
        """True if ``name`` is held, in this epoch, by a healthy member.

        Local and cheap: no backend round trip. On ZooKeeper the session
        that created the lock must also still be the current one. Storage
        nodes enforce the fencing tokens, so a stale answer here cannot
        let an old holder write.
        """
        held = self._held.get(name)
        return (held is not None and held.epoch == self.epoch
                and self.healthy and self._locks.owns(held.grant))

    def list_locks(self):
        """``[{'name', 'holder', 'age'}]``: who holds which lock.

        Only ZooKeeper can list them; other backends return ``[]``.
        """
        self._require_healthy()
        return self._locks.list_locks()

    def lock_holder(self, name):
        """The member id holding lock ``name`` (``'?'`` if unreadable),
        None if it is free.

        Raises CoordinationUnavailable when this process is not joined
        or the backend cannot tell (only ZooKeeper can).
        """
        self._require_healthy()
        return self._locks.holder_of(name)

    def held_locks(self):
        return sorted(self._held)

    def lock(self, name):
        return Lock(self, name)

    def synchronized(self, template, timeout=None):
        """Decorator: hold lock ``template.format(**call_args)`` around f.

        >>> @coordinator.synchronized('coordsync/sync/{account}/{container}')
        ... def sync(account, container): ...
        """
        def wrap(func):
            signature = inspect.signature(func)

            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                name = template.format(**bound.arguments)
                with Lock(self, name, timeout=timeout):
                    return func(*args, **kwargs)
            return wrapper
        return wrap


class Lock:
    """A named lock of one Coordinator, usable as a context manager.

    Names are ``str`` (``coordsync/<kind>/...``); they are encoded once,
    where tooz is called.
    """

    def __init__(self, coordinator, name, timeout=None):
        check_lock_name(name)
        self.coordinator = coordinator
        self.name = name
        self.timeout = timeout

    def try_acquire(self):
        return self.coordinator.try_lock(self.name)

    def acquire(self, timeout=None):
        return self.coordinator.acquire(self.name, timeout)

    def release(self):
        return self.coordinator.release(self.name)

    def is_still_owner(self):
        return self.coordinator.is_still_owner(self.name)

    def __enter__(self):
        if not self.acquire(self.timeout):
            raise exceptions.CoordsyncError(
                'timed out waiting for lock %s' % self.name)
        return self

    def __exit__(self, *exc_info):
        self.release()
