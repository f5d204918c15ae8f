"""The container and account databases (coordsync.container.backend).

Listing expectations are written out by hand from Swift's documented
rules (container GET / account GET and "pseudo-hierarchical folders and
directories"); :func:`expected_listing` restates those rules plainly over
a Python list to check many more combinations than fit in a table.
"""

import itertools
import os
import random
import sqlite3
import threading

import pytest

from coordsync.common import hashing
from coordsync.container import backend
from tests.unit import fakes


def t(offset):
    """The stored text of the timestamp ``NOW + offset``."""
    return fakes.ts(offset).normal


ZERO = backend.ZERO_TIMESTAMP


@pytest.fixture
def dev(tmp_path):
    return str(tmp_path / 'sda')


def make_container(dev, clock, container='c', account='AUTH_a', part=7,
                   put=0, policy=0, **kwargs):
    path = backend.container_db_path(dev, part, account, container)
    broker = backend.ContainerBroker(path, account=account,
                                     container=container, clock=clock,
                                     **kwargs)
    broker.initialize(t(put), storage_policy_index=policy)
    return broker


def make_account(dev, clock, account='AUTH_a', part=3, put=0):
    path = backend.account_db_path(dev, part, account)
    broker = backend.AccountBroker(path, account=account, clock=clock)
    broker.initialize(t(put))
    return broker


@pytest.fixture
def cb(dev, clock):
    return make_container(dev, clock)


@pytest.fixture
def ab(dev, clock):
    return make_account(dev, clock)


def obj(name, offset, size=0, etag='e', ctype='text/plain', deleted=0,
        policy=0):
    return {'name': name, 'created_at': t(offset), 'size': size,
            'content_type': ctype, 'etag': etag, 'deleted': deleted,
            'storage_policy_index': policy}


def tomb(name, offset, policy=0):
    return obj(name, offset, 0, 'noetag', 'application/deleted', 1, policy)


def cont(name, put, delete=None, count=0, nbytes=0, reported=None,
         policy=0):
    return {'name': name, 'put_timestamp': t(put),
            'delete_timestamp': ZERO if delete is None else t(delete),
            'object_count': count, 'bytes_used': nbytes,
            'storage_policy_index': policy,
            'reported_at': t(put if reported is None else reported)}


def rows(broker):
    """Every row (tombstones too), without ROWID, by name and policy."""
    found = [{key: value for key, value in row.items() if key != 'ROWID'}
             for row in broker.get_items_since(-1, 100000)]
    return sorted(found, key=lambda row: (
        row['name'], row.get('storage_policy_index', 0)))


def stored(row, **changes):
    """``row`` as the database keeps it (accounts compute ``deleted``)."""
    row = dict(row, **changes)
    if 'put_timestamp' in row:
        row['deleted'] = int(row['delete_timestamp'] > row['put_timestamp']
                             and row['object_count'] == 0)
    return row


def one_line(excinfo):
    text = str(excinfo.value)
    assert '\n' not in text
    return text


# -- paths --------------------------------------------------------------------

def test_db_path_layout():
    name_hash = 'a' * 29 + 'f00'
    assert backend.db_path('/srv/node/sda', backend.CONTAINER_DATADIR, 7,
                           name_hash) == (
        '/srv/node/sda/containers/7/f00/%s/%s.db' % (name_hash, name_hash))
    assert backend.db_path('/d', backend.ACCOUNT_DATADIR, '012',
                           name_hash).startswith('/d/accounts/12/f00/')


def test_container_and_account_paths_use_salted_hashes():
    chash = hashing.hash_path('AUTH_a', 'c', prefix='p', suffix='s')
    assert backend.container_db_path('/d', 1, 'AUTH_a', 'c', prefix='p',
                                     suffix='s') == backend.db_path(
        '/d', 'containers', 1, chash)
    ahash = hashing.hash_path('AUTH_a', prefix='p', suffix='s')
    assert backend.account_db_path('/d', 1, 'AUTH_a', prefix='p',
                                   suffix='s') == backend.db_path(
        '/d', 'accounts', 1, ahash)


@pytest.mark.parametrize('part, name_hash', [
    (-1, 'a' * 32), ('x', 'a' * 32), (True, 'a' * 32), (1, 'A' * 32),
    (1, 'a' * 31), (1, '../' + 'a' * 29)])
def test_db_path_refuses_bad_parts(part, name_hash):
    with pytest.raises(ValueError):
        backend.db_path('/d', 'containers', part, name_hash)


# -- creation -----------------------------------------------------------------

def test_initialize_creates_the_database_atomically(dev, clock):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    broker = backend.ContainerBroker(path, account='AUTH_a', container='c',
                                     clock=clock)
    assert not broker.exists()
    broker.initialize(t(5), storage_policy_index=2)
    assert broker.exists()
    # NOTE: the temporary file it was built in is gone.
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    raw = sqlite3.connect(path)
    try:
        assert raw.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
        assert raw.execute('PRAGMA user_version').fetchone()[0] == 1
    finally:
        raw.close()


def test_container_info_fields(dev, clock):
    broker = make_container(dev, clock, put=5, policy=2)
    info = broker.get_info()
    db_id = info.pop('id')
    assert db_id.endswith('-sda') and len(db_id) > 36
    assert info == {
        'account': 'AUTH_a', 'container': 'c', 'created_at': t(0),
        'put_timestamp': t(5), 'delete_timestamp': ZERO, 'status': '',
        'status_changed_at': t(5), 'object_count': 0, 'bytes_used': 0,
        'reported_put_timestamp': ZERO, 'reported_delete_timestamp': ZERO,
        'reported_object_count': 0, 'reported_bytes_used': 0,
        'hash': '0' * 32, 'x_container_sync_point1': -1,
        'x_container_sync_point2': -1, 'storage_policy_index': 2}
    assert broker.device_path == dev


def test_account_info_fields(dev, clock):
    broker = make_account(dev, clock, put=3)
    info = broker.get_info()
    assert info.pop('id').endswith('-sda')
    assert info == {
        'account': 'AUTH_a', 'created_at': t(0), 'put_timestamp': t(3),
        'delete_timestamp': ZERO, 'status': '', 'status_changed_at': t(3),
        'container_count': 0, 'object_count': 0, 'bytes_used': 0,
        'hash': '0' * 32}


def test_initialize_twice_conflicts(cb):
    cb.put_object('o', t(1), 1, 'text/plain', 'e')
    with pytest.raises(backend.DatabaseConflict):
        cb.initialize(t(9))
    assert cb.get_info()['object_count'] == 1


def test_initialize_loses_a_race_cleanly(dev, clock, monkeypatch):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    broker = backend.ContainerBroker(path, account='AUTH_a', container='c',
                                     clock=clock)
    build = broker._build

    def build_then_lose(tmp, put, options):
        build(tmp, put, options)
        with open(path, 'wb') as fp:
            fp.write(b'the winner')
    monkeypatch.setattr(broker, '_build', build_then_lose)
    with pytest.raises(backend.DatabaseConflict):
        broker.initialize(t(1))
    with open(path, 'rb') as fp:
        assert fp.read() == b'the winner'
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


def test_failed_initialize_leaves_nothing(dev, clock, monkeypatch):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    broker = backend.ContainerBroker(path, account='AUTH_a', container='c',
                                     clock=clock)

    def fail(conn, put, options):
        raise sqlite3.OperationalError('disk full')
    monkeypatch.setattr(broker, '_insert_stat_row', fail)
    with pytest.raises(backend.DatabaseError) as excinfo:
        broker.initialize(t(1))
    assert 'disk full' in one_line(excinfo)
    assert os.listdir(os.path.dirname(path)) == []


def test_initialize_needs_names(dev, clock):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    with pytest.raises(ValueError):
        backend.ContainerBroker(path, account='AUTH_a').initialize(t(1))
    with pytest.raises(ValueError):
        backend.AccountBroker(path).initialize(t(1))
    assert not os.path.exists(path)


def test_missing_database(dev, clock):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'nope')
    broker = backend.ContainerBroker(path, clock=clock)
    assert not broker.exists()
    assert broker.is_deleted()
    with pytest.raises(backend.DatabaseNotFound):
        broker.get_info()
    with pytest.raises(backend.DatabaseNotFound):
        broker.put_object('o', t(1), 1, 'text/plain', 'e')
    assert not os.path.exists(path)


def test_database_removed_under_a_broker(cb):
    cb.get_info()
    os.unlink(cb.db_file)
    with pytest.raises(backend.DatabaseNotFound):
        cb.get_info()


# -- status -------------------------------------------------------------------

def test_container_delete_and_recreate(cb):
    assert not cb.is_deleted() and not cb.is_status_deleted()
    cb.delete_db(t(10))
    info = cb.get_info()
    assert (info['delete_timestamp'], info['status'],
            info['status_changed_at']) == (t(10), 'DELETED', t(10))
    assert cb.is_deleted() and cb.is_status_deleted()
    cb.delete_db(t(5))  # older: changes nothing
    assert cb.get_info()['delete_timestamp'] == t(10)
    cb.update_put_timestamp(t(8))  # older than the delete
    assert cb.is_deleted()
    cb.update_put_timestamp(t(20))
    info = cb.get_info()
    assert (info['put_timestamp'], info['status'],
            info['status_changed_at']) == (t(20), '', t(20))
    assert not cb.is_deleted() and not cb.is_status_deleted()
    cb.update_put_timestamp(t(15))
    assert cb.get_info()['put_timestamp'] == t(20)


def test_container_with_live_objects_is_not_deleted(cb):
    cb.put_object('o', t(1), 5, 'text/plain', 'e')
    cb.delete_db(t(10))
    assert cb.is_status_deleted()
    assert not cb.is_deleted()
    assert not cb.empty()
    cb.delete_object('o', t(11))
    assert cb.is_deleted()
    assert cb.empty()


def test_objects_of_another_policy(cb):
    cb.put_object('o', t(1), 5, 'text/plain', 'e', storage_policy_index=1)
    cb.delete_db(t(10))
    # NOTE: as Swift: is_deleted counts the container's policy, empty()
    # every policy.
    assert cb.get_info()['object_count'] == 0
    assert cb.is_deleted()
    assert not cb.empty()
    assert cb.get_policy_stats() == {
        0: {'object_count': 0, 'bytes_used': 0},
        1: {'object_count': 1, 'bytes_used': 5}}


def test_delete_db_clears_metadata_with_tombstones(cb):
    cb.update_metadata({'X-Container-Meta-A': ('1', t(1)),
                        'X-Container-Meta-B': ('2', t(20))})
    cb.delete_db(t(10))
    assert cb.metadata == {'X-Container-Meta-A': ('', t(10)),
                           'X-Container-Meta-B': ('2', t(20))}


def test_merge_timestamps(cb, clock):
    cb.merge_timestamps(t(-5), t(3), t(2))
    info = cb.get_info()
    assert (info['created_at'], info['put_timestamp'],
            info['delete_timestamp']) == (t(-5), t(3), t(2))
    assert not cb.is_deleted()
    clock.now += 50
    cb.merge_timestamps(t(7), t(1), t(9))
    info = cb.get_info()
    assert (info['created_at'], info['put_timestamp'],
            info['delete_timestamp']) == (t(-5), t(3), t(9))
    assert cb.is_deleted()
    assert info['status'] == 'DELETED'
    assert info['status_changed_at'] == t(50)


def test_account_delete_is_sticky(ab):
    ab.put_container('c', t(1), ZERO, 2, 20)
    ab.delete_db(t(10))
    assert ab.is_deleted() and ab.is_status_deleted()
    assert ab.get_info()['status'] == 'DELETED'
    # NOTE: as Swift: "recently deleted" until the reaper is done.
    ab.update_put_timestamp(t(20))
    assert ab.is_deleted() and ab.is_status_deleted()


def test_account_with_containers_is_not_deleted(ab):
    ab.put_container('c', t(1), ZERO, 0, 0)
    ab.merge_timestamps(t(0), t(0), t(10))  # a replica's delete
    assert ab.is_status_deleted()
    assert not ab.is_deleted()
    assert not ab.empty()
    ab.put_container('c', t(1), t(11), 0, 0)
    assert ab.empty()
    assert ab.is_deleted()


def test_stale_account_delete_does_not_delete(dev, clock):
    broker = make_account(dev, clock, put=20)
    broker.delete_db(t(10))
    assert broker.get_info()['status'] == ''
    assert not broker.is_deleted()


# -- object rows --------------------------------------------------------------

def apply_version(broker, item, how):
    if how == 'merge':
        broker.merge_items([item])
    elif item['deleted']:
        broker.delete_object(item['name'], item['created_at'],
                             item['storage_policy_index'])
    else:
        broker.put_object(item['name'], item['created_at'], item['size'],
                          item['content_type'], item['etag'],
                          storage_policy_index=item['storage_policy_index'])


OBJECT_HISTORIES = {
    'put wins': ([obj('o', 1, 10, 'e1'), tomb('o', 2), obj('o', 3, 30, 'e3')],
                 obj('o', 3, 30, 'e3')),
    'tombstone wins': ([obj('o', 1, 10, 'e1'), obj('o', 3, 30, 'e3'),
                        tomb('o', 4)], tomb('o', 4)),
    'tie': ([obj('o', 5, 10, 'e1'), tomb('o', 5), obj('o', 1, 1, 'e0')],
            tomb('o', 5)),
}


@pytest.mark.parametrize('history', sorted(OBJECT_HISTORIES))
@pytest.mark.parametrize('how', ['put', 'merge', 'batch'])
def test_newest_object_version_wins_in_any_order(dev, clock, history, how):
    versions, winner = OBJECT_HISTORIES[history]
    for number, order in enumerate(itertools.permutations(versions)):
        broker = make_container(dev, clock, container='c%d' % number)
        if how == 'batch':
            broker.merge_items(list(order))
        else:
            for item in order:
                apply_version(broker, item, how)
        assert rows(broker) == [winner], order
        info = broker.get_info()
        live = 1 - winner['deleted']
        assert (info['object_count'], info['bytes_used']) == (
            live, live * winner['size'])


def test_counts_follow_puts_overwrites_and_deletes(cb):
    def counts():
        info = cb.get_info()
        return info['object_count'], info['bytes_used']
    cb.put_object('a', t(1), 10, 'text/plain', 'ea')
    cb.put_object('b', t(1), 20, 'text/plain', 'eb')
    assert counts() == (2, 30)
    cb.put_object('a', t(2), 15, 'text/plain', 'ea2')
    assert counts() == (2, 35)
    cb.put_object('a', t(0), 99, 'text/plain', 'old')  # older: ignored
    assert counts() == (2, 35)
    cb.delete_object('b', t(3))
    assert counts() == (1, 15)
    cb.delete_object('b', t(2))
    assert counts() == (1, 15)
    cb.put_object('b', t(4), 7, 'text/plain', 'eb2')
    assert counts() == (2, 22)
    cb.merge_items([tomb('a', 5), obj('c', 5, 100), obj('b', 3, 1)])
    assert counts() == (2, 107)
    live = [row for row in rows(cb) if not row['deleted']]
    assert sum(row['size'] for row in live) == 107


def test_merge_is_idempotent(cb):
    items = [obj('a', 1, 1), tomb('b', 2), obj('c', 3, 3, policy=1)]
    assert cb.merge_items(items) == 3
    before = rows(cb), cb.get_max_row(), cb.get_info()
    assert cb.merge_items(items) == 0
    assert cb.merge_items(cb.get_items_since(-1, 100)) == 0
    assert (rows(cb), cb.get_max_row(), cb.get_info()) == before


def test_merge_is_commutative(dev, clock):
    first = make_container(dev, clock, container='first')
    second = make_container(dev, clock, container='second')
    first.merge_items([obj('x', 1, 1, 'x1'), obj('y', 2, 2, 'y1'),
                       tomb('z', 5), obj('w', 1, 4, 'w1'),
                       obj('same', 7, 7, 'one')])
    second.merge_items([obj('x', 3, 3, 'x3'), tomb('y', 4),
                        obj('z', 4, 4, 'z1'), obj('v', 1, 8, 'v1'),
                        obj('x', 1, 9, 'x-p1', policy=1),
                        obj('same', 7, 7, 'two')])
    expected = [obj('same', 7, 7, 'two'), obj('v', 1, 8, 'v1'),
                obj('w', 1, 4, 'w1'), obj('x', 3, 3, 'x3'),
                obj('x', 1, 9, 'x-p1', policy=1), tomb('y', 4),
                tomb('z', 5)]
    a_then_b = make_container(dev, clock, container='ab')
    b_then_a = make_container(dev, clock, container='ba')
    for target, sources in ((a_then_b, (first, second)),
                            (b_then_a, (second, first))):
        for source in sources:
            target.merge_items(source.get_items_since(-1, 100))
    first_items = first.get_items_since(-1, 100)
    first.merge_items(second.get_items_since(-1, 100))
    second.merge_items(first_items)
    infos = [broker.get_info()
             for broker in (a_then_b, b_then_a, first, second)]
    for broker, info in zip((a_then_b, b_then_a, first, second), infos,
                            strict=True):
        assert rows(broker) == expected
        assert (info['object_count'], info['bytes_used']) == (4, 22)
        assert info['hash'] == infos[0]['hash'] != '0' * 32


def test_concurrent_writers(dev, clock, cb):
    """Threads share a broker, and a second broker (as another process
    would) writes the same file: no write is lost."""
    other = backend.ContainerBroker(cb.db_file, clock=clock)

    def write(broker, worker):
        for n in range(25):
            broker.put_object('w%d-%d' % (worker, n), t(1), 1, 'text/plain',
                              'e')
    threads = [threading.Thread(target=write, args=(broker, worker))
               for worker, broker in enumerate([cb, cb, other, other])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cb.get_info()['object_count'] == 100
    assert cb.get_max_row() == 100


def test_merge_takes_any_iterable(cb):
    assert cb.merge_items(obj(name, 1) for name in 'abc') == 3
    assert [row['name'] for row in rows(cb)] == ['a', 'b', 'c']


def test_bad_rows_change_nothing(cb):
    cb.put_object('a', t(1), 1, 'text/plain', 'e')
    before = rows(cb)
    for bad in ({'name': 'b'}, dict(obj('b', 2), size=-1),
                dict(obj('b', 2), name=''), dict(obj('b', 2), name='a\x00'),
                dict(obj('b', 2), name='\udc80'),
                dict(obj('b', 2), created_at='yesterday'),
                dict(obj('b', 2), deleted=2)):
        with pytest.raises(ValueError):
            cb.merge_items([obj('c', 3), bad])
    assert rows(cb) == before


def test_rows_are_replaced_never_updated(cb):
    cb.put_object('a', t(1), 1, 'text/plain', 'e')
    raw = sqlite3.connect(cb.db_file)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            raw.execute("UPDATE object SET size = 5")
    finally:
        raw.close()


# -- rows since, sync points --------------------------------------------------

def test_items_since_and_max_row(cb):
    assert cb.get_max_row() == -1
    assert cb.get_items_since(-1, 10) == []
    for name in ('a', 'b', 'c'):
        cb.put_object(name, t(1), 1, 'text/plain', 'e')
    assert cb.get_max_row() == 3
    cb.put_object('a', t(2), 2, 'text/plain', 'e')  # a new row for 'a'
    assert cb.get_max_row() == 4
    since = cb.get_items_since(2, 10)
    assert [(row['ROWID'], row['name']) for row in since] == [(3, 'c'),
                                                              (4, 'a')]
    assert [row['ROWID'] for row in cb.get_items_since(-1, 2)] == [2, 3]
    cb.put_object('a', t(1), 1, 'text/plain', 'e')  # older: no new row
    assert cb.get_max_row() == 4
    cb.delete_object('c', t(2))
    cb.reclaim(t(100))
    assert cb.get_max_row() == 5  # never goes down
    cb.put_object('d', t(1), 1, 'text/plain', 'e')
    assert cb.get_max_row() == 6


def test_sync_points(cb):
    assert cb.get_sync('r1') == -1
    assert cb.get_syncs() == []
    cb.merge_syncs([{'remote_id': 'r2', 'sync_point': 5},
                    {'remote_id': 'r1', 'sync_point': 7}])
    cb.merge_syncs([{'remote_id': 'r2', 'sync_point': 3}])
    assert cb.get_sync('r2') == 5
    assert cb.get_syncs() == [{'remote_id': 'r1', 'sync_point': 7},
                              {'remote_id': 'r2', 'sync_point': 5}]
    assert cb.get_sync('r1', incoming=False) == -1
    cb.merge_syncs([{'remote_id': 'r1', 'sync_point': 2}], incoming=False)
    assert cb.get_syncs(incoming=False) == [{'remote_id': 'r1',
                                              'sync_point': 2}]
    assert cb.get_sync('r1') == 7


def test_merge_from_a_source_raises_its_sync_point(dev, clock, cb):
    other = make_container(dev, clock, container='other')
    for name in ('a', 'b', 'c'):
        other.put_object(name, t(1), 1, 'text/plain', 'e')
    items = other.get_items_since(-1, 100)
    cb.merge_items(items[:2], source='other-id')
    assert cb.get_sync('other-id') == 2
    cb.merge_items(items, source='other-id')
    assert cb.get_sync('other-id') == 3
    cb.merge_items(items[:1], source='other-id')
    assert cb.get_sync('other-id') == 3
    with pytest.raises(ValueError):
        cb.merge_items([obj('x', 1)], source='other-id')


def test_newid(cb):
    cb.put_object('a', t(1), 1, 'text/plain', 'e')
    cb.reported(t(1), ZERO, 1, 1)
    old_id = cb.get_info()['id']
    cb.newid('remote-id')
    info = cb.get_info()
    assert info['id'] != old_id and info['id'].endswith('-sda')
    assert cb.get_sync('remote-id') == 1
    assert (info['reported_put_timestamp'], info['reported_object_count']) \
        == (ZERO, 0)


def test_reported_and_container_sync_points(cb):
    cb.reported(t(1), t(2), 3, 4)
    cb.set_x_container_sync_points(5, None)
    cb.set_x_container_sync_points(None, 6)
    info = cb.get_info()
    assert (info['reported_put_timestamp'], info['reported_delete_timestamp'],
            info['reported_object_count'], info['reported_bytes_used'],
            info['x_container_sync_point1'],
            info['x_container_sync_point2']) == (t(1), t(2), 3, 4, 5, 6)


def test_replication_info(cb):
    cb.put_object('a', t(1), 1, 'text/plain', 'e')
    cb.update_metadata({'X-Container-Meta-A': ('v', t(1))})
    info = cb.get_replication_info()
    assert (info['count'], info['max_row']) == (1, 1)
    assert info['metadata'] == '{"X-Container-Meta-A": ["v", "%s"]}' % t(1)


# -- metadata -----------------------------------------------------------------

def test_metadata_newest_wins_per_key(cb):
    assert cb.metadata == {}
    cb.update_metadata({'X-Container-Meta-Color': ('blue', t(2)),
                        'X-Container-Meta-Size': ('big', t(2))})
    cb.update_metadata({'X-Container-Meta-Color': ('red', t(1)),
                        'X-Container-Meta-Size': ('small', t(3))})
    assert cb.metadata == {'X-Container-Meta-Color': ('blue', t(2)),
                           'X-Container-Meta-Size': ('small', t(3))}


def test_metadata_deletion_keeps_a_tombstone(dev, clock, cb):
    replica = make_container(dev, clock, container='replica')
    cb.update_metadata({'X-Container-Meta-Color': ('blue', t(1))})
    replica.update_metadata(cb.metadata)
    cb.update_metadata({'X-Container-Meta-Color': ('', t(2))})
    assert cb.metadata == {'X-Container-Meta-Color': ('', t(2))}
    assert cb.live_metadata == {}
    # NOTE: the replica's older value cannot come back...
    cb.update_metadata(replica.metadata)
    assert cb.live_metadata == {}
    # ...and the deletion reaches the replica.
    replica.update_metadata(cb.metadata)
    assert replica.live_metadata == {}
    # NOTE: a newer value does come back.
    replica.update_metadata({'X-Container-Meta-Color': ('green', t(3))})
    cb.update_metadata(replica.metadata)
    assert cb.live_metadata == {'X-Container-Meta-Color': ('green', t(3))}


def test_metadata_ties_converge(dev, clock, cb):
    replica = make_container(dev, clock, container='replica')
    cb.update_metadata({'K': ('a', t(1)), 'L': ('x', t(1))})
    replica.update_metadata({'K': ('b', t(1)), 'L': ('', t(1))})
    mine = cb.metadata
    cb.update_metadata(replica.metadata)
    replica.update_metadata(mine)
    assert cb.metadata == replica.metadata == {'K': ('b', t(1)),
                                               'L': ('', t(1))}


def test_metadata_rejects_bad_values(cb):
    for bad in ({'': ('v', t(1))}, {'K': 'v'}, {'K': (5, t(1))},
                {'K': ('v', 'soon')}):
        with pytest.raises(ValueError):
            cb.update_metadata(bad)
    assert cb.metadata == {}


# -- reclaim ------------------------------------------------------------------

def test_reclaim_drops_old_tombstones_only(cb, clock):
    cb.put_object('live-old', t(1), 3, 'text/plain', 'e')
    cb.delete_object('dead-old', t(2))
    cb.delete_object('dead-new', t(10))
    cb.delete_object('dead-p1', t(2), storage_policy_index=1)
    cb.update_metadata({'X-Old': ('', t(2)), 'X-New': ('', t(10)),
                        'X-Live': ('v', t(1))})
    max_row = cb.get_max_row()
    info = cb.get_info()
    assert cb.reclaim(t(5)) == 2
    assert [row['name'] for row in rows(cb)] == ['dead-new', 'live-old']
    assert cb.metadata == {'X-New': ('', t(10)), 'X-Live': ('v', t(1))}
    assert cb.get_max_row() == max_row
    after = cb.get_info()
    assert (after['object_count'], after['bytes_used']) == (
        info['object_count'], info['bytes_used'])
    assert cb.reclaim(t(5)) == 0


def test_reclaim_in_batches(cb, monkeypatch):
    monkeypatch.setattr(backend, 'RECLAIM_BATCH', 2)
    cb.merge_items([tomb('d%d' % n, 1) for n in range(5)])
    assert cb.reclaim(t(5)) == 5
    assert rows(cb) == []


def test_reclaim_old_sync_points(cb, clock):
    cb.merge_syncs([{'remote_id': 'old', 'sync_point': 1}])
    cb.merge_syncs([{'remote_id': 'old-out', 'sync_point': 1}],
                   incoming=False)
    clock.now += 100
    cb.merge_syncs([{'remote_id': 'new', 'sync_point': 1}])
    cb.reclaim(t(0), sync_timestamp=t(50))
    assert [s['remote_id'] for s in cb.get_syncs()] == ['new']
    assert cb.get_syncs(incoming=False) == []


# -- listings -----------------------------------------------------------------

# NOTE: in listing (UTF-8 byte) order: '-' < '/' < '0' < letters, an
# ASCII letter before 'é', CJK before U+FF21 before an emoji.
NAMES = ['a', 'a-b', 'a/', 'a/b', 'a/b/c', 'a/c', 'a0', 'ab', 'b-y/z',
         'b/x', 'caff', 'café', 'café/menu', '日本/東京', '日本語', 'Ａ',
         '😀']

DELIMITED = ['a', 'a-b', '<a/>', 'a0', 'ab', '<b-y/>', '<b/>', 'caff',
             'café', '<café/>', '<日本/>', '日本語', 'Ａ', '😀']

# (limit, marker, end_marker, prefix, delimiter, reverse) -> listing;
# '<x>' is the subdir x.
LISTINGS = [
    ((100, None, None, None, None, False), NAMES),
    ((100, '', '', '', '', False), NAMES),
    ((100, None, None, 'a/', None, False), ['a/', 'a/b', 'a/b/c', 'a/c']),
    ((100, None, None, 'a', None, False),
     ['a', 'a-b', 'a/', 'a/b', 'a/b/c', 'a/c', 'a0', 'ab']),
    ((100, None, None, 'caf', None, False), ['caff', 'café', 'café/menu']),
    ((100, None, None, None, '/', False), DELIMITED),
    ((100, None, None, 'a/', '/', False), ['a/', 'a/b', '<a/b/>', 'a/c']),
    ((100, None, None, None, '-', False),
     ['a', '<a->', 'a/', 'a/b', 'a/b/c', 'a/c', 'a0', 'ab', '<b->', 'b/x',
      'caff', 'café', 'café/menu', '日本/東京', '日本語', 'Ａ', '😀']),
    ((100, None, None, 'caf', 'é', False), ['caff', '<café>']),
    ((100, None, None, 'café', '/', False), ['café', '<café/>']),
    ((100, None, None, '日本', '/', False), ['<日本/>', '日本語']),
    ((100, 'a/b', None, None, None, False), NAMES[4:]),
    ((100, None, 'a0', None, None, False), NAMES[:6]),
    ((100, 'a', 'b', None, None, False), NAMES[1:8]),
    ((100, 'z', None, None, None, False), ['日本/東京', '日本語', 'Ａ', '😀']),
    ((100, None, 'a/', None, '/', False), ['a', 'a-b']),
    ((100, 'a/b/c', None, None, '/', False), ['<a/>'] + DELIMITED[3:]),
    ((100, None, 'b', 'a/', None, False), ['a/', 'a/b', 'a/b/c', 'a/c']),
    ((100, 'a/b', None, 'a/', None, False), ['a/b/c', 'a/c']),
    ((100, '0', None, 'a/', None, False), ['a/', 'a/b', 'a/b/c', 'a/c']),
    ((100, 'a/b/', None, 'a/', '/', False), ['a/c']),
    ((3, None, None, None, '/', False), ['a', 'a-b', '<a/>']),
    # NOTE: paging by the last entry, subdirs included, lists every
    # entry once.
    ((3, 'a/', None, None, '/', False), ['a0', 'ab', '<b-y/>']),
    ((3, 'b-y/', None, None, '/', False), ['<b/>', 'caff', 'café']),
    ((3, 'café', None, None, '/', False), ['<café/>', '<日本/>', '日本語']),
    ((3, '日本語', None, None, '/', False), ['Ａ', '😀']),
    ((3, '😀', None, None, '/', False), []),
    ((0, None, None, None, None, False), []),
    ((100, None, None, 'x', '/', False), []),
    ((100, None, None, None, None, True), NAMES[::-1]),
    ((100, None, None, None, '/', True), DELIMITED[::-1]),
    # NOTE: reversed, marker is the upper bound and end_marker the lower.
    ((100, 'b', 'a/', None, '/', True), ['ab', 'a0']),
    ((100, 'a/b', None, None, None, True), ['a/', 'a-b', 'a']),
    ((2, None, None, 'a/', None, True), ['a/c', 'a/b/c']),
    ((100, None, None, 'a/', '/', True), ['a/c', '<a/b/>', 'a/b', 'a/']),
]


def render(entries):
    return ['<%s>' % entry['subdir'] if 'subdir' in entry else entry['name']
            for entry in entries]


def expected_listing(names, limit, marker, end_marker, prefix, delimiter,
                     reverse):
    """Swift's listing rules, written plainly over a list of names."""
    lower, upper = (end_marker, marker) if reverse else (marker, end_marker)
    prefix = prefix or ''
    picked = sorted(
        (name for name in names if name.startswith(prefix)
         and (not lower or name > lower) and (not upper or name < upper)),
        key=lambda name: name.encode('utf-8'), reverse=reverse)
    listing = []
    for name in picked:
        cut = name.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            listing.append(name)
            continue
        subdir = name[:cut + len(delimiter)]
        if subdir != lower and listing[-1:] != ['<%s>' % subdir]:
            listing.append('<%s>' % subdir)
    return listing[:limit]


COMBINATIONS = list(itertools.product(
    [1, 3, 100], [None, 'a/', 'a/b', 'b', 'café', '日本/'],
    [None, 'a0', 'b/x', 'caff', '😀'], [None, 'a', 'a/', 'caf', '日本'],
    [None, '/', '-', 'é'], [False, True]))


@pytest.fixture(scope='module')
def listed(tmp_path_factory):
    """A container holding NAMES, plus rows no listing may show."""
    dev = str(tmp_path_factory.mktemp('listing') / 'sda')
    broker = make_container(dev, fakes.Clock())
    broker.merge_items([obj(name, 1, len(name)) for name in NAMES] + [
        tomb('a/gone', 2), tomb('d/gone', 2), obj('p1/obj', 1, policy=1)])
    return broker


@pytest.fixture(scope='module')
def listed_account(tmp_path_factory):
    dev = str(tmp_path_factory.mktemp('listing') / 'sda')
    broker = make_account(dev, fakes.Clock())
    broker.merge_items([cont(name, 1, count=1, nbytes=len(name))
                        for name in NAMES] + [cont('d/gone', 1, 2)])
    return broker


def test_names_are_in_listing_order():
    assert NAMES == sorted(NAMES, key=lambda name: name.encode('utf-8'))


def test_the_model_agrees_with_the_hand_written_listings():
    for args, expected in LISTINGS:
        assert expected_listing(NAMES, *args) == expected, args


@pytest.mark.parametrize('args, expected', LISTINGS)
def test_object_listing(listed, args, expected):
    limit, marker, end_marker, prefix, delimiter, reverse = args
    assert render(listed.list_objects_iter(
        limit, marker, end_marker, prefix, delimiter,
        reverse=reverse)) == expected


def test_object_listing_combinations(listed):
    for args in COMBINATIONS:
        limit, marker, end_marker, prefix, delimiter, reverse = args
        assert render(listed.list_objects_iter(
            limit, marker, end_marker, prefix, delimiter,
            reverse=reverse)) == expected_listing(NAMES, *args), args


def test_object_listing_entries(listed):
    assert listed.list_objects_iter(2, 'a/b/c', None, None, '/') == [
        {'subdir': 'a/'},
        {'name': 'a0', 'created_at': t(1), 'size': 2,
         'content_type': 'text/plain', 'etag': 'e'}]
    assert render(listed.list_objects_iter(
        10, None, None, None, None, storage_policy_index=1)) == ['p1/obj']


def test_listing_rejects_bad_arguments(listed):
    for args in ((-1, None, None, None, None), ('10', None, None, None, None),
                 (10, '\udc80', None, None, None), (10, None, None, 5, None)):
        with pytest.raises(ValueError):
            listed.list_objects_iter(*args)


@pytest.mark.parametrize('args, expected', LISTINGS)
def test_container_listing(listed_account, args, expected):
    limit, marker, end_marker, prefix, delimiter, reverse = args
    assert render(listed_account.list_containers_iter(
        limit, marker, end_marker, prefix, delimiter,
        reverse=reverse)) == expected


def test_container_listing_combinations(listed_account):
    for args in COMBINATIONS[::7]:
        limit, marker, end_marker, prefix, delimiter, reverse = args
        assert render(listed_account.list_containers_iter(
            limit, marker, end_marker, prefix, delimiter,
            reverse=reverse)) == expected_listing(NAMES, *args), args


def test_container_listing_entries(listed_account):
    assert listed_account.list_containers_iter(
        2, 'a/b/c', None, None, '/') == [
        {'subdir': 'a/'},
        {'name': 'a0', 'count': 1, 'bytes': 2, 'last_modified': t(1)}]


# -- damage -------------------------------------------------------------------

def garbage(size=8192):
    return random.Random(42).randbytes(size)


def write_at(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as fp:
        fp.write(data)


def quarantined_path(dev, datadir, path):
    name_hash = os.path.basename(os.path.dirname(path))
    return os.path.join(dev, 'quarantined', datadir, name_hash,
                        os.path.basename(path))


def assert_quarantined(excinfo, dev, path, data, datadir='containers'):
    text = one_line(excinfo)
    dest = quarantined_path(dev, datadir, path)
    assert dest in text
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))
    with open(dest, 'rb') as fp:
        assert fp.read() == data


@pytest.mark.parametrize('data', [garbage(), b'', b'SQLite format 3\x00'],
                         ids=['random', 'empty', 'header only'])
def test_damaged_file_is_quarantined(dev, clock, data):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    write_at(path, data)
    broker = backend.ContainerBroker(path, clock=clock)
    with pytest.raises(backend.DatabaseCorrupt) as excinfo:
        broker.get_info()
    assert_quarantined(excinfo, dev, path, data)
    with pytest.raises(backend.DatabaseNotFound):
        broker.get_info()


def test_truncated_database_is_quarantined(dev, clock, cb):
    cb.merge_items([obj('object-%04d' % n, 1, n, 'x' * 32)
                    for n in range(2000)])
    cb.close()
    path = cb.db_file
    assert not os.path.exists(path + '-wal')
    with open(path, 'rb') as fp:
        data = fp.read()[:os.path.getsize(path) // 2]
    write_at(path, data)
    with pytest.raises(backend.DatabaseCorrupt) as excinfo:
        backend.ContainerBroker(path, clock=clock).get_info()
    assert_quarantined(excinfo, dev, path, data)


def test_foreign_database_is_quarantined(dev, clock):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    os.makedirs(os.path.dirname(path))
    raw = sqlite3.connect(path)
    raw.execute('CREATE TABLE t (x)')
    raw.commit()
    raw.close()
    with pytest.raises(backend.DatabaseCorrupt):
        backend.ContainerBroker(path, clock=clock).list_objects_iter(
            10, None, None, None, None)
    assert os.path.exists(quarantined_path(dev, 'containers', path))


def test_account_database_is_not_a_container_database(dev, clock, ab):
    with pytest.raises(backend.DatabaseCorrupt):
        backend.ContainerBroker(ab.db_file, clock=clock).get_info()


def test_second_quarantine_of_a_hash_keeps_both(dev, clock):
    path = backend.container_db_path(dev, 7, 'AUTH_a', 'c')
    for data in (b'first' * 100, b'second' * 100):
        write_at(path, data)
        with pytest.raises(backend.DatabaseCorrupt):
            backend.ContainerBroker(path, clock=clock).get_info()
    qdir = os.path.join(dev, 'quarantined', 'containers')
    found = sorted(os.listdir(qdir))
    assert len(found) == 2
    assert found[0] == os.path.basename(os.path.dirname(path))
    assert found[1].startswith(found[0] + '-')


def test_database_quarantined_and_recreated_while_in_use(dev, clock, cb):
    cb.put_object('old', t(1), 1, 'text/plain', 'e')
    cb.get_info()  # a connection is kept for reuse
    other = backend.ContainerBroker(cb.db_file, clock=clock)
    dest = other.quarantine('a test')
    assert dest == quarantined_path(dev, 'containers', cb.db_file)
    fresh = make_container(dev, clock)
    fresh.put_object('new', t(2), 1, 'text/plain', 'e')
    assert render(cb.list_objects_iter(10, None, None, None, None)) == [
        'new']
    moved = backend.ContainerBroker(dest, clock=clock)
    assert render(moved.list_objects_iter(10, None, None, None, None)) == [
        'old']


def test_initialize_ignores_a_deleted_databases_wal(dev, clock, cb):
    cb.merge_items([obj('stale-%d' % n, 1, 1) for n in range(20)])
    os.unlink(cb.db_file)
    cb.close()
    # NOTE: SQLite keeps the WAL of a database that was unlinked.
    assert os.path.exists(cb.db_file + '-wal')
    fresh = make_container(dev, clock)
    assert fresh.get_info()['object_count'] == 0
    assert fresh.list_objects_iter(10, None, None, None, None) == []


def test_account_damage_is_quarantined(dev, clock):
    path = backend.account_db_path(dev, 3, 'AUTH_a')
    write_at(path, garbage())
    with pytest.raises(backend.DatabaseCorrupt) as excinfo:
        backend.AccountBroker(path, clock=clock).put_container(
            'c', t(1), ZERO, 0, 0)
    assert_quarantined(excinfo, dev, path, garbage(), 'accounts')


def test_damage_outside_the_layout_is_renamed_in_place(tmp_path, clock):
    path = str(tmp_path / 'loose.db')
    write_at(path, garbage())
    broker = backend.ContainerBroker(path, clock=clock)
    assert broker.device_path is None
    with pytest.raises(backend.DatabaseCorrupt):
        broker.get_info()
    assert [name.startswith('loose.db.corrupt-')
            for name in os.listdir(tmp_path)] == [True]


def test_a_busy_database_is_an_error_not_damage(dev, clock, cb):
    holder = sqlite3.connect(cb.db_file, isolation_level=None, timeout=0)
    holder.execute('BEGIN IMMEDIATE')
    try:
        busy = backend.ContainerBroker(cb.db_file, clock=clock,
                                       timeout=0.05)
        with pytest.raises(backend.DatabaseError) as excinfo:
            busy.put_object('a', t(1), 1, 'text/plain', 'e')
        assert not isinstance(excinfo.value, backend.DatabaseCorrupt)
        assert 'locked' in one_line(excinfo)
        # NOTE: WAL: readers go on while a writer holds the lock.
        assert busy.get_info()['object_count'] == 0
    finally:
        holder.execute('ROLLBACK')
        holder.close()
    busy.put_object('a', t(1), 1, 'text/plain', 'e')
    assert cb.get_info()['object_count'] == 1


def test_a_newer_schema_is_refused_not_quarantined(cb):
    raw = sqlite3.connect(cb.db_file)
    raw.execute('PRAGMA user_version = 99')
    raw.commit()
    raw.close()
    cb.close()
    with pytest.raises(backend.DatabaseError) as excinfo:
        cb.get_info()
    assert not isinstance(excinfo.value, backend.DatabaseCorrupt)
    assert os.path.exists(cb.db_file)


def test_possibly_quarantine(cb):
    with pytest.raises(backend.DatabaseError) as excinfo:
        cb.possibly_quarantine(sqlite3.OperationalError('database is locked'))
    assert not isinstance(excinfo.value, backend.DatabaseCorrupt)
    assert cb.exists()
    with pytest.raises(backend.DatabaseCorrupt):
        cb.possibly_quarantine(sqlite3.DatabaseError(
            'database disk image is malformed'))
    assert not cb.exists()


# -- accounts -----------------------------------------------------------------

ACCOUNT_HISTORIES = {
    'recreated': ([cont('c', 1, count=5, nbytes=50),
                   cont('c', 1, 2, reported=2),
                   cont('c', 3, 2, count=1, nbytes=7)],
                  stored(cont('c', 3, 2, count=1, nbytes=7))),
    'deleted': ([cont('c', 1, count=5, nbytes=50),
                 cont('c', 3, count=1, nbytes=7),
                 cont('c', 3, 4, reported=4)],
                stored(cont('c', 3, 4, reported=4))),
}


@pytest.mark.parametrize('history', sorted(ACCOUNT_HISTORIES))
@pytest.mark.parametrize('how', ['put', 'merge', 'batch'])
def test_newest_container_report_wins_in_any_order(dev, clock, history,
                                                   how):
    versions, winner = ACCOUNT_HISTORIES[history]
    for number, order in enumerate(itertools.permutations(versions)):
        broker = make_account(dev, clock, account='AUTH_%d' % number)
        if how == 'batch':
            broker.merge_items(list(order))
        for item in order:
            if how == 'merge':
                broker.merge_items([item])
            elif how == 'put':
                broker.put_container(
                    item['name'], item['put_timestamp'],
                    item['delete_timestamp'], item['object_count'],
                    item['bytes_used'], reported_at=item['reported_at'])
        assert rows(broker) == [winner], order
        info = broker.get_info()
        live = 1 - winner['deleted']
        assert (info['container_count'], info['object_count'],
                info['bytes_used']) == (live, winner['object_count'],
                                        winner['bytes_used'])


def test_account_totals(ab):
    def totals():
        info = ab.get_info()
        return (info['container_count'], info['object_count'],
                info['bytes_used'])
    ab.put_container('c1', t(1), ZERO, 2, 20)
    ab.put_container('c2', t(1), ZERO, 3, 30, storage_policy_index=1)
    assert totals() == (2, 5, 50)
    assert ab.get_policy_stats() == {
        0: {'container_count': 1, 'object_count': 2, 'bytes_used': 20},
        1: {'container_count': 1, 'object_count': 3, 'bytes_used': 30}}
    ab.put_container('c1', t(1), ZERO, 4, 40, reported_at=t(5))
    assert totals() == (2, 7, 70)
    # NOTE: a delete with objects left is not a deleted container.
    ab.put_container('c2', t(1), t(2), 3, 30, reported_at=t(5))
    assert totals() == (2, 7, 70)
    ab.put_container('c2', t(1), t(2), 0, 0, reported_at=t(6))
    assert totals() == (1, 4, 40)
    assert not ab.empty()
    ab.put_container('c1', t(1), t(7), 0, 0, reported_at=t(7))
    assert totals() == (0, 0, 0)
    assert ab.empty()


def test_an_older_report_does_not_roll_counts_back(ab, clock):
    ab.put_container('c', t(1), ZERO, 10, 100, reported_at=t(5))
    ab.put_container('c', t(1), ZERO, 3, 30, reported_at=t(4))
    assert rows(ab)[0]['object_count'] == 10
    clock.now += 10  # reports stamped on arrival by default
    ab.put_container('c', t(1), ZERO, 4, 40)
    assert rows(ab)[0]['object_count'] == 4
    assert rows(ab)[0]['reported_at'] == t(10)


def test_account_merge_is_idempotent_and_commutative(dev, clock):
    first = make_account(dev, clock, account='AUTH_1')
    second = make_account(dev, clock, account='AUTH_2')
    first.merge_items([cont('x', 1, count=1), cont('y', 1, 3, reported=3),
                       cont('z', 5, count=2, nbytes=2)])
    second.merge_items([cont('x', 2, count=4, nbytes=4),
                        cont('y', 4, count=1, nbytes=1),
                        cont('z', 1, 2, reported=2), cont('w', 1)])
    first_items = first.get_items_since(-1, 100)
    first.merge_items(second.get_items_since(-1, 100))
    second.merge_items(first_items)
    assert rows(first) == rows(second) == [
        stored(cont('w', 1)), stored(cont('x', 2, count=4, nbytes=4)),
        stored(cont('y', 4, 3, count=1, nbytes=1)),
        stored(cont('z', 5, 2, count=2, nbytes=2))]
    assert first.get_info()['hash'] == second.get_info()['hash']
    max_row = first.get_max_row()
    assert first.merge_items(second.get_items_since(-1, 100)) == 0
    assert first.get_max_row() == max_row


def test_account_reclaim(ab):
    ab.put_container('old', t(1), t(2), 0, 0)
    ab.put_container('new', t(1), t(20), 0, 0)
    ab.put_container('live', t(1), ZERO, 1, 1)
    assert ab.reclaim(t(10)) == 1
    assert [row['name'] for row in rows(ab)] == ['live', 'new']
