"""Where objects live on a device, and the files of one object.

::

    <devices>/<device>/objects/<partition>/<suffix>/<hash>/<timestamp>.data
    <devices>/<device>/objects/<partition>/<suffix>/<hash>/<timestamp>.ts
    <devices>/<device>/tmp/                    writes not yet published
    <devices>/<device>/quarantined/objects/<hash>[-<uuid>]

That is storage policy 0; the objects of policy N > 0 live the same way
under ``objects-N/`` and are quarantined to ``quarantined/objects-N/``
(:func:`coordsync.common.storage_policy.datadir`), while ``tmp/`` is
shared: a temporary file is renamed into its policy's tree when done.

``hash`` is :func:`coordsync.common.hashing.hash_path` of the object's name and
``suffix`` its last three characters. A hash directory normally holds one
file, the newest: a ``.data`` (the object) or a ``.ts`` (a tombstone: the
object was deleted at that time). Older files are left only between a
write and its cleanup. File names sort by time because timestamps have a
fixed width.
"""

import collections
import os
import re
import uuid

from coordsync.common import timestamp

# NOTE: a week: how long a delete must stay known for every replica to
# hear of it, so it must exceed the longest replication outage.
DEFAULT_RECLAIM_AGE = 7 * 24 * 3600
DATADIR = 'objects'
TMPDIR = 'tmp'
QUARANTINE_DIR = os.path.join('quarantined', DATADIR)
DATA_EXT = '.data'
TOMBSTONE_EXT = '.ts'

_HASH_RE = re.compile(r'[0-9a-f]{32}\Z')
_SUFFIX_RE = re.compile(r'[0-9a-f]{3}\Z')
_TIMESTAMP_RE = re.compile(r'[0-9]{10}\.[0-9]{5}\Z')
_FILE_RE = re.compile(r'([0-9]{10}\.[0-9]{5})(\.data|\.ts)\Z')
_MAX_PARTITION_DIGITS = 10


MAX_ACCOUNT_LENGTH = 256
MAX_CONTAINER_LENGTH = 256
MAX_OBJECT_LENGTH = 1024


def check_name(kind, value, max_length, allow_slash=False):
    """``value`` if it is a valid account, container or object name
    (decoded text), else ValueError with a one-line reason."""
    if not isinstance(value, str) or not value:
        raise ValueError('empty %s name' % kind)
    if len(value.encode('utf-8', 'surrogatepass')) > max_length:
        raise ValueError('%s name longer than %d bytes' % (kind, max_length))
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError('control character in %s name' % kind)
    if '/' in value and not allow_slash:
        raise ValueError('slash in %s name' % kind)
    parts = value.split('/') if allow_slash else [value]
    if any(p in ('', '.', '..') for p in parts):
        raise ValueError('empty, "." or ".." segment in %s name' % kind)
    return value


def split_object_name(name):
    """``/a/c/o`` -> ``(a, c, o)``, each checked as the object API checks
    it, or ValueError (one line)."""
    if not isinstance(name, str) or not name.startswith('/'):
        raise ValueError('object name must look like /a/c/o')
    parts = name[1:].split('/', 2)
    if len(parts) != 3:
        raise ValueError('object name must look like /a/c/o')
    return (check_name('account', parts[0], MAX_ACCOUNT_LENGTH),
            check_name('container', parts[1], MAX_CONTAINER_LENGTH),
            check_name('object', parts[2], MAX_OBJECT_LENGTH,
                       allow_slash=True))


def check_device(device):
    """Refuse a device name that could leave the devices directory."""
    if (not isinstance(device, str) or not device or '/' in device
            or '..' in device or '\x00' in device or device == '.'):
        raise ValueError('invalid device name %r' % (device,))
    return device


def check_partition(partition):
    """The directory name of ``partition`` (an int or a str of digits)."""
    if isinstance(partition, int) and not isinstance(partition, bool):
        text = str(partition)
    elif isinstance(partition, str):
        text = partition
    else:
        text = ''
    if (not text.isascii() or not text.isdigit()
            or len(text) > _MAX_PARTITION_DIGITS):
        raise ValueError('invalid partition %r' % (partition,))
    return str(int(text))


def check_suffix(suffix):
    if not isinstance(suffix, str) or not _SUFFIX_RE.match(suffix):
        raise ValueError('invalid suffix %r' % (suffix,))
    return suffix


def check_hash(obj_hash):
    if not isinstance(obj_hash, str) or not _HASH_RE.match(obj_hash):
        raise ValueError('invalid object hash %r' % (obj_hash,))
    return obj_hash


def list_partitions(datadir_path):
    """Partition numbers (ints, sorted) with a directory under
    ``datadir_path``; [] if it does not exist.

    NOTE: only the spelling check_partition() makes; '007' is not 7.
    """
    try:
        names = os.listdir(datadir_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(name) for name in names
                  if name.isascii() and name.isdigit()
                  and name == str(int(name))
                  and os.path.isdir(os.path.join(datadir_path, name)))


def is_suffix(name):
    return bool(_SUFFIX_RE.match(name))


def is_hash(name):
    return bool(_HASH_RE.match(name))


def is_timestamp(text):
    """Is ``text`` a timestamp in normal form, as in file names?"""
    return bool(_TIMESTAMP_RE.match(text))


class ObjectFile(collections.namedtuple('ObjectFile', 'timestamp ext')):
    """One ``<timestamp><ext>`` file of an object."""

    __slots__ = ()

    @property
    def name(self):
        return self.timestamp.normal + self.ext

    @property
    def is_tombstone(self):
        return self.ext == TOMBSTONE_EXT

    def sort_key(self):
        # NOTE: at equal timestamps the delete wins, as in Swift.
        return (self.timestamp, self.is_tombstone)


def parse_file_name(name):
    """The :class:`ObjectFile` named ``name``, or None for anything else."""
    match = _FILE_RE.match(name)
    if not match:
        return None
    return ObjectFile(timestamp.Timestamp(match.group(1)), match.group(2))


def object_files(hash_dir):
    """The object files in ``hash_dir``, newest first; foreign files and a
    missing directory are ignored."""
    try:
        names = os.listdir(hash_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = [f for f in map(parse_file_name, names) if f is not None]
    return sorted(files, key=ObjectFile.sort_key, reverse=True)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_empty_dir(path):
    try:
        os.rmdir(path)
    except OSError:
        # NOTE: not empty (a concurrent write, a foreign file) or gone.
        pass


def is_reclaimable(object_file, reclaim_age, now):
    """A tombstone older than ``reclaim_age`` seconds at ``now``.

    By then every replica has had time to learn of the delete, so the
    tombstone may go and the object is simply absent.
    """
    return (object_file.is_tombstone
            and float(object_file.timestamp) < now - reclaim_age)


def newest_file(hash_dir, reclaim_age, now):
    """The file that stands for the object now, or None; changes nothing."""
    files = object_files(hash_dir)
    if not files or is_reclaimable(files[0], reclaim_age, now):
        return None
    return files[0]


def cleanup_hash_dir(hash_dir, reclaim_age, now):
    """Keep only the newest file of an object; return it (or None).

    A reclaimable tombstone goes too, and so does a directory left without
    object files.
    """
    files = object_files(hash_dir)
    for old in files[1:]:
        _remove(os.path.join(hash_dir, old.name))
    newest = files[0] if files else None
    if newest is not None and is_reclaimable(newest, reclaim_age, now):
        _remove(os.path.join(hash_dir, newest.name))
        newest = None
    if newest is None:
        _remove_empty_dir(hash_dir)
    return newest


def suffix_objects(suffix_dir, reclaim_age, now, cleanup=False):
    """``[(hash, newest file)]`` of a suffix directory, sorted by hash.

    With ``cleanup`` every object is cleaned up on the way and a suffix
    directory left empty is removed; without, nothing changes on disk.
    """
    newest_of = cleanup_hash_dir if cleanup else newest_file
    try:
        names = sorted(os.listdir(suffix_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in filter(is_hash, names):
        newest = newest_of(os.path.join(suffix_dir, name), reclaim_age, now)
        if newest is not None:
            found.append((name, newest))
    if cleanup and not found:
        _remove_empty_dir(suffix_dir)
    return found


def quarantine_dir(datadir):
    """The quarantine directory (relative to a device) of the objects
    of ``datadir`` (``objects`` -> ``quarantined/objects``)."""
    return os.path.join('quarantined', datadir)


def quarantine_hash_dir(dev_path, hash_dir, qdir=QUARANTINE_DIR):
    """Move ``hash_dir`` out of the object tree, untouched, to ``qdir``
    (relative to ``dev_path``); return where."""
    qdir = os.path.join(dev_path, qdir)
    os.makedirs(qdir, exist_ok=True)
    dest = os.path.join(qdir, os.path.basename(hash_dir))
    if os.path.lexists(dest):
        dest = '%s-%s' % (dest, uuid.uuid4().hex)
    os.rename(hash_dir, dest)
    return dest
