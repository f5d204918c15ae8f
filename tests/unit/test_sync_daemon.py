"""Container sync's sender (coordsync.sync.daemon.ContainerSyncJob).

A real container database is the holder's replica; the destination
cluster, the source cluster's objects, the other replicas and the lock
are small fakes, so every test runs without network or ZooKeeper.
"""

import json
import time

import pytest
from oslo_log import log as logging

from coordsync.common import direct_client
from coordsync.common import worker
from coordsync.common.timestamp import Timestamp
from coordsync.sync import daemon
from coordsync.sync import realms as realms_mod
from coordsync.sync import state as sync_state
from tests.unit import fakes
from tests.unit.test_container_backend import make_container

LOG = logging.getLogger(__name__)
SYNC_TO = '//US/DFW1/AUTH_b/c2'
REALMS = """\
[US]
key = 9ff3b71c849749dbaec4ccdd3cbab62b
cluster_dfw1 = http://127.0.0.1:8080/v1/
"""
NODES = [{'id': i, 'node': 'n%d' % i, 'ip': '10.0.0.%d' % i,
          'port': 6201, 'device': 'sd%s' % 'abc'[i]} for i in range(3)]
# A timestamp of a stored state older than any the daemon writes.
OLD_STAMP = fakes.ts(1000).normal


def t(offset):
    return fakes.ts(offset).normal


class Objects:
    """The source cluster's objects: name -> (timestamp, body or None
    for a tombstone), or an exception get_newest raises."""

    def __init__(self):
        self.versions = {}
        self.asked = []

    def get_newest(self, account, container, name):
        self.asked.append(name)
        found = self.versions.get(name)
        if isinstance(found, Exception):
            raise found
        if found is None:
            return None, None, None
        when, body = found
        if body is None:
            return Timestamp(when), None, None
        headers = {'content-type': 'text/plain', 'etag': 'e',
                   'content-length': str(len(body)),
                   'x-object-meta-color': 'blue',
                   'x-backend-storage-policy-index': '0',
                   'x-timestamp': when}
        return Timestamp(when), headers, iter([body])


class FakeDestination:
    """The other cluster's container: what it holds, its copy of the
    sync point, and every call made to it (in order)."""

    def __init__(self):
        self.held = {}       # name -> (Timestamp, deleted)
        self.points = {}     # source -> point text
        self.bodies = {}
        self.calls = []
        self.made = []
        self.put_status = 201
        self.target = None
        self.on_put = None

    def __call__(self, pool, target, user_key, realms, timeout):
        # Stands in for the Destination class: one per run, same state.
        self.made.append((target, user_key, timeout))
        self.target = target
        return self

    def point(self, source):
        self.calls.append(('point',))
        return 200, daemon.parse_point(self.points.get(source))

    def set_point(self, source, value):
        self.calls.append(('set_point', value))
        self.points[source] = value
        return 204

    def head(self, name):
        self.calls.append(('head', name))
        return self.held.get(name, (None, None))

    def put(self, name, headers, chunks, x_timestamp):
        body = b''.join(chunks)
        self.calls.append(('put', name, x_timestamp))
        if self.on_put is not None:
            self.on_put(name)
        status = self.put_status
        if status in (201, 202):
            self.held[name] = (Timestamp(x_timestamp), False)
            self.bodies[name] = (headers, body)
        return status

    def delete(self, name, x_timestamp):
        self.calls.append(('delete', name, x_timestamp))
        self.held[name] = (Timestamp(x_timestamp), True)
        return 204

    def sent(self):
        """Names PUT or DELETEd, in order."""
        return [c[1] for c in self.calls if c[0] in ('put', 'delete')]

    def heads(self):
        return [c[1] for c in self.calls if c[0] == 'head']

    def batches(self):
        """The rows sent after each point write (the last write's list
        is the rows sent after it: none)."""
        found = []
        for call in self.calls:
            if call[0] == 'set_point':
                found.append([])
            elif call[0] in ('put', 'delete') and found:
                found[-1].append(call[1])
        return found


class Grant:
    fence = None
    token = 1

    def __init__(self):
        self.checks = 0

    def check(self):
        self.checks += 1

    def admit_local(self):
        pass


class Owner:
    """What ContainerSyncJob reads of its ContainerSync."""

    def __init__(self, conf, realms, objects):
        self.conf = conf
        self.wconf = conf['container-sync']
        self.log = LOG
        self.realms = realms
        self.pool = None
        self.client = None
        self.dbsync = None
        self.objects = {0: objects}
        self.peer_errors = worker.PeerErrors()
        self.per_diff = 1000
        self.lag = []

    def record_lag(self, job, figures):
        self.lag.append(figures)


class Env:
    """The holder's replica (a real container database) and the rest."""

    def __init__(self, conf, broker, owner, dest, objects):
        self.conf = conf
        self.broker = broker
        self.owner = owner
        self.dest = dest
        self.objects = objects
        self.nodes = [NODES[0]]
        self.sync_to = SYNC_TO
        self.grant = Grant()
        self.last = None

    def set(self, **options):
        for name, value in options.items():
            self.conf.set_override(name, value, 'container-sync')

    def add(self, name, offset, body=b'data'):
        self.broker.put_object(name, t(offset), len(body), 'text/plain',
                               'e')
        self.objects.versions[name] = (t(offset), body)

    def tomb(self, name, offset):
        self.broker.delete_object(name, t(offset))
        self.objects.versions[name] = (t(offset), None)

    def key(self, name):
        return sync_state.row_key(self.broker.get_rows([name])[name])

    @property
    def my_id(self):
        return self.broker.get_info()['id']

    def job(self):
        return daemon.Job(
            'AUTH_a', 'c', NODES[0]['device'], 7, 'f' * 32,
            self.broker.db_file, self.nodes, self.sync_to, 'secret',
            own_id=NODES[0]['id'])

    def run(self):
        """A pass; the ContainerSyncJob is in ``self.last``."""
        self.last = daemon.ContainerSyncJob(self.owner, self.job(),
                                            self.grant)
        return self.last.run()

    def stored(self):
        """``(state, timestamp)`` kept in the database."""
        text, when = self.broker.metadata.get(sync_state.STATE_KEY,
                                              ('', None))
        return sync_state.decode(text), when

    def store(self, when=OLD_STAMP, **fields):
        """Store a state as an earlier holder would have left it."""
        st = sync_state.new_state(self.sync_to)
        st.update(fields)
        self.broker.update_metadata(
            {sync_state.STATE_KEY: (sync_state.encode(st), when)})

    def source(self):
        return sync_state.source_id('AUTH_a', 'c',
                                    self.conf.hash_path_suffix)


@pytest.fixture
def env(conf, tmp_path, clock, monkeypatch):
    path = tmp_path / 'container-sync-realms.conf'
    path.write_text(REALMS)
    conf.set_override('container_sync_realms_file', str(path))
    conf.set_override('batch_size', 2, 'container-sync')
    conf.set_override('row_concurrency', 1, 'container-sync')
    objects = Objects()
    dest = FakeDestination()
    monkeypatch.setattr(daemon, 'Destination', dest)
    owner = Owner(conf, realms_mod.Realms(str(path)), objects)
    broker = make_container(str(tmp_path / 'sda'), clock)
    yield Env(conf, broker, owner, dest, objects)
    broker.close()


def point_text(v, point=None, sending=None):
    return 'v=%d p=%s s=%s' % (v, point or '-', sending or '-')


# -- a new container ----------------------------------------------------------

def test_a_new_container_is_sent_once_in_sync_order(env):
    env.add('z', 1)
    env.add('m', 2)
    env.add('b', 3, body=b'hello')
    env.add('a', 3)
    env.tomb('gone', 4)
    env.add('k', 5)
    assert env.run() is True
    assert env.dest.calls == [
        ('point',),
        ('set_point', point_text(1, sending=t(2))),
        ('put', 'z', t(1)), ('put', 'm', t(2)),
        ('set_point', point_text(2, t(2), t(3))),
        ('put', 'a', t(3)), ('put', 'b', t(3)),
        ('set_point', point_text(3, t(3), t(5))),
        ('delete', 'gone', t(4)), ('put', 'k', t(5)),
        ('set_point', point_text(4, t(5)))]
    # NOTE: the object's metadata goes along, the backend's does not.
    assert env.dest.bodies['b'] == ({
        'content-type': 'text/plain', 'etag': 'e', 'content-length': '5',
        'x-object-meta-color': 'blue'}, b'hello')
    st, _when = env.stored()
    assert st == {'v': 4, 'target': SYNC_TO, 'point': (t(5), 'k'),
                  'sending': None, 'rows': {env.my_id: 6}, 'retry': []}
    assert env.dest.points[env.source()] == point_text(4, t(5))
    stats = env.last.stats
    assert (stats.puts, stats.deletes, stats.bytes, stats.checks) == (
        5, 1, 4 * 4 + 5, 0)
    assert env.owner.lag[-1]['rows_behind'] == 0
    assert env.owner.lag[-1]['point'] == t(5)
    target, user_key, _timeout = env.dest.made[0]
    assert (target.url, user_key) == (
        'http://127.0.0.1:8080/v1/AUTH_b/c2', 'secret')


def test_nothing_new_costs_the_destination_nothing(env):
    env.add('a', 1)
    env.add('b', 2)
    assert env.run() is True
    before = env.stored()
    calls = len(env.dest.calls)
    assert env.run() is True
    assert len(env.dest.calls) == calls
    assert env.stored() == before
    assert env.owner.lag[-1]['rows_behind'] == 0
    assert env.objects.asked == ['a', 'b']


def test_an_empty_or_deleted_container_sends_nothing(env):
    assert env.run() is True
    assert env.dest.calls == [] and env.stored() == (None, None)
    env.add('a', 1)
    env.broker.delete_object('a', t(2))
    env.broker.delete_db(t(3))
    assert env.run() is True
    assert env.dest.calls == []


# -- bounds per pass ----------------------------------------------------------

def test_rows_per_pass_spreads_a_container_over_passes(env):
    env.set(rows_per_pass=10, batch_size=4, row_concurrency=4)
    names = ['o%02d' % i for i in range(25)]
    for i, name in enumerate(names):
        env.add(name, i)
    per_run = []
    for _ in range(3):
        before = len(env.dest.sent())
        assert env.run() is True
        per_run.append(len(env.dest.sent()) - before)
    assert per_run == [10, 10, 5]
    assert env.dest.sent() == names
    assert env.dest.heads() == []
    st, _when = env.stored()
    assert st['point'] == (t(24), 'o24') and st['sending'] is None
    calls = len(env.dest.calls)
    assert env.run() is True
    assert len(env.dest.calls) == calls


# -- resuming -----------------------------------------------------------------

def test_a_dead_holders_batch_is_checked_before_it_is_sent_again(env):
    env.set(batch_size=4)
    for i in range(10):
        env.add('o%d' % i, i)
    # A holder wrote "sending o2..o5" and died after o3 and o4 landed.
    env.store(v=3, point=env.key('o1'), sending=env.key('o5'),
              rows={env.my_id: env.broker.get_max_row()})
    env.dest.points[env.source()] = point_text(3, t(1), t(5))
    env.dest.held['o3'] = (fakes.ts(3), False)
    env.dest.held['o4'] = (fakes.ts(4), False)
    assert env.run() is True
    assert env.dest.heads() == ['o2', 'o3', 'o4', 'o5']
    assert env.dest.sent() == ['o2', 'o5', 'o6', 'o7', 'o8', 'o9']
    assert env.last.stats.present == 2
    st, _when = env.stored()
    assert st['v'] == 6 and st['point'] == (t(9), 'o9')
    assert st['sending'] is None


def test_a_newer_point_at_the_destination_is_checked_up_to(env):
    for i in range(10):
        env.add('o%d' % i, i)
    # The replicas lost the state writes of v=3..5; the destination
    # got them (up to "sending o7").
    env.store(v=2, point=env.key('o2'),
              rows={env.my_id: env.broker.get_max_row()})
    env.dest.points[env.source()] = point_text(5, t(5), t(7))
    for i in range(3, 8):
        env.dest.held['o%d' % i] = (fakes.ts(i), False)
    assert env.run() is True
    assert env.dest.heads() == ['o3', 'o4', 'o5', 'o6', 'o7']
    assert env.dest.sent() == ['o8', 'o9']
    # NOTE: versions go on from the destination's.
    first_write = [c for c in env.dest.calls if c[0] == 'set_point'][0]
    assert first_write[1].startswith('v=6 ')
    assert env.stored()[0]['point'] == (t(9), 'o9')


def test_an_older_point_at_the_destination_changes_nothing(env):
    for i in range(4):
        env.add('o%d' % i, i)
    env.store(v=4, point=env.key('o1'),
              rows={env.my_id: env.broker.get_max_row()})
    env.dest.points[env.source()] = point_text(3, t(3), t(3))
    assert env.run() is True
    assert env.dest.heads() == []
    assert env.dest.sent() == ['o2', 'o3']


def test_a_holder_dead_in_the_first_batch_leaves_it_checked(env):
    for i in range(5):
        env.add('o%d' % i, i)
    env.dest.held['o0'] = (fakes.ts(0), False)
    env.store(v=1, sending=env.key('o2'))
    assert env.run() is True
    assert env.dest.heads() == ['o0', 'o1', 'o2']
    assert env.dest.sent() == ['o1', 'o2', 'o3', 'o4']


def test_a_new_target_starts_from_the_first_row(env):
    for i in range(3):
        env.add('o%d' % i, i)
    env.store(v=5, target='//US/DFW1/AUTH_b/old', point=env.key('o2'),
              rows={env.my_id: env.broker.get_max_row()})
    assert env.run() is True
    assert env.dest.sent() == ['o0', 'o1', 'o2']
    first_write = [c for c in env.dest.calls if c[0] == 'set_point'][0]
    assert first_write[1].startswith('v=6 ')
    st, _when = env.stored()
    assert st['target'] == SYNC_TO and st['point'] == (t(2), 'o2')


def test_a_state_stamped_ahead_of_the_holders_clock_is_replaced(env):
    for i in range(4):
        env.add('o%d' % i, i)
    ahead = Timestamp(time.time() + 3600).normal
    env.store(when=ahead, v=3, point=env.key('o1'),
              rows={env.my_id: env.broker.get_max_row()})
    assert env.run() is True
    assert env.dest.sent() == ['o2', 'o3']
    assert env.stored()[0]['point'] == (t(3), 'o3')
    calls = len(env.dest.calls)
    assert env.run() is True
    assert env.dest.calls[calls:] == []


# -- late rows ----------------------------------------------------------------

@pytest.mark.parametrize('there', [False, True])
def test_a_late_row_is_checked_and_sent_if_missing(env, there):
    for i in range(5):
        env.add('o%d' % i, i * 2)
    assert env.run() is True
    st, _when = env.stored()
    env.add('late', 3)
    if there:
        env.dest.held['late'] = (fakes.ts(3), False)
    calls = len(env.dest.calls)
    assert env.run() is True
    new = env.dest.calls[calls:]
    assert [c for c in new if c[0] == 'head'] == [('head', 'late')]
    assert [c for c in new if c[0] == 'put'] == (
        [] if there else [('put', 'late', t(3))])
    assert env.last.stats.late == 1
    after, _when = env.stored()
    assert after['point'] == st['point']
    assert after['rows'] == {env.my_id: env.broker.get_max_row()}
    # Checked once: the next pass has nothing to do.
    calls = len(env.dest.calls)
    assert env.run() is True
    assert len(env.dest.calls) == calls


def test_rows_arriving_during_the_pass_are_checked_before_it_ends(env):
    for i in range(6):
        env.add('o%d' % i, i + 1)

    def arrive(name):
        if name == 'o2':
            env.add('early', 0.5)
            env.add('after', 10)
    env.dest.on_put = arrive
    assert env.run() is True
    # NOTE: "after" was sent in its turn and is not asked about again;
    # "early" sorts before the point that moved past it.
    assert env.dest.sent() == ['o0', 'o1', 'o2', 'o3', 'o4', 'o5',
                               'after', 'early']
    assert env.dest.heads() == ['early']
    assert env.last.stats.late == 1
    st, _when = env.stored()
    assert st['point'] == (t(10), 'after')
    assert st['rows'] == {env.my_id: env.broker.get_max_row()}
    calls = len(env.dest.calls)
    assert env.run() is True
    assert len(env.dest.calls) == calls


def test_a_late_row_after_the_point_is_a_new_row(env):
    env.add('a', 1)
    assert env.run() is True
    env.add('b', 2)
    calls = len(env.dest.calls)
    assert env.run() is True
    new = env.dest.calls[calls:]
    assert [c[0] for c in new] == ['point', 'set_point', 'put',
                                   'set_point']
    assert env.last.stats.late == 0


# -- failed rows --------------------------------------------------------------

@pytest.mark.parametrize('failure', ['raises', 'older', 'missing'])
def test_a_failed_row_is_retried_without_holding_the_others(env,
                                                            failure):
    env.set(retry_interval=0.0)
    for name, offset in (('a', 1), ('bad', 2), ('c', 3)):
        env.add(name, offset)
    env.objects.versions['bad'] = {
        'raises': direct_client.NodeError('10.0.0.9:6200/sdz: timed out'),
        'older': (t(1), b'old'),
        'missing': None}[failure]
    assert env.run() is True
    assert env.dest.sent() == ['a', 'c']
    st, _when = env.stored()
    assert st['point'] == (t(3), 'c')
    [entry] = st['retry']
    assert entry[:3] == ['bad', t(2), 1]
    assert entry[5] and '\n' not in entry[5]
    assert env.last.stats.failures == 1
    assert env.owner.lag[-1]['retry'] == 1
    assert env.owner.lag[-1]['rows_behind'] == 1
    # The object reappears; the row is due at once (retry_interval 0).
    env.objects.versions['bad'] = (t(2), b'good')
    calls = len(env.dest.calls)
    assert env.run() is True
    new = env.dest.calls[calls:]
    assert ('head', 'bad') in new
    assert [c for c in new if c[0] == 'put'] == [('put', 'bad', t(2))]
    st, _when = env.stored()
    assert st['retry'] == [] and st['point'] == (t(3), 'c')
    assert env.last.stats.retried == 1
    assert env.owner.lag[-1]['rows_behind'] == 0


class SkewedTime:
    """daemon's ``time`` module, its wall clock ``skew`` seconds on."""

    monotonic = staticmethod(time.monotonic)
    strftime = staticmethod(time.strftime)
    gmtime = staticmethod(time.gmtime)

    def __init__(self):
        self.skew = 0.0

    def time(self):
        return time.time() + self.skew


def test_retries_back_off_until_the_row_goes(env, monkeypatch):
    clock = SkewedTime()
    monkeypatch.setattr(daemon, 'time', clock)
    env.set(retry_interval=10.0, max_retry_interval=15.0)
    env.add('a', 1)
    env.add('bad', 2)
    env.objects.versions['bad'] = direct_client.NodeError('down')
    assert env.run() is True
    [entry] = env.stored()[0]['retry']
    assert entry[3] - entry[4] == pytest.approx(10.0, abs=0.5)
    # Not due yet: nothing to do, nothing asked.
    calls, asked = len(env.dest.calls), len(env.objects.asked)
    assert env.run() is True
    assert len(env.dest.calls) == calls
    assert len(env.objects.asked) == asked
    clock.skew = 11.0
    assert env.run() is True
    [again] = env.stored()[0]['retry']
    assert again[2] == 2 and again[4] == entry[4]
    assert again[3] - clock.time() == pytest.approx(15.0, abs=0.5)
    assert env.objects.asked.count('bad') == 2
    env.objects.versions['bad'] = (t(2), b'good')
    clock.skew = 30.0
    assert env.run() is True
    assert env.dest.sent() == ['a', 'bad']
    assert env.stored()[0]['retry'] == []


def test_a_failed_row_superseded_by_a_newer_one_leaves_the_retry_set(env):
    env.set(retry_interval=0.0)
    env.add('a', 1)
    env.add('bad', 2)
    env.objects.versions['bad'] = direct_client.NodeError('down')
    assert env.run() is True
    assert len(env.stored()[0]['retry']) == 1
    env.add('bad', 5, body=b'newer')
    calls = len(env.dest.calls)
    assert env.run() is True
    new = env.dest.calls[calls:]
    # NOTE: the old row is dropped unasked; its successor is a new row.
    assert [c for c in new if c[0] in ('head', 'put')] == [
        ('put', 'bad', t(5))]
    assert env.last.stats.superseded == 1
    st, _when = env.stored()
    assert st['retry'] == [] and st['point'] == (t(5), 'bad')


def test_a_row_whose_object_was_deleted_since_is_gone(env):
    env.add('a', 1)
    env.add('b', 2)
    # The source deleted b at 3; its tombstone's row has not come yet.
    env.objects.versions['b'] = (t(3), None)
    assert env.run() is True
    assert env.dest.sent() == ['a']
    st, _when = env.stored()
    assert st['retry'] == [] and st['point'] == (t(2), 'b')
    assert env.last.stats.gone == 1


def test_a_row_with_a_newer_version_at_the_source_is_superseded(env):
    env.add('a', 1)
    env.add('b', 2)
    env.objects.versions['b'] = (t(3), b'newer')
    assert env.run() is True
    assert env.dest.sent() == ['a']
    assert env.stored()[0]['retry'] == []
    assert env.last.stats.superseded == 1


def test_rows_of_another_storage_policy_are_left_to_the_reconciler(env):
    env.add('a', 1)
    # A misplaced write and its tombstone-to-be in policy 1 (the
    # container is policy 0): neither reaches the destination.
    env.broker.put_object('m', t(2), 1, 'text/plain', 'e',
                          storage_policy_index=1)
    env.broker.delete_object('a', t(3), storage_policy_index=1)
    env.add('b', 4)
    assert env.run() is True
    assert env.dest.sent() == ['a', 'b']
    assert env.objects.asked == ['a', 'b']
    assert env.last.stats.misplaced == 2
    assert env.stored()[0]['point'] == (t(4), 'b')


# -- a destination down -------------------------------------------------------

def test_a_batch_failing_whole_ends_the_pass(env):
    env.set(batch_size=3, retry_interval=0.0)
    for i in range(10):
        env.add('o%d' % i, i)
    env.dest.put_status = 503
    assert env.run() is False
    assert env.dest.sent() == ['o0', 'o1', 'o2']
    assert env.objects.asked == ['o0', 'o1', 'o2']
    assert 'every row of a batch failed' in env.last.last_error
    assert '503' in env.last.last_error
    assert env.owner.lag[-1]['last_error'] == env.last.last_error
    st, _when = env.stored()
    assert [r[0] for r in st['retry']] == ['o0', 'o1', 'o2']
    assert st['point'] == (t(2), 'o2') and st['sending'] is None
    # Back up: the failed rows are retried and the rest follow.
    env.dest.put_status = 201
    assert env.run() is True
    assert sorted(env.dest.sent()[3:]) == ['o%d' % i for i in range(10)]
    st, _when = env.stored()
    assert st['retry'] == [] and st['point'] == (t(9), 'o9')


def test_a_full_retry_set_holds_new_rows_back(env):
    env.set(max_retry_rows=1, retry_interval=100.0)
    for name, offset in (('bad', 1), ('b', 2), ('c', 3), ('d', 4)):
        env.add(name, offset)
    env.objects.versions['bad'] = direct_client.NodeError('down')
    assert env.run() is False
    assert env.dest.sent() == ['b']
    assert 'max_retry_rows' in env.last.last_error
    st, _when = env.stored()
    assert st['point'] == (t(2), 'b') and len(st['retry']) == 1


# -- bad targets --------------------------------------------------------------

@pytest.mark.parametrize('sync_to,reason', [
    ('//EU/DFW1/AUTH_b/c2', 'unknown realm'),
    ('//US/LON/AUTH_b/c2', 'unknown cluster'),
    ('http://10.9.9.9/v1/AUTH_b/c2', 'allowed_sync_hosts'),
    ('ftp://x/y', 'must be'),
])
def test_a_bad_sync_target_is_a_one_line_error(env, sync_to, reason):
    env.add('a', 1)
    env.sync_to = sync_to
    with pytest.raises(daemon.SyncError) as excinfo:
        env.run()
    text = str(excinfo.value)
    assert text.startswith('bad X-Container-Sync-To: ')
    assert reason in text and '\n' not in text
    assert env.dest.made == [] and env.stored() == (None, None)


# -- the other replicas -------------------------------------------------------

class Resp:
    def __init__(self, status, body=None):
        self.status = status
        self.body = body
        self.headers = {}

    def json(self):
        return self.body

    def read(self):
        return b''

    def close(self):
        pass


class Replicas:
    """The other replicas' node API (/sync-state) and row pulls."""

    def __init__(self, brokers):
        self.brokers = brokers
        self.requests = []

    def request(self, node, method, path, body=None, fence=None,
                headers=None):
        self.requests.append((node['id'], method, fence))
        broker = self.brokers.get(node['id'])
        if broker is None:
            raise direct_client.NodeError('%s: refused' % node['ip'])
        if method == 'GET':
            text, _when = broker.metadata.get(sync_state.STATE_KEY,
                                              ('', None))
            return Resp(200, {'id': broker.get_info()['id'],
                              'max_row': broker.get_max_row(),
                              'state': text or None,
                              'deleted': broker.is_deleted()})
        found = json.loads(body)
        broker.update_metadata(
            {sync_state.STATE_KEY: (found['state'], found['timestamp'])})
        return Resp(204)

    def rows(self, node, partition, name_hash, since, limit):
        return self.brokers[node['id']].get_items_since(since, limit)


def test_the_holder_levels_its_replica_and_resumes_from_the_newest(
        env, tmp_path, clock):
    env.set(batch_size=10)
    peer = make_container(str(tmp_path / 'sdb'), clock)
    for name, offset in (('a', 1), ('b', 2)):
        env.add(name, offset)
        peer.put_object(name, t(offset), 4, 'text/plain', 'e')
    # Only the peer has c; only it has the newest state (point b).
    peer.put_object('c', t(3), 4, 'text/plain', 'e')
    env.objects.versions['c'] = (t(3), b'data')
    st = sync_state.new_state(SYNC_TO, 7)
    st.update(point=('%s' % t(2), 'b'), rows={'other-replica': 2})
    peer.update_metadata(
        {sync_state.STATE_KEY: (sync_state.encode(st), OLD_STAMP)})
    env.store(v=2, point=env.key('a'))
    replicas = Replicas({1: peer})
    env.owner.client = replicas
    env.owner.dbsync = replicas
    env.nodes = NODES
    env.grant.fence = 'fence-token'
    assert env.run() is True
    # NOTE: the holder's own rows were never checked under the peer's
    # state: they are, once (HEAD), before the point moves on.
    assert env.dest.heads() == ['a', 'b']
    assert env.dest.sent() == ['a', 'b', 'c']
    assert env.last.stats.rows_pulled == 3
    assert env.owner.peer_errors.counts == {
        direct_client.node_label(NODES[2]): 3}
    mine, _when = env.stored()
    theirs = sync_state.decode(
        peer.metadata[sync_state.STATE_KEY][0])
    assert mine == theirs
    assert mine['v'] == 9 and mine['point'] == (t(3), 'c')
    assert mine['rows'] == {env.my_id: 3, peer.get_info()['id']: 3}
    assert [r for r in replicas.requests if r[1] == 'PUT'] == [
        (1, 'PUT', 'fence-token'), (2, 'PUT', 'fence-token')] * 2
    peer.close()

