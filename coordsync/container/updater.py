"""The object updater: async pendings to the container replicas.

An object write whose container update failed left an async pending on
the object's device (:mod:`coordsync.obj.updates`). The updater sweeps
them, device by device, and sends each to every container replica (in
the container ring current now) that has not had it yet, recording
successes inside the pending (rewritten atomically) and unlinking it
once every replica took it. Of several pendings of one object, only the
newest is kept: the older ones are unlinked unsent (a row of the same
object with a newer timestamp supersedes them in every container).
A pending that cannot be read or is not well formed is moved to
``<dev>/quarantined/async_pending/`` and counted; the sweep goes on.

**Storage policies.** The pendings of objects of policy N > 0 are in
``<dev>/async_pending-N/`` (quarantined to
``quarantined/async_pending-N/``); a sweep goes through every such
directory of the device and sends each row with
``X-Backend-Storage-Policy-Index`` set to the policy of the directory it
was found in, so the container records it under the object's policy.

**Items and locks.** Items are this node's own devices (those any
policy's object ring gives it), lock
``coordsync/update/<node>/<device>``: only this node ever sweeps a
device's pendings (they are files on its disks), so the lock is not
there to divide work between nodes but to keep two updaters of one node
(``coordsync-server`` running ``object-updater`` and a
``coordsync-object-updater --once``) from sweeping one device together;
with the backend out of reach the static rule sweeps every own device
unlocked (sending a row twice is harmless). ``eligible`` is this node
alone, so the engine's plan gives every device to it.

Figures: pendings found, updates sent and failed, pendings done
(unlinked), superseded, quarantined, and the age of the oldest pending
left (seconds; also in the recon file and the stats line).

Levels (:meth:`ObjectUpdater.levels`, published with the progress, as
gauges and in the recon file): ``async_pending``, the pendings each
device's last sweep left, and ``oldest_async_age``, the age now of the
oldest of them by file mtime: since it was written or last rewritten
with new successes (the figure ``oldest_age`` counts from the object
write's timestamp instead).
"""

import dataclasses
import os
import time

from coordsync import concurrency
from coordsync.common import direct_client
from coordsync.common import fsutil
from coordsync.common import ring as ring_mod
from coordsync.common import worker
from coordsync.obj import diskfile
from coordsync.obj import rings as rings_mod
from coordsync.obj import updates

LOCK_KIND = 'update'
# A temporary file of an interrupted write_file_atomic older than this
# is removed.
TMP_MAX_AGE = 3600.0


def lock_name(node, device):
    return worker.device_lock_name(LOCK_KIND, node, device)


@dataclasses.dataclass
class UpdaterStats:
    """Figures of a sweep (summed over devices)."""

    pendings: int = 0
    successes: int = 0
    failures: int = 0
    unlinked: int = 0
    superseded: int = 0
    quarantined: int = 0
    left: int = 0
    oldest_age: float = 0.0
    errors: int = 0

    def add(self, other):
        for field in dataclasses.fields(self):
            if field.name == 'oldest_age':
                self.oldest_age = max(self.oldest_age, other.oldest_age)
            else:
                setattr(self, field.name, getattr(self, field.name)
                        + getattr(other, field.name))


class DeviceSweep:
    """One sweep of one device's async pendings.

    :param send: ``send(node, op, path, headers) -> status`` (raises
        NodeError when a node cannot be reached).
    """

    def __init__(self, dev_path, ring, send, logger, concurrency_=8,
                 per_second=0.0, check=None, on_peer_error=None,
                 clock=time.time):
        self.dev_path = dev_path
        self.ring = ring
        self.send = send
        self.log = logger
        self.concurrency = concurrency_
        self.per_second = per_second
        self.check = check or (lambda: None)
        self.on_peer_error = on_peer_error or (lambda peer, err: None)
        self.clock = clock
        self.stats = UpdaterStats()
        # The smallest mtime of the pendings left, None if none.
        self.left_mtime = None

    @property
    def async_dir(self):
        """Policy 0's async pending directory."""
        return os.path.join(self.dev_path, updates.ASYNC_DIR)

    def async_dirs(self):
        """``[(policy, path)]`` of the device's async pending
        directories (``async_pending``, ``async_pending-N``), by policy.
        """
        try:
            names = os.listdir(self.dev_path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            policy = updates.policy_of_async_dir(name)
            if policy is not None:
                found.append((policy, os.path.join(self.dev_path, name)))
        return sorted(found)

    def newest_pendings(self):
        """Path of the newest pending of each object, policy by policy;
        the older ones, and stale temporary files, are unlinked. Blocks:
        in a thread."""
        found = []
        for _policy, async_dir in self.async_dirs():
            found.extend(self._newest_in(async_dir))
        return found

    def _newest_in(self, async_dir):
        """:meth:`newest_pendings` of one async pending directory."""
        newest = {}
        try:
            suffixes = sorted(os.listdir(async_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        now = self.clock()
        for suffix in suffixes:
            suffix_dir = os.path.join(async_dir, suffix)
            try:
                names = sorted(os.listdir(suffix_dir))
            except NotADirectoryError:
                self.quarantine(suffix_dir, 'not a suffix directory')
                continue
            except FileNotFoundError:
                continue
            for name in names:
                path = os.path.join(suffix_dir, name)
                if name.startswith('.'):
                    self._remove_stale_tmp(path, now)
                    continue
                found = updates.PENDING_RE.match(name)
                if not found or found.group(1)[-3:] != suffix:
                    self.quarantine(path, 'not a pending file name')
                    continue
                obj_hash = found.group(1)
                older = newest.get(obj_hash)
                if older is not None:
                    # NOTE: names of one hash sort by timestamp (fixed
                    # width): ``older`` is the older one.
                    self._unlink(older)
                    self.stats.superseded += 1
                newest[obj_hash] = path
            self._remove_empty(suffix_dir)
        return sorted(newest.values())

    def _remove_stale_tmp(self, path, now):
        try:
            if now - os.stat(path).st_mtime > TMP_MAX_AGE:
                os.unlink(path)
        except OSError:
            pass

    def _async_dir_of(self, path):
        """The name of the async pending directory ``path`` is in."""
        rel = os.path.relpath(path, self.dev_path).split(os.sep)
        return rel[0] if rel and updates.policy_of_async_dir(rel[0]) \
            is not None else updates.ASYNC_DIR

    def policy_of(self, path):
        """The storage policy of a pending, from its directory."""
        return updates.policy_of_async_dir(self._async_dir_of(path))

    @staticmethod
    def _unlink(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    @staticmethod
    def _remove_empty(directory):
        try:
            os.rmdir(directory)
        except OSError:
            pass

    def quarantine(self, path, reason):
        """Move a damaged pending aside (counted); never deletes it."""
        qdir = os.path.join(self.dev_path, 'quarantined',
                            self._async_dir_of(path))
        try:
            os.makedirs(qdir, exist_ok=True)
            dest = os.path.join(qdir, os.path.basename(path))
            if os.path.exists(dest):
                dest += '-%d' % int(self.clock() * 1e6)
            os.rename(path, dest)
        except FileNotFoundError:
            return
        except OSError as err:
            self.log.error('Cannot quarantine async pending %s (%s): %s',
                           path, reason, err)
            self.stats.errors += 1
            return
        self.stats.quarantined += 1
        self.log.error('Quarantined async pending %s to %s: %s', path,
                       dest, reason)

    def run(self):
        paths = concurrency.run_in_thread(self.newest_pendings)
        self.stats.pendings = len(paths)
        interval = 1.0 / self.per_second if self.per_second else 0.0

        def one(path):
            self.check()
            self.process(path)
            if interval:
                concurrency.sleep(interval * self.concurrency)
        worker.run_scoped(one, paths, self.concurrency)
        return self.stats

    def process(self, path):
        """Send one pending where it is missing; unlink it when done."""
        try:
            data = concurrency.run_in_thread(updates.read_pending, path)
        except FileNotFoundError:
            return
        except (updates.BadPending, OSError) as err:
            concurrency.run_in_thread(self.quarantine, path, str(err))
            return
        name = os.path.basename(path)
        part, nodes = self.ring.get_nodes(data['account'], data['container'])
        done = set(data['successes'])
        # NOTE: the directory says which policy the object is in.
        headers = dict(data['headers'])
        headers[updates.POLICY_HEADER] = str(self.policy_of(path))
        new = []
        for node in nodes:
            if node['id'] in done:
                continue
            row_path = direct_client.container_row_path(
                node['device'], part, data['account'], data['container'],
                data['obj'])
            try:
                status = self.send(node, data['op'], row_path, headers)
            except direct_client.NodeError as err:
                status = None
                self.on_peer_error(direct_client.node_label(node), err)
            if status is not None and 200 <= status < 300:
                new.append(node['id'])
                self.stats.successes += 1
            else:
                self.stats.failures += 1
                if status is not None:
                    self.on_peer_error(direct_client.node_label(node),
                                       'status %d' % status)
        done.update(new)
        if all(node['id'] in done for node in nodes):
            self._unlink(path)
            self.stats.unlinked += 1
            return
        self.stats.left += 1
        self.stats.oldest_age = max(self.stats.oldest_age,
                                    updates.pending_age(name, self.clock()))
        if new:
            try:
                concurrency.run_in_thread(self._record, path, data, done)
            except OSError as err:
                self.log.warning('Cannot record successes in %s: %s', path,
                                 err)
        self._note_left(path)

    def _note_left(self, path):
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return
        if self.left_mtime is None or mtime < self.left_mtime:
            self.left_mtime = mtime

    @staticmethod
    def _record(path, data, done):
        if not os.path.exists(path):
            return
        fsutil.write_file_atomic(path, updates.encode_pending(
            data['op'], data['account'], data['container'], data['obj'],
            data['headers'], done))


class ObjectUpdater(rings_mod.PolicyRingsMixin, worker.RingWorker):
    """See the module docstring."""

    name = 'object-updater'
    conf_group = 'object-updater'
    item_noun = 'devices'
    pass_title = 'Update sweep'
    done_verb = 'swept'
    # NOTE: what a sweep left is a level, not a count to add up.
    level_figures = ('left', 'oldest_age')

    def __init__(self, conf, coordinator, ring=None, container_ring=None,
                 manager=None, node_client=None, logger=None, rings=None):
        super().__init__(conf, coordinator, logger)
        # NOTE: every policy's ring: a device may be in one of them only.
        self.rings = rings_mod.policy_rings(conf, ring, rings)
        self.ring = self.rings.get(0)
        self.container_ring = container_ring or ring_mod.Ring(
            conf.container_ring_file, conf.hash_path_prefix,
            conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)
        # {device: (pendings left, smallest mtime of them or None)} of
        # each device's last complete sweep.
        self._left = {}

    def collect_jobs(self, devices=None, partitions=None):
        jobs = []
        for dev in self.available_devices(devices):
            jobs.append(worker.DeviceJob(LOCK_KIND, dev['device'],
                                            self.conf.node_name))
        if devices is None:
            # NOTE: a device gone from the ring or unmounted is no
            # longer ours to report.
            names = {job.device for job in jobs}
            self._left = {k: v for k, v in self._left.items()
                          if k in names}
        return jobs

    def levels(self, now=None):
        """Async pendings the last sweep of each device left, and the
        oldest one's age now (by mtime)."""
        now = time.time() if now is None else now
        oldest = min((m for _n, m in self._left.values() if m is not None),
                     default=None)
        return {'async_pending': sum(n for n, _m in self._left.values()),
                'oldest_async_age': round(max(now - oldest, 0.0), 1)
                if oldest is not None else 0.0}

    def recon_extra(self):
        """The levels, for ``coordsync-recon --updater``."""
        return {'levels': self.levels(),
                'devices_left': {device: n for device, (n, _m)
                                 in sorted(self._left.items())}}

    def static_jobs(self, jobs):
        return list(jobs)

    def new_figures(self):
        return UpdaterStats()

    def figures_text(self, figures):
        return ('%d pendings, %d updates sent, %d failed, %d done, %d '
                'superseded, %d quarantined, %d left (oldest %.0fs)' % (
                    figures.pendings, figures.successes, figures.failures,
                    figures.unlinked, figures.superseded,
                    figures.quarantined, figures.left, figures.oldest_age))

    def before_pass(self):
        self.reload_rings()
        if self.container_ring.has_changed():
            self.log.info('Ring file %s changed, reloading',
                          self.container_ring.path)
            self.container_ring.reload()

    def _send(self, node, op, path, headers):
        status, _headers, _body = self.client.call(node, op, path,
                                                   headers=headers)
        return status

    def work(self, job, grant):
        sweep = DeviceSweep(
            self.manager.require_device(job.device), self.container_ring,
            self._send, self.log, self.wconf.update_concurrency,
            self.wconf.max_updates_per_second, check=grant.check,
            on_peer_error=self.peer_errors.record)
        try:
            sweep.run()
        finally:
            self.stats.figures.add(sweep.stats)
        self._left[job.device] = (sweep.stats.left, sweep.left_mtime)
        return sweep.stats.errors == 0
