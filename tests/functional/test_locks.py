"""Batched ZooKeeper locks against a real ZooKeeper.

Windows of locks taken by real processes (monkey-patched, kazoo's eventlet
handler) are refused to others and freed when their holder dies; tokens
grow on every re-grant; no znode per lock name survives its release; and
a release after a lost session never deletes another member's lock.
"""

import json

import pytest
from kazoo import client as kazoo_client
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.common import coordination
from coordsync.common import zklocks
from tests.functional import harness
from tests.functional import nodes

MARGIN = 5.0


def granted(proc, nth=1):
    """The ``{name: token}`` of the process's ``nth`` GRANTED line."""
    lines = [line for line in proc.log().splitlines()
             if line.startswith('GRANTED ')]
    return json.loads(lines[nth - 1][len('GRANTED '):])


def wait_granted(proc, nth=1, timeout=30.0):
    nodes.wait_for(lambda: proc.log().count('GRANTED ') >= nth, timeout,
                   message='%s granted %d times' % (proc.name, nth))
    return granted(proc, nth)


@pytest.fixture
def zk(zk_server):
    client = kazoo_client.KazooClient(hosts='127.0.0.1:%d' % zk_server.port)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def tree(client, path='/'):
    """Every znode path under ``path``, ``path`` included."""
    paths = {path}
    for child in client.get_children(path):
        paths |= tree(client, '%s/%s' % (path.rstrip('/'), child))
    return paths


def test_window_is_refused_to_another_and_tokens_grow(zk_cluster):
    holder = zk_cluster.start_lock_worker(
        'holder', '--mode', 'window', '--lock', 'coordsync/test/w',
        '--count', '16', '--rounds', '3', '--hold')
    rounds = [wait_granted(holder, nth) for nth in (1, 2, 3)]
    assert len(rounds[0]) == 16
    for before, after in zip(rounds, rounds[1:], strict=False):
        for name, token in after.items():
            assert isinstance(token, int)
            assert token > before[name], 'token did not grow on re-grant'

    taker = zk_cluster.start_lock_worker(
        'taker', '--mode', 'window', '--lock', 'coordsync/test/w',
        '--count', '16', '--wait-all')
    taker.wait_log('REFUSED 16')
    assert 'GRANTED' not in taker.log()
    holder.stop()
    taken = wait_granted(taker)
    assert sorted(taken) == sorted(rounds[2])
    for name, token in taken.items():
        assert token > rounds[2][name]


def test_locks_of_a_sigkilled_holder_free_within_session_timeout(
        zk_cluster):
    holder = zk_cluster.start_lock_worker(
        'holder', '--mode', 'window', '--lock', 'coordsync/test/k',
        '--count', '8', '--hold')
    held = wait_granted(holder)
    taker = zk_cluster.start_lock_worker(
        'taker', '--mode', 'window', '--lock', 'coordsync/test/k',
        '--count', '8', '--wait-all')
    taker.wait_log('REFUSED 8')
    holder.kill()
    taken = wait_granted(taker, timeout=harness.SESSION_TIMEOUT + MARGIN)
    assert all(taken[name] > token for name, token in held.items())


def test_no_znode_per_lock_name_is_left_behind(zk_cluster, zk):
    zk_cluster.start_node('n1')
    before = tree(zk)
    worker = zk_cluster.start_lock_worker(
        'worker', '--mode', 'window', '--lock', 'coordsync/test/many',
        '--count', '200', '--rounds', '2')
    nodes.wait_for(lambda: not worker.alive, 60, message='worker done')
    assert worker.log().count('RELEASED') == 2, worker.log()[-2000:]
    root = zklocks.lock_root(zk_cluster.group)
    after = tree(zk)
    new = after - before
    ancestors = {root.rsplit('/', n)[0] for n in range(root.count('/'))}
    assert new <= ancestors, 'left behind: %s' % sorted(new - ancestors)[:5]
    assert root in after and zk.get_children(root) == []


def make_coordinator(zk_cluster, node):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf(['--config-file', zk_cluster.config(node)], project='coordsync')
    coordinator = coordination.Coordinator(conf, roles=['test'])
    coordinator.step()
    assert coordinator.healthy
    return coordinator


def expire_session(zk_server, client):
    """Expire ``client``'s session the way kazoo's test harness does."""
    session_id, password = client.client_id
    clone = kazoo_client.KazooClient(
        hosts='127.0.0.1:%d' % zk_server.port,
        client_id=(session_id, password))
    clone.start(timeout=30)
    clone.stop()
    clone.close()
    nodes.wait_for(lambda: client.client_id is not None
                   and client.client_id[0] != session_id, 30,
                   message='new session')


def test_release_after_a_lost_session_never_deletes_anothers_lock(
        zk_cluster, zk_server, zk):
    first = make_coordinator(zk_cluster, 'first')
    second = make_coordinator(zk_cluster, 'second')
    try:
        names = ['coordsync/test/lost/%d' % i for i in range(8)]
        assert all(first.try_lock_many(names).values())
        expire_session(zk_server, coordination.kazoo_client_of(
            first._driver))
        assert not any(first.is_still_owner(name) for name in names)
        # The lost session took its ephemerals: the locks are free.
        theirs = second.try_lock_many(names)
        assert all(theirs.values())
        for name in names:
            first.release(name)
        first.flush_releases()
        rows = {row['name']: row['holder'] for row in second.list_locks()}
        assert rows == {name: second.member_id for name in names}
        for name in names:
            path = first._locks.path(name)
            assert zk.exists(path).czxid == theirs[name]
    finally:
        first.stop()
        second.stop()
