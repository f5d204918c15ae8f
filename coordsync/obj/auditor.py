"""The object auditor: finds silent damage on this node's disks.

Disks rot, files get truncated by a crash the filesystem did not
survive whole, and operators delete files by hand. Nothing notices until
a client reads the object -- or never, for the replica nobody reads.
The auditor reads everything, slowly, and hands what it finds to the
replicators.

**Objects.** A device audit (:class:`DeviceAudit`) walks every object of
every storage policy directory on the device (``objects/``,
``objects-N/``), partition by partition, suffix by suffix, and reads the
newest file of each object through the store
(:class:`~coordsync.obj.diskfile.DiskFile`), so the same checks apply as
on a client's read: the header and metadata (a zero-byte or truncated
file, metadata that is not JSON, a ``Content-Length`` other than the
body's length) and, read to its end, the body's md5 against the ETag.
It also checks that the stored name hashes to the directory the file is
in (a damaged name would otherwise be served under another object's
hash). A bad file is quarantined by the store's own
:meth:`~coordsync.obj.diskfile.DiskFile.quarantine`: its hash directory
moves, untouched, to ``<device>/quarantined/objects[-N]/``, and its
suffix hash is invalidated, so the next replication pass finds the
suffix different from its peers' and brings a good copy back. Nothing
is ever deleted.

**Files deleted behind the store's back.** The suffix hashes cache
(:mod:`coordsync.obj.hashes`) changes only when the store writes; a file
removed by hand leaves the cached hash as it was, and replication would
never see the replica is short. So, for every suffix it walks, the
auditor hashes the suffix again from its listing and compares with the
cached hash: on a difference the suffix is invalidated (counted as
``stale_suffixes``) and the next replication pass repairs it.

**Databases.** With ``audit_databases`` (the default), the same walk
goes through every container and account database of the device and
runs SQLite's ``PRAGMA quick_check``; a damaged one is moved to
``<device>/quarantined/containers|accounts/`` by the broker (never
deleted), and the container or account replicator fetches a good copy
from a peer in its next pass.

**Rate.** ``files_per_second`` (objects and databases) and
``bytes_per_second`` (paced chunk by chunk) bound each device audit
(:class:`RateLimiter`), sleeping through :mod:`coordsync.concurrency`;
disk reads and SQLite run in real threads, one file at a time.

**Items and locks.** As for the object updater, items are this node's
own devices (those of any object ring, and of the container and account
rings with ``audit_databases``), lock ``coordsync/audit/<node>/<device>``:
only this node reads its disks, and the lock keeps two auditors of one
node (``coordsync-server`` running ``object-auditor`` and a
``coordsync-object-auditor --once``) off one device. A pass is one full
audit of each device. Without coordination every own device is audited
unlocked (the static rule: auditing twice is harmless).

Figures (stats line, recon file, progress, metrics): ``files_checked``,
``bytes_checked``, ``quarantined`` (objects), ``stale_suffixes``,
``dbs_checked``, ``dbs_quarantined``, ``errors`` (files that could not
be read, e.g. an I/O error: not quarantined, as the disk may be failing
rather than the file; the device's item then fails).
"""

import dataclasses
import os
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import worker
from coordsync.container import backend
from coordsync.container import replication
from coordsync.obj import diskfile
from coordsync.obj import hashes
from coordsync.obj import layout
from coordsync.obj import rings as rings_mod
from coordsync.obj import streams

LOG = logging.getLogger(__name__)

LOCK_KIND = 'audit'
DB_DATADIRS = (backend.CONTAINER_DATADIR, backend.ACCOUNT_DATADIR)


def lock_name(node, device):
    return worker.device_lock_name(LOCK_KIND, node, device)


@dataclasses.dataclass
class AuditStats(worker.Figures):
    """Figures of device audits (summed over devices)."""

    files_checked: int = 0
    bytes_checked: int = 0
    quarantined: int = 0
    stale_suffixes: int = 0
    dbs_checked: int = 0
    dbs_quarantined: int = 0
    errors: int = 0


class RateLimiter:
    """Paces a walk to ``files_per_second`` and ``bytes_per_second``
    (each 0: no limit).

    :meth:`take` is called after the work it pays for: each file or
    byte moves that dimension's schedule on by its share of a second,
    and the walk sleeps until the clock has caught up with the later of
    the two schedules. A schedule never lags the clock, so an idle spell
    earns no burst afterwards.
    """

    def __init__(self, files_per_second=0.0, bytes_per_second=0.0,
                 clock=time.monotonic, sleep=concurrency.sleep):
        self.files_per_second = files_per_second
        self.bytes_per_second = bytes_per_second
        self.clock = clock
        self.sleep = sleep
        self._files_due = self._bytes_due = None

    def take(self, files=0, nbytes=0):
        now = self.clock()
        wait = 0.0
        if files and self.files_per_second:
            self._files_due = max(self._files_due or now, now) + (
                files / self.files_per_second)
            wait = self._files_due - now
        if nbytes and self.bytes_per_second:
            self._bytes_due = max(self._bytes_due or now, now) + (
                nbytes / self.bytes_per_second)
            wait = max(wait, self._bytes_due - now)
        if wait > 0:
            self.sleep(wait)


def listing_hash(suffix_dir, reclaim_age, now):
    """What :func:`coordsync.obj.hashes.hash_suffix` would make the
    suffix's hash now (None: no objects), changing nothing on disk.

    NOTE: without its cleanup, so the auditor removes nothing, and the
    suffix directory of a vanished object stays for the cache to be
    compared with; the unit tests check both give the same hash.
    """
    found = layout.suffix_objects(suffix_dir, reclaim_age, now)
    if not found:
        return None
    return hashes.digest_objects(found)


def _list(path, keep):
    try:
        return sorted(filter(keep, os.listdir(path)))
    except (FileNotFoundError, NotADirectoryError):
        return []


class DeviceAudit:
    """One audit of one device; see the module docstring.

    :param manager: a DiskFileManager (any policy's; the others come
        from its ``for_policy``).
    :param check: called before each file (the grant's ``check``: a
        lost lock or a stop ends the audit there).
    :param databases: also check the container and account databases.
    :param totals: an :class:`AuditStats` to add to as the audit goes
        (the pass's figures, live in the stats line), beside
        ``self.stats`` (this device's).
    """

    def __init__(self, manager, device, logger=LOG, limiter=None,
                 check=None, databases=False, totals=None,
                 chunk_size=streams.CHUNK_SIZE):
        self.manager = manager
        self.device = device
        self.dev_path = manager.require_device(device)
        self.log = logger
        self.limiter = limiter or RateLimiter()
        self.check = check or (lambda: None)
        self.databases = databases
        self.chunk_size = chunk_size
        self.stats = AuditStats()
        self._totals = [self.stats] + ([totals] if totals is not None
                                       else [])

    def _add(self, field, count=1):
        for stats in self._totals:
            setattr(stats, field, getattr(stats, field) + count)

    def _error(self, message, *args):
        self._add('errors')
        self.log.error(message, *args)

    def run(self):
        """Audit the device; its :class:`AuditStats`."""
        for policy in self.policies():
            self.audit_policy(policy)
        if self.databases:
            for datadir in DB_DATADIRS:
                self.audit_databases(datadir)
        return self.stats

    def policies(self):
        """Indexes of the storage policy directories on the device."""
        found = (storage_policy.index_of_datadir(name)
                 for name in _list(self.dev_path, lambda n: True))
        return sorted(index for index in found if index is not None)

    # -- objects ----------------------------------------------------------

    def audit_policy(self, policy):
        manager = self.manager.for_policy(policy)
        for part in concurrency.run_in_thread(manager.partitions,
                                              self.device):
            self.audit_partition(manager, part)

    def audit_partition(self, manager, part):
        part_dir = os.path.join(self.dev_path, manager.datadir, str(part))
        try:
            cached = concurrency.run_in_thread(manager.get_hashes,
                                               self.device, part)
        except (OSError, exceptions.DiskFileError) as err:
            self._error('Cannot read the suffix hashes of %s: %s',
                        part_dir, err)
            cached = None
        for suffix in concurrency.run_in_thread(_list, part_dir,
                                                layout.is_suffix):
            self.check()
            suffix_dir = os.path.join(part_dir, suffix)
            if cached is not None:
                self.check_suffix_hash(manager, part, suffix,
                                       cached.get(suffix))
            for obj_hash in concurrency.run_in_thread(_list, suffix_dir,
                                                      layout.is_hash):
                self.check()
                self.audit_object(manager, part, obj_hash)

    def check_suffix_hash(self, manager, part, suffix, cached):
        """Invalidate the suffix if its cached hash is not what its files
        hash to now (files removed or added behind the store's back)."""
        part_dir = os.path.join(self.dev_path, manager.datadir, str(part))
        try:
            actual = self._hash_suffix(manager, part_dir, suffix)
            if actual == cached:
                return
            # NOTE: a write since the cache was read recorded its suffix
            # for rehashing; the cache with those folded in must agree,
            # or the change did not go through the store.
            cached = concurrency.run_in_thread(
                manager.get_hashes, self.device, part).get(suffix)
            actual = self._hash_suffix(manager, part_dir, suffix)
            if actual == cached:
                return
            concurrency.run_in_thread(hashes.invalidate_suffix, part_dir,
                                      suffix)
        except FileNotFoundError:
            return  # NOTE: the partition went meanwhile (a handoff).
        except (OSError, exceptions.DiskFileError) as err:
            self._error('Cannot check the suffix hash of %s/%s: %s',
                        part_dir, suffix, err)
            return
        self._add('stale_suffixes')
        self.log.warning('Suffix %s/%s: cached hash %s but its files hash '
                         'to %s (changed behind the store\'s back?); '
                         'marked for rehashing so replication repairs it',
                         part_dir, suffix, cached, actual)

    @staticmethod
    def _hash_suffix(manager, part_dir, suffix):
        return concurrency.run_in_thread(
            listing_hash, os.path.join(part_dir, suffix),
            manager.reclaim_age, manager.clock())

    def audit_object(self, manager, part, obj_hash):
        """Read one object's newest file whole; quarantine it if bad."""
        df = manager.diskfile_by_hash(self.device, part, obj_hash)
        try:
            reader = concurrency.run_in_thread(df.reader, self.chunk_size)
        except exceptions.DiskFileDeleted:
            # NOTE: a tombstone: its header and metadata were checked.
            self._add('files_checked')
            self.limiter.take(files=1)
            return
        except exceptions.DiskFileNotFound:
            return  # NOTE: gone meanwhile, or an empty hash directory.
        except exceptions.DiskFileCorrupt:
            self._checked_bad()
            return
        except exceptions.DiskFileError as err:
            self._error('Cannot audit %s: %s', df.hash_dir, err)
            return
        try:
            self._read_body(df, reader, obj_hash)
        except exceptions.DiskFileCorrupt:
            self._checked_bad()
            return
        except exceptions.DiskFileError as err:
            self._error('Cannot audit %s: %s', df.hash_dir, err)
            return
        finally:
            reader.close()
        self._add('files_checked')
        self.limiter.take(files=1)

    def _checked_bad(self):
        # NOTE: the store quarantined it and logged where to.
        self._add('files_checked')
        self._add('quarantined')
        self.limiter.take(files=1)

    def _read_body(self, df, reader, obj_hash):
        name = reader.metadata.get('name', '')
        try:
            named = hashing.hash_path(*layout.split_object_name(name),
                                      prefix=df.manager.hash_prefix,
                                      suffix=df.manager.hash_suffix)
        except ValueError:
            named = None
        if named != obj_hash:
            reader.close()
            concurrency.run_in_thread(
                df.quarantine, layout.ObjectFile(reader.timestamp,
                                                 layout.DATA_EXT),
                'name %r does not hash to its directory' % (name,))
        chunks = iter(reader)
        try:
            while True:
                # NOTE: reading to the end checks the ETag and length and
                # quarantines a mismatch (DiskFileCorrupt).
                chunk = concurrency.run_in_thread(next, chunks, None)
                if chunk is None:
                    return
                self._add('bytes_checked', len(chunk))
                self.limiter.take(nbytes=len(chunk))
        finally:
            chunks.close()

    # -- databases --------------------------------------------------------

    def audit_databases(self, datadir):
        """``quick_check`` every database under ``datadir``."""
        cls = replication.broker_class(datadir)
        for part in concurrency.run_in_thread(
                layout.list_partitions,
                os.path.join(self.dev_path, datadir)):
            found = concurrency.run_in_thread(replication.list_dbs,
                                              self.dev_path, datadir, part)
            for _name_hash, path in sorted(found.items()):
                self.check()
                self.audit_database(cls(path, logger=self.log))

    def audit_database(self, broker):
        size = 0
        try:
            size = concurrency.run_in_thread(os.path.getsize,
                                             broker.db_file)
            concurrency.run_in_thread(broker.quick_check)
        except (FileNotFoundError, backend.DatabaseNotFound):
            return
        except backend.DatabaseCorrupt:
            # NOTE: the broker moved it aside and logged where to.
            self._add('dbs_quarantined')
        except (OSError, backend.DatabaseError) as err:
            self._error('Cannot check %s: %s', broker.db_file, err)
            return
        finally:
            broker.close()
        self._add('dbs_checked')
        self.limiter.take(files=1, nbytes=size)


class ObjectAuditor(worker.RingWorker):
    """See the module docstring.

    :param ring: policy 0's object ring (tests of one policy).
    :param rings: ``{policy index: Ring}``; by default every policy's
        ring as the config declares them.
    :param db_rings: the rings whose devices hold databases to check;
        by default the container and account rings with
        ``audit_databases``, none without.
    :param manager: a DiskFileManager (any policy's).
    :param limiter: ``limiter()`` -> a :class:`RateLimiter` for one
        device audit (tests count its sleeps).
    """

    name = 'object-auditor'
    conf_group = 'object-auditor'
    item_noun = 'devices'
    pass_title = 'Audit pass'
    done_verb = 'audited'

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 logger=None, rings=None, db_rings=None, limiter=None):
        super().__init__(conf, coordinator, logger)
        self.rings = rings_mod.policy_rings(conf, ring, rings)
        self.ring = self.rings.get(0)
        if db_rings is None:
            db_rings = [ring_mod.Ring(path, conf.hash_path_prefix,
                                      conf.hash_path_suffix)
                        for path in (conf.container_ring_file,
                                     conf.account_ring_file)
                        ] if self.wconf.audit_databases else []
        self.db_rings = list(db_rings)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self._limiter = limiter or (lambda: RateLimiter(
            self.wconf.files_per_second, self.wconf.bytes_per_second))
        # {device: figures of its last complete audit, and when it ended}
        self._audited = {}

    def _all_rings(self):
        return list(self.rings.values()) + self.db_rings

    def local_devices(self):
        names = set()
        for ring in self._all_rings():
            names.update(d['device'] for d in
                         ring.devices_on_node(self.conf.node_name))
        return sorted(names)

    def expected_nodes(self):
        return {d['node'] for ring in self._all_rings()
                for d in ring.devices if d}

    def available_devices(self, devices=None):
        for name in self.local_devices():
            if devices and name not in devices:
                continue
            if self.manager.get_dev_path(name) is None:
                self.log.warning('Device %s unavailable, skipped', name)
                continue
            yield name

    def before_pass(self):
        for ring in self._all_rings():
            if ring.has_changed():
                self.log.info('Ring file %s changed, reloading',
                              getattr(ring, 'path', '?'))
                ring.reload()

    def collect_jobs(self, devices=None, partitions=None):
        return [worker.DeviceJob(LOCK_KIND, name, self.conf.node_name)
                for name in self.available_devices(devices)]

    def static_jobs(self, jobs):
        return list(jobs)

    def new_figures(self):
        return AuditStats()

    def figures_text(self, figures):
        text = ('%d files checked (%d bytes), %d quarantined, %d stale '
                'suffix hashes' % (figures.files_checked,
                                   figures.bytes_checked,
                                   figures.quarantined,
                                   figures.stale_suffixes))
        if self.wconf.audit_databases:
            text += '; %d databases checked, %d quarantined' % (
                figures.dbs_checked, figures.dbs_quarantined)
        return text

    def recon_extra(self):
        """Each device's last complete audit, for the recon file."""
        return {'devices': {device: dict(found) for device, found in
                            sorted(self._audited.items())}}

    def work(self, job, grant):
        audit = DeviceAudit(
            self.manager, job.device, self.log, limiter=self._limiter(),
            check=grant.check, databases=self.wconf.audit_databases,
            totals=self.stats.figures)
        audit.run()
        self._audited[job.device] = dict(
            dataclasses.asdict(audit.stats), ended_at=round(time.time(), 3))
        return audit.stats.errors == 0
