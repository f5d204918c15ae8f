"""Container and account databases: one SQLite file per container or
account, with the rows and rules of Swift's ``ContainerBroker`` and
``AccountBroker``.

::

    <device>/containers/<partition>/<hash[-3:]>/<hash>/<hash>.db
    <device>/accounts/<partition>/<hash[-3:]>/<hash>/<hash>.db
    <device>/quarantined/containers/<hash>[-<uuid>]/<hash>.db   (damaged)

A container database holds a row per object (an ``object`` row, a
tombstone once deleted); an account database a row per container. Rows
are never changed in place: a newer version of a row replaces the old
one (DELETE then INSERT), so it gets a new, higher ROWID. Replication
relies on that: "every row after ROWID n" is what a replica has not seen
yet, and ``AUTOINCREMENT`` never hands a ROWID out twice, even after
:meth:`DatabaseBroker.reclaim` removed the highest rows.

Design choices (and where they differ from Swift):

* Timestamps are stored as :attr:`Timestamp.normal` text, normalised on
  the way in. That form has a fixed width, so SQLite compares the text
  exactly as :class:`~coordsync.common.timestamp.Timestamp` compares the
  values, and SQL can use ``max()``, ``<`` and indexes on them directly.
* No pending file: Swift batches object updates in a pickled side file;
  here every write goes straight to SQLite in one ``BEGIN IMMEDIATE``
  transaction (a merge of many rows is one transaction too).
* WAL journal, ``synchronous=NORMAL``: readers never block the writer
  and a commit costs no fsync. A process crash loses nothing; a power
  cut may lose the last commits but never corrupts the file. That is the
  trade Swift makes too (its pending file is not fsynced): every object
  write updates each replica of its container, and replication refills a
  replica that lost a commit. :meth:`DatabaseBroker.initialize` does
  fsync the new file and its directory: a database never half-exists.
* Merges converge whatever the order: for one name (and storage policy)
  the newest ``created_at`` wins; the rare tie of two different rows
  with one timestamp is broken the same way on every replica (a
  tombstone wins, then the larger size, content type, etag), so merging
  A into B and B into A give the same rows. Metadata likewise (a
  deletion wins a tie).
* Account rows: the newest put and the newest delete timestamps are kept
  independently (as Swift); the object and byte counts, which change
  without either timestamp changing, come from the newest *report*: each
  row carries ``reported_at`` (when the container's stats were taken),
  where Swift keeps whichever report arrived last -- which is not
  commutative, so replicas could keep stale counts forever.
* Counts and the rolling ``hash`` of the rows are kept by SQL triggers,
  in the transaction that changes the rows, as Swift does.
* Connections: each call checks one out of a small per-broker idle list
  (or opens one) and gives it back, so one broker may be used from
  several threads; a connection to a file that was replaced since (a
  whole-database copy from a replica, a quarantine by another process)
  is closed rather than reused.
* A database file is never replaced alone (renamed over) while it may
  be open: SQLite would read the new file through the old one's
  ``-wal``, found by name. Move or remove the whole ``<hash>``
  directory, as :meth:`DatabaseBroker.quarantine` does, and put a
  database only where none is; :meth:`DatabaseBroker.initialize`
  removes the side files a deleted database left.
* Damage: a file SQLite calls malformed, not a database or encrypted --
  or an empty or foreign file where a database should be -- is moved
  aside (never deleted) and :class:`DatabaseCorrupt` raised, with one
  line of text. Any other SQLite failure raises :class:`DatabaseError`;
  no raw ``sqlite3`` error leaves this module.

Every method blocks on disk I/O; callers in green threads run it through
:func:`coordsync.concurrency.run_in_thread`.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
import urllib.parse
import uuid

from oslo_log import log as logging

from coordsync import exceptions
from coordsync.common import fsutil
from coordsync.common import hashing
from coordsync.common.timestamp import Timestamp
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

CONTAINER_DATADIR = 'containers'
ACCOUNT_DATADIR = 'accounts'
QUARANTINE_DIR = 'quarantined'
DB_EXT = '.db'
DEFAULT_TIMEOUT = 10.0
# NOTE: bumped by any schema change; a file written by newer code is
# refused (DatabaseError), never quarantined.
SCHEMA_VERSION = 1
ZERO_TIMESTAMP = Timestamp(0).normal
EMPTY_HASH = '0' * 32
STATUS_DELETED = 'DELETED'
# How many deleted rows one reclaim transaction removes: keeps the write
# lock short for the writers waiting behind it.
RECLAIM_BATCH = 1000

# NOTE: SQLite before 3.32 takes at most 999 parameters per statement.
_NAMES_PER_QUERY = 500
_MAX_IDLE = 4
# SQLite result codes of a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB).
_CORRUPT_CODES = (11, 26)
_CORRUPT_WORDS = ('malformed', 'not a database', 'file is encrypted')
_SQLITE_CANTOPEN = 14
_SIDE_FILES = ('-wal', '-shm')
_HASH_RE = re.compile(r'[0-9a-f]{32}\Z')


class DatabaseError(exceptions.CoordsyncError):
    """A container or account database cannot be read or written."""


class DatabaseNotFound(DatabaseError):
    """No database file exists at this path."""


class DatabaseCorrupt(DatabaseError):
    """The file was damaged; it has been moved to quarantine."""


class DatabaseConflict(DatabaseError):
    """:meth:`DatabaseBroker.initialize` found the database existing."""


class _Unusable(Exception):
    """The file opens but is not a usable database of ours (empty,
    foreign, missing its stat row): damaged like a corrupt one."""


# -- paths -----------------------------------------------------------------

def db_path(dev_path, datadir, partition, name_hash):
    """``<dev>/<datadir>/<part>/<hash[-3:]>/<hash>/<hash>.db``."""
    if not isinstance(name_hash, str) or not _HASH_RE.match(name_hash):
        raise ValueError('invalid name hash %r' % (name_hash,))
    return os.path.join(dev_path, datadir, layout.check_partition(partition),
                        hashing.suffix_of(name_hash), name_hash,
                        name_hash + DB_EXT)


def container_db_path(dev_path, partition, account, container, prefix='',
                      suffix=''):
    """Where the database of ``account/container`` lives on a device."""
    name_hash = hashing.hash_path(account, container, prefix=prefix,
                                  suffix=suffix)
    return db_path(dev_path, CONTAINER_DATADIR, partition, name_hash)


def account_db_path(dev_path, partition, account, prefix='', suffix=''):
    """Where the database of ``account`` lives on a device."""
    name_hash = hashing.hash_path(account, prefix=prefix, suffix=suffix)
    return db_path(dev_path, ACCOUNT_DATADIR, partition, name_hash)


# -- values ----------------------------------------------------------------

def normalize_timestamp(value):
    """The stored text of a timestamp; ValueError if it is not one."""
    return Timestamp(value).normal


def _check_text(value, what, empty_ok=True):
    """``value`` if it is text SQLite can store (valid UTF-8)."""
    if not isinstance(value, str) or not (value or empty_ok):
        raise ValueError('%s must be a%s str' % (
            what, '' if empty_ok else ' non-empty'))
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise ValueError('%s is not valid UTF-8' % what) from None
    return value


def _check_name(value, what='name'):
    """A row name: non-empty UTF-8 text without NUL.

    NOTE: NUL is refused so that names compare the same in SQL and in
    Python, and so no name can collide with Swift's reserved namespace.
    """
    _check_text(value, what, empty_ok=False)
    if '\x00' in value:
        raise ValueError('%s must not contain NUL' % what)
    return value


def _check_int(value, what, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError('%s must be an int, not %r' % (what, value))
    if minimum is not None and value < minimum:
        raise ValueError('%s must be at least %d' % (what, minimum))
    return value


def _check_flag(value, what):
    if value not in (0, 1):
        raise ValueError('%s must be 0 or 1, not %r' % (what, value))
    return int(value)


def _check_bound(value, what):
    """A listing bound (marker, prefix...): '' and None mean none."""
    if value is None or value == '':
        return None
    return _check_text(value, what)


def _one_line(text):
    return ' '.join(str(text).split())


def _prefix_end(prefix):
    """The least string above every string starting with ``prefix``, or
    None if there is none.

    NOTE: the next code point, skipping the surrogates, which are not
    text: UTF-8 byte order (SQLite's) and code point order (Python's)
    agree everywhere else.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000
        if code <= 0x10FFFF:
            return ''.join(chars) + chr(code)
    return None


def _chexor(old, *fields):
    """XOR the md5 of one row's fields into the rolling hash ``old``.

    Applied on every INSERT and DELETE of a row, so two databases with
    the same rows have the same hash whatever the order of their writes
    (Swift's ``chexor``; here every field of the row takes part).
    """
    text = '\x00'.join(str(field) for field in fields)
    digest = hashlib.md5(text.encode('utf-8'), usedforsecurity=False)
    return '%032x' % (int(old, 16) ^ int(digest.hexdigest(), 16))


def _is_corruption(err):
    code = getattr(err, 'sqlite_errorcode', None)
    if code is not None and code & 0xff in _CORRUPT_CODES:
        return True
    message = str(err)
    return any(word in message for word in _CORRUPT_WORDS)


def _file_id(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _close_quietly(conn):
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _prepare(conn):
    """What every connection needs, ours or the one building a file."""
    conn.row_factory = sqlite3.Row
    # NOTE: the triggers that keep the rolling hash call it.
    conn.create_function('chexor', -1, _chexor, deterministic=True)


def _transact(conn, func, args, write):
    """Run ``func(conn, *args)`` in one transaction.

    Reads get one too: a listing runs several queries and must see one
    snapshot. ``BEGIN IMMEDIATE`` takes the write lock up front, so a
    writer waits (up to the busy timeout) instead of failing halfway.
    """
    conn.execute('BEGIN IMMEDIATE' if write else 'BEGIN')
    try:
        result = func(conn, *args)
        conn.execute('COMMIT')
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute('ROLLBACK')
        raise
    return result


@contextlib.contextmanager
def _dir_locked(path, timeout):
    """Hold an exclusive ``flock`` on directory ``path`` (as Swift's
    ``lock_parent_directory``: no lock file is left behind)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DatabaseError('timed out after %.1fs locking %s'
                                        % (timeout, path)) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def _sync_table(incoming):
    return 'incoming_sync' if incoming else 'outgoing_sync'


def _metadata_rank(value_timestamp):
    """Newest wins; at one timestamp a deletion, then the larger value:
    every replica picks the same."""
    value, ts = value_timestamp
    return ts, value == '', value


def _merge_metadata(current, updates):
    merged = dict(current)
    for key, value_ts in updates.items():
        if key not in merged or (_metadata_rank(value_ts)
                                 > _metadata_rank(merged[key])):
            merged[key] = value_ts
    return merged


def _listing(fetch, to_entry, limit, marker, end_marker, prefix, delimiter,
             reverse):
    """Swift's container and account listing rules.

    ``fetch(lower, inclusive, upper, count)`` returns a cursor over up
    to ``count`` live rows (name first) above ``lower`` and below
    ``upper`` (each None for no bound), starting with the prefix, in
    listing order.

    Names are listed from ``marker`` (exclusive) to ``end_marker``
    (exclusive); in reverse order the two swap roles (``marker`` is
    then the upper bound). With a delimiter, the names that have it
    after the prefix are rolled up into one ``{'subdir': ...}`` entry
    each, ending with the delimiter, listed once where its first name
    would be -- except a subdir equal to the lower bound, which is what
    a client paging by the last entry it got sends back as its marker.
    ``limit`` counts subdirs too.
    """
    prefix = prefix or ''
    lower = end_marker if reverse else marker
    upper = marker if reverse else end_marker
    seen = lower
    inclusive = False
    entries = []
    while len(entries) < limit:
        rolled = None
        # NOTE: the cursor steps lazily and is closed at the first name
        # to roll up: SQLite computes no row past it.
        with contextlib.closing(fetch(lower, inclusive, upper,
                                      limit - len(entries))) as cursor:
            for row in cursor:
                name = row[0]
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0:
                    rolled = name[:cut + len(delimiter)]
                    break
                entries.append(to_entry(row))
                if reverse:
                    upper = name
                else:
                    lower, inclusive = name, False
        if rolled is None:
            # NOTE: every row was taken: the listing is full or the
            # names ran out.
            break
        if rolled != seen:
            entries.append({'subdir': rolled})
        # NOTE: jump over every name rolled into this subdir at once.
        if reverse:
            upper = rolled
        else:
            lower, inclusive = _prefix_end(rolled), True
            if lower is None:
                break
    return entries


# -- the common broker ------------------------------------------------------

class DatabaseBroker:
    """One database file: its rows, status, metadata and sync points.

    Subclasses name the tables and give the row rules; see
    :class:`ContainerBroker` and :class:`AccountBroker`. A broker is
    cheap to make: nothing is opened before the first call.
    """

    db_type = None
    datadir = None
    item_table = None
    stat_table = None
    columns = ()
    key_columns = ('name',)
    reclaim_column = None
    application_id = 0

    def __init__(self, db_file, account=None, container=None, logger=None,
                 timeout=DEFAULT_TIMEOUT, clock=time.time):
        if timeout <= 0:
            raise ValueError('timeout must be positive')
        self._db_file = db_file
        self.account = account
        self.container = container
        self.logger = logger or LOG
        self.timeout = timeout
        self.clock = clock
        # NOTE: list.pop and list.append are atomic: threads share it
        # without a lock.
        self._idle = []

    def __repr__(self):
        return '<%s %s>' % (type(self).__name__, self._db_file)

    @property
    def db_file(self):
        return self._db_file

    @property
    def db_dir(self):
        return os.path.dirname(self._db_file)

    @property
    def device_path(self):
        """The device holding the file, if it lies where :func:`db_path`
        puts it; None otherwise."""
        name_hash = os.path.basename(self._db_file)[:-len(DB_EXT)]
        hash_dir = self.db_dir
        suffix_dir = os.path.dirname(hash_dir)
        data_dir = os.path.dirname(os.path.dirname(suffix_dir))
        if (not self._db_file.endswith(DB_EXT)
                or not _HASH_RE.match(name_hash)
                or os.path.basename(hash_dir) != name_hash
                or os.path.basename(suffix_dir) != name_hash[-3:]
                or os.path.basename(data_dir) != self.datadir):
            return None
        return os.path.dirname(data_dir)

    def exists(self):
        """Whether the database file is there (it may still be damaged)."""
        return os.path.exists(self._db_file)

    def close(self):
        """Close the connections kept for reuse (others close on their
        own once given back)."""
        while self._idle:
            try:
                conn, _ident = self._idle.pop()
            except IndexError:
                break
            _close_quietly(conn)

    # -- creating ------------------------------------------------------------

    def initialize(self, put_timestamp=None, **kwargs):
        """Create the database, whole or not at all.

        The schema is written to a temporary file in the same directory
        and fsynced; then, under a lock on the directory, the file is
        hard-linked to the database's name, which fails if that name
        exists: of two concurrent creators exactly one wins and the
        other gets :class:`DatabaseConflict` (as it does when the
        database already existed). Nothing is left behind on failure.
        """
        put = normalize_timestamp(put_timestamp or 0)
        options = self._creation_options(**kwargs)
        if self.exists():
            raise DatabaseConflict('%s already exists' % self._db_file)
        try:
            fsutil.makedirs_durable(self.db_dir)
            fd, tmp = tempfile.mkstemp(
                dir=self.db_dir, prefix='.%s.' % os.path.basename(
                    self._db_file), suffix='.tmp')
            os.close(fd)
        except OSError as err:
            raise DatabaseError('cannot create %s: %s' % (
                self._db_file, _one_line(err))) from err
        try:
            self._build(tmp, put, options)
            self._publish(tmp)
        finally:
            for suffix in ('', '-journal') + _SIDE_FILES:
                with contextlib.suppress(OSError):
                    os.unlink(tmp + suffix)

    def _build(self, tmp, put, options):
        conn = None
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            _prepare(conn)
            # NOTE: nothing is fsynced per statement: the file is fsynced
            # once, whole, before it gets its name.
            conn.execute('PRAGMA synchronous = OFF')
            conn.execute('BEGIN')
            for statement in self._schema():
                conn.execute(statement)
            self._insert_stat_row(conn, put, options)
            conn.execute('PRAGMA application_id = %d' % self.application_id)
            conn.execute('PRAGMA user_version = %d' % SCHEMA_VERSION)
            conn.execute('COMMIT')
            conn.execute('PRAGMA journal_mode = WAL')
        except sqlite3.Error as err:
            raise DatabaseError('cannot create %s: %s' % (
                self._db_file, _one_line(err))) from err
        finally:
            _close_quietly(conn)

    def _publish(self, tmp):
        try:
            with open(tmp, 'rb') as fp:
                os.fsync(fp.fileno())
            with _dir_locked(self.db_dir, self.timeout):
                if self.exists():
                    raise DatabaseConflict('%s already exists'
                                           % self._db_file)
                self._remove_stale_side_files()
                os.link(tmp, self._db_file)
            fsutil.fsync_dir(self.db_dir)
        except FileExistsError:
            raise DatabaseConflict('%s already exists'
                                   % self._db_file) from None
        except OSError as err:
            raise DatabaseError('cannot create %s: %s' % (
                self._db_file, _one_line(err))) from err

    def _remove_stale_side_files(self):
        """Remove the ``-wal`` and ``-shm`` a deleted database left.

        NOTE: SQLite finds them by name and does not check whose they
        are: the new file would be read through the old one's WAL. With
        no database file, nothing can be using them legitimately (no
        broker creates a missing database on open), and the directory
        lock keeps other creators out meanwhile.
        """
        for suffix in _SIDE_FILES:
            try:
                os.unlink(self._db_file + suffix)
            except FileNotFoundError:
                continue
            self.logger.warning('Removed %s%s left by a deleted database',
                                self._db_file, suffix)

    def _new_db_id(self):
        """A new replica id: unique, and says which device holds it."""
        device = self.device_path
        name = os.path.basename(device) if device else 'unknown'
        return '%s-%s' % (uuid.uuid4(), name)

    def _creation_options(self, **kwargs):
        raise NotImplementedError

    def _schema(self):
        """The CREATE statements, one per string (triggers contain ';')."""
        raise NotImplementedError

    def _insert_stat_row(self, conn, put, options):
        raise NotImplementedError

    # -- running a call ------------------------------------------------------

    def _run(self, func, *args, write=False):
        """``func(conn, *args)`` in one transaction on a connection;
        every SQLite failure leaves as a :class:`DatabaseError`."""
        file_id = _file_id(self._db_file)
        if file_id is None:
            self.close()
            raise DatabaseNotFound('%s does not exist' % self._db_file)
        conn = None
        try:
            conn = self._take(file_id)
            result = _transact(conn, func, args, write)
        except (sqlite3.Error, _Unusable) as err:
            _close_quietly(conn)
            raise self._translate(err, file_id) from err
        except BaseException:
            _close_quietly(conn)
            raise
        if len(self._idle) < _MAX_IDLE:
            self._idle.append((conn, file_id))
        else:
            conn.close()
        return result

    def _take(self, file_id):
        while self._idle:
            try:
                conn, ident = self._idle.pop()
            except IndexError:
                break
            if ident == file_id:
                return conn
            _close_quietly(conn)
        return self._connect()

    def _connect(self):
        # NOTE: mode=rw: never create an empty file where a database
        # went missing.
        uri = 'file:%s?mode=rw' % urllib.parse.quote(
            os.path.abspath(self._db_file))
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout,
                               isolation_level=None, check_same_thread=False)
        try:
            _prepare(conn)
            conn.execute('PRAGMA synchronous = NORMAL')
            self._check_schema(conn)
            mode = conn.execute('PRAGMA journal_mode').fetchone()[0]
            if mode.lower() != 'wal':
                conn.execute('PRAGMA journal_mode = WAL')
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn):
        app_id = conn.execute('PRAGMA application_id').fetchone()[0]
        version = conn.execute('PRAGMA user_version').fetchone()[0]
        if app_id != self.application_id or version < 1:
            raise _Unusable('not a %s database (empty or foreign file)'
                            % self.db_type)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                '%s: schema version %d is newer than this code knows (%d)'
                % (self._db_file, version, SCHEMA_VERSION))

    def _translate(self, err, file_id):
        """The DatabaseError to raise for ``err``; quarantines first if
        it says the file is damaged."""
        if isinstance(err, _Unusable) or _is_corruption(err):
            return self._quarantine_damaged(_one_line(err), file_id)
        if not self.exists() and (
                getattr(err, 'sqlite_errorcode', None) == _SQLITE_CANTOPEN):
            return DatabaseNotFound('%s does not exist' % self._db_file)
        return DatabaseError('%s: %s' % (self._db_file, _one_line(err)))

    def _quarantine_damaged(self, reason, file_id):
        current = _file_id(self._db_file)
        if current is None:
            return DatabaseCorrupt('%s is damaged (%s) and was moved away '
                                   'meanwhile' % (self._db_file, reason))
        if current != file_id:
            # NOTE: replaced by a good copy since we opened it: moving
            # that one would quarantine the wrong file.
            return DatabaseError('%s was replaced while in use; try again'
                                 % self._db_file)
        try:
            dest = self.quarantine(reason)
        except OSError as err:
            return DatabaseError('%s is damaged (%s) and cannot be '
                                 'quarantined: %s' % (
                                     self._db_file, reason, _one_line(err)))
        return DatabaseCorrupt('%s is damaged (%s): quarantined to %s' % (
            self._db_file, reason, dest))

    def quick_check(self):
        """Run SQLite's ``PRAGMA quick_check`` over the whole file.

        For the auditor: damage in pages no query has read yet shows
        here, before a replicator copies the file or a client needs it.
        A damaged file is quarantined and :class:`DatabaseCorrupt`
        raised, as for damage met any other way.
        """
        def check(conn):
            found = [row[0] for row in conn.execute('PRAGMA quick_check')]
            if found != ['ok']:
                raise _Unusable('quick_check: %s' % '; '.join(
                    map(str, found[:3])))
        self._run(check)

    def possibly_quarantine(self, err):
        """Raise the DatabaseError for a ``sqlite3`` error: a damaged
        file is quarantined and :class:`DatabaseCorrupt` raised."""
        raise self._translate(err, _file_id(self._db_file)) from err

    def quarantine(self, reason):
        """Move the database aside, untouched; return its new path.

        Where :func:`db_path` put it, the whole ``<hash>`` directory
        (the file with its ``-wal`` and ``-shm``) moves in one rename to
        ``<device>/quarantined/<datadir>/<hash>`` (``-<uuid>`` appended
        if an earlier copy is there). Elsewhere the three files are
        renamed to ``<file>.corrupt-<uuid>``. Counts nothing: the caller
        does.
        """
        self.close()
        device = self.device_path
        if device is None:
            dest = '%s.corrupt-%s' % (self._db_file, uuid.uuid4().hex)
            os.rename(self._db_file, dest)
            for suffix in _SIDE_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self._db_file + suffix, dest + suffix)
        else:
            qdir = os.path.join(device, QUARANTINE_DIR, self.datadir)
            os.makedirs(qdir, exist_ok=True)
            target = os.path.join(qdir, os.path.basename(self.db_dir))
            try:
                os.rename(self.db_dir, target)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                target = '%s-%s' % (target, uuid.uuid4().hex)
                os.rename(self.db_dir, target)
            dest = os.path.join(target, os.path.basename(self._db_file))
        self.logger.error('Quarantined %s database %s to %s: %s',
                          self.db_type, self._db_file, dest, reason)
        return dest

    # -- status --------------------------------------------------------------

    def _info(self, conn):
        rows = conn.execute(self._info_sql()).fetchall()
        if len(rows) != 1:
            raise _Unusable('%s has %d rows, not 1'
                            % (self.stat_table, len(rows)))
        return dict(rows[0])

    def _info_sql(self):
        raise NotImplementedError

    def get_info(self):
        """The database's stat row, as a dict."""
        return self._run(self._info)

    def _deleted(self, info):
        raise NotImplementedError

    def _status_deleted(self, info):
        raise NotImplementedError

    def is_deleted(self):
        """Whether the container or account is gone (True as well when
        there is no file, as Swift)."""
        try:
            return self._run(lambda conn: self._deleted(self._info(conn)))
        except DatabaseNotFound:
            return True

    def is_status_deleted(self):
        """Whether it was deleted (more recently than created), objects
        or containers left in it or not."""
        return self._run(lambda conn: self._status_deleted(self._info(conn)))

    def empty(self):
        raise NotImplementedError

    def _states(self, conn):
        info = self._info(conn)
        return self._deleted(info), self._status_deleted(info)

    def _after_status_change(self, conn, before, timestamp):
        """Record when the deleted state flipped; keep the status text."""
        self._refresh_status(conn)
        if self._states(conn) != before:
            conn.execute('UPDATE %s SET status_changed_at = '
                         'max(status_changed_at, ?)' % self.stat_table,
                         (timestamp,))

    def _refresh_status(self, conn):
        """Hook: a container's status follows its timestamps."""

    def update_put_timestamp(self, timestamp):
        """Keep ``timestamp`` as the put timestamp if it is newer."""
        ts = normalize_timestamp(timestamp)
        self._run(self._update_put_timestamp, ts, write=True)

    def _update_put_timestamp(self, conn, ts):
        before = self._states(conn)
        conn.execute('UPDATE %s SET put_timestamp = ? WHERE put_timestamp '
                     '< ?' % self.stat_table, (ts, ts))
        self._after_status_change(conn, before, ts)

    def update_status_changed_at(self, timestamp):
        """Keep ``timestamp`` as the status change time if newer."""
        ts = normalize_timestamp(timestamp)
        self._run(lambda conn: conn.execute(
            'UPDATE %s SET status_changed_at = max(status_changed_at, ?)'
            % self.stat_table, (ts,)), write=True)

    def delete_db(self, timestamp):
        """Mark the database deleted at ``timestamp`` if that is newer
        than its delete timestamp: its metadata is cleared (with
        tombstones) and, unless it was put again since, its status
        becomes DELETED. One transaction."""
        ts = normalize_timestamp(timestamp)
        self._run(self._delete_db, ts, write=True)

    def _delete_db(self, conn, ts):
        before = self._states(conn)
        current = self._load_metadata(conn)
        self._store_metadata(conn, current, _merge_metadata(
            current, {key: ('', ts) for key in current}))
        conn.execute(
            "UPDATE %s SET delete_timestamp = ?, status = CASE WHEN ? > "
            "put_timestamp THEN '%s' ELSE status END WHERE "
            "delete_timestamp < ?" % (self.stat_table, STATUS_DELETED),
            (ts, ts, ts))
        self._after_status_change(conn, before, ts)

    def merge_timestamps(self, created_at, put_timestamp, delete_timestamp):
        """Take a replica's timestamps: the oldest creation, the newest
        put and delete (replication)."""
        values = tuple(normalize_timestamp(value) for value in (
            created_at, put_timestamp, delete_timestamp))
        self._run(self._merge_timestamps, *values, write=True)

    def _merge_timestamps(self, conn, created, put, delete):
        before = self._states(conn)
        conn.execute(
            'UPDATE %s SET created_at = min(created_at, ?), put_timestamp = '
            'max(put_timestamp, ?), delete_timestamp = max(delete_timestamp,'
            ' ?)' % self.stat_table, (created, put, delete))
        self._after_status_change(conn, before,
                                  Timestamp.now(self.clock).normal)

    # -- metadata ------------------------------------------------------------

    def _load_metadata(self, conn):
        row = conn.execute('SELECT metadata FROM %s' % self.stat_table
                           ).fetchone()
        if row is None:
            raise _Unusable('%s has no row' % self.stat_table)
        try:
            raw = json.loads(row[0])
        except ValueError:
            raise _Unusable('metadata is not JSON') from None
        if not isinstance(raw, dict) or not all(
                isinstance(value, list) and len(value) == 2
                and all(isinstance(part, str) for part in value)
                for value in raw.values()):
            raise _Unusable('metadata is not {name: [value, timestamp]}')
        return {key: tuple(value) for key, value in raw.items()}

    def _store_metadata(self, conn, current, merged):
        if merged != current:
            conn.execute('UPDATE %s SET metadata = ?' % self.stat_table,
                         (json.dumps(merged, sort_keys=True),))

    @property
    def metadata(self):
        """``{name: (value, timestamp)}``, deleted keys included (value
        ``''``): a replica merging it must learn of the deletions."""
        return self._run(self._load_metadata)

    @property
    def live_metadata(self):
        """``{name: (value, timestamp)}`` of the keys not deleted."""
        return {key: value_ts for key, value_ts in self.metadata.items()
                if value_ts[0] != ''}

    def update_metadata(self, updates):
        """Merge ``{name: (value, timestamp)}``: per key the newest
        timestamp wins; value ``''`` deletes the key, and the deletion is
        kept (until :meth:`reclaim`) so an older value merged from a
        replica cannot bring the key back."""
        checked = {}
        for key, value_ts in updates.items():
            _check_name(key, 'metadata key')
            try:
                value, ts = value_ts
            except (TypeError, ValueError):
                raise ValueError('metadata %r must be (value, timestamp)'
                                 % key) from None
            checked[key] = (_check_text(value, 'metadata value'),
                            normalize_timestamp(ts))
        if checked:
            self._run(self._update_metadata, checked, write=True)

    def _update_metadata(self, conn, updates):
        current = self._load_metadata(conn)
        self._store_metadata(conn, current, _merge_metadata(current,
                                                            updates))

    # -- rows ----------------------------------------------------------------

    def get_max_row(self):
        """The highest ROWID ever given (-1 if none): it never goes down."""
        return self._run(self._max_row)

    def _max_row(self, conn):
        row = conn.execute('SELECT seq FROM sqlite_sequence WHERE name = ?',
                           (self.item_table,)).fetchone()
        return row[0] if row else -1

    def get_items_since(self, start_row, count):
        """Up to ``count`` rows with ROWID above ``start_row``, by ROWID,
        as dicts (with ``ROWID``): what a replica has not seen."""
        _check_int(start_row, 'start_row')
        _check_int(count, 'count', 0)
        sql = 'SELECT ROWID, %s FROM %s WHERE ROWID > ? ORDER BY ROWID ' \
              'LIMIT ?' % (', '.join(self.columns), self.item_table)
        return self._run(lambda conn: [dict(row) for row in conn.execute(
            sql, (start_row, count))])

    def merge_items(self, items, source=None):
        """Merge rows (dicts as :meth:`get_items_since` returns) in one
        transaction; returns how many rows changed.

        Idempotent and commutative: per key the winning version is the
        same whatever the order rows arrive in. With ``source`` (the
        sending replica's id) its incoming sync point is raised to the
        highest ``ROWID`` of the items, in the same transaction.
        """
        items = list(items)
        rows = [self._normalize_item(item) for item in items]
        point = None
        if source is not None:
            _check_text(source, 'source', empty_ok=False)
            try:
                point = max((_check_int(item['ROWID'], 'ROWID')
                             for item in items), default=None)
            except KeyError:
                raise ValueError('items from a source need a ROWID') from None
        if not rows:
            return 0
        return self._run(self._merge, rows, source, point, write=True)

    def _merge(self, conn, rows, source, point):
        batch = {}
        for row in rows:
            key = self._key(row)
            batch[key] = (self._combine(batch[key], row) if key in batch
                          else row)
        stored = self._stored_rows(conn, {key[0] for key in batch})
        insert = 'INSERT INTO %s (%s) VALUES (%s)' % (
            self.item_table, ', '.join(self.columns),
            ', '.join('?' * len(self.columns)))
        changed = 0
        for key, row in batch.items():
            rowid, old = stored.get(key, (None, None))
            if old is not None:
                row = self._combine(old, row)
                if row == old:
                    continue
                conn.execute('DELETE FROM %s WHERE ROWID = ?'
                             % self.item_table, (rowid,))
            conn.execute(insert, tuple(row[col] for col in self.columns))
            changed += 1
        if source is not None and point is not None:
            self._raise_sync(conn, True, source, point)
        return changed

    def _stored_rows(self, conn, names):
        names = sorted(names)
        stored = {}
        for start in range(0, len(names), _NAMES_PER_QUERY):
            chunk = names[start:start + _NAMES_PER_QUERY]
            sql = 'SELECT ROWID, %s FROM %s WHERE name IN (%s)' % (
                ', '.join(self.columns), self.item_table,
                ', '.join('?' * len(chunk)))
            for found in conn.execute(sql, chunk):
                row = dict(found)
                rowid = row.pop('ROWID')
                stored[self._key(row)] = (rowid, row)
        return stored

    def _key(self, row):
        return tuple(row[col] for col in self.key_columns)

    def _normalize_item(self, item):
        raise NotImplementedError

    def _combine(self, one, other):
        """The row two versions of one key merge into: must not depend on
        their order (replicas converge)."""
        raise NotImplementedError

    # -- sync points ---------------------------------------------------------

    def get_sync(self, remote_id, incoming=True):
        """The sync point with replica ``remote_id``; -1 if none."""
        sql = 'SELECT sync_point FROM %s WHERE remote_id = ?' % _sync_table(
            incoming)

        def read(conn):
            row = conn.execute(sql, (remote_id,)).fetchone()
            return row[0] if row else -1
        return self._run(read)

    def get_syncs(self, incoming=True):
        """``[{'remote_id', 'sync_point'}]`` by remote id."""
        sql = 'SELECT remote_id, sync_point FROM %s ORDER BY remote_id' % (
            _sync_table(incoming))
        return self._run(lambda conn: [dict(row)
                                       for row in conn.execute(sql)])

    def merge_syncs(self, sync_points, incoming=True):
        """Raise sync points (``[{'remote_id', 'sync_point'}]``); a point
        never goes down."""
        checked = []
        for rec in sync_points:
            try:
                checked.append((
                    _check_text(rec['remote_id'], 'remote_id', False),
                    _check_int(rec['sync_point'], 'sync_point')))
            except KeyError as err:
                raise ValueError('sync point lacks %s' % err) from None
        if checked:
            self._run(self._merge_syncs, checked, incoming, write=True)

    def _merge_syncs(self, conn, checked, incoming):
        for remote_id, point in checked:
            self._raise_sync(conn, incoming, remote_id, point)

    def _raise_sync(self, conn, incoming, remote_id, point):
        conn.execute(
            'INSERT INTO %s (remote_id, sync_point, updated_at) VALUES '
            '(?, ?, ?) ON CONFLICT (remote_id) DO UPDATE SET sync_point = '
            'max(sync_point, excluded.sync_point), updated_at = '
            'excluded.updated_at' % _sync_table(incoming),
            (remote_id, point, Timestamp.now(self.clock).normal))

    def newid(self, remote_id):
        """Give a database copied whole from ``remote_id`` an id of its
        own, and note that it holds every row the copy had."""
        _check_text(remote_id, 'remote_id', empty_ok=False)
        self._run(self._newid, remote_id, write=True)

    def _newid(self, conn, remote_id):
        conn.execute('UPDATE %s SET id = ?' % self.stat_table,
                     (self._new_db_id(),))
        conn.execute(
            'INSERT OR REPLACE INTO incoming_sync (remote_id, sync_point, '
            'updated_at) VALUES (?, ?, ?)',
            (remote_id, self._max_row(conn),
             Timestamp.now(self.clock).normal))

    def get_replication_info(self):
        """:meth:`get_info` plus ``count`` (live rows), ``max_row`` and
        the raw ``metadata`` JSON, read together."""
        def read(conn):
            info = self._info(conn)
            info['count'] = info['%s_count' % self.item_table]
            info['max_row'] = self._max_row(conn)
            info['metadata'] = json.dumps(self._load_metadata(conn),
                                          sort_keys=True)
            return info
        return self._run(read)

    # -- reclaim -------------------------------------------------------------

    def reclaim(self, age_timestamp, sync_timestamp=None):
        """Forget deletions older than ``age_timestamp``: deleted rows
        and metadata tombstones (and, with ``sync_timestamp``, sync
        points not updated since). Returns how many rows went.

        Rows go in batches of :data:`RECLAIM_BATCH`, each its own
        transaction, so writers are not held up for long.
        """
        age = normalize_timestamp(age_timestamp)
        sync_ts = (None if sync_timestamp is None
                   else normalize_timestamp(sync_timestamp))
        sql = ('DELETE FROM %(t)s WHERE ROWID IN (SELECT ROWID FROM %(t)s '
               'WHERE deleted = 1 AND %(c)s < ? LIMIT ?)'
               % {'t': self.item_table, 'c': self.reclaim_column})
        total = 0
        while True:
            count = self._run(lambda conn: conn.execute(
                sql, (age, RECLAIM_BATCH)).rowcount, write=True)
            total += count
            if count < RECLAIM_BATCH:
                break
        self._run(self._reclaim_rest, age, sync_ts, write=True)
        return total

    def _reclaim_rest(self, conn, age, sync_ts):
        current = self._load_metadata(conn)
        kept = {key: value_ts for key, value_ts in current.items()
                if value_ts[0] != '' or value_ts[1] >= age}
        self._store_metadata(conn, current, kept)
        if sync_ts is not None:
            for incoming in (True, False):
                conn.execute('DELETE FROM %s WHERE updated_at < ?'
                             % _sync_table(incoming), (sync_ts,))

    # -- listing -------------------------------------------------------------

    def _list(self, conn, select, where, args, to_entry, limit, marker,
              end_marker, prefix, delimiter, reverse):
        ceiling = _prefix_end(prefix) if prefix else None
        order = 'DESC' if reverse else 'ASC'

        def fetch(lower, inclusive, upper, count):
            conds, params = list(where), list(args)
            for cond, value in (
                    ('name >= ?', prefix),
                    ('name < ?', ceiling),
                    ('name >= ?' if inclusive else 'name > ?', lower),
                    ('name < ?', upper)):
                if value is not None:
                    conds.append(cond)
                    params.append(value)
            sql = '%s WHERE %s ORDER BY name %s LIMIT ?' % (
                select, ' AND '.join(conds), order)
            return conn.execute(sql, params + [count])

        return _listing(fetch, to_entry, limit, marker, end_marker, prefix,
                        delimiter, reverse)

    @staticmethod
    def _listing_args(limit, marker, end_marker, prefix, delimiter):
        return (_check_int(limit, 'limit', 0),
                _check_bound(marker, 'marker'),
                _check_bound(end_marker, 'end_marker'),
                _check_bound(prefix, 'prefix'),
                _check_bound(delimiter, 'delimiter'))

    def _sync_tables(self):
        return tuple(
            'CREATE TABLE %s (remote_id TEXT PRIMARY KEY, sync_point '
            'INTEGER NOT NULL, updated_at TEXT NOT NULL)' % _sync_table(
                incoming) for incoming in (True, False))


# -- containers -------------------------------------------------------------

_CONTAINER_SCHEMA = (
    """CREATE TABLE object (
        ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 0),
        content_type TEXT NOT NULL,
        etag TEXT NOT NULL,
        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        storage_policy_index INTEGER NOT NULL)""",
    # NOTE: one row per name and policy (the reconciler needs a name's
    # misplaced row in another policy); listings walk (deleted, name).
    'CREATE UNIQUE INDEX ix_object_name_policy ON object (name, '
    'storage_policy_index)',
    'CREATE INDEX ix_object_deleted_name ON object (deleted, name)',
    # NOTE: container sync sends rows in (created_at, name) order.
    'CREATE INDEX ix_object_created_at_name ON object (created_at, name)',
    """CREATE TABLE policy_stat (
        storage_policy_index INTEGER PRIMARY KEY,
        object_count INTEGER NOT NULL DEFAULT 0,
        bytes_used INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE container_stat (
        account TEXT NOT NULL,
        container TEXT NOT NULL,
        created_at TEXT NOT NULL,
        put_timestamp TEXT NOT NULL,
        delete_timestamp TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        status_changed_at TEXT NOT NULL,
        reported_put_timestamp TEXT NOT NULL,
        reported_delete_timestamp TEXT NOT NULL,
        reported_object_count INTEGER NOT NULL DEFAULT 0,
        reported_bytes_used INTEGER NOT NULL DEFAULT 0,
        hash TEXT NOT NULL,
        id TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        x_container_sync_point1 INTEGER NOT NULL DEFAULT -1,
        x_container_sync_point2 INTEGER NOT NULL DEFAULT -1,
        storage_policy_index INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TRIGGER object_insert AFTER INSERT ON object
    BEGIN
        INSERT OR IGNORE INTO policy_stat (storage_policy_index)
            VALUES (new.storage_policy_index);
        UPDATE policy_stat
            SET object_count = object_count + 1 - new.deleted,
                bytes_used = bytes_used + (1 - new.deleted) * new.size
            WHERE storage_policy_index = new.storage_policy_index;
        UPDATE container_stat SET hash = chexor(
            hash, new.name, new.created_at, new.size, new.content_type,
            new.etag, new.deleted, new.storage_policy_index);
    END""",
    """CREATE TRIGGER object_delete AFTER DELETE ON object
    BEGIN
        UPDATE policy_stat
            SET object_count = object_count - (1 - old.deleted),
                bytes_used = bytes_used - (1 - old.deleted) * old.size
            WHERE storage_policy_index = old.storage_policy_index;
        UPDATE container_stat SET hash = chexor(
            hash, old.name, old.created_at, old.size, old.content_type,
            old.etag, old.deleted, old.storage_policy_index);
    END""",
    """CREATE TRIGGER object_update BEFORE UPDATE ON object
    BEGIN
        SELECT RAISE(ABORT, 'object rows are replaced, never updated');
    END""",
)

_CONTAINER_INFO_SQL = """
    SELECT s.account, s.container, s.created_at, s.put_timestamp,
        s.delete_timestamp, s.status, s.status_changed_at,
        coalesce(p.object_count, 0) AS object_count,
        coalesce(p.bytes_used, 0) AS bytes_used,
        s.reported_put_timestamp, s.reported_delete_timestamp,
        s.reported_object_count, s.reported_bytes_used, s.hash, s.id,
        s.x_container_sync_point1, s.x_container_sync_point2,
        s.storage_policy_index
    FROM container_stat s LEFT JOIN policy_stat p
        ON p.storage_policy_index = s.storage_policy_index"""


def _object_rank(row):
    """Newest wins; at one timestamp a tombstone, then the larger size,
    content type and etag: every replica picks the same row."""
    return (row['created_at'], row['deleted'], row['size'],
            row['content_type'], row['etag'])


class ContainerBroker(DatabaseBroker):
    """A container's database: its object rows, counts and status.

    ``get_info()`` counts the objects of the container's own storage
    policy (rows of another policy wait for the reconciler), as Swift.
    """

    db_type = 'container'
    datadir = CONTAINER_DATADIR
    item_table = 'object'
    stat_table = 'container_stat'
    columns = ('name', 'created_at', 'size', 'content_type', 'etag',
               'deleted', 'storage_policy_index')
    key_columns = ('name', 'storage_policy_index')
    reclaim_column = 'created_at'
    application_id = 0x43534443  # 'CSDC'

    def initialize(self, put_timestamp=None, storage_policy_index=0):
        """Create the database (see :meth:`DatabaseBroker.initialize`)."""
        super().initialize(put_timestamp,
                           storage_policy_index=storage_policy_index)

    def _creation_options(self, storage_policy_index=0):
        if self.account is None or self.container is None:
            raise ValueError('a new container database needs its account '
                             'and container names')
        _check_name(self.account, 'account')
        _check_name(self.container, 'container')
        return {'storage_policy_index': _check_int(
            storage_policy_index, 'storage_policy_index', 0)}

    def _schema(self):
        return self._sync_tables() + _CONTAINER_SCHEMA

    def _insert_stat_row(self, conn, put, options):
        policy = options['storage_policy_index']
        conn.execute('INSERT INTO policy_stat (storage_policy_index) '
                     'VALUES (?)', (policy,))
        conn.execute(
            'INSERT INTO container_stat (account, container, created_at, '
            'put_timestamp, delete_timestamp, status_changed_at, '
            'reported_put_timestamp, reported_delete_timestamp, hash, id, '
            'storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (self.account, self.container, Timestamp.now(self.clock).normal,
             put, ZERO_TIMESTAMP, put, ZERO_TIMESTAMP, ZERO_TIMESTAMP,
             EMPTY_HASH, self._new_db_id(), policy))

    def _info_sql(self):
        return _CONTAINER_INFO_SQL

    def _deleted(self, info):
        return (info['object_count'] == 0
                and info['delete_timestamp'] > info['put_timestamp'])

    def _status_deleted(self, info):
        return info['delete_timestamp'] > info['put_timestamp']

    def _refresh_status(self, conn):
        conn.execute(
            "UPDATE container_stat SET status = CASE WHEN delete_timestamp "
            "> put_timestamp THEN '%s' ELSE '' END" % STATUS_DELETED)

    def empty(self):
        """No live object in any storage policy (stricter than
        :meth:`is_deleted`, which counts the container's policy)."""
        return self._run(lambda conn: conn.execute(
            'SELECT coalesce(max(object_count), 0) FROM policy_stat'
        ).fetchone()[0] == 0)

    def set_storage_policy_index(self, policy, timestamp):
        """Take ``policy`` as the container's storage policy: a recreate
        with another policy, or the policy its replicas agreed on (see
        :func:`coordsync.reconciler.queue.winning_policy`).
        ``timestamp`` becomes its status_changed_at, so every replica
        that takes the winner's policy also takes the time it ranks by.
        """
        policy = _check_int(policy, 'storage_policy_index', 0)
        when = normalize_timestamp(timestamp)

        def write(conn):
            conn.execute('INSERT OR IGNORE INTO policy_stat '
                         '(storage_policy_index) VALUES (?)', (policy,))
            conn.execute('UPDATE container_stat SET storage_policy_index '
                         '= ?, status_changed_at = ?', (policy, when))
        self._run(write, write=True)

    def get_misplaced_since(self, start_row, count):
        """Up to ``count`` rows after ROWID ``start_row`` whose policy is
        not the container's (the reconciler's queue is filled from
        them), in ROWID order, each with its ``ROWID``."""
        def read(conn):
            return [dict(row) for row in conn.execute(
                'SELECT ROWID, name, created_at, size, content_type, etag, '
                'deleted, storage_policy_index FROM object WHERE ROWID > ? '
                'AND storage_policy_index != (SELECT storage_policy_index '
                'FROM container_stat) ORDER BY ROWID LIMIT ?',
                (int(start_row), int(count)))]
        return self._run(read)

    def get_policy_stats(self):
        """``{policy index: {'object_count', 'bytes_used'}}``."""
        def read(conn):
            return {row[0]: {'object_count': row[1], 'bytes_used': row[2]}
                    for row in conn.execute(
                        'SELECT storage_policy_index, object_count, '
                        'bytes_used FROM policy_stat')}
        return self._run(read)

    # -- objects -------------------------------------------------------------

    def put_object(self, name, timestamp, size, content_type, etag,
                   deleted=0, storage_policy_index=0):
        """Record a version of an object; kept only if it is the newest
        of that name (and policy)."""
        self.merge_items([{
            'name': name, 'created_at': timestamp, 'size': size,
            'content_type': content_type, 'etag': etag, 'deleted': deleted,
            'storage_policy_index': storage_policy_index}])

    def delete_object(self, name, timestamp, storage_policy_index=0):
        """Record that an object was deleted at ``timestamp``."""
        self.put_object(name, timestamp, 0, 'application/deleted', 'noetag',
                        deleted=1, storage_policy_index=storage_policy_index)

    def _normalize_item(self, item):
        try:
            return {
                'name': _check_name(item['name']),
                'created_at': normalize_timestamp(item['created_at']),
                'size': _check_int(item['size'], 'size', 0),
                'content_type': _check_text(item['content_type'],
                                            'content_type'),
                'etag': _check_text(item['etag'], 'etag'),
                'deleted': _check_flag(item.get('deleted', 0), 'deleted'),
                'storage_policy_index': _check_int(
                    item.get('storage_policy_index', 0),
                    'storage_policy_index', 0)}
        except KeyError as err:
            raise ValueError('object row lacks %s' % err) from None

    def _combine(self, one, other):
        return max(one, other, key=_object_rank)

    def list_objects_iter(self, limit, marker, end_marker, prefix,
                          delimiter, reverse=False,
                          storage_policy_index=None):
        """Live objects as ``{'name', 'created_at', 'size',
        'content_type', 'etag'}`` and ``{'subdir'}`` dicts, by Swift's
        listing rules (see :func:`_listing`), of the container's own
        policy unless ``storage_policy_index`` is given."""
        args = self._listing_args(limit, marker, end_marker, prefix,
                                  delimiter)
        if storage_policy_index is not None:
            _check_int(storage_policy_index, 'storage_policy_index', 0)
        return self._run(self._list_objects, args, bool(reverse),
                         storage_policy_index)

    def _list_objects(self, conn, args, reverse, policy):
        if policy is None:
            policy = conn.execute('SELECT storage_policy_index FROM '
                                  'container_stat').fetchone()[0]
        return self._list(
            conn, 'SELECT name, created_at, size, content_type, etag FROM '
            'object', ('deleted = 0', 'storage_policy_index = ?'), (policy,),
            _object_entry, *args, reverse)

    # -- account updates and container sync ----------------------------------

    def reported(self, put_timestamp, delete_timestamp, object_count,
                 bytes_used):
        """Note what was last reported to the account."""
        values = (normalize_timestamp(put_timestamp),
                  normalize_timestamp(delete_timestamp),
                  _check_int(object_count, 'object_count', 0),
                  _check_int(bytes_used, 'bytes_used', 0))
        self._run(lambda conn: conn.execute(
            'UPDATE container_stat SET reported_put_timestamp = ?, '
            'reported_delete_timestamp = ?, reported_object_count = ?, '
            'reported_bytes_used = ?', values), write=True)

    def set_x_container_sync_points(self, sync_point1, sync_point2):
        """Set container sync's two points; None leaves one as it is."""
        updates = [(col, _check_int(value, col)) for col, value in (
            ('x_container_sync_point1', sync_point1),
            ('x_container_sync_point2', sync_point2)) if value is not None]
        if not updates:
            return
        sql = 'UPDATE container_stat SET %s' % ', '.join(
            '%s = ?' % col for col, _value in updates)
        self._run(lambda conn: conn.execute(
            sql, [value for _col, value in updates]), write=True)

    def sync_rows_after(self, point, limit):
        """Up to ``limit`` rows after ``point`` (``(created_at, name)``,
        None: from the start) in that order, as dicts with ROWID:
        container sync's order, the same on every replica."""
        _check_int(limit, 'limit', 0)
        columns = 'ROWID, %s' % ', '.join(self.columns)
        if point is None:
            sql = ('SELECT %s FROM object ORDER BY created_at, name LIMIT ?'
                   % columns)
            args = (limit,)
        else:
            sql = ('SELECT %s FROM object WHERE (created_at, name) > (?, ?) '
                   'ORDER BY created_at, name LIMIT ?' % columns)
            args = (point[0], point[1], limit)
        return self._run(lambda conn: [dict(row) for row in conn.execute(
            sql, args)])

    def sync_lag(self, point):
        """``(rows after point, created_at of the first of them or
        None)``."""
        where, args = '', ()
        if point is not None:
            where, args = 'WHERE (created_at, name) > (?, ?)', tuple(point)

        def read(conn):
            count, oldest = conn.execute(
                'SELECT count(*), min(created_at) FROM object %s' % where,
                args).fetchone()
            return count, oldest
        return self._run(read)

    def get_rows(self, names, storage_policy_index=0):
        """``{name: row dict}`` of the rows stored for ``names`` in one
        storage policy."""
        def read(conn):
            return {key[0]: row for key, (_rowid, row) in
                    self._stored_rows(conn, set(names)).items()
                    if key[1] == storage_policy_index}
        return self._run(read)

    def _newid(self, conn, remote_id):
        super()._newid(conn, remote_id)
        # NOTE: a fresh copy has reported nothing to the account yet.
        conn.execute(
            'UPDATE container_stat SET reported_put_timestamp = ?, '
            'reported_delete_timestamp = ?, reported_object_count = 0, '
            'reported_bytes_used = 0', (ZERO_TIMESTAMP, ZERO_TIMESTAMP))


def _object_entry(row):
    return {'name': row[0], 'created_at': row[1], 'size': row[2],
            'content_type': row[3], 'etag': row[4]}


# -- accounts ---------------------------------------------------------------

_ACCOUNT_SCHEMA = (
    """CREATE TABLE container (
        ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        put_timestamp TEXT NOT NULL,
        delete_timestamp TEXT NOT NULL,
        object_count INTEGER NOT NULL CHECK (object_count >= 0),
        bytes_used INTEGER NOT NULL CHECK (bytes_used >= 0),
        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
        storage_policy_index INTEGER NOT NULL,
        reported_at TEXT NOT NULL)""",
    'CREATE UNIQUE INDEX ix_container_name ON container (name)',
    'CREATE INDEX ix_container_deleted_name ON container (deleted, name)',
    """CREATE TABLE policy_stat (
        storage_policy_index INTEGER PRIMARY KEY,
        container_count INTEGER NOT NULL DEFAULT 0,
        object_count INTEGER NOT NULL DEFAULT 0,
        bytes_used INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE account_stat (
        account TEXT NOT NULL,
        created_at TEXT NOT NULL,
        put_timestamp TEXT NOT NULL,
        delete_timestamp TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        status_changed_at TEXT NOT NULL,
        container_count INTEGER NOT NULL DEFAULT 0,
        object_count INTEGER NOT NULL DEFAULT 0,
        bytes_used INTEGER NOT NULL DEFAULT 0,
        hash TEXT NOT NULL,
        id TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}')""",
    """CREATE TRIGGER container_insert AFTER INSERT ON container
    BEGIN
        INSERT OR IGNORE INTO policy_stat (storage_policy_index)
            VALUES (new.storage_policy_index);
        UPDATE policy_stat
            SET container_count = container_count + 1 - new.deleted,
                object_count = object_count
                    + (1 - new.deleted) * new.object_count,
                bytes_used = bytes_used + (1 - new.deleted) * new.bytes_used
            WHERE storage_policy_index = new.storage_policy_index;
        UPDATE account_stat
            SET container_count = container_count + 1 - new.deleted,
                object_count = object_count
                    + (1 - new.deleted) * new.object_count,
                bytes_used = bytes_used + (1 - new.deleted) * new.bytes_used,
                hash = chexor(hash, new.name, new.put_timestamp,
                              new.delete_timestamp, new.object_count,
                              new.bytes_used, new.deleted,
                              new.storage_policy_index, new.reported_at);
    END""",
    """CREATE TRIGGER container_delete AFTER DELETE ON container
    BEGIN
        UPDATE policy_stat
            SET container_count = container_count - (1 - old.deleted),
                object_count = object_count
                    - (1 - old.deleted) * old.object_count,
                bytes_used = bytes_used - (1 - old.deleted) * old.bytes_used
            WHERE storage_policy_index = old.storage_policy_index;
        UPDATE account_stat
            SET container_count = container_count - (1 - old.deleted),
                object_count = object_count
                    - (1 - old.deleted) * old.object_count,
                bytes_used = bytes_used - (1 - old.deleted) * old.bytes_used,
                hash = chexor(hash, old.name, old.put_timestamp,
                              old.delete_timestamp, old.object_count,
                              old.bytes_used, old.deleted,
                              old.storage_policy_index, old.reported_at);
    END""",
    """CREATE TRIGGER container_update BEFORE UPDATE ON container
    BEGIN
        SELECT RAISE(ABORT, 'container rows are replaced, never updated');
    END""",
)

_ACCOUNT_INFO_SQL = """
    SELECT account, created_at, put_timestamp, delete_timestamp, status,
        status_changed_at, container_count, object_count, bytes_used, hash,
        id
    FROM account_stat"""


def _stats_rank(row):
    """The newest report of a container's counts wins; equal reports
    tie-break the same way on every replica."""
    return (row['reported_at'], row['object_count'], row['bytes_used'],
            row['storage_policy_index'])


def _container_deleted(put, delete, object_count):
    """Swift's rule: deleted after its last put, and empty."""
    return int(delete > put and object_count == 0)


class AccountBroker(DatabaseBroker):
    """An account's database: a row per container, as its containers
    report themselves, and the account's totals and status.

    As Swift, an account deleted with :meth:`delete_db` stays deleted
    (status DELETED, until the reaper has emptied it and it is
    reclaimed) even if put again.
    """

    db_type = 'account'
    datadir = ACCOUNT_DATADIR
    item_table = 'container'
    stat_table = 'account_stat'
    columns = ('name', 'put_timestamp', 'delete_timestamp', 'object_count',
               'bytes_used', 'deleted', 'storage_policy_index',
               'reported_at')
    key_columns = ('name',)
    reclaim_column = 'delete_timestamp'
    application_id = 0x43534441  # 'CSDA'

    def initialize(self, put_timestamp=None):
        """Create the database (see :meth:`DatabaseBroker.initialize`)."""
        super().initialize(put_timestamp)

    def _creation_options(self):
        if self.account is None:
            raise ValueError('a new account database needs its account '
                             'name')
        _check_name(self.account, 'account')
        return {}

    def _schema(self):
        return self._sync_tables() + _ACCOUNT_SCHEMA

    def _insert_stat_row(self, conn, put, options):
        conn.execute(
            'INSERT INTO account_stat (account, created_at, put_timestamp, '
            'delete_timestamp, status_changed_at, hash, id) VALUES (?, ?, '
            '?, ?, ?, ?, ?)',
            (self.account, Timestamp.now(self.clock).normal, put,
             ZERO_TIMESTAMP, put, EMPTY_HASH, self._new_db_id()))

    def _info_sql(self):
        return _ACCOUNT_INFO_SQL

    def _deleted(self, info):
        return info['status'] == STATUS_DELETED or (
            info['container_count'] == 0
            and info['delete_timestamp'] > info['put_timestamp'])

    def _status_deleted(self, info):
        return (info['status'] == STATUS_DELETED
                or info['delete_timestamp'] > info['put_timestamp'])

    def empty(self):
        """No live container."""
        return self._run(lambda conn: conn.execute(
            'SELECT container_count FROM account_stat').fetchone()[0] == 0)

    def get_policy_stats(self):
        """``{policy index: {'container_count', 'object_count',
        'bytes_used'}}``."""
        def read(conn):
            return {row[0]: {'container_count': row[1],
                             'object_count': row[2], 'bytes_used': row[3]}
                    for row in conn.execute(
                        'SELECT storage_policy_index, container_count, '
                        'object_count, bytes_used FROM policy_stat')}
        return self._run(read)

    # -- containers ----------------------------------------------------------

    def put_container(self, name, put_timestamp, delete_timestamp,
                      object_count, bytes_used, storage_policy_index=0,
                      reported_at=None):
        """Record a container's report: its newest put and delete
        timestamps are kept; its counts if ``reported_at`` (when they
        were taken; now by default) is the newest."""
        if reported_at is None:
            reported_at = Timestamp.now(self.clock)
        self.merge_items([{
            'name': name, 'put_timestamp': put_timestamp,
            'delete_timestamp': delete_timestamp,
            'object_count': object_count, 'bytes_used': bytes_used,
            'storage_policy_index': storage_policy_index,
            'reported_at': reported_at}])

    def _normalize_item(self, item):
        try:
            put = normalize_timestamp(item['put_timestamp'])
            delete = normalize_timestamp(item['delete_timestamp'])
            count = _check_int(item['object_count'], 'object_count', 0)
            reported = item.get('reported_at')
            return {
                'name': _check_name(item['name']),
                'put_timestamp': put,
                'delete_timestamp': delete,
                'object_count': count,
                'bytes_used': _check_int(item['bytes_used'], 'bytes_used',
                                         0),
                'deleted': _container_deleted(put, delete, count),
                'storage_policy_index': _check_int(
                    item.get('storage_policy_index', 0),
                    'storage_policy_index', 0),
                'reported_at': (max(put, delete) if reported is None
                                else normalize_timestamp(reported))}
        except KeyError as err:
            raise ValueError('container row lacks %s' % err) from None

    def _combine(self, one, other):
        stats = max(one, other, key=_stats_rank)
        put = max(one['put_timestamp'], other['put_timestamp'])
        delete = max(one['delete_timestamp'], other['delete_timestamp'])
        return {
            'name': one['name'], 'put_timestamp': put,
            'delete_timestamp': delete,
            'object_count': stats['object_count'],
            'bytes_used': stats['bytes_used'],
            'deleted': _container_deleted(put, delete,
                                          stats['object_count']),
            'storage_policy_index': stats['storage_policy_index'],
            'reported_at': stats['reported_at']}

    def list_containers_iter(self, limit, marker, end_marker, prefix,
                             delimiter, reverse=False):
        """Live containers as ``{'name', 'count', 'bytes',
        'last_modified'}`` (the put timestamp) and ``{'subdir'}`` dicts,
        by Swift's listing rules (see :func:`_listing`)."""
        args = self._listing_args(limit, marker, end_marker, prefix,
                                  delimiter)
        return self._run(lambda conn: self._list(
            conn, 'SELECT name, object_count, bytes_used, put_timestamp '
            'FROM container', ('deleted = 0',), (), _container_entry, *args,
            bool(reverse)))


def _container_entry(row):
    return {'name': row[0], 'count': row[1], 'bytes': row[2],
            'last_modified': row[3]}
