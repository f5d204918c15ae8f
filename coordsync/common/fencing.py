"""Fencing tokens: a lock holder's writes carry its item and token, and
a node refuses a token older than the newest it accepted for that item.

A lock on ``coordsync/replicate/0/17`` is granted with a token that only
grows per item. Every request made for the item carries::

    X-Coordsync-Item: coordsync/replicate/0/17   (percent-quoted UTF-8)
    X-Coordsync-Token: 1700000000123456789       (decimal, 1..2**63-1)

inside the request's signature. The node server admits the pair through
its :class:`TokenStore` before doing anything: a token at least as new as
the highest seen is admitted (a newer one becomes the highest, durably);
an older one is refused with 409 and ``X-Coordsync-Fenced: true``. So a
holder that was paused while its lock moved cannot write once the new
holder has talked to that node, whatever it believes. A replicator
writing to its own node's disks asks the same store (the file is shared
by the processes of one node).

**Leases.** Writes made without coordination (a replicator's static
pass) carry no token, so no token can refuse them. Replication pushes
say what they are instead: their query holds :data:`REPLICATION_QUERY`
(``?replication=true``), signed with the rest of the request. The store
also keeps when it last accepted a tokened request per item
(:meth:`TokenStore.admitted_at`, refreshed at most every
:data:`TOUCH_AFTER` seconds), and a node server refuses a token-less
replication write into partition P of policy N for ``[server]
fence_lease`` seconds after it accepted a tokened request for
``coordsync/replicate/N/P`` (:func:`replicate_item`): a coordinated
holder is working on that partition here.
"""

import dataclasses
import fcntl
import os
import re
import sqlite3
import time
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency

LOG = logging.getLogger(__name__)

ITEM_HEADER = 'X-Coordsync-Item'
TOKEN_HEADER = 'X-Coordsync-Token'
FENCED_HEADER = 'X-Coordsync-Fenced'
# What a replication push made without a token adds to its query (the
# query is signed): the lease of a coordinated holder refuses it.
REPLICATION_QUERY = 'replication=true'
# NOTE: the time a tokened request was last accepted for an item is
# written again only when older than this: a lease is refreshed by a
# holder's requests without a disk write for each one.
TOUCH_AFTER = 1.0
MAX_ITEM_BYTES = 512
MAX_TOKEN = 2 ** 63 - 1
_KIND_RE = re.compile(r'[a-z][a-z0-9_-]{0,63}\Z')
_TOKEN_RE = re.compile(r'[1-9][0-9]{0,18}\Z')
# A quoted item is at most three characters per byte.
_MAX_ITEM_HEADER = 3 * MAX_ITEM_BYTES
# NOTE: how long a process waits for another one's write transaction on
# the shared file before answering "unavailable" (writes take ~1 ms).
BUSY_TIMEOUT = 10.0
# SQLite result codes of a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB).
_CORRUPT_CODES = (11, 26)


def check_item(item):
    """``item`` if it is a valid ``coordsync/<kind>/...`` name, else
    ValueError with a one-line reason."""
    if not isinstance(item, str) or not item:
        raise ValueError('empty item')
    if len(item.encode('utf-8', 'surrogatepass')) > MAX_ITEM_BYTES:
        raise ValueError('item longer than %d bytes' % MAX_ITEM_BYTES)
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in item):
        raise ValueError('control character in item')
    parts = item.split('/')
    if any(p in ('', '.', '..') for p in parts):
        raise ValueError('empty, "." or ".." part in item')
    if len(parts) < 3 or parts[0] != 'coordsync' or not _KIND_RE.match(
            parts[1]):
        raise ValueError('item must look like coordsync/<kind>/...')
    return item


def check_token(token):
    """``token`` as an int if it is one of 1..2**63-1, else ValueError."""
    if isinstance(token, bool) or not isinstance(token, int) \
            or not 1 <= token <= MAX_TOKEN:
        raise ValueError('token must be an integer in 1..%d' % MAX_TOKEN)
    return token


@dataclasses.dataclass(frozen=True)
class Fence:
    """What one lock grant lets a holder send: its item and token."""

    item: str
    token: int

    def __post_init__(self):
        check_item(self.item)
        check_token(self.token)

    def headers(self):
        """The request headers carrying this fence (to be signed)."""
        return {ITEM_HEADER: urllib.parse.quote(self.item, safe='/'),
                TOKEN_HEADER: str(self.token)}

    def replicate_target(self):
        """``(policy, partition)`` strings of a ``coordsync/replicate/``
        item, else None."""
        parts = self.item.split('/')
        if len(parts) == 4 and parts[1] == 'replicate':
            return parts[2], parts[3]
        return None


def from_headers(header):
    """The :class:`Fence` a request carries, None if it carries none.

    ``header(name)`` returns a header's value or None. Raises ValueError
    (one line) when only one of the two headers is there or either is
    malformed.
    """
    item, token = header(ITEM_HEADER), header(TOKEN_HEADER)
    if item is None and token is None:
        return None
    if item is None or token is None:
        raise ValueError('%s and %s go together' % (ITEM_HEADER,
                                                    TOKEN_HEADER))
    if len(item) > _MAX_ITEM_HEADER or not item.isascii():
        raise ValueError('bad %s' % ITEM_HEADER)
    try:
        item = check_item(urllib.parse.unquote(item, errors='strict'))
    except (UnicodeError, ValueError) as err:
        raise ValueError('bad %s: %s' % (ITEM_HEADER, err)) from None
    if urllib.parse.quote(item, safe='/') != header(ITEM_HEADER):
        # NOTE: one spelling per item: what Fence.headers() sends.
        raise ValueError('bad %s: not quoted as Fence.headers() does'
                         % ITEM_HEADER)
    if not _TOKEN_RE.match(token) or int(token) > MAX_TOKEN:
        raise ValueError('bad %s: a decimal in 1..%d' % (TOKEN_HEADER,
                                                         MAX_TOKEN))
    return Fence(item, int(token))


def fence_lease(conf):
    """``[server] fence_lease``, three coordination session timeouts
    unless set."""
    value = conf.server.fence_lease
    return 3.0 * conf.coordination.session_timeout if value is None \
        else value


def replicate_item(policy, partition):
    """The lock name (item) of a partition of a storage policy."""
    return 'coordsync/replicate/%s/%d' % (policy, partition)


def is_replication(query):
    """Does a request's query mark it as a replication write?"""
    return REPLICATION_QUERY in (query or '').split('&')


def with_replication(query):
    """``query`` with :data:`REPLICATION_QUERY` added."""
    if is_replication(query):
        return query
    return '&'.join(filter(None, [query, REPLICATION_QUERY]))


class TokenStoreError(Exception):
    """The token store cannot answer (disk error, busy beyond timeout)."""


class TokenStore:
    """The highest token accepted per item, in one SQLite file per node.

    Several processes of a node (the node server, a replicator writing
    to its local disks) share the file, so no token is cached in
    memory: every :meth:`admit` reads the file, and — only when the
    token grows, or to refresh the time of an item's last admission
    once it is :data:`TOUCH_AFTER` old — writes it in one short
    IMMEDIATE transaction (WAL, ``synchronous=FULL``: durable once
    admitted). SQLite runs in a
    thread (:func:`coordsync.concurrency.run_in_thread`), never on the
    hub. Connections are reused, but one whose file was replaced (by
    another process's quarantine) is dropped.

    A damaged file is renamed aside (``<path>.corrupt-<ns>``, with its
    ``-wal`` and ``-shm``), logged once, and a new empty store takes its
    place; the process that finds it does so (under a lock file, so two
    processes finding it at once move it once). Other failures (a full
    or failing disk, a writer holding the file beyond
    :data:`BUSY_TIMEOUT`) raise :class:`TokenStoreError`.

    NOTE: that loses the high-water marks, and it is accepted: (1) the
    holder of a lock checks it still owns it before each write, and a
    live holder learns of a lost session within one heartbeat, so the
    fence is the second line; (2) every write carries its own
    X-Timestamp and a store keeps the newest, so a stale holder's write
    can repeat work but never roll data back; (3) the mark is rebuilt by
    the current holder's next request to this node (its first REPLICATE
    of a pass). Refusing every tokened request for a session timeout
    instead would not rebuild the lost marks either (a holder paused
    longer than that passes afterwards) and would stop replication to
    this node meanwhile; a node that never answers is worse than one
    that forgot which holder is newest.
    """

    MAX_IDLE = 8

    def __init__(self, path, logger=None, clock=time.time,
                 touch_after=TOUCH_AFTER):
        self.path = path
        self.log = logger or LOG
        self.clock = clock
        self.touch_after = touch_after
        # NOTE: list.pop and list.append are atomic: threads share it
        # without a lock (a green lock would not hold across threads).
        self._idle = []

    # -- public API ---------------------------------------------------------

    def open(self):
        """Create the file now (and its directory); raise TokenStoreError
        if that is impossible. Optional: :meth:`admit` does it too."""
        concurrency.run_in_thread(self._guarded, self._read, ITEM_CHECK)

    def admit(self, item, token):
        """``(ok, highest)``: ok if ``token`` is at least the highest
        accepted for ``item``, which it then becomes (durably)."""
        check_item(item)
        check_token(token)
        return concurrency.run_in_thread(self._guarded, self._admit, item,
                                         token)

    def highest(self, item):
        """The highest token accepted for ``item`` (0 if none)."""
        return concurrency.run_in_thread(self._guarded, self._read, item)

    def admitted_at(self, item):
        """When (Unix time) a tokened request for ``item`` was last
        admitted, to within :attr:`touch_after`; None if never."""
        return concurrency.run_in_thread(self._guarded, self._read_row,
                                         item)[1]

    def items(self, prefix=''):
        """``[(item, highest token, admitted at)]`` of the items whose
        name starts with ``prefix``, by name."""
        return concurrency.run_in_thread(self._guarded, self._items,
                                         prefix)

    def reset(self, prefix=''):
        """Forget the highest tokens of the items whose name starts with
        ``prefix`` (every item by default); returns how many.

        For an operator moving the cluster to another coordination
        backend, whose tokens start again from low numbers: with every
        worker of the cluster stopped, each node's store is reset.
        """
        return concurrency.run_in_thread(self._guarded, self._reset,
                                         prefix)

    def close(self):
        """Close the connections kept for reuse."""
        while self._idle:
            self._idle.pop()[0].close()

    # -- in a thread --------------------------------------------------------

    def _guarded(self, func, *args):
        """Run ``func(db, *args)``; quarantine a damaged file once and
        retry on a new one."""
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._checkout()
                result = func(conn[0], *args)
                self._checkin(conn)
                conn = None
                return result
            except sqlite3.DatabaseError as err:
                if attempt == 2 or not _is_corruption(err):
                    raise self._error(err) from err
                if conn is not None:
                    conn[0].close()
                    conn = None
                try:
                    self._quarantine(err)
                except (sqlite3.Error, OSError) as again:
                    raise self._error(again) from again
            except OSError as err:
                raise self._error(err) from err
            finally:
                if conn is not None:
                    conn[0].close()

    def _error(self, err):
        return TokenStoreError('token store %s: %s' % (self.path, err))

    def _checkout(self):
        """``(db, file id)``: an idle connection to the current file, or
        a new one."""
        current = _file_id(self.path)
        while self._idle:
            try:
                db, ident = self._idle.pop()
            except IndexError:
                break
            if current is not None and ident == current:
                return db, ident
            db.close()
        db = self._connect()
        return db, current or _file_id(self.path)

    def _checkin(self, conn):
        if len(self._idle) < self.MAX_IDLE:
            self._idle.append(conn)
        else:
            conn[0].close()

    def _connect(self):
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT,
                             isolation_level=None, check_same_thread=False)
        try:
            db.execute('PRAGMA synchronous = FULL')
            if db.execute('PRAGMA journal_mode').fetchone()[0] != 'wal':
                db.execute('PRAGMA journal_mode = WAL')
            db.execute('CREATE TABLE IF NOT EXISTS tokens ('
                       'item TEXT PRIMARY KEY, token INTEGER NOT NULL, '
                       'updated REAL NOT NULL)')
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _read_row(db, item):
        """``(highest token, admitted at)``: ``(0, None)`` if none."""
        row = db.execute('SELECT token, updated FROM tokens WHERE '
                         'item = ?', (item,)).fetchone()
        return (row[0], row[1]) if row else (0, None)

    def _read(self, db, item):
        return self._read_row(db, item)[0]

    def _admit(self, db, item, token):
        highest, admitted_at = self._read_row(db, item)
        now = self.clock()
        if token < highest or (token == highest and abs(
                now - admitted_at) < self.touch_after):
            return token == highest, highest
        # NOTE: read again inside the write lock: another process may
        # have raised the mark between the two.
        db.execute('BEGIN IMMEDIATE')
        try:
            highest = self._read(db, item)
            if token >= highest:
                db.execute(
                    'INSERT INTO tokens (item, token, updated) '
                    'VALUES (?, ?, ?) ON CONFLICT (item) DO UPDATE SET '
                    'token = excluded.token, updated = excluded.updated',
                    (item, token, now))
                highest = token
            db.execute('COMMIT')
        except BaseException:
            if db.in_transaction:
                db.execute('ROLLBACK')
            raise
        return token >= highest, highest

    @staticmethod
    def _items(db, prefix):
        return db.execute(
            'SELECT item, token, updated FROM tokens WHERE substr(item, 1, '
            '?) = ? AND item != ? ORDER BY item',
            (len(prefix), prefix, ITEM_CHECK)).fetchall()

    @staticmethod
    def _reset(db, prefix):
        db.execute('BEGIN IMMEDIATE')
        try:
            count = db.execute(
                'DELETE FROM tokens WHERE substr(item, 1, ?) = ?',
                (len(prefix), prefix)).rowcount
            db.execute('COMMIT')
        except BaseException:
            if db.in_transaction:
                db.execute('ROLLBACK')
            raise
        return count

    def _quarantine(self, err):
        """Move the damaged file aside, unless another process did."""
        self.close()
        with open(self.path + '.lock', 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self._usable():
                    return  # NOTE: another process replaced it already.
                dest = '%s.corrupt-%d' % (self.path, time.time_ns())
                for suffix in ('', '-wal', '-shm'):
                    try:
                        os.rename(self.path + suffix, dest + suffix)
                    except FileNotFoundError:
                        pass
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self.log.error('Token store %s is damaged (%s): moved to %s and '
                       'started anew; the highest tokens it held are lost',
                       self.path, err, dest)

    def _usable(self):
        try:
            db = self._connect()
            try:
                self._read(db, ITEM_CHECK)
            finally:
                db.close()
        except sqlite3.DatabaseError as err:
            if _is_corruption(err):
                return False
            raise
        return True


# An item no lock is named after, read to check that the file answers.
ITEM_CHECK = 'coordsync/check/-'


def _file_id(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _is_corruption(err):
    code = getattr(err, 'sqlite_errorcode', None)
    if code is not None:
        return code & 0xff in _CORRUPT_CODES
    # NOTE: before Python 3.11 only the message tells.
    return not isinstance(err, sqlite3.OperationalError) or \
        'malformed' in str(err) or 'not a database' in str(err)
