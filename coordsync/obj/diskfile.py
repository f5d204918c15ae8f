"""Objects on local disks: the API the object server and replicator use.

A :class:`DiskFileManager` knows the devices directory and hands out a
:class:`DiskFile` per object::

    manager = DiskFileManager('/srv/node', hash_prefix='p', hash_suffix='s')
    df = manager.diskfile('sda', 17, 'AUTH_a', 'c', 'o')
    df.write([b'hello'], {'X-Timestamp': ts, 'Content-Type': 'text/plain'})
    with df.reader() as reader:
        body = b''.join(reader)
    df.delete(later_ts)

Newest timestamp wins: a write or delete not newer than what is stored
raises :class:`~coordsync.exceptions.DiskFileConflict` and changes
nothing. Reading a deleted object raises
:class:`~coordsync.exceptions.DiskFileDeleted` (a ``DiskFileNotFound``
carrying the tombstone's timestamp and metadata). A file that cannot be
trusted is moved, whole hash directory and all, to
``<device>/quarantined/objects/`` and
:class:`~coordsync.exceptions.DiskFileCorrupt` is raised.

A manager serves one storage policy: policy 0's objects are under
``<device>/objects/``, policy N's under ``<device>/objects-N/``
(quarantined to ``quarantined/objects-N/``). ``manager.for_policy(N)``
is the manager of another policy with the same settings::

    manager.for_policy(1).diskfile('sda', 17, 'AUTH_a', 'c', 'o')

Every method blocks on disk I/O; the caller decides which thread runs it.
"""

import os
import shutil
import threading
import time
import uuid

from oslo_log import log as logging

from coordsync import exceptions
from coordsync.common import fsutil
from coordsync.common import hashing
from coordsync.common import storage_policy
from coordsync.obj import fileformat
from coordsync.obj import hashes
from coordsync.obj import layout
from coordsync.obj import streams

LOG = logging.getLogger(__name__)

DEFAULT_RECLAIM_AGE = layout.DEFAULT_RECLAIM_AGE
_OPEN_ATTEMPTS = 3
_RENAME_ATTEMPTS = 3


class DiskFile:
    """One object on one device: read it, store a new version, delete it.

    Made by name (:meth:`DiskFileManager.diskfile`) it does all three.
    Made by hash (:meth:`DiskFileManager.diskfile_by_hash`, for
    replication) it only reads: the metadata it returns carries the name
    to send a PUT or DELETE by.
    """

    def __init__(self, manager, dev_path, part_dir, obj_hash, name=None):
        self.manager = manager
        self.obj_hash = obj_hash
        self.name = name
        self.suffix = hashing.suffix_of(obj_hash)
        self.hash_dir = os.path.join(part_dir, self.suffix, obj_hash)
        self.tmp_dir = os.path.join(dev_path, layout.TMPDIR)
        self._dev_path = dev_path
        self._part_dir = part_dir

    def __repr__(self):
        return '<DiskFile %s>' % (self.name or self.hash_dir)

    def read_metadata(self):
        """The metadata of the stored version (raises if there is none)."""
        fp, metadata, _offset, _newest = self._open()
        fp.close()
        return metadata

    def reader(self, chunk_size=streams.CHUNK_SIZE):
        """A :class:`~coordsync.obj.streams.DiskFileReader` of the body."""
        fp, metadata, offset, newest = self._open()
        return streams.DiskFileReader(self, fp, metadata, offset, newest,
                                      chunk_size)

    def writer(self, metadata):
        """A :class:`~coordsync.obj.streams.DiskFileWriter` for a new
        version described by ``metadata`` (``X-Timestamp`` required)."""
        return streams.DiskFileWriter(
            self, streams.new_metadata(metadata, self._writable_name()))

    def write(self, chunks, metadata):
        """Store ``chunks`` as a new version; return its metadata."""
        with self.writer(metadata) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def delete(self, when):
        """Store a tombstone at timestamp ``when``; return its metadata."""
        metadata = streams.tombstone_metadata(self._writable_name(), when)
        with streams.DiskFileWriter(self, metadata, tombstone=True) as writer:
            return writer.commit()

    def _writable_name(self):
        if self.name is None:
            raise exceptions.DiskFileError(
                'object %s was opened by hash and is read-only'
                % self.obj_hash)
        return self.name

    def _open(self):
        """``(fp, metadata, body_offset, newest file)`` of the object."""
        for _attempt in range(_OPEN_ATTEMPTS):
            newest = layout.newest_file(self.hash_dir,
                                        self.manager.reclaim_age,
                                        self.manager.clock())
            if newest is None:
                raise exceptions.DiskFileNotFound('%r not found' % self)
            try:
                fp = open(os.path.join(self.hash_dir, newest.name), 'rb')
            except FileNotFoundError:
                continue  # NOTE: replaced by a newer version just now.
            except OSError as err:
                raise exceptions.DiskFileError(
                    'cannot open %r: %s' % (self, err)) from err
            try:
                return (fp,) + self._check(fp, newest) + (newest,)
            except BaseException:
                fp.close()
                raise
        raise exceptions.DiskFileError('%r kept changing while opened' % self)

    def _check(self, fp, newest):
        try:
            metadata, offset = fileformat.read_header(fp)
            body_length = os.fstat(fp.fileno()).st_size - offset
            fileformat.check_metadata(metadata, newest.timestamp,
                                      newest.is_tombstone, body_length)
        except fileformat.InvalidObjectFile as err:
            self.quarantine(newest, str(err))
        except OSError as err:
            raise exceptions.DiskFileError(
                'cannot read %r: %s' % (self, err)) from err
        if self.name is not None and metadata['name'] != self.name:
            raise exceptions.DiskFileCollision(
                '%r holds %s instead' % (self, metadata['name']))
        if newest.is_tombstone:
            raise exceptions.DiskFileDeleted(
                '%r was deleted at %s' % (self, newest.timestamp.normal),
                newest.timestamp, metadata)
        return metadata, offset

    def publish(self, tmp_path, new):
        """Rename a finished temporary file into place as ``new``.

        Raises DiskFileConflict, leaving everything as it was, unless
        ``new`` is newer than every stored version (or a tombstone at the
        timestamp of stored data).
        """
        with hashes.lock_partition(self._part_dir, create=True):
            self.publish_locked(tmp_path, new, durable=True)

    def publish_locked(self, tmp_path, new, durable):
        """:meth:`publish` for a caller holding the partition lock.

        Not ``durable``: the new directories and the rename are left for
        the caller to sync (one syncfs for a batch).
        """
        stored = layout.object_files(self.hash_dir)
        # NOTE: compared like the files themselves: a tombstone wins a tie
        # with data, so replicas holding either converge.
        if stored and stored[0].sort_key() >= new.sort_key():
            raise exceptions.DiskFileConflict(
                '%r already has a version at %s, not older than %s'
                % (self, stored[0].timestamp.normal, new.timestamp.normal),
                stored[0].timestamp)
        # NOTE: recorded before the rename and under the same lock, so no
        # hashing run can miss this write (see obj/hashes.py).
        hashes.record_invalid(self._part_dir, self.suffix)
        self._rename_into_place(tmp_path, new.name, durable)
        if durable:
            fsutil.fsync_dir(self.hash_dir)
        if stored:
            # NOTE: a new object's directory holds the new file alone.
            layout.cleanup_hash_dir(self.hash_dir, self.manager.reclaim_age,
                                    self.manager.clock())

    def _rename_into_place(self, tmp_path, file_name, durable=True):
        for _attempt in range(_RENAME_ATTEMPTS):
            try:
                if durable:
                    fsutil.makedirs_durable(self.hash_dir)
                else:
                    os.makedirs(self.hash_dir, exist_ok=True)
                os.rename(tmp_path, os.path.join(self.hash_dir, file_name))
                return
            except FileNotFoundError:
                # NOTE: hashing, which runs without the lock, removed the
                # directory we had just made as empty; make it again.
                continue
        raise exceptions.DiskFileError('cannot create %s' % self.hash_dir)

    def quarantine(self, suspect, reason):
        """Move the object aside if ``suspect`` is still its newest file,
        then raise DiskFileCorrupt."""
        try:
            with hashes.lock_partition(self._part_dir):
                if layout.object_files(self.hash_dir)[:1] == [suspect]:
                    hashes.record_invalid(self._part_dir, self.suffix)
                    dest = layout.quarantine_hash_dir(
                        self._dev_path, self.hash_dir,
                        self.manager.quarantine_dir)
                    self.manager.count_quarantine(self.hash_dir, dest,
                                                  reason)
        except FileNotFoundError:
            pass  # NOTE: the partition was deleted meanwhile.
        except OSError as err:
            self.manager.logger.error('Cannot quarantine %s: %s',
                                      self.hash_dir, err)
        raise exceptions.DiskFileCorrupt('%r is corrupt: %s' % (self, reason))


# NOTE: a temporary file this old belongs to no write in progress: a
# stream's sealed files wait for its END, a few minutes at most (streams
# end every 256 MiB, and a read waits node_timeout at most).
TMP_MAX_AGE = 3600.0


class DiskFileManager:
    """The object store of one node and one storage policy: every device
    under ``devices_path``, objects in the policy's directory.

    With ``mount_check`` a device counts only while it is a mount point,
    so a failed disk is never filled up as part of the root filesystem.
    ``clock`` gives "now" for reclaiming tombstones (tests inject one).
    ``policy`` is the storage policy index (``objects-N/`` for N > 0).
    """

    def __init__(self, devices_path, *, mount_check=False,
                 reclaim_age=DEFAULT_RECLAIM_AGE, hash_prefix='',
                 hash_suffix='', logger=None, clock=time.time, policy=0):
        if (not isinstance(policy, int) or isinstance(policy, bool)
                or policy < 0):
            raise ValueError('invalid storage policy index %r' % (policy,))
        self.devices_path = devices_path
        self.mount_check = mount_check
        self.reclaim_age = reclaim_age
        self.hash_prefix = hash_prefix
        self.hash_suffix = hash_suffix
        self.logger = logger or LOG
        self.clock = clock
        self.policy = policy
        self.datadir = storage_policy.datadir(policy)
        self.quarantine_dir = layout.quarantine_dir(self.datadir)
        self.async_dir = storage_policy.async_dir(policy)
        self._quarantine_count = 0
        self._count_lock = threading.Lock()
        # NOTE: the managers of one node's policies share this map, so
        # for_policy() hands out one manager per policy, whichever asks.
        self._family = {policy: self}

    @classmethod
    def from_conf(cls, conf, logger=None, policy=0):
        """The manager of this node's devices, as the config says."""
        return cls(conf.devices, mount_check=conf.mount_check,
                   reclaim_age=conf.reclaim_age,
                   hash_prefix=conf.hash_path_prefix,
                   hash_suffix=conf.hash_path_suffix, logger=logger,
                   policy=policy)

    def for_policy(self, policy):
        """The manager of storage policy ``policy`` (an index) with this
        one's settings: the same object for every call."""
        found = self._family.get(policy)
        if found is None:
            found = type(self)(
                self.devices_path, mount_check=self.mount_check,
                reclaim_age=self.reclaim_age, hash_prefix=self.hash_prefix,
                hash_suffix=self.hash_suffix, logger=self.logger,
                clock=self.clock, policy=policy)
            found._family = self._family
            self._family[policy] = found
        return found

    @property
    def quarantine_count(self):
        """How many hash directories this manager has quarantined."""
        return self._quarantine_count

    def get_dev_path(self, device):
        """The path of ``device``, or None when it is not available."""
        path = os.path.join(self.devices_path, layout.check_device(device))
        usable = os.path.ismount if self.mount_check else os.path.isdir
        return path if usable(path) else None

    def devices(self):
        """Names of the available devices, sorted."""
        try:
            names = os.listdir(self.devices_path)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if self._is_available(n))

    def _is_available(self, device):
        try:
            return self.get_dev_path(device) is not None
        except ValueError:
            return False

    def require_device(self, device):
        """The path of ``device``; DiskFileDeviceUnavailable if it is not
        available."""
        return self._dev_path(device)

    def _dev_path(self, device):
        dev_path = self.get_dev_path(device)
        if dev_path is None:
            raise exceptions.DiskFileDeviceUnavailable(
                'device %s is not available' % device)
        return dev_path

    def _part_dir(self, device, partition):
        dev_path = self._dev_path(device)
        return dev_path, os.path.join(dev_path, self.datadir,
                                      layout.check_partition(partition))

    def diskfile(self, device, partition, account, container, obj):
        """The object ``/account/container/obj`` in ``partition``."""
        for part in (account, container, obj):
            if not isinstance(part, str) or not part:
                raise ValueError('account, container and object names '
                                 'must be non-empty strings')
        if '/' in account or '/' in container:
            # NOTE: the stored name must split back into the same parts.
            raise ValueError('account and container names cannot '
                             'contain "/"')
        obj_hash = hashing.hash_path(account, container, obj,
                                     prefix=self.hash_prefix,
                                     suffix=self.hash_suffix)
        dev_path, part_dir = self._part_dir(device, partition)
        return DiskFile(self, dev_path, part_dir, obj_hash,
                        name='/%s/%s/%s' % (account, container, obj))

    def diskfile_by_hash(self, device, partition, obj_hash):
        """A read-only :class:`DiskFile` for replication, found by hash."""
        dev_path, part_dir = self._part_dir(device, partition)
        return DiskFile(self, dev_path, part_dir, layout.check_hash(obj_hash))

    def publish_batch(self, device, partition, sealed):
        """Publish finished temporary files of one partition together.

        ``sealed``: :class:`~coordsync.obj.streams.Sealed` files (from
        ``DiskFileWriter.seal``). Their data is made durable with one
        filesystem sync, they are renamed into place under one partition
        lock (newest wins, as for a single write), and one more sync
        makes the new names durable; only then does this return. Returns
        one result per file, in order: None if stored, else the
        DiskFileConflict (a version at least as new is stored; its
        temporary file is removed).

        NOTE: a crash before the end leaves temporary files in
        ``<device>/tmp`` (removed by the node server at start and by
        the replicator before each pass, once :data:`TMP_MAX_AGE`
        old), and perhaps some of the
        objects renamed into place but not yet durable: as after a
        crash during one write, the sender, having no answer, sends
        them again.
        """
        if not sealed:
            return []
        dev_path, part_dir = self._part_dir(device, partition)
        results = []
        try:
            fsutil.syncfs(dev_path)
            with hashes.lock_partition(part_dir, create=True):
                for one in sealed:
                    try:
                        one.diskfile.publish_locked(
                            one.tmp_path, one.object_file, durable=False)
                        results.append(None)
                    except exceptions.DiskFileConflict as err:
                        one.discard()
                        results.append(err)
            fsutil.syncfs(dev_path)
        except OSError as err:
            for one in sealed[len(results):]:
                one.discard()
            raise streams.disk_error(err, 'cannot publish in %s'
                                     % part_dir) from err
        return results

    def get_hashes(self, device, partition, recalculate=()):
        """``{suffix: md5 hex}``; see :mod:`coordsync.obj.hashes`."""
        _dev_path, part_dir = self._part_dir(device, partition)
        return hashes.get_hashes(part_dir, recalculate, self.reclaim_age,
                                 self.clock())

    def list_suffix(self, device, partition, suffix):
        """``{obj_hash: {'timestamp': normal, 'deleted': bool}}``.

        The newest file of every object under ``suffix``, read-only.
        Reclaimable tombstones are left out, as hashing would remove them.
        """
        _dev_path, part_dir = self._part_dir(device, partition)
        suffix_dir = os.path.join(part_dir, layout.check_suffix(suffix))
        found = layout.suffix_objects(suffix_dir, self.reclaim_age,
                                      self.clock())
        return {obj_hash: {'timestamp': newest.timestamp.normal,
                           'deleted': newest.is_tombstone}
                for obj_hash, newest in found}

    def partitions(self, device):
        """The partitions (ints, sorted) that have a directory on ``device``.
        """
        return layout.list_partitions(
            os.path.join(self._dev_path(device), self.datadir))

    def delete_partition(self, device, partition, expect_hashes=None):
        """Remove a partition and everything in it; False if it was absent.

        With ``expect_hashes`` (from :meth:`get_hashes`) the partition is
        kept, and False returned, if any write reached it since: a handoff
        must not delete an object that arrived after it was pushed.

        NOTE: the directory is first renamed aside under the partition
        lock, so a write racing with the delete either finished before it
        (and is deleted with the rest, as the caller intends) or starts a
        fresh partition directory afterwards (and survives).
        """
        dev_path, part_dir = self._part_dir(device, partition)
        doomed = os.path.join(dev_path, layout.TMPDIR,
                              'deleting-%s' % uuid.uuid4().hex)
        os.makedirs(os.path.dirname(doomed), exist_ok=True)
        try:
            with hashes.lock_partition(part_dir):
                if expect_hashes is not None and not hashes.cache_matches(
                        part_dir, expect_hashes):
                    return False
                os.rename(part_dir, doomed)
        except FileNotFoundError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        self.logger.info('Deleted partition %s%s on %s', partition,
                         ' of policy %d' % self.policy if self.policy
                         else '', device)
        return True

    def cleanup_all_tmp(self, logger, age=TMP_MAX_AGE):
        """Remove every device's temporary files of crashed writes older
        than ``age``; a device that cannot be cleaned is logged and
        skipped."""
        for device in self.devices():
            try:
                removed = self.cleanup_tmp(device, age)
            except (OSError, exceptions.DiskFileError) as err:
                logger.warning('Cannot clean up temporary files on %s: %s',
                               device, err)
                continue
            if removed:
                logger.info('Removed %d temporary files of crashed writes '
                            'on %s', removed, device)

    def cleanup_tmp(self, device, age=None):
        """Remove leftovers of crashed writes (a receiver or a sender
        killed mid-stream) older than ``age`` seconds (``reclaim_age``
        when omitted); returns how many."""
        tmp_dir = os.path.join(self._dev_path(device), layout.TMPDIR)
        try:
            entries = list(os.scandir(tmp_dir))
        except FileNotFoundError:
            return 0
        cutoff = self.clock() - (self.reclaim_age if age is None else age)
        old = [e for e in entries
               if e.stat(follow_symlinks=False).st_mtime < cutoff]
        for entry in old:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                _unlink_quietly(entry.path)
        return len(old)

    def count_quarantine(self, hash_dir, dest, reason):
        """Called by :class:`DiskFile` after moving ``hash_dir`` aside."""
        with self._count_lock:
            self._quarantine_count += 1
        self.logger.error('Quarantined %s to %s: %s', hash_dir, dest, reason)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
