"""Locks on ZooKeeper: one ephemeral znode per held item, taken in batches.

tooz's lock recipe costs 4-5 requests per take and release and leaves a
persistent znode behind for every lock name ever used. Here a lock is one
plain EPHEMERAL znode under one persistent root, on the kazoo client (and
so the session) the member already has::

    /coordsync/locks/<group>/coordsync%2Freplicate%2F0%2F17
        data: {"member": "n1@host.3f2a...", "at": 1700000000.0}

A window of names is taken in one multi-transaction of creates. ZooKeeper
applies a multi atomically: if one name exists (held elsewhere) the whole
transaction is refused, with NodeExistsError for that name and
RolledBackError / RuntimeInconsistency for the others. That name is
dropped and the rest tried once more; if that is refused too, the
window's remaining names are created one by one (pipelined).

Fencing token: the znode's creation zxid. Every create of one committed
multi carries the transaction's zxid, so one ``exists()`` per window
reads it; it is sent right behind the multi without waiting, because
ZooKeeper answers one session's requests in order. Single creates return
their stat. Zxids only grow, so a re-grant of a name always carries a
larger token.

Releases are buffered: the znodes of released locks are deleted in one
multi a few milliseconds later (:data:`FLUSH_DELAY`), at once when
:data:`FLUSH_AT` are pending, or on :meth:`ZooKeeperLocks.flush`.

Safety rules, each for a way a lock could be deleted from under its
next holder:

* a znode is deleted only while the session that created it is the
  client's current one: after a lost session our ephemerals are gone and
  the same path may be another member's lock by now;
* a delete whose outcome is unknown (timeout, connection lost) is
  retried only after an ``exists()`` shows the znode is still ours
  (owner = our session, creation zxid = the grant's token);
* every call is bounded by the op timeout (kazoo would otherwise wait
  for the whole outage); a create that succeeds after we gave up is
  deleted as soon as its answer arrives.

No pickle: the data is JSON, and only ``list_locks()`` reads it.
"""

import collections
import json
import time
import urllib.parse

from kazoo import exceptions as kazoo_exceptions

from coordsync import concurrency
from coordsync import exceptions

ROOT = '/coordsync/locks'
# Lock names hold account and container names (up to 256 bytes each in
# Swift); fully percent-encoded that stays well under this.
MAX_NODE_NAME = 2048
# Operations in one multi-transaction (ZooKeeper caps a request at 1 MB).
MAX_OPS = 128
FLUSH_DELAY = 0.02
FLUSH_AT = 64
RETRY_DELAY = 0.5

# Per-operation results of a refused multi that say nothing about the
# operation itself: another one in the transaction failed.
_NOT_TRIED = (kazoo_exceptions.RolledBackError,
              kazoo_exceptions.RuntimeInconsistency)


def lock_root(group):
    return '%s/%s' % (ROOT, group)


def encode_name(name):
    """The znode name of lock ``name``: percent-encoded, ``/`` included."""
    node = urllib.parse.quote(name, safe='')
    if len(node) > MAX_NODE_NAME:
        raise ValueError('lock name too long (%d characters encoded, at '
                         'most %d): %.60r...' % (len(node), MAX_NODE_NAME,
                                                 name))
    return node


def decode_name(node):
    return urllib.parse.unquote(node)


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


class Grant:
    """One held lock znode: its path, fencing token and owner session."""

    __slots__ = ('path', 'token', 'session')

    def __init__(self, path, token, session):
        self.path = path
        self.token = token
        self.session = session

    def __repr__(self):
        return 'Grant(%r, token=%r, session=%r)' % (self.path, self.token,
                                                    self.session)


class ZooKeeperLocks:
    """The lock table of one member, on its kazoo client.

    :param client: the started KazooClient tooz's driver holds.
    :param group: the coordination group; its locks live under
        ``/coordsync/locks/<group>``.
    :param op_timeout: longest wait, in seconds, for any one call.
    """

    def __init__(self, client, group, member_id, op_timeout, logger,
                 clock=time.time):
        self._client = client
        self.root = lock_root(group)
        self._member_id = member_id
        self._op_timeout = op_timeout
        self.log = logger
        self._clock = clock
        self._root_ready = False
        # path -> token of the locks we hold, and paths being created.
        self._granted = {}
        self._taking = set()
        # path -> (Grant, uncertain): uncertain means the znode may be
        # gone or never made (an answer was lost): checked before delete.
        self._pending = {}
        # Grants learnt of in kazoo's callbacks (another thread with the
        # threading handler); only flush() moves them to _pending.
        self._late = collections.deque()
        self._releasing = frozenset()
        self._flushing = None
        self._timer = None
        self._timer_due = None

    # -- paths and sessions ----------------------------------------------

    def path(self, name):
        return '%s/%s' % (self.root, encode_name(name))

    def session(self):
        """The current session id, None while not connected."""
        client_id = self._client.client_id
        return None if client_id is None else client_id[0]

    def owns(self, grant):
        """True while the session that created ``grant`` is current."""
        return grant.session is not None and self.session() == grant.session

    # -- taking -----------------------------------------------------------

    def take(self, names):
        """Try-lock ``names``: ``{name: Grant or None}`` (None: held).

        Raises CoordinationUnavailable when ZooKeeper does not answer in
        time; whatever was granted by then is released.
        """
        by_path = {self.path(name): name for name in names}
        self._absorb_late()
        if self._releasing & by_path.keys() or self._pending.keys() & by_path:
            # Our own release of one of them is still buffered.
            self.flush()
        # NOTE: a path still pending (its delete failed) may be our own
        # znode still: asking for it would only be refused.
        paths = [p for p in by_path
                 if p not in self._pending and p not in self._taking]
        grants = {}
        if paths:
            self._take(paths, grants)
        return {name: grants.get(path) for path, name in by_path.items()}

    def _take(self, paths, grants):
        session = self.session()
        if session is None:
            raise exceptions.CoordinationUnavailable(
                'not connected to ZooKeeper')
        deadline = time.monotonic() + self._op_timeout
        self._taking.update(paths)
        try:
            self._ensure_root(deadline)
            for window in _chunks(paths, MAX_OPS):
                self._take_window(window, session, deadline, grants)
        except BaseException:
            for grant in grants.values():
                self.release(grant)
            raise
        finally:
            self._taking.difference_update(paths)
        self._granted.update((path, g.token) for path, g in grants.items())

    def _take_window(self, paths, session, deadline, grants):
        for _attempt in range(2):
            refused = self._multi_create(paths, session, deadline, grants)
            if refused is None:
                return
            paths = [path for path in paths if path not in refused]
            if not paths:
                return
        self._single_creates(paths, session, deadline, grants)

    def _data(self):
        return json.dumps({'member': self._member_id,
                           'at': self._clock()}).encode('utf-8')

    def _multi_create(self, paths, session, deadline, grants):
        """One multi of creates: None if committed, else the refused."""
        data = self._data()
        transaction = self._client.transaction()
        for path in paths:
            transaction.create(path, data, ephemeral=True)
        committing = transaction.commit_async()
        probing = self._client.exists_async(paths[0])
        unknown = [Grant(path, None, session) for path in paths]
        results = self._wait(committing, deadline,
                             late=self._late_multi(unknown), unknown=unknown)
        failures = {path: result
                    for path, result in zip(paths, results, strict=True)
                    if isinstance(result, Exception)}
        if not failures:
            for grant in unknown:
                grants[grant.path] = grant
            self._set_tokens(paths, self._wait(probing, deadline), session,
                             grants)
            return None
        refused = {path for path, error in failures.items()
                   if isinstance(error, kazoo_exceptions.NodeExistsError)}
        self._check_failures(failures.values(), deadline)
        return refused

    def _set_tokens(self, paths, stat, session, grants):
        if stat is None or stat.ephemeralOwner != session:
            # The session ended between the commit and the read (or the
            # znode was deleted by hand): that path may be someone else's
            # lock now and is forgotten. The others are released by the
            # caller, which deletes them only in the same session.
            del grants[paths[0]]
            raise exceptions.CoordinationUnavailable(
                'ZooKeeper session ended while taking locks')
        for path in paths:
            grants[path].token = stat.czxid

    def _check_failures(self, failures, deadline):
        for error in failures:
            if isinstance(error, kazoo_exceptions.NoNodeError):
                # The root was removed under us (by hand): make it again.
                self._root_ready = False
                self._ensure_root(deadline)
            elif not isinstance(error, (kazoo_exceptions.NodeExistsError,
                                        *_NOT_TRIED)):
                raise exceptions.CoordinationUnavailable(
                    'ZooKeeper refused lock creates: %r' % (error,))

    def _single_creates(self, paths, session, deadline, grants):
        data = self._data()
        creating = [(path, self._client.create_async(
            path, data, ephemeral=True, include_data=True))
            for path in paths]
        for index, (path, result) in enumerate(creating):
            unknown = [Grant(path, None, session)]
            try:
                _, stat = self._wait(result, deadline,
                                     late=self._late_single(unknown),
                                     unknown=unknown)
            except kazoo_exceptions.NodeExistsError:
                continue
            except BaseException:
                for later, unanswered in creating[index + 1:]:
                    unanswered.rawlink(self._late_single(
                        [Grant(later, None, session)]))
                raise
            grants[path] = Grant(path, stat.czxid, stat.ephemeralOwner)

    def _ensure_root(self, deadline):
        if not self._root_ready:
            self._wait(self._client.ensure_path_async(self.root), deadline)
            self._root_ready = True

    # -- answers we could not wait for ---------------------------------------

    def _late_multi(self, unknown):
        def answered(result):
            if not result.successful():
                self._forget(unknown)
            elif not any(isinstance(r, Exception) for r in result.value):
                self._forget(unknown, created=True)
        return answered

    def _late_single(self, unknown):
        def answered(result):
            if result.successful():
                _, stat = result.value
                self._forget([Grant(unknown[0].path, stat.czxid,
                                    stat.ephemeralOwner)], created=True)
            elif not isinstance(result.exception,
                                kazoo_exceptions.NodeExistsError):
                self._forget(unknown)
        return answered

    def _forget(self, grants, created=False):
        """Release locks that may have been granted without our knowing.

        ``created``: the znodes were made (an answer came after we gave
        up), so they are deleted at once. Otherwise the answer was lost
        and only the next flush, which checks first, deletes them.
        """
        # NOTE: may run in kazoo's callback worker, a real thread with the
        # threading handler: it only sends deletes (kazoo calls are
        # thread-safe) and queues the grants for the next flush, which
        # checks that they are gone and retries those that are not.
        if created:
            session = self.session()
            for grant in grants:
                if grant.session == session:
                    self._client.delete_async(grant.path)
            self.log.warning('Releasing %d lock(s) granted after the caller '
                             'gave up waiting', len(grants))
        self._late.extend(grants)

    def _absorb_late(self):
        while self._late:
            grant = self._late.popleft()
            self._pending.setdefault(grant.path, (grant, True))

    # -- releasing ----------------------------------------------------------

    def release(self, grant):
        """Buffer the release of ``grant``; never blocks or raises."""
        self._granted.pop(grant.path, None)
        self._pending[grant.path] = (grant, False)
        self._schedule(0 if len(self._pending) >= FLUSH_AT else FLUSH_DELAY)

    def _schedule(self, delay):
        due = time.monotonic() + delay
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        self._timer = concurrency.spawn_after(delay, self._flush_later)

    def _flush_later(self):
        self._timer = None
        self.flush()
        if self._pending:
            self._schedule(RETRY_DELAY)

    def flush(self):
        """Delete the znodes of released locks now.

        Never raises for backend errors: what could not be deleted is
        kept and retried (a later flush, or the next heartbeat's), unless
        its session ended, which deleted it already.
        """
        while self._flushing is not None:
            self._flushing.wait()
        self._absorb_late()
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._releasing = frozenset(batch)
        self._flushing = concurrency.Event()
        leftover = batch
        try:
            leftover = self._delete(batch)
        finally:
            flushing, self._flushing = self._flushing, None
            self._releasing = frozenset()
            for path, entry in leftover.items():
                self._pending.setdefault(path, entry)
            flushing.send()

    def close(self):
        """Cancel the flush timer and flush what is pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def _delete(self, batch):
        """Delete what ``batch`` holds; return what must be retried."""
        session = self.session()
        if session is None:
            # Suspended: the session (and our znodes) may come back.
            return batch
        # NOTE: grants of another session went with it; their paths may
        # be other members' locks by now.
        ours = [(grant, uncertain) for grant, uncertain in batch.values()
                if grant.session == session]
        done = set()
        left = {}
        try:
            deadline = time.monotonic() + self._op_timeout
            sure = [grant for grant, uncertain in ours if not uncertain]
            checked, left = self._still_ours(
                [grant for grant, uncertain in ours if uncertain], session,
                deadline)
            for window in _chunks(sure + checked, MAX_OPS):
                self._delete_window(window, deadline)
                done.update(grant.path for grant in window)
        except exceptions.CoordinationUnavailable as err:
            left.update((grant.path, (grant, True)) for grant, _ in ours
                        if grant.path not in done)
            self.log.warning('Could not release %d lock(s) yet: %s',
                             len(left), err)
        return left

    def _still_ours(self, grants, session, deadline):
        """Split uncertain grants: (still our znode, ask again later).

        A znode is this grant's if our session owns it and it was created
        at the grant's token; without a token (a create whose answer was
        lost), if it is not the znode of a lock we hold now.
        """
        later = {grant.path: (grant, True) for grant in grants
                 if grant.path in self._taking}
        probes = [(grant, self._client.exists_async(grant.path))
                  for grant in grants if grant.path not in later]
        ours = []
        for grant, probe in probes:
            stat = self._wait(probe, deadline)
            if stat is None or stat.ephemeralOwner != session:
                continue
            if grant.token is None:
                if self._granted.get(grant.path) != stat.czxid:
                    ours.append(grant)
            elif grant.token == stat.czxid:
                ours.append(grant)
        return ours, later

    def _delete_window(self, grants, deadline):
        transaction = self._client.transaction()
        for grant in grants:
            transaction.delete(grant.path)
        results = self._wait(transaction.commit_async(), deadline)
        failures = [r for r in results if isinstance(r, Exception)]
        if not failures:
            return
        unexpected = [r for r in failures if not isinstance(
            r, (kazoo_exceptions.NoNodeError, *_NOT_TRIED))]
        if unexpected:
            raise exceptions.CoordinationUnavailable(
                'ZooKeeper refused lock deletes: %r' % (unexpected[0],))
        # NOTE: some znode is gone already (a release whose answer was
        # lost, or removed by hand); the rest are still ours: delete them
        # one by one, pipelined.
        rest = [grant.path
                for grant, result in zip(grants, results, strict=True)
                if not isinstance(result, kazoo_exceptions.NoNodeError)]
        for deleting in [self._client.delete_async(p) for p in rest]:
            try:
                self._wait(deleting, deadline)
            except kazoo_exceptions.NoNodeError:
                pass

    # -- reading ------------------------------------------------------------

    def list_locks(self):
        """``[{'name', 'holder', 'age'}]`` of every lock held in the group."""
        deadline = time.monotonic() + self._op_timeout
        try:
            nodes = self._wait(self._client.get_children_async(self.root),
                               deadline)
        except kazoo_exceptions.NoNodeError:
            return []
        reads = [(node, self._client.get_async('%s/%s' % (self.root, node)))
                 for node in nodes]
        now = self._clock()
        rows = []
        for node, reading in reads:
            try:
                data, stat = self._wait(reading, deadline)
            except kazoo_exceptions.NoNodeError:
                continue
            rows.append(self._row(node, data, stat, now))
        return sorted(rows, key=lambda row: row['name'])

    def holder_of(self, name):
        """The member id holding ``name`` (``'?'`` if its data cannot be
        read), None if nobody does."""
        deadline = time.monotonic() + self._op_timeout
        try:
            data, stat = self._wait(self._client.get_async(self.path(name)),
                                    deadline)
        except kazoo_exceptions.NoNodeError:
            return None
        return self._row(self.path(name), data, stat, 0.0)['holder'] or '?'

    @staticmethod
    def _row(node, data, stat, now):
        try:
            info = json.loads(data.decode('utf-8'))
            holder, taken_at = info['member'], float(info['at'])
        except (ValueError, KeyError, TypeError, AttributeError):
            holder, taken_at = None, stat.ctime / 1000.0
        return {'name': decode_name(node), 'holder': holder,
                'age': max(0.0, now - taken_at)}

    # -- waiting ------------------------------------------------------------

    def _wait(self, result, deadline, late=None, unknown=None):
        """``result.get()`` until ``deadline``; kazoo errors translated.

        NodeExistsError and NoNodeError pass through: they are answers.
        For creates, ``late`` is linked to a result not answered in time,
        to undo a grant that arrives afterwards, and the grants in
        ``unknown`` are released if the answer was lost (connection lost:
        the creates may have been applied).
        """
        try:
            return result.get(timeout=max(0.0, deadline - time.monotonic()))
        except self._client.handler.timeout_exception:
            if late is not None:
                result.rawlink(late)
            raise exceptions.CoordinationUnavailable(
                'no answer from ZooKeeper within %.1fs'
                % self._op_timeout) from None
        except (kazoo_exceptions.NodeExistsError,
                kazoo_exceptions.NoNodeError):
            raise
        except kazoo_exceptions.KazooException as err:
            if unknown:
                self._forget(unknown)
            raise exceptions.CoordinationUnavailable(
                'ZooKeeper error: %r' % (err,)) from err
