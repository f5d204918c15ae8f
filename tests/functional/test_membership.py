"""Node processes in the group: join, die, leave, lock, survive outages.

Runs against a real ZooKeeper started by the test run and against the
embedded file backend.
"""

import collections
import itertools
import signal
import time

from tests.functional import harness
from tests.functional import nodes
from tests.functional import zookeeper

MARGIN = 5.0


def test_two_nodes_join_and_status_lists_them(cluster):
    cluster.start_node('n1')
    cluster.start_node('n2')
    nodes.wait_for(lambda: cluster.members() == ['n1', 'n2'], 15,
                   message='both nodes listed')
    code, report, _ = nodes.run_status(cluster.status_config,
                                       '--format', 'json', '--expect', '2')
    assert code == 0, report
    assert report['state'] == 'healthy'
    for row in report['members']:
        assert row['roles'] == ['server']
        assert row['pid'] > 0
        assert row['member'].startswith(row['node'] + '@')


def test_sigkill_member_disappears_and_its_lock_frees(cluster):
    cluster.start_node('n1')
    holder = cluster.start_lock_worker('holder', '--mode', 'hold',
                                       '--lock', 'coordsync/test/part-7')
    holder.wait_log('LOCKED coordsync/test/part-7')
    nodes.wait_for(lambda: cluster.members() == ['holder', 'n1'], 15,
                   message='holder listed')
    # While the holder lives, nobody else gets its lock.
    taker = cluster.start_lock_worker('taker', '--mode', 'hold',
                                      '--lock', 'coordsync/test/part-7')
    time.sleep(2)
    assert 'LOCKED' not in taker.log()

    # NOTE: the session's expiry frees both, within bounded waits; no
    # assertion on how long it took (a status run alone takes ~2 s on a
    # loaded machine).
    holder.kill()
    nodes.wait_for(lambda: cluster.members() == ['n1', 'taker'],
                   harness.SESSION_TIMEOUT + MARGIN,
                   message='killed member gone')
    taker.wait_log('LOCKED coordsync/test/part-7',
                   timeout=harness.SESSION_TIMEOUT + MARGIN)


def _intervals(audit_path):
    """Per-member (start, end) pairs from the audit file."""
    opened, intervals, events = {}, [], collections.Counter()
    with open(audit_path) as fh:
        for line in fh:
            member, event, stamp = line.split()
            events[event] += 1
            if event == 'start':
                opened[member] = float(stamp)
            else:
                intervals.append((opened.pop(member), float(stamp), member))
    return sorted(intervals), events


def test_contending_processes_never_hold_a_lock_together(cluster, tmp_path):
    audit = str(tmp_path / 'audit.log')
    workers = [cluster.start_lock_worker(
        'w%d' % i, '--mode', 'contend', '--lock', 'coordsync/test/shared',
        '--audit', audit, '--duration', '6') for i in range(3)]
    for worker in workers:
        worker.wait_log('TAKEN', timeout=60)
    intervals, events = _intervals(audit)
    assert events['lost'] == 0
    assert len(intervals) >= 20, 'too little contention to prove anything'
    assert len({member for _, _, member in intervals}) >= 2
    for (s1, e1, m1), (s2, e2, m2) in itertools.pairwise(intervals):
        assert e1 <= s2, 'overlap: %s %s-%s and %s %s-%s' % (
            m1, s1, e1, m2, s2, e2)


def test_sigterm_leaves_the_group_at_once(cluster):
    n1 = cluster.start_node('n1')
    cluster.start_node('n2')
    nodes.wait_for(lambda: cluster.members() == ['n1', 'n2'], 15,
                   message='both listed')
    assert n1.stop(timeout=10) == 0
    assert 'Left coordination group' in n1.log()
    # Much sooner than a session timeout: the member left explicitly.
    assert cluster.members() == ['n2']


def test_status_exit_codes(zk_cluster, tmp_path):
    zk_cluster.start_node('n1')
    zk_cluster.start_node('n2')
    nodes.wait_for(lambda: zk_cluster.members() == ['n1', 'n2'], 15,
                   message='both listed')
    code, out, _ = nodes.run_status(zk_cluster.status_config,
                                    '--expect', '2')
    assert code == 0, out
    assert 'healthy' in out and 'n1@' in out and 'n2@' in out
    code, report, _ = nodes.run_status(zk_cluster.status_config,
                                       '--format', 'json', '--expect', '3')
    assert code == 1
    assert report['state'] == 'degraded'
    assert '2 members present, 3 expected' in report['problems']

    dead = harness.Group(str(tmp_path / 'dead'),
                            'zookeeper://127.0.0.1:%d'
                            % zookeeper.free_port())
    started = time.monotonic()
    code, _, err = nodes.run_status(dead.status_config, '--timeout', '2')
    assert code == 2
    assert 'unreachable' in err or 'no answer' in err
    assert time.monotonic() - started < 30


def test_zookeeper_outage_node_rejoins_and_can_lock(own_zk, tmp_path):
    cluster = harness.Group(str(tmp_path), own_zk.url)
    try:
        node = cluster.start_node('n1')
        own_zk.stop()
        time.sleep(10)
        own_zk.start()
        node.wait_log('Coordination outage ended', timeout=30)
        nodes.wait_for(lambda: cluster.members() == ['n1'], 15,
                       message='node back in group')
        locker = cluster.start_lock_worker(
            'locker', '--mode', 'hold', '--lock', 'coordsync/test/after')
        locker.wait_log('LOCKED coordsync/test/after', timeout=30)
        log = node.log()
        assert log.count('Coordination outage started') == 1, log
        assert log.count('Coordination outage ended') == 1, log
        assert node.alive
        node.signal(signal.SIGTERM)
    finally:
        cluster.close()
