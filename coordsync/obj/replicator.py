"""The coordinated object replicator.

A pass goes like this on every node at once:

1. **Jobs**: every partition this node holds a primary replica of (on
   each of its available devices), plus the handoff partitions found on
   its disks.
2. **Plan**: with the coordination group reachable, keep the partitions
   this node owns (tooz's hash ring over the live replicator nodes holding
   a replica), the handoffs, and the partitions whose owner is dead, in
   that order (:mod:`coordsync.common.division`). Without the group, fall back
   to the static rule: primaries only, push-only, no locks (I5).
3. **Work**: ``concurrency`` jobs at a time, each under the try-lock
   ``coordsync/replicate/<policy>/<partition>``: a partition locked
   elsewhere is skipped (and counted); a taken one is repaired
   (:mod:`coordsync.obj.repair`) and always released. A watchdog cancels a
   job stuck longer than ``lockup_timeout``; a ring file change stops the
   pass (Swift's ``check_ring``).
4. **Report**: a Swift-style stats line every ``stats_interval``, a recon
   JSON file per pass, and live progress in the member's capabilities for
   coordsync-status.
"""

import dataclasses
import json
import os
import statistics
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client as client_mod
from coordsync.common import division
from coordsync.common import fsutil
from coordsync.common import ring as ring_mod
from coordsync.obj import diskfile
from coordsync.obj import repair as repair_mod

LOG = logging.getLogger(__name__)

POLICY = 0
STATIC = 'static'
WORKER = 'replicator'


def lock_name(partition, policy=POLICY):
    return 'coordsync/replicate/%d/%d' % (policy, partition)


def partition_batches(planned):
    """``planned`` grouped by partition, in order of first appearance.

    NOTE: a node may hold a partition's primary and a handoff copy on two
    devices. Both jobs take the partition's lock, so run side by side the
    later one finds it held (by this very node) and is skipped, in every
    pass alike: the handoff would never go home. One after the other,
    both run.
    """
    batches = {}
    for category, job in planned:
        batches.setdefault(job.partition, []).append((category, job))
    return list(batches.values())


@dataclasses.dataclass
class Job:
    """One partition on one local device."""

    device: str
    partition: int
    peers: list
    eligible: frozenset
    handoff: bool = False

    @property
    def key(self):
        return lock_name(self.partition)


@dataclasses.dataclass
class PassStats:
    """Figures of one pass (``repair`` sums the per-job repair stats)."""

    number: int = 0
    mode: str = 'coordinated'
    started: float = 0.0
    total: int = 0
    done: int = 0
    repaired: int = 0
    skipped_locked: int = 0
    fenced: int = 0
    lockups: int = 0
    failed: int = 0
    handoffs_deleted: int = 0
    aborted: str = ''
    part_times: list = dataclasses.field(default_factory=list)
    repair: repair_mod.RepairStats = dataclasses.field(
        default_factory=repair_mod.RepairStats)

    def summary(self, now):
        times = self.part_times or [0.0]
        return {
            'pass': self.number, 'mode': self.mode,
            'started_at': self.started,
            'duration': round(now - self.started, 3),
            'total': self.total, 'done': self.done,
            'repaired': self.repaired,
            'skipped_locked': self.skipped_locked,
            'fenced': self.fenced, 'lockups': self.lockups,
            'failed': self.failed,
            'handoffs_deleted': self.handoffs_deleted,
            'aborted': self.aborted,
            'partition_time': {'min': round(min(times), 4),
                               'median': round(statistics.median(times), 4),
                               'max': round(max(times), 4)},
            **dataclasses.asdict(self.repair),
        }


class ObjectReplicator:
    """See the module docstring.

    :param conf: ConfigOpts with the node, cluster and replicator options.
    :param coordinator: a started :class:`~coordsync.common.coordination.
        Coordinator` of this process.
    """

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, logger=None):
        self.conf = conf
        self.rconf = conf.replicator
        self.coordinator = coordinator
        self.log = logger or LOG
        self.ring = ring or ring_mod.Ring(
            conf.ring_file, conf.hash_path_prefix, conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager(
            conf.devices, mount_check=conf.mount_check,
            reclaim_age=conf.reclaim_age,
            hash_prefix=conf.hash_path_prefix,
            hash_suffix=conf.hash_path_suffix, logger=self.log)
        self.client = node_client or client_mod.NodeClient(conf)
        self.passes = 0
        self.stats = None
        self._busy = []
        self._stopping = False

    # -- jobs ----------------------------------------------------------------

    def _primary_nodes(self, part):
        return frozenset(d['node'] for d in self.ring.get_part_nodes(part))

    def collect_jobs(self, devices=None, partitions=None):
        """Jobs for this node's available devices (optionally filtered)."""
        jobs = []
        for dev in self.ring.devices_on_node(self.conf.node_name):
            name = dev['device']
            if devices and name not in devices:
                continue
            if self.manager.get_dev_path(name) is None:
                self.log.warning('Device %s unavailable, skipped', name)
                continue
            primary = set(self.ring.partitions_for_device(dev['id']))
            for part in sorted(primary):
                peers = [d for d in self.ring.get_part_nodes(part)
                         if d['id'] != dev['id']]
                jobs.append(Job(name, part, peers,
                                self._primary_nodes(part)))
            for part in self.manager.partitions(name):
                if part in primary or part >= self.ring.partition_count:
                    continue
                jobs.append(Job(name, part, self.ring.get_part_nodes(part),
                                self._primary_nodes(part), handoff=True))
        if partitions:
            jobs = [j for j in jobs if j.partition in partitions]
        return jobs

    def _live_nodes(self):
        return {caps.get('node') for caps in
                self.coordinator.members().values()
                if WORKER in (caps.get('roles') or [])}

    def plan(self, jobs):
        """``[(category, job)]`` this node works on, in order."""
        if self.coordinator.healthy:
            try:
                live = self._live_nodes()
                return division.Division(self.conf.node_name, live).order(
                    jobs, self.rconf.handoffs_first), 'coordinated'
            except exceptions.CoordinationUnavailable:
                pass
        self.log.warning('Coordination unavailable: static rule for this '
                         'pass (own primary partitions, push-only)')
        return [(STATIC, j) for j in jobs if not j.handoff], STATIC

    # -- one job -------------------------------------------------------------

    def _take_lock(self, category, job):
        """(category, locked): STATIC when the backend went away."""
        if category == STATIC:
            return STATIC, False
        try:
            if self.coordinator.try_lock(job.key):
                return category, True
            self.stats.skipped_locked += 1
            self._busy.append((category, job))
            return None, False
        except exceptions.CoordinationUnavailable:
            return (None if job.handoff else STATIC), False

    def _audit(self, event, job, mode):
        path = self.rconf.audit_log
        if not path:
            return
        line = '%s %s %d %.6f %s %s\n' % (
            self.conf.node_name, event, job.partition, time.time(), mode,
            job.device)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode('utf-8'))
        finally:
            os.close(fd)

    def run_job(self, category, job):
        category, locked = self._take_lock(category, job)
        if category is None:
            self.stats.done += 1
            return
        started = time.monotonic()
        still_owner = ((lambda: self.coordinator.is_still_owner(job.key))
                       if locked else (lambda: True))
        work = repair_mod.PartitionRepair(
            self.manager, self.client, job.device, job.partition, job.peers,
            still_owner=still_owner, logger=self.log,
            suffix_concurrency=self.rconf.suffix_concurrency)
        self._audit('start', job, category)
        try:
            with concurrency.Timeout(self.rconf.lockup_timeout):
                self._do(category, job, work)
            self.stats.repaired += 1
        except repair_mod.LockLost as err:
            self.stats.fenced += 1
            self.log.warning('Partition %s: %s; job stopped', job.partition,
                             err)
        except concurrency.Timeout:
            self.stats.lockups += 1
            self.log.error('Partition %s on %s: lockup, cancelled after '
                           '%ss', job.partition, job.device,
                           self.rconf.lockup_timeout)
        except Exception:
            self.stats.failed += 1
            self.log.exception('Partition %s on %s failed', job.partition,
                               job.device)
        finally:
            self._audit('end', job, category)
            if locked:
                self.coordinator.release(job.key)
            self.stats.repair.add(work.stats)
            self.stats.part_times.append(time.monotonic() - started)
            self.stats.done += 1
            self._publish('running')

    def _run_batch(self, batch):
        for category, job in batch:
            self.run_job(category, job)

    def _do(self, category, job, work):
        if job.handoff:
            needed = self.rconf.handoff_delete or len(job.peers)
            if work.push_handoff(min(needed, len(job.peers))):
                self.stats.handoffs_deleted += 1
        else:
            work.repair(pull=category != STATIC)

    # -- a pass --------------------------------------------------------------

    def _check_ring(self):
        if self.ring.has_changed():
            self.log.info('Ring file changed, reloading')
            self.ring.reload()

    def run_once(self, devices=None, partitions=None):
        """One pass; returns its summary dict."""
        self._check_ring()
        jobs = self.collect_jobs(devices, partitions)
        planned, mode = self.plan(jobs)
        self.passes += 1
        self._busy = []
        self.stats = PassStats(number=self.passes, mode=mode,
                               started=time.time(), total=len(planned))
        self.log.info('Replication pass %d (%s): %d of %d partitions to '
                      'try', self.passes, mode, len(planned), len(jobs))
        self._publish('running')
        reporter = concurrency.spawn(self._report_periodically)
        try:
            self._run_planned(planned)
            if mode != STATIC and not self.stats.aborted:
                self._retry_busy()
                self._sweep(jobs, planned)
        finally:
            concurrency.kill(reporter)
        summary = self.stats.summary(time.time())
        self.log.info(self.stats_line())
        self._dump_recon(summary)
        self._publish('idle', last_pass=summary)
        return summary

    def _run_planned(self, planned):
        pool = concurrency.GreenPool(self.rconf.concurrency)
        for batch in partition_batches(planned):
            if self._stopping:
                self.stats.aborted = 'stopping'
                break
            if self.ring.has_changed():
                self.stats.aborted = 'ring changed'
                self.log.warning('Ring changed during pass %d; aborting it',
                                 self.passes)
                break
            pool.spawn_n(self._run_batch, batch)
        pool.waitall()

    def _retry_busy(self):
        """Try once more the partitions that were locked elsewhere.

        NOTE: the holder may have been only pushing a handoff copy of the
        partition, which levels nothing among the primaries; skipping the
        partition for the whole pass would leave it unrepaired until the
        next. In a steady group nothing is locked elsewhere and this is
        free.
        """
        busy, self._busy = self._busy, []
        if busy:
            self.stats.total += len(busy)
            self._run_planned(busy)

    def _sweep(self, jobs, planned):
        """Plan again with today's membership; run what became ours.

        NOTE: nodes that planned with different views of the group (one
        joined meanwhile) can each think another owns a partition, and
        nobody repairs it this pass. Views agree by the end of a pass, so
        the partitions that are ours now and were not then are done here;
        in a steady group this finds nothing and costs one group read.
        """
        done = {(job.device, job.partition, job.handoff)
                for _category, job in planned}
        replanned, mode = self.plan(jobs)
        late = [(category, job) for category, job in replanned
                if (job.device, job.partition, job.handoff) not in done
                and mode != STATIC]
        if late:
            self.log.info('Pass %d: %d partitions became ours during the '
                          'pass (membership changed); doing them now',
                          self.passes, len(late))
            self.stats.total += len(late)
            self._run_planned(late)

    def wait_for_peers(self, timeout):
        """Wait until every ring node has a replicator in the group.

        For ``--once`` on several nodes at a time: a node that plans
        before the others joined takes their partitions too.
        """
        wanted = {d['node'] for d in self.ring.devices if d}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if wanted <= self._live_nodes():
                    return True
            except exceptions.CoordinationUnavailable:
                pass
            concurrency.sleep(0.1)
        return False

    def stats_line(self):
        stats, now = self.stats, time.time()
        elapsed = max(now - stats.started, 1e-6)
        rate = stats.done / elapsed
        remaining = (stats.total - stats.done) / rate if rate else 0
        times = stats.part_times or [0.0]
        return ('%d/%d (%.2f%%) partitions replicated in %.2fs (%.2f/sec, '
                '%.0fs remaining); %d skipped (locked elsewhere), %d fenced, '
                '%d failed; %d suffixes hashed, %d synced; %d objects '
                'pushed, %d pulled; partition times %.4fs/%.4fs/%.4fs '
                '(min/median/max)' % (
                    stats.done, stats.total,
                    100.0 * stats.done / max(stats.total, 1), elapsed, rate,
                    remaining, stats.skipped_locked, stats.fenced,
                    stats.failed + stats.lockups,
                    stats.repair.suffixes_checked,
                    stats.repair.suffixes_synced,
                    stats.repair.objects_pushed,
                    stats.repair.objects_pulled, min(times),
                    statistics.median(times), max(times)))

    def _report_periodically(self):
        while True:
            concurrency.sleep(self.rconf.stats_interval)
            self.log.info(self.stats_line())

    def _publish(self, state, last_pass=None):
        fields = {'pass': self.stats.number, 'mode': self.stats.mode,
                  'done': self.stats.done, 'total': self.stats.total,
                  'skipped': self.stats.skipped_locked,
                  'errors': self.stats.failed + self.stats.lockups,
                  'state': state}
        if last_pass is not None:
            fields['last_pass'] = {k: last_pass[k] for k in (
                'duration', 'done', 'repaired', 'skipped_locked',
                'objects_pushed', 'objects_pulled', 'suffixes_synced',
                'mode')}
        self.coordinator.set_progress(WORKER, **fields)

    def _dump_recon(self, summary):
        path = os.path.join(self.rconf.recon_cache_path,
                            'object-replicator.json')
        try:
            os.makedirs(self.rconf.recon_cache_path, exist_ok=True)
            fsutil.write_file_atomic(
                path, json.dumps(summary, indent=2,
                                 sort_keys=True).encode('utf-8'))
        except OSError as err:
            self.log.warning('Cannot write recon file %s: %s', path, err)

    def run_forever(self):
        self._wait_for_group()
        while not self._stopping:
            try:
                self.run_once()
            except exceptions.CoordsyncError as err:
                self.log.error('Replication pass failed: %s', err)
            deadline = time.monotonic() + self.rconf.run_pause
            while not self._stopping and time.monotonic() < deadline:
                concurrency.sleep(min(0.5, self.rconf.run_pause))

    def _wait_for_group(self):
        # NOTE: as with --once, the group gets a session timeout to answer
        # first: a pass planned before the join would needlessly run under
        # the static rule, every node doing every partition unlocked.
        deadline = time.monotonic() + self.conf.coordination.session_timeout
        while (not self._stopping and not self.coordinator.healthy
               and time.monotonic() < deadline):
            concurrency.sleep(0.05)

    def stop(self):
        self._stopping = True


class ReplicatorService:
    """Runs ``run_forever`` in a green thread beside other services."""

    def __init__(self, replicator):
        self.replicator = replicator
        self._thread = None

    def start(self):
        self._thread = concurrency.spawn(self.replicator.run_forever)

    def stop(self):
        self.replicator.stop()
        if self._thread is not None:
            concurrency.kill(self._thread)
            self._thread = None
