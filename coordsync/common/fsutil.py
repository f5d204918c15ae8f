"""Filesystem steps that make object writes durable and exclusive."""

import contextlib
import ctypes
import fcntl
import os
import tempfile
import time

from coordsync import exceptions

LOCK_TIMEOUT = 10.0
_FIRST_LOCK_POLL = 0.001
_MAX_LOCK_POLL = 0.01


def fsync_dir(path):
    """Make the entries of directory ``path`` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIBC = []


def syncfs(path):
    """Make everything written to the filesystem holding ``path`` durable:
    file data, new directories, renames — for a whole batch of files in
    one call, where fsyncing each file and each directory would cost a
    journal commit apiece.

    Linux ``syncfs(2)``; elsewhere ``sync(2)``, which does more of the
    same.
    """
    if not _LIBC:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _LIBC.append(getattr(libc, 'syncfs', None))
        except OSError:
            _LIBC.append(None)
    call = _LIBC[0]
    if call is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if call(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, 'syncfs %s: %s' % (path,
                                                    os.strerror(errno)))
    finally:
        os.close(fd)


def makedirs_durable(path):
    """Create ``path`` and its missing parents, each one made durable.

    NOTE: ``os.makedirs`` alone leaves a new directory's entry in its
    parent unsynced, so a power cut could lose an object renamed into it.
    """
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for new in reversed(missing):
        try:
            os.mkdir(new)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(new))


def write_file_atomic(path, data, durable_dir=True):
    """Replace ``path`` with ``data``: readers see the old or the new file.

    The data goes to a temporary file in the same directory (a unique
    name, so concurrent writers never share one), is fsynced, renamed
    over ``path`` and, with ``durable_dir``, the directory is fsynced so
    the rename survives a power cut. The new file keeps the old one's
    permissions (daemons running as another user must still read it).
    A failure leaves ``path`` as it was and no temporary file behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix='.%s.' % os.path.basename(path),
        suffix='.tmp')
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    if durable_dir:
        fsync_dir(directory)


def _same_file(fd, path):
    try:
        linked = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (linked.st_dev, linked.st_ino)


def _open_lock_file(path, make_parent):
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    for _attempt in range(3):
        try:
            return os.open(path, flags, 0o644)
        except FileNotFoundError:
            if not make_parent:
                raise
            # NOTE: also after a concurrent delete removed the directory
            # between our mkdir and open.
            makedirs_durable(os.path.dirname(path))
    return os.open(path, flags, 0o644)


def _try_lock(path, make_parent):
    """An fd holding ``path`` locked, or None when someone else holds it."""
    fd = _open_lock_file(path, make_parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # NOTE: if the directory was deleted or moved aside while we waited,
    # we now hold a lock on a file nobody else will ever open: try again.
    if not _same_file(fd, path):
        os.close(fd)
        return _try_lock(path, make_parent)
    return fd


@contextlib.contextmanager
def locked(path, timeout=LOCK_TIMEOUT, make_parent=False):
    """Hold an exclusive ``flock`` on the file ``path`` (created if absent).

    Excludes other processes and, because every call opens its own file
    description, other threads of this one. Raises
    :class:`~coordsync.exceptions.DiskFileError` after ``timeout`` seconds
    and FileNotFoundError when the directory of ``path`` does not exist,
    unless ``make_parent`` says to create it.
    """
    deadline = time.monotonic() + timeout
    poll = _FIRST_LOCK_POLL
    fd = _try_lock(path, make_parent)
    while fd is None:
        if time.monotonic() >= deadline:
            raise exceptions.DiskFileError(
                'timed out after %.1fs waiting for lock %s' % (timeout, path))
        time.sleep(poll)
        poll = min(poll * 2, _MAX_LOCK_POLL)
        fd = _try_lock(path, make_parent)
    try:
        yield
    finally:
        os.close(fd)
