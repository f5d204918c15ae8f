"""The coordinated worker engine every background daemon stands on.

A daemon declares what it works on and how; the engine does the rest.
The object replicator, for example, declares::

    class ObjectReplicator(worker.Worker):
        name = 'object-replicator'        # role, recon file, progress key
        conf_group = 'replicator'         # its options (worker_opts + own)

        def collect_jobs(self, **filters):  # every item it could do
            ...                             # (.key = lock name,
                                            #  .eligible = nodes holding it)
        def work(self, job, grant):         # one item, under its lock
            ...

and gets, for every pass:

1. **Plan** -- with the group reachable, keep the items this node owns
   (:mod:`coordsync.common.division`: one hash ring over the live members
   of this role), the handoffs, then the items of dead owners. Without
   the group, the daemon's :meth:`Worker.static_jobs` rule (for the
   replicator: its own primaries, push-only, no locks).
2. **Lock** -- items go in windows of ``lock_window``: one
   :meth:`~coordsync.common.coordination.Coordinator.try_lock_many` per
   window (one round trip on ZooKeeper); each grant carries a fencing
   token. An item held elsewhere is skipped and tried again a few times
   at the end of the pass (its holder may have been doing something else
   with it, such as pushing a handoff home).
3. **Work** -- ``concurrency`` items at a time. ``work(job, grant)``
   sends ``grant.fence`` with every write so node servers refuse it once
   a newer holder wrote (fencing), calls ``grant.check()`` between
   steps, and ``grant.admit_local()`` before writing to its own disks.
   A lockup watchdog cancels an item after ``lockup_timeout``. The lock
   is released (batched) as soon as the item ends, whatever happened.
4. **Re-plan** -- at the end of a pass, the items that became this
   node's while it ran (a member died, or planned with another view of
   the group) are done too. A ``--once`` member that finished stays in
   the group until its peers have finished, so they never mistake it for
   a dead one and redo its share.
5. **Report** -- a stats line with rate and ETA every ``stats_interval``
   and at the end; errors talking to each peer, one line per peer per
   pass with a count; a recon JSON file; live progress in the member's
   capabilities (``coordsync-status``). Failed items make the member
   degraded there and ``--once`` exit non-zero.
"""

import collections
import dataclasses
import json
import os
import statistics
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import coordination
from coordsync.common import division
from coordsync.common import fencing
from coordsync.common import fsutil
from coordsync.common import metrics

LOG = logging.getLogger(__name__)

STATIC = 'static'
COORDINATED = 'coordinated'
WAITING = 'waiting'
# Waits, in seconds, before each new try of items locked elsewhere.
BUSY_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0)
# NOTE: the backlog (a look at every owned item) and the levels are
# published with each item's progress, but measured again at most this
# often while items run.
MEASURE_EVERY = 1.0
# States published in the member's progress.
RUNNING, IDLE, FINISHED = 'running', 'idle', 'finished'


class LockLost(exceptions.CoordsyncError):
    """The item's lock is no longer ours (or a newer holder wrote): the
    item stopped before writing more."""


class Stopping(LockLost):
    """The worker is stopping: the item ends at its next write."""


def coordination_back(coordinator):
    """Must static work end now? This process is back in the group, or
    (ZooKeeper) a server serves clients again: this process may
    reconnect later than others lock its items."""
    return coordinator.healthy or coordinator.backend_back()


class Grant:
    """The right to work on one item for this pass: its lock and token.

    A static grant (coordination unavailable) has no token: its writes
    carry no fence and must be push-only writes of newer data.
    """

    def __init__(self, item, token=None, coordinator=None,
                 token_store=None, stopping=None):
        self.item = item
        self.token = token
        self._coordinator = coordinator
        self._store = token_store
        self._stopping = stopping

    @property
    def static(self):
        return self.token is None

    @property
    def fence(self):
        """What node-to-node writes for this item carry (None: static)."""
        return None if self.static else fencing.Fence(self.item, self.token)

    def check(self):
        """Raise LockLost if this process no longer holds the lock, or
        Stopping if the worker is stopping (an orderly stop lets the
        write in flight finish, then ends the item here)."""
        if self._stopping is not None and self._stopping():
            raise Stopping('worker stopping')
        if self.static:
            # NOTE: a static grant lasts while the backend is out of
            # reach: once it answers again, others may take the item's
            # lock, and this unlocked work must end at its next write.
            if self._coordinator is not None and \
                    coordination_back(self._coordinator):
                raise LockLost('coordination is back; static work on %s '
                               'ends' % self.item)
            return
        if not self._coordinator.is_still_owner(self.item):
            raise LockLost('lock %s lost' % self.item)

    def admit_local(self):
        """Check before writing to this node's own disks.

        The node server of this node refuses a token older than one it
        accepted from a newer holder; local writes skip the server, so
        they consult the same durable store.
        """
        self.check()
        if self.static or self._store is None:
            return
        ok, highest = concurrency.run_in_thread(self._store.admit,
                                                self.item, self.token)
        if not ok:
            # NOTE: a token is refused here right after its grant only if
            # a newer holder took the lock since, or if the token came
            # from another backend (tokens only grow within one): say
            # what the operator can do about the second.
            raise LockLost('token %d for %s is older than %d, accepted '
                           'here from a newer holder (or from another '
                           'coordination backend: after moving the '
                           'cluster to a new one, run "coordsync-fences '
                           'reset" on every node)' % (
                               self.token, self.item, highest))


class Figures:
    """Base of a daemon's figures (a dataclass of counters): ``add``
    sums another's into it, for a pass's total of its jobs."""

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name)
                    + getattr(other, field.name))


@dataclasses.dataclass
class DeviceJob:
    """One device of this node: the item of a daemon whose work is
    local (the updater, the auditor), locked as
    ``coordsync/<kind>/<node>/<device>`` so status and the engine treat
    it like any item."""

    kind: str
    device: str
    node: str

    handoff = False

    @property
    def key(self):
        return device_lock_name(self.kind, self.node, self.device)

    @property
    def eligible(self):
        return frozenset((self.node,))

    @property
    def item_id(self):
        return self.device

    @property
    def where(self):
        return self.device


def device_lock_name(kind, node, device):
    return 'coordsync/%s/%s/%s' % (kind, node, device)


class PeerErrors:
    """Errors talking to other nodes in one pass, counted per peer.

    Logged once per peer at the end of the pass (Swift's error limiter
    idea): a dead peer costs one line, not one per item.
    """

    def __init__(self):
        self.counts = collections.Counter()
        self.last = {}

    def record(self, peer, error):
        self.counts[peer] += 1
        self.last[peer] = str(error)

    def log(self, log, title):
        for peer, count in sorted(self.counts.items()):
            log.warning('%s: %d errors talking to %s (last: %s)', title,
                        count, peer, self.last[peer])


@dataclasses.dataclass
class PassStats:
    """Figures of one pass; ``figures`` are the daemon's own."""

    number: int = 0
    mode: str = COORDINATED
    started: float = 0.0
    total: int = 0
    done: int = 0
    succeeded: int = 0
    skipped_locked: int = 0
    fenced: int = 0
    interrupted: int = 0
    lockups: int = 0
    failed: int = 0
    peer_errors: int = 0
    aborted: str = ''
    item_times: list = dataclasses.field(default_factory=list)
    figures: object = None

    @property
    def errors(self):
        return self.failed + self.lockups

    def summary(self, now):
        times = self.item_times or [0.0]
        figures = (dataclasses.asdict(self.figures)
                   if self.figures is not None else {})
        return {
            'pass': self.number, 'mode': self.mode,
            'started_at': self.started,
            'duration': round(now - self.started, 3),
            'total': self.total, 'done': self.done,
            'succeeded': self.succeeded,
            'skipped_locked': self.skipped_locked,
            'fenced': self.fenced, 'interrupted': self.interrupted,
            'lockups': self.lockups,
            'failed': self.failed, 'errors': self.errors,
            'peer_errors': self.peer_errors,
            'aborted': self.aborted,
            'item_time': {'min': round(min(times), 4),
                          'median': round(statistics.median(times), 4),
                          'max': round(max(times), 4)},
            **figures,
        }


def run_scoped(func, items, limit):
    """``[func(item) ...]``, at most ``limit`` at a time, all in scope.

    The green threads belong to the caller: the first exception cancels
    the ones still running and is raised here (never printed by the
    hub), and a caller cancelled itself (lockup, stop) cancels them too.
    Nothing started for an item outlives it.
    """
    items = list(items)
    results = [None] * len(items)
    failures = []
    finished = concurrency.Event()
    remaining = [len(items)]

    def one(index, item):
        try:
            results[index] = func(item)
        except Exception as err:
            failures.append(err)
        remaining[0] -= 1
        if (failures or not remaining[0]) and not finished.ready():
            finished.send()

    pool = concurrency.GreenPool(max(1, limit))
    threads = []
    try:
        for index, item in enumerate(items):
            if failures:
                break
            threads.append(pool.spawn(one, index, item))
        if threads and not failures:
            finished.wait()
    finally:
        for thread in threads:
            concurrency.kill(thread)
    if failures:
        raise failures[0]
    return results


def batches_by_key(planned):
    """``planned`` grouped by lock name, in order of first appearance.

    NOTE: a node may hold two jobs of one item (a partition's primary and
    a handoff copy on two devices). They share one lock, so they run one
    after another under one grant.
    """
    batches = {}
    for category, job in planned:
        batches.setdefault(job.key, []).append((category, job))
    return list(batches.values())


class Worker:
    """Base of every coordinated daemon; see the module docstring.

    :param conf: ConfigOpts with the node, cluster and this daemon's
        options (group ``conf_group``).
    :param coordinator: this process's
        :class:`~coordsync.common.coordination.Coordinator`.
    """

    name = None
    conf_group = None
    # Names of figures that are levels (set, not summed, in metrics).
    level_figures = ()
    item_noun = 'items'
    pass_title = 'Pass'
    done_verb = 'done'

    def __init__(self, conf, coordinator, logger=None):
        self.conf = conf
        self.wconf = conf[self.conf_group]
        self.coordinator = coordinator
        self.log = logger or LOG
        self.passes = 0
        self.stats = None
        self.peer_errors = PeerErrors()
        self._busy = []
        self._stopping = False
        self._token_store = None
        self._last_errors = 0
        self._measured = None   # (monotonic time, backlog, oldest, levels)
        self._in_flight = 0
        self._pools = set()
        self._metrics = metrics.get()
        self._born = time.time()
        self._owned = ()
        self._passed_at = {}
        self._last_duration = 0.0
        self._passing = False

    # -- what a daemon declares -------------------------------------------

    def collect_jobs(self, **filters):
        """Every job this node could do; each has ``.key`` (its lock
        name), ``.eligible`` (node names that may do it), ``.handoff``,
        and for the audit log ``.item_id`` and ``.where``."""
        raise NotImplementedError

    def work(self, job, grant):
        """Do one job under ``grant``; False (or an exception) if it
        failed."""
        raise NotImplementedError

    def static_jobs(self, jobs):
        """Jobs safe to do without coordination (default: none)."""
        return []

    def new_figures(self):
        """A fresh dataclass of this daemon's own figures, or None."""
        return None

    def figures_text(self, figures):
        """The daemon's part of the stats line."""
        return ''

    def before_pass(self):
        """Called before jobs are collected (reload a ring, ...)."""

    def local_devices(self):
        """Device names this worker uses, published with the member."""
        return []

    def expected_nodes(self):
        """Nodes that should each run this worker (``--wait-for-peers``)."""
        return set()

    def abort_reason(self):
        """Why the pass must stop now (e.g. 'ring changed'), or None."""
        return None

    def report_extra(self):
        """More fields for the member's published progress (e.g. the
        lag of container sync), or {}."""
        return {}

    def levels(self):
        """Backlog levels this daemon measures now (``{name: number}``,
        e.g. async pendings, sync rows behind, queue depth): published
        with the progress (``levels``) and as gauges."""
        return {}

    def recon_extra(self):
        """More fields for the recon file, or {}."""
        return {}

    # -- planning ---------------------------------------------------------

    def live_nodes(self):
        """Nodes with a live member of this role (may raise
        CoordinationUnavailable)."""
        return {caps.get('node') for caps in
                self.coordinator.members().values()
                if self.name in (caps.get('roles') or [])}

    def plan(self, jobs):
        """``([(category, job)], mode)`` for this pass.

        The static rule only when the backend has been unreachable from
        this process for ``[coordination] static_after``; a process that
        merely lost its session waits to rejoin and does nothing
        unlocked meanwhile (mode WAITING, no items).
        """
        settling = self.coordinator.settling()
        if self.coordinator.healthy and settling:
            self.log.warning(
                '%s: coordination back after an outage longer than '
                'static_after; no locks for %.0fs more, while nodes still '
                'in a static pass reconnect and end it', self.name,
                settling)
            return [], WAITING
        if self.coordinator.healthy:
            try:
                live = self.live_nodes()
                handoffs_first = getattr(self.wconf, 'handoffs_first',
                                         False)
                return division.Division(self.conf.node_name, live).order(
                    jobs, handoffs_first), COORDINATED
            except exceptions.CoordinationUnavailable:
                pass
        if not self.coordinator.static_allowed and \
                self.coordinator.backend_back():
            self.log.warning(
                '%s: the coordination backend serves again; no unlocked '
                'work until this process has reconnected', self.name)
            return [], WAITING
        if not self.coordinator.static_allowed:
            self.log.warning(
                '%s: not in the coordination group and the backend '
                'answered within the last %ss; no unlocked work until it '
                'rejoins', self.name,
                coordination.static_after(self.conf))
            return [], WAITING
        self.log.warning('%s: coordination backend unreachable for %.0fs, '
                         'static rule for this pass', self.name,
                         self.coordinator.unreachable_for())
        return [(STATIC, job) for job in self.static_jobs(jobs)], STATIC

    def _await_coordination(self):
        """Wait (bounded) to be in the group, or for the static rule.

        NOTE: right after a lost session the member rejoins within a few
        heartbeats; planning at once would find it out of the group.
        """
        limit = (coordination.static_after(self.conf)
                 + self.conf.coordination.session_timeout)
        self._wait(lambda: (self.coordinator.healthy
                            or self.coordinator.static_allowed), limit)

    # -- locks and grants -------------------------------------------------

    def token_store(self):
        if self._token_store is None:
            self._token_store = fencing.TokenStore(
                self.conf.server.fence_db)
        return self._token_store

    def _grants(self, keys, mode):
        """``{key: Grant or None}``; None for the whole window when the
        backend stopped answering."""
        if mode == STATIC:
            return {key: Grant(key, coordinator=self.coordinator,
                               stopping=self._is_stopping)
                    for key in keys}
        started = time.monotonic()
        try:
            tokens = self.coordinator.try_lock_many(keys)
        except exceptions.CoordinationUnavailable as err:
            self.log.warning('%s: cannot take locks (%s); ending the pass',
                             self.name, err)
            return None
        self._metrics.lock_take.labels(self.name).observe(
            time.monotonic() - started)
        store = self.token_store()
        return {key: None if token is None else
                Grant(key, token, self.coordinator, store, self._is_stopping)
                for key, token in tokens.items()}

    def _release(self, grant):
        if not grant.static:
            started = time.monotonic()
            self.coordinator.release(grant.item)
            self._metrics.lock_release.labels(self.name).observe(
                time.monotonic() - started)

    # -- running items ----------------------------------------------------

    def _audit(self, event, job, mode):
        path = self.wconf.audit_log
        if not path:
            return
        line = '%s %s %s %.6f %s %s\n' % (
            self.conf.node_name, event, job.item_id, time.time(), mode,
            job.where)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode('utf-8'))
        finally:
            os.close(fd)

    def _run_job(self, category, job, grant):
        started = time.monotonic()
        self._audit('start', job, category)
        outcome = 'failed'
        try:
            with concurrency.Timeout(self.wconf.lockup_timeout):
                outcome = ('succeeded' if self.work(job, grant) is not False
                           else 'failed')
        except Stopping:
            outcome = 'interrupted'
        except LockLost as err:
            outcome = 'fenced'
            self.log.warning('%s %s: %s; stopped', self.name, job.key, err)
        except concurrency.Timeout:
            outcome = 'lockups'
            self.log.error('%s %s: lockup, cancelled after %ss', self.name,
                           job.key, self.wconf.lockup_timeout)
        except Exception:
            self.log.exception('%s %s failed', self.name, job.key)
        finally:
            self._audit('end', job, category)
            stats = self.stats
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            stats.done += 1
            elapsed = time.monotonic() - started
            stats.item_times.append(elapsed)
            self._metrics.items.labels(self.name, outcome).inc()
            self._metrics.item_duration.labels(self.name).observe(elapsed)
            if outcome == 'succeeded':
                self._passed_at[job.key] = time.time()
            elif outcome == 'fenced':
                self._metrics.fencing_refusals.labels('worker').inc()
            self._publish(RUNNING)

    def _run_batch(self, batch, grant):
        self._in_flight += 1
        cancelled = False
        try:
            # NOTE: raise the fence on this node first: peers learn the
            # new token from the first request, this node's own server
            # only from its store, and a paused former holder may be
            # about to write to it.
            grant.admit_local()
            for category, job in batch:
                self._run_job(category, job, grant)
        except LockLost as err:
            self.stats.fenced += len(batch)
            self._metrics.items.labels(self.name, 'fenced').inc(len(batch))
            self._metrics.fencing_refusals.labels('worker').inc()
            self.log.warning('%s %s: %s; not started', self.name,
                             grant.item, err)
        except concurrency.GreenletExit:
            # NOTE: cancelled by stop() past stop_timeout: a write of this
            # item may still be on the wire. The lock stays held until
            # the coordinator stops, after a grace period.
            cancelled = True
            raise
        finally:
            self._in_flight -= 1
            if not cancelled:
                self._release(grant)

    def _run_planned(self, planned):
        pool = concurrency.GreenPool(self.wconf.concurrency)
        self._pools.add(pool)
        try:
            self._run_windows(pool, planned)
        finally:
            self._pools.discard(pool)

    def _run_windows(self, pool, planned):
        batches = batches_by_key(planned)
        window = self.wconf.lock_window
        for start in range(0, len(batches), window):
            reason = 'stopping' if self._stopping else self.abort_reason()
            if (not reason and self.stats.mode == STATIC
                    and coordination_back(self.coordinator)):
                reason = 'coordination is back'
            if reason:
                self.stats.aborted = reason
                self.log.warning('%s pass %d stopped: %s', self.name,
                                 self.passes, reason)
                break
            chunk = batches[start:start + window]
            grants = self._grants([b[0][1].key for b in chunk],
                                  self.stats.mode)
            if grants is None:
                self.stats.aborted = 'coordination lost'
                break
            for batch in chunk:
                grant = grants.get(batch[0][1].key)
                if grant is None:
                    self.stats.skipped_locked += len(batch)
                    self._metrics.lock_contended.labels(self.name).inc(
                        len(batch))
                    self._busy.extend(batch)
                    continue
                pool.spawn_n(self._run_batch, batch, grant)
        pool.waitall()

    def _retry_busy(self):
        """Try again, a few times, the items that were locked elsewhere.

        NOTE: the holder may be doing something else with the item than
        this node would (pushing a handoff copy home levels nothing among
        the primaries): skipping it for the whole pass would leave it
        undone until the next. The holder releases it when its work ends,
        so a few short waits usually get it. In a steady group nothing is
        locked elsewhere and this costs nothing.
        """
        for delay in BUSY_RETRY_DELAYS:
            busy, self._busy = self._busy, []
            if not busy or self._stopping or self.stats.aborted:
                return
            concurrency.sleep(delay)
            self.stats.total += len(busy)
            self._run_planned(busy)

    def _sweep(self, jobs, planned):
        """Plan again with today's membership; run what became ours.

        NOTE: nodes that planned with different views of the group (a
        member joined or died meanwhile) can each think another owns an
        item, and nobody does it this pass. In a steady group this finds
        nothing and costs one group read.
        """
        seen = {id(job) for _category, job in planned}
        replanned, mode = self.plan(jobs)
        if mode != COORDINATED:
            return
        late = [(c, job) for c, job in replanned if id(job) not in seen]
        if late:
            self.log.info('%s pass %d: %d %s became ours during the pass '
                          '(membership changed); doing them now', self.name,
                          self.passes, len(late), self.item_noun)
            self.stats.total += len(late)
            self._run_planned(late)

    # -- a pass -----------------------------------------------------------

    def run_once(self, **filters):
        """One pass; returns its summary dict."""
        self._await_coordination()
        self.before_pass()
        jobs = self.collect_jobs(**filters)
        planned, mode = self.plan(jobs)
        self._owned = {job.key for _category, job in planned}
        self.passes += 1
        self._busy = []
        self.peer_errors = PeerErrors()
        self.stats = PassStats(number=self.passes, mode=mode,
                               started=time.time(), total=len(planned),
                               figures=self.new_figures())
        self.log.info('%s %d (%s): %d of %d %s to try', self.pass_title,
                      self.passes, mode, len(planned), len(jobs),
                      self.item_noun)
        self._passing = True
        self._publish(RUNNING, measure=True)
        reporter = concurrency.spawn(self._report_periodically)
        try:
            self._run_planned(planned)
            if mode == COORDINATED and not self.stats.aborted:
                self._retry_busy()
                self._sweep(jobs, planned)
        finally:
            self._passing = False
            concurrency.kill(reporter)
        self.coordinator.flush_releases()
        self.stats.peer_errors = sum(self.peer_errors.counts.values())
        summary = self.stats.summary(time.time())
        self.log.info(self.stats_line())
        self.peer_errors.log(self.log, '%s pass %d' % (self.name,
                                                       self.passes))
        self._record_pass(summary)
        self._dump_recon(dict(summary, **self.recon_extra()))
        self._last_errors = self.stats.errors
        self._publish(IDLE, last_pass=summary)
        return summary

    def _record_pass(self, summary):
        self._last_duration = summary['duration']
        record = self._metrics
        record.passes.labels(self.name, self.stats.mode).inc()
        record.pass_duration.labels(self.name).observe(summary['duration'])
        record.last_pass_end.labels(self.name).set(
            summary['started_at'] + summary['duration'])
        if self.stats.figures is not None:
            record.record_figures(
                self.name, dataclasses.asdict(self.stats.figures),
                self.level_figures)

    def backlog(self, now=None):
        """``(count, oldest age)`` of the items this member owns (its
        last plan) that none of its passes finished within
        ``backlog_intervals`` intervals (run pause plus the last pass's
        duration); an item never finished counts from this worker's
        start."""
        now = time.time() if now is None else now
        # NOTE: a pass running longer than the last one (the first pass
        # of a node) stretches the interval: its items are not late yet.
        running = (now - self.stats.started
                   if self.stats is not None and self._passing else 0.0)
        horizon = self.wconf.backlog_intervals * (
            self.wconf.run_pause + max(self._last_duration, running))
        ages = [now - self._passed_at.get(key, self._born)
                for key in self._owned]
        late = [age for age in ages if age > horizon]
        return len(late), round(max(late, default=0.0), 1)

    def stats_line(self):
        stats, now = self.stats, time.time()
        elapsed = max(now - stats.started, 1e-6)
        rate = stats.done / elapsed
        left = max(stats.total - stats.done - stats.skipped_locked, 0)
        times = stats.item_times or [0.0]
        detail = self.figures_text(stats.figures)
        # NOTE: named: the workers of a node server share one logger.
        return ('%s: %d/%d (%.2f%%) %s %s in %.2fs (%.2f/sec, %.0fs '
                'remaining); %d skipped (locked elsewhere), %d fenced, %d '
                'failed, %d peer errors%s; %s times %.4fs/%.4fs/%.4fs '
                '(min/median/max)' % (
                    self.name, stats.done, stats.total,
                    100.0 * stats.done / max(stats.total, 1),
                    self.item_noun, self.done_verb, elapsed, rate,
                    left / rate if rate else 0, stats.skipped_locked,
                    stats.fenced, stats.errors,
                    sum(self.peer_errors.counts.values()),
                    '; ' + detail if detail else '', self.item_noun[:-1]
                    if self.item_noun.endswith('s') else self.item_noun,
                    min(times), statistics.median(times), max(times)))

    def _report_periodically(self):
        while True:
            concurrency.sleep(self.wconf.stats_interval)
            self.log.info(self.stats_line())

    def _publish(self, state, last_pass=None, measure=False):
        stats = self.stats
        fields = {'pass': stats.number, 'mode': stats.mode,
                  'done': stats.done, 'total': stats.total,
                  'skipped': stats.skipped_locked, 'fenced': stats.fenced,
                  # NOTE: the last finished pass's errors count until the
                  # next one ends, so a failing member stays degraded.
                  'errors': max(stats.errors, self._last_errors),
                  'state': state}
        backlog, oldest, levels = self._measure(measure or state != RUNNING)
        fields.update(backlog=backlog, backlog_oldest=oldest, levels=levels)
        fields.update(self.report_extra())
        if last_pass is not None:
            fields['last_pass'] = {k: last_pass[k] for k in (
                'pass', 'duration', 'done', 'succeeded', 'failed',
                'skipped_locked', 'fenced', 'mode', 'started_at')}
            fields['last_pass']['ended_at'] = round(
                last_pass['started_at'] + last_pass['duration'], 3)
            fields['last_pass']['errors'] = last_pass['errors']
        self.coordinator.set_progress(self.name, **fields)

    def _measure(self, force):
        """``(backlog, backlog_oldest, levels)``, measured again (and
        the gauges set) at most every :data:`MEASURE_EVERY` seconds while
        items run, and at every pass's start and end."""
        now = time.monotonic()
        if (force or self._measured is None
                or now - self._measured[0] >= MEASURE_EVERY):
            backlog, oldest = self.backlog()
            levels = self.levels()
            self._metrics.backlog.labels(self.name).set(backlog)
            for name, value in levels.items():
                self._metrics.gauges.labels(self.name, name).set(value)
            self._measured = (now, backlog, oldest, levels)
        return self._measured[1:]

    def _dump_recon(self, summary):
        directory = self.wconf.recon_cache_path
        path = os.path.join(directory, '%s.json' % self.name)
        try:
            os.makedirs(directory, exist_ok=True)
            fsutil.write_file_atomic(path, json.dumps(
                summary, indent=2, sort_keys=True).encode('utf-8'),
                durable_dir=False)
        except OSError as err:
            self.log.warning('Cannot write recon file %s: %s', path, err)

    # -- life cycle -------------------------------------------------------

    def run_forever(self, **filters):
        self._wait_for_group()
        while not self._stopping:
            try:
                self.run_once(**filters)
            except exceptions.CoordsyncError as err:
                self.log.error('%s pass failed: %s', self.name, err)
            deadline = time.monotonic() + self.wconf.run_pause
            while not self._stopping and time.monotonic() < deadline:
                concurrency.sleep(min(0.5, self.wconf.run_pause))

    def _wait_for_group(self):
        # NOTE: a pass planned before the join would needlessly run under
        # the static rule; the group gets a session timeout to answer.
        self._wait(lambda: self.coordinator.healthy,
                   self.conf.coordination.session_timeout)

    def _wait(self, predicate, timeout, poll=0.1):
        deadline = time.monotonic() + timeout
        while not self._stopping and time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except exceptions.CoordinationUnavailable:
                pass
            concurrency.sleep(poll)
        return False

    def wait_for_peers(self, nodes, timeout):
        """Wait until every node in ``nodes`` has a member of this role
        (``--wait-for-peers``: several ``--once`` runs started together
        then plan with the same view)."""
        return self._wait(lambda: set(nodes) <= self.live_nodes(), timeout)

    def _peers_finished(self):
        for caps in self.coordinator.members().values():
            if caps.get('node') == self.conf.node_name:
                continue
            if self.name not in (caps.get('roles') or []):
                continue
            state = (caps.get('progress') or {}).get(self.name, {}).get(
                'state')
            if state not in (IDLE, FINISHED):
                return False
        return True

    def finish_once(self, timeout):
        """Say this ``--once`` member finished; stay until peers have.

        A member that left looks like one that died, and peers re-plan
        a dead member's items at the end of their pass; staying in the
        group until they finished (or ``timeout``) spares them redoing
        this member's share.
        """
        self.coordinator.set_progress(self.name, state=FINISHED)
        if self.coordinator.healthy:
            self._wait(self._peers_finished, timeout, poll=0.2)

    def _is_stopping(self):
        return self._stopping

    def stop(self):
        """Take no new item; items in flight end at their next write."""
        self._stopping = True

    @property
    def in_flight(self):
        return self._in_flight

    def wait_idle(self, timeout):
        """True once no item is in flight (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            concurrency.sleep(0.05)
        return not self._in_flight

    def cancel(self):
        """Kill the items still in flight (their locks stay held)."""
        for pool in list(self._pools):
            for thread in list(pool.coroutines_running):
                concurrency.kill(thread)


class RingWorker(Worker):
    """A worker over this node's devices in a ring.

    Subclasses set ``self.ring`` (the ring placing what they work on)
    and ``self.manager`` (with ``get_dev_path(device)``, None when the
    device is unavailable).
    """

    ring = None
    manager = None

    def local_devices(self):
        return [d['device'] for d in
                self.ring.devices_on_node(self.conf.node_name)]

    def expected_nodes(self):
        return {d['node'] for d in self.ring.devices if d}

    def available_devices(self, devices=None):
        """This node's ring devices (only ``devices`` if given) that are
        available; an unavailable one is logged and skipped."""
        for dev in self.ring.devices_on_node(self.conf.node_name):
            name = dev['device']
            if devices and name not in devices:
                continue
            if self.manager.get_dev_path(name) is None:
                self.log.warning('Device %s unavailable, skipped', name)
                continue
            yield dev


class RingReplicator(RingWorker):
    """A replicator over one ring: it reloads a changed ring before a
    pass, stops a pass when the ring changes under it, and removes the
    temporary files crashed writes left on this node's devices
    (``self.manager`` is a DiskFileManager)."""

    def before_pass(self):
        if self.ring.has_changed():
            self.log.info('Ring file changed, reloading')
            self.ring.reload()
        concurrency.run_in_thread(self.manager.cleanup_all_tmp, self.log)

    def abort_reason(self):
        return 'ring changed' if self.ring.has_changed() else None


class WorkerService:
    """Runs a worker's ``run_forever`` in a green thread of the node.

    An orderly stop (SIGTERM): the worker takes no new item; items in
    flight finish their current write and end; after ``[server]
    stop_timeout`` the rest are cancelled and, because a cancelled write
    may still be on the wire, their locks are kept for a grace period
    (``[client] node_timeout``, at most 5 s) before the coordinator
    releases them and leaves the group.
    """

    def __init__(self, worker, filters=None):
        self.worker = worker
        self.filters = filters or {}
        self._thread = None

    def start(self):
        self._thread = concurrency.spawn(self.worker.run_forever,
                                         **self.filters)

    def stop(self):
        worker = self.worker
        worker.stop()
        timeout = worker.conf.server.stop_timeout
        if not worker.wait_idle(timeout):
            worker.log.warning('%s: %d items still running %ss after the '
                               'stop; cancelling them', worker.name,
                               worker.in_flight, timeout)
            worker.cancel()
            concurrency.sleep(min(worker.conf.client.node_timeout, 5.0))
        if self._thread is not None:
            concurrency.kill(self._thread)
            self._thread = None
