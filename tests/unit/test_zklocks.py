"""ZooKeeper locks against a small fake of the kazoo client surface."""

import json
import logging

import pytest
from kazoo import exceptions as kz

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import coordination
from coordsync.common import zklocks
from tests.unit.test_coordination import make_conf

LOG = logging.getLogger(__name__)
ROOT = zklocks.lock_root('g')


class FakeTimeout(Exception):
    pass


class Result:
    """kazoo's IAsyncResult: answered at once, or held until answer()."""

    def __init__(self, value=None, exception=None, ready=True):
        self.value = value
        self.exception = exception
        self._ready = ready
        self._callbacks = []

    def successful(self):
        return self._ready and self.exception is None

    def get(self, timeout=None):
        if not self._ready:
            raise FakeTimeout()
        if self.exception is not None:
            raise self.exception
        return self.value

    def rawlink(self, callback):
        self._callbacks.append(callback)
        if self._ready:
            callback(self)

    def answer(self, value=None, exception=None):
        self.value, self.exception, self._ready = value, exception, True
        for callback in self._callbacks:
            callback(self)


class Stat:
    def __init__(self, czxid, owner, ctime=0):
        self.czxid = czxid
        self.ephemeralOwner = owner
        self.ctime = ctime


class Handler:
    timeout_exception = FakeTimeout


class Transaction:
    def __init__(self, client):
        self.client = client
        self.ops = []

    def create(self, path, value=b'', ephemeral=False):
        self.ops.append(('create', path, value))

    def delete(self, path):
        self.ops.append(('delete', path, None))

    def commit_async(self):
        return self.client.submit('multi', self.ops)


class FakeKazoo:
    """A ZooKeeper of one session at a time, applying requests in order.

    ``hold = True`` keeps requests unanswered (and unapplied) until
    ``answer_held()``; ``lose_answers = True`` applies them but answers
    ConnectionLoss (the connection dropped before the reply).
    """

    handler = Handler()

    def __init__(self, session=0x100):
        self.session = session
        self.connected = True
        self.zxid = 10
        self.nodes = {}
        self.persistent = {'/', '/coordsync', zklocks.ROOT}
        self.calls = []
        self.hold = False
        self.lose_answers = False
        self._held = []

    @property
    def client_id(self):
        return (self.session, b'pw') if self.connected else None

    def lose_session(self, new_session):
        """Session expiry: our ephemerals go; a new session replaces it."""
        self.nodes = {p: n for p, n in self.nodes.items()
                      if n[2] != self.session}
        self.session = new_session

    def foreign_create(self, path, owner=0x999):
        self.zxid += 1
        self.nodes[path] = (b'{}', self.zxid, owner)

    def children(self):
        return sorted(p for p in self.nodes if p.startswith(ROOT + '/'))

    # -- the kazoo surface zklocks uses --------------------------------------

    def transaction(self):
        return Transaction(self)

    def create_async(self, path, value=b'', ephemeral=False,
                     include_data=False):
        return self.submit('create', path, value)

    def delete_async(self, path):
        return self.submit('delete', path)

    def exists_async(self, path):
        return self.submit('exists', path)

    def ensure_path_async(self, path):
        return self.submit('ensure', path)

    def get_children_async(self, path):
        return self.submit('children', path)

    def get_async(self, path):
        return self.submit('get', path)

    def submit(self, kind, *args):
        self.calls.append(kind)
        if self.hold:
            result = Result(ready=False)
            self._held.append((result, kind, args))
            return result
        return self._answer(Result(ready=False), kind, args)

    def answer_held(self):
        held, self._held = self._held, []
        for result, kind, args in held:
            self._answer(result, kind, args)

    def _answer(self, result, kind, args):
        try:
            value = getattr(self, '_do_' + kind)(*args)
        except kz.KazooException as err:
            result.answer(exception=err)
        else:
            if self.lose_answers and kind in ('multi', 'create', 'delete'):
                result.answer(exception=kz.ConnectionLoss())
            else:
                result.answer(value)
        return result

    def _do_create(self, path, value):
        if path in self.nodes:
            raise kz.NodeExistsError()
        if path.rsplit('/', 1)[0] not in self.persistent:
            raise kz.NoNodeError()
        self.zxid += 1
        self.nodes[path] = (value, self.zxid, self.session)
        return path, Stat(self.zxid, self.session)

    def _do_delete(self, path):
        if path not in self.nodes:
            raise kz.NoNodeError()
        del self.nodes[path]
        return True

    def _do_exists(self, path):
        node = self.nodes.get(path)
        return None if node is None else Stat(node[1], node[2])

    def _do_ensure(self, path):
        self.persistent.add(path)
        return True

    def _do_children(self, path):
        return [p.rsplit('/', 1)[1] for p in self.children()]

    def _do_get(self, path):
        if path not in self.nodes:
            raise kz.NoNodeError()
        data, czxid, owner = self.nodes[path]
        return data, Stat(czxid, owner, ctime=1000)

    def _do_multi(self, ops):
        saved = (dict(self.nodes), self.zxid)
        self.zxid += 1
        results = []
        for index, (kind, path, value) in enumerate(ops):
            try:
                if kind == 'create':
                    self._do_create(path, value)
                    self.zxid -= 1
                    self.nodes[path] = (value, self.zxid, self.session)
                    results.append(path)
                else:
                    results.append(self._do_delete(path))
            except kz.KazooException as err:
                self.nodes, self.zxid = saved
                rest = [kz.RuntimeInconsistency()] * (len(ops) - index - 1)
                return ([kz.RolledBackError()] * index) + [err] + rest
        return results


@pytest.fixture
def client():
    return FakeKazoo()


@pytest.fixture
def locks(client):
    return zklocks.ZooKeeperLocks(client, 'g', 'n1@h.1', 2.0, LOG,
                                  clock=lambda: 1000.0)


def path(name):
    return '%s/%s' % (ROOT, zklocks.encode_name(name))


NAMES = ['coordsync/replicate/0/%d' % i for i in range(6)]


def tokens(grants):
    return {n: None if g is None else g.token for n, g in grants.items()}


@pytest.mark.parametrize('name', [
    'coordsync/sync/AUTH_a/c', 'coordsync/sync/AUTH_a/with space/%2F',
    'coordsync/sync/AUTH_ü/☃ container', 'coordsync/sync/a/..',
])
def test_names_encode_to_one_znode_and_back(name):
    node = zklocks.encode_name(name)
    assert '/' not in node and node not in ('.', '..')
    assert zklocks.decode_name(node) == name


def test_absurdly_long_names_are_refused(locks, client):
    with pytest.raises(ValueError):
        locks.take(['coordsync/sync/a/' + 'x' * zklocks.MAX_NODE_NAME])
    assert client.calls == []


def test_a_free_window_costs_one_multi_and_one_exists(locks, client):
    grants = locks.take(NAMES)
    assert sorted(client.calls) == ['ensure', 'exists', 'multi']
    assert client.children() == sorted(path(n) for n in NAMES)
    # One committed multi: every create carries its zxid.
    assert len({g.token for g in grants.values()}) == 1
    token = grants[NAMES[0]].token
    assert all(client.nodes[path(n)][1] == token for n in NAMES)
    data = json.loads(client.nodes[path(NAMES[0])][0])
    assert data == {'member': 'n1@h.1', 'at': 1000.0}


def test_one_name_held_elsewhere_is_dropped_and_the_rest_retried(locks,
                                                                 client):
    client.foreign_create(path(NAMES[2]))
    client.calls.clear()
    grants = locks.take(NAMES)
    assert grants[NAMES[2]] is None
    assert client.calls.count('multi') == 2
    assert 'create' not in client.calls
    granted = {g.token for n, g in grants.items() if n != NAMES[2]}
    assert len(granted) == 1


def test_second_refusal_falls_back_to_single_creates(locks, client):
    client.foreign_create(path(NAMES[1]))
    client.foreign_create(path(NAMES[4]))
    foreign = client.nodes[path(NAMES[4])]
    client.calls.clear()
    grants = locks.take(NAMES)
    assert tokens(grants)[NAMES[1]] is None
    assert tokens(grants)[NAMES[4]] is None
    assert client.calls.count('multi') == 2
    assert client.calls.count('create') == 4, 'the rest, one by one'
    singles = [grants[n].token for n in (NAMES[0], NAMES[2], NAMES[3],
                                         NAMES[5])]
    assert singles == sorted(set(singles)), 'each its own czxid'
    assert client.nodes[path(NAMES[4])] == foreign


def test_tokens_grow_on_every_regrant(locks):
    seen = []
    for _ in range(3):
        grant = locks.take(NAMES[:1])[NAMES[0]]
        seen.append(grant.token)
        locks.release(grant)
        locks.flush()
    assert seen == sorted(set(seen))


def test_releases_are_buffered_and_sent_in_one_multi(locks, client):
    grants = locks.take(NAMES)
    client.calls.clear()
    for grant in grants.values():
        locks.release(grant)
    assert client.calls == [] and len(client.children()) == len(NAMES)
    locks.flush()
    assert client.calls == ['multi']
    assert client.children() == []


def test_buffered_releases_are_flushed_without_being_asked(locks, client):
    grant = locks.take(NAMES[:1])[NAMES[0]]
    locks.release(grant)
    concurrency.sleep(zklocks.FLUSH_DELAY * 10)
    assert client.children() == []


def test_regrant_of_a_name_with_a_buffered_release_flushes_it(locks):
    first = locks.take(NAMES[:1])[NAMES[0]]
    locks.release(first)
    second = locks.take(NAMES[:1])[NAMES[0]]
    assert second is not None and second.token > first.token


def test_release_after_a_lost_session_never_deletes(locks, client):
    grants = locks.take(NAMES[:2])
    assert locks.owns(grants[NAMES[0]])
    client.lose_session(0x200)
    assert not locks.owns(grants[NAMES[0]])
    # Another member takes the same lock meanwhile.
    client.foreign_create(path(NAMES[0]))
    theirs = client.nodes[path(NAMES[0])]
    client.calls.clear()
    for grant in grants.values():
        locks.release(grant)
    locks.flush()
    assert client.calls == []
    assert client.nodes[path(NAMES[0])] == theirs


def test_batched_delete_with_a_znode_gone_retries_the_rest(locks, client):
    grants = locks.take(NAMES)
    del client.nodes[path(NAMES[3])]
    client.calls.clear()
    for grant in grants.values():
        locks.release(grant)
    locks.flush()
    assert client.calls == ['multi'] + ['delete'] * (len(NAMES) - 1)
    assert client.children() == []


def test_releases_wait_out_a_suspension_of_the_same_session(locks,
                                                            client):
    grant = locks.take(NAMES[:1])[NAMES[0]]
    client.connected = False
    locks.release(grant)
    locks.flush()
    assert client.children() == [path(NAMES[0])]
    client.connected = True
    locks.flush()
    assert client.children() == []


def test_take_without_a_connection_raises(locks, client):
    client.connected = False
    with pytest.raises(exceptions.CoordinationUnavailable):
        locks.take(NAMES)


def test_a_grant_answered_after_the_timeout_is_deleted(locks, client):
    client.persistent.add(ROOT)
    locks._root_ready = True
    client.hold = True
    with pytest.raises(exceptions.CoordinationUnavailable):
        locks.take(NAMES)
    client.hold = False
    client.answer_held()
    # The late answer's callback deleted them at once...
    assert client.children() == []
    # ...and the next flush checks, at the cost of one read each.
    client.calls.clear()
    locks.flush()
    assert client.calls == ['exists'] * len(NAMES)


def test_creates_whose_answer_was_lost_are_checked_then_deleted(locks,
                                                                client):
    locks.take(NAMES[:1])
    client.lose_answers = True
    with pytest.raises(exceptions.CoordinationUnavailable):
        locks.take(NAMES[1:])
    assert len(client.children()) == len(NAMES), 'applied all the same'
    client.lose_answers = False
    locks.flush()
    assert client.children() == [path(NAMES[0])], 'the held one stays'


def test_a_lost_answer_never_deletes_a_lock_granted_since(locks, client):
    grant = locks.take(NAMES[:1])[NAMES[0]]
    # A create of this name whose answer was lost, learnt of only now.
    locks._forget([zklocks.Grant(grant.path, None, client.session)])
    locks.flush()
    assert client.children() == [grant.path]


def test_a_failed_single_create_releases_what_the_window_got(locks,
                                                             client):
    client.foreign_create(path(NAMES[0]))
    client.foreign_create(path(NAMES[1]))
    real = client.create_async

    def create_then_fail(path, *args, **kwargs):
        if path.endswith('5'):
            return Result(exception=kz.ConnectionLoss())
        return real(path, *args, **kwargs)
    client.create_async = create_then_fail
    with pytest.raises(exceptions.CoordinationUnavailable):
        locks.take(NAMES)
    locks.flush()
    assert client.children() == [path(NAMES[0]), path(NAMES[1])]


def test_list_locks_reads_names_holders_and_ages(locks, client):
    locks.take(NAMES[:2])
    client.foreign_create(path('coordsync/x/1'))
    rows = {row['name']: row for row in locks.list_locks()}
    assert rows[NAMES[0]] == {'name': NAMES[0], 'holder': 'n1@h.1',
                              'age': 0.0}
    assert rows['coordsync/x/1']['holder'] is None


def test_holder_of_names_the_member_or_none(locks, client):
    locks.take(NAMES[:1])
    client.foreign_create(path('coordsync/x/1'))
    assert locks.holder_of(NAMES[0]) == 'n1@h.1'
    assert locks.holder_of('coordsync/x/1') == '?'
    assert locks.holder_of(NAMES[1]) is None


@pytest.fixture
def coordinator(tmp_path, client):
    """A Coordinator joined (as far as it knows) with the fake's locks."""
    coordinator = coordination.Coordinator(make_conf(tmp_path, group='g'))
    coordinator._driver = object()
    coordinator._joined = True
    coordinator._locks = zklocks.ZooKeeperLocks(
        client, coordinator.group, coordinator.member_id, 2.0, LOG)
    return coordinator


def test_coordinator_tokens_and_local_ownership(coordinator, client):
    client.foreign_create(path(NAMES[0]))
    tokens = coordinator.try_lock_many(NAMES[:3] + NAMES[1:2])
    assert list(tokens) == NAMES[:3]
    assert tokens[NAMES[0]] is None
    assert isinstance(tokens[NAMES[1]], int)
    assert coordinator.token(NAMES[1]) == tokens[NAMES[1]]
    assert coordinator.try_lock_many(NAMES[1:2]) == {NAMES[1]: None}
    client.calls.clear()
    assert coordinator.is_still_owner(NAMES[1])
    assert client.calls == [], 'no round trip'
    client.lose_session(0x300)
    assert not coordinator.is_still_owner(NAMES[1])


def test_coordinator_release_is_buffered_until_flushed(coordinator,
                                                       client):
    coordinator.try_lock_many(NAMES)
    for name in NAMES:
        assert coordinator.release(name) is True
    assert coordinator.held_locks() == []
    assert len(client.children()) == len(NAMES)
    coordinator.flush_releases()
    assert client.children() == []
    assert coordinator.try_lock(NAMES[0]) is True


def test_coordinator_keeps_nothing_when_the_backend_hangs(coordinator,
                                                          client):
    coordinator.try_lock_many(NAMES[:1])
    client.hold = True
    with pytest.raises(exceptions.CoordinationUnavailable):
        coordinator.try_lock_many(NAMES[1:])
    assert coordinator.held_locks() == [NAMES[0]]


def test_coordinator_lists_locks(coordinator):
    coordinator.try_lock_many(NAMES[:2])
    rows = coordinator.list_locks()
    assert [row['name'] for row in rows] == NAMES[:2]
    assert {row['holder'] for row in rows} == {coordinator.member_id}


def test_a_window_whose_probe_shows_another_owner_is_given_back(locks,
                                                                client):
    real = client.exists_async

    def probe_after_a_hand_delete(path):
        # Between the commit and the read, someone deletes our znode by
        # hand and another member takes that lock.
        del client.nodes[path]
        client.foreign_create(path)
        return real(path)
    client.exists_async = probe_after_a_hand_delete
    with pytest.raises(exceptions.CoordinationUnavailable):
        locks.take(NAMES)
    client.exists_async = real
    locks.flush()
    assert client.children() == [path(NAMES[0])]
    assert client.nodes[path(NAMES[0])][2] == 0x999, 'theirs, untouched'
