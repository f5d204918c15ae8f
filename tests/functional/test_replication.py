"""Object replication on a real cluster, with real replicator processes.

Diverged replicas converge in one pass; no partition is worked on by two
nodes at once (I1); in steady state each partition has exactly one
repairer per pass (I4); a SIGKILLed replicator's partitions are taken over
(I2); a node that was down gets its writes back from the handoffs, which
are then deleted, and writes made during replication are neither lost nor
rolled back (I3); with ZooKeeper down, replication goes on under the
static rule and coordination resumes when it is back (I5).

One 3-node cluster (``coordsync-local-cluster up`` on the test run's
ZooKeeper) serves the module. With 3 nodes and 3 replicas every node holds
a replica of every partition, so ownership splits all partitions three
ways. Each test writes objects into a container of its own and starts
``coordsync-replicator`` processes of its own, each reading its node's
config file and then a per-process one (audit log, recon path, pauses),
so the generated node configs stay untouched.

Who worked on what, and when, comes from the replicators' audit logs
(``<node> start|end <partition> <unix time> <mode> <device>``, written
while the partition lock is held); pass boundaries come from their recon
files and log lines.
"""

import collections
import os
import re
import time

import pytest

from tests.functional import harness
from tests.functional import nodes

NODES = ('n1', 'n2', 'n3')
SESSION_TIMEOUT = harness.SESSION_TIMEOUT
# Bounds, not timing goals: generous for a loaded 2-core machine.
PASS_BOUND = 30.0
TAKEOVER_BOUND = SESSION_TIMEOUT + 25.0


@pytest.fixture(scope='module')
def cluster(zk_local_cluster):
    return zk_local_cluster


# -- pass boundaries --------------------------------------------------------

def wait_stable(cluster, *status_args):
    """Wait until status lists the 3 replicators, then until each has
    finished a pass begun after that; return the time from which every
    pass plans with all three alive.

    NOTE: a pass begun before all three were in the group is not over
    when they are: with its retries of items locked elsewhere, it may
    work on a partition it planned as a dead member's well after.
    """
    def listed(passed_since=None):
        members = harness.replicator_members(cluster.node_config('n1'),
                                             *status_args)
        if [node for node, _progress in members] != list(NODES):
            return False
        return passed_since is None or all(
            p.get('last_pass', {}).get('started_at', 0) > passed_since
            for _node, p in members)
    nodes.wait_for(listed, 60, interval=0.5,
                   message='3 replicators in the group')
    all_in = time.time()
    nodes.wait_for(lambda: listed(all_in), 60, interval=0.5,
                   message='each replicator past a pass begun with all 3')
    return time.time()


def stable_passes(group, after, count):
    """``{node: [(pass, started, ended, mode)]}``: each node's first
    ``count`` passes started after ``after``, read from recon files."""
    seen = {node: {} for node in NODES}

    def enough():
        for node in NODES:
            recon = group.recon(node)
            if recon and recon['started_at'] > after:
                # NOTE: the recon duration is rounded to the millisecond.
                seen[node][recon['pass']] = (
                    recon['started_at'],
                    recon['started_at'] + recon['duration'] + 0.001,
                    recon['mode'])
        return all(len(p) >= count for p in seen.values())
    nodes.wait_for(enough, PASS_BOUND * count, interval=0.05,
                   message='%d passes of every replicator' % count)
    return {node: [(n,) + seen[node][n] for n in sorted(seen[node])[:count]]
            for node in NODES}


def in_window(lines, label, started, ended):
    return [line for line in lines if line.label == label
            and line.event == 'start' and started <= line.time <= ended]


def wait_pass(group, label, mode, offset=0):
    """Wait until process ``label`` logs a ``mode`` pass after
    ``offset``."""
    nodes.wait_for(
        lambda: any(m == mode for _n, m in group.passes(label, offset)),
        PASS_BOUND, interval=0.2,
        message='%s logs a %s pass' % (label, mode))


# -- the tests ------------------------------------------------------------

def test_diverged_replicas_converge_in_one_pass(cluster, replicators):
    """Lost files, newer versions and tombstones that missed a node are
    levelled by one --once pass of all three nodes at once (I3)."""
    container = 'converge'
    names = ['obj-%02d' % i for i in range(24)]
    lost, newer, deleted = names[0:6], names[6:12], names[12:18]
    written = {n: cluster.put(container, n, b'v1 ' + n.encode())
               for n in names}
    expected = {n: written[n] + '.data' for n in names}
    for name in lost:
        cluster.lose_files('n3', container, name)
    with cluster.node_down('n1'):
        for name in newer:
            expected[name] = cluster.put(
                container, name, b'v2 ' + name.encode()) + '.data'
    with cluster.node_down('n2'):
        for name in deleted:
            expected[name] = cluster.delete(container, name) + '.ts'
    before = {n: cluster.primary_files(container, n) for n in names}
    assert all(before[n]['n3'] == [] for n in lost), before
    assert all(before[n]['n1'] == [written[n] + '.data'] for n in newer)
    assert all(before[n]['n2'] == [written[n] + '.data'] for n in deleted)
    assert all(before[n]['n1'] == [expected[n]] for n in deleted)

    replicators(cluster).run_once()

    cluster.assert_level(container, expected)
    for name in names:
        body = cluster.get(container, name)
        if name in deleted:
            assert body is None, name
        else:
            version = b'v2 ' if name in newer else b'v1 '
            assert body == version + name.encode(), name


def test_no_partition_is_worked_on_by_two_processes_at_once(cluster,
                                                            replicators):
    """Partition jobs never overlap in time, even between two
    replicators of one node that plan the same partitions (I1)."""
    container = 'exclusion'
    names = ['obj-%02d' % i for i in range(40)]
    expected = {n: cluster.put(container, n, os.urandom(2000)) + '.data'
                for n in names}
    for name in names[::2]:
        cluster.lose_files('n2', container, name)
    group = replicators(cluster, concurrency=1)

    # NOTE: a second replicator of n1 (an operator's --once beside the
    # daemon) plans the very partitions the first one does, so the
    # partition locks are all that keeps them apart.
    group.run_once({'n1': 'n1', 'n2': 'n2', 'n3': 'n3', 'n1-again': 'n1'})

    lines = group.audit()
    jobs = harness.jobs_of(lines)
    assert not harness.overlapping(jobs)
    assert {job.part for job in jobs} == cluster.partitions
    assert not any(job.mode == 'static' for job in jobs)
    workers = collections.defaultdict(set)
    for job in jobs:
        workers[job.part].add(job.label)
    contended = [p for p, labels in workers.items() if len(labels) > 1]
    assert contended or sum(group.totals(harness.SKIPPED)), 'no contention'
    cluster.assert_level(container, expected)


def test_steady_state_each_partition_has_exactly_one_repairer(cluster,
                                                              replicators):
    """With a stable group, each pass of each node repairs the same
    partitions, all 'mine', and the three sets split all partitions
    (I4); no pass falls back to the static rule."""
    group = replicators(cluster)
    group.start()
    stable_since = wait_stable(cluster)

    windows = stable_passes(group, stable_since, count=2)

    lines = group.audit()
    assert not harness.overlapping(harness.jobs_of(lines))
    assert not [line for line in lines if line.mode == 'static'], (
        'a pass ran under the static rule with the backend up')
    owned = {}
    for node, passes in windows.items():
        for number, started, ended, mode in passes:
            assert mode == 'coordinated', (node, number)
            done = in_window(lines, node, started, ended)
            parts = [line.part for line in done]
            assert len(parts) == len(set(parts)), (node, number, parts)
            assert {line.mode for line in done} <= {'mine'}, done
            owned.setdefault(node, set(parts))
            assert set(parts) == owned[node], (
                'ownership of %s changed in a stable group' % node)
    for node in NODES:
        for other in NODES:
            if other != node:
                assert not owned[node] & owned[other], (node, other)
    assert set.union(*owned.values()) == cluster.partitions
    assert all(owned.values()), owned


def test_sigkilled_replicator_partitions_are_taken_over(cluster,
                                                        replicators):
    """A replicator SIGKILLed mid-pass: after its session expires the
    survivors take over every partition it owned and repair them, and
    none before it died or while its lock was held (I2, I1)."""
    container = 'takeover'
    objects = {n: cluster.put(container, n, b'x') + '.data'
               for n in ('obj-%02d' % i for i in range(48))}
    group = replicators(cluster, concurrency=1)
    group.start()
    stable_since = wait_stable(cluster)
    windows = stable_passes(group, stable_since, count=1)
    victim, survivors = 'n1', ('n2', 'n3')
    _number, started, last_end, _mode = windows[victim][0]
    owned = {line.part for line in in_window(group.audit(), victim,
                                             started, last_end)}
    assert owned

    def victim_busy():
        return any(line.label == victim and line.time > last_end
                   for line in group.audit())
    nodes.wait_for(victim_busy, PASS_BOUND, interval=0.01,
                   message='%s starts another pass' % victim)
    group.procs[victim].kill()
    killed_at = time.time()
    begun = [line for line in group.audit() if line.label == victim
             and line.event == 'start' and line.time > last_end]
    assert 0 < len(begun) < len(owned), 'not killed mid-pass'

    # Its partitions diverge after its death: the survivors must level
    # them, on the victim node's disks too (its object server lives on).
    stale = {n: ts for n, ts in objects.items()
             if cluster.locate(container, n)[0] in owned}
    assert stale
    for name in stale:
        cluster.lose_files(victim, container, name)

    def taken_over():
        return owned <= {line.part for line in group.audit()
                         if line.label in survivors
                         and line.event == 'start'
                         and line.mode == 'takeover'
                         and line.time > killed_at}
    nodes.wait_for(taken_over, TAKEOVER_BOUND, interval=0.2,
                   message="survivors take over %s's partitions" % victim)
    cluster.wait_level(container, stale, PASS_BOUND)

    lines = group.audit()
    assert not harness.overlapping(harness.jobs_of(lines,
                                                   open_until=killed_at))
    early = [line for line in lines if line.mode == 'takeover'
             and line.time < killed_at and line.time > stable_since]
    assert not early, 'takeover while the owner was alive: %s' % early


def test_node_down_during_writes_gets_everything_back(cluster,
                                                      replicators):
    """Writes made while n2 was down reach it from the handoffs, which
    are then deleted: only the primaries hold the partitions (I3)."""
    container = 'node-down'
    names = ['obj-%02d' % i for i in range(20)]
    with cluster.node_down('n2'):
        expected = {n: cluster.put(container, n, os.urandom(500)) + '.data'
                    for n in names}
        for name in names:
            assert cluster.primary_files(container, name)['n2'] == []
    assert cluster.stray_files(), 'no write went to a handoff'

    group = replicators(cluster)
    group.run_once()
    cluster.assert_level(container, expected)
    for _round in range(3):
        if not cluster.stray_files():
            break
        # NOTE: a handoff job shares its partition's lock with the
        # primary jobs; one that found it taken by another node (--once
        # processes plan before all have joined) goes in a later pass.
        group.run_once()
    assert not cluster.stray_files()
    cluster.assert_level(container, expected)
    for name in names:
        part, _hash = cluster.locate(container, name)
        assert cluster.holders(part) == set(
            cluster.primaries(part).items()), 'handoff left of %s' % part


def test_writes_during_replication_are_never_lost(cluster, replicators):
    """Versions and deletes written while replicators repair the same
    objects: the newest acknowledged one wins everywhere (I3)."""
    container = 'live-writes'
    names = ['obj-%02d' % i for i in range(8)]
    acked = {n: cluster.put(container, n, b'%s v0' % n.encode())
             for n in names}
    group = replicators(cluster, run_pause=0.3)
    group.start()
    wait_stable(cluster)

    bodies = {}
    first_write = time.time()
    for version in range(1, 7):
        for i, name in enumerate(names):
            if version == 6 and i < 2:
                acked[name] = cluster.delete(container, name)
                bodies[name] = None
            else:
                body = b'%s v%d' % (name.encode(), version)
                acked[name] = cluster.put(container, name, body)
                bodies[name] = body
            if i % 3 == version % 3:
                # Keep the replicators repairing, racing the next writes.
                cluster.lose_files(NODES[(i + version) % 3], container,
                                   name)
            time.sleep(0.05)
    last_write = time.time()

    stable_passes(group, last_write, count=1)
    expected = {n: acked[n] + ('.ts' if bodies[n] is None else '.data')
                for n in names}
    cluster.assert_level(container, expected)
    for name in names:
        assert cluster.get(container, name) == bodies[name], name
    pushed, pulled = group.totals(harness.PUSHED)
    assert pushed + pulled > 0, 'the replicators repaired nothing'
    lines = group.audit()
    assert any(first_write < line.time < last_write for line in lines), (
        'no replication job ran during the writes')
    assert not harness.overlapping(harness.jobs_of(lines))


def test_zookeeper_outage_falls_back_to_static_and_recovers(cluster,
                                                            own_zk,
                                                            replicators):
    """Without ZooKeeper, passes run under the static rule and still
    repair; a replicator stops and starts meanwhile; once ZooKeeper is
    back, passes are coordinated again (I5)."""
    # NOTE: own_zk before replicators, so the replicators stop first.
    container = 'zk-outage'
    names = ['obj-%02d' % i for i in range(6)]
    expected = {n: cluster.put(container, n, b'kept') + '.data'
                for n in names}
    group = replicators(cluster, coordination={'backend_url': own_zk.url},
                        run_pause=0.5)
    group.start()
    for node in NODES:
        wait_pass(group, node, 'coordinated')

    offsets = group.log_offsets()
    own_zk.stop()
    stopped_at = time.monotonic()
    for node in NODES:
        wait_pass(group, node, 'static', offsets[node])
    # Stopping a replicator does not wait for the backend, and one started
    # meanwhile replicates under the static rule too.
    assert group.procs['n3'].stop(timeout=3 * SESSION_TIMEOUT) == 0
    offset = len(group.procs['n3'].log())
    group.spawn('n3', 'n3')
    wait_pass(group, 'n3', 'static', offset)
    for name in names[:3]:
        cluster.lose_files('n3', container, name)
    cluster.wait_level(container, expected, PASS_BOUND)
    assert not own_zk.serving()
    # Down past the session timeout: the members come back in new sessions.
    time.sleep(max(0.0, stopped_at + SESSION_TIMEOUT + 1 - time.monotonic()))

    offsets = group.log_offsets()
    own_zk.start()
    for node in NODES:
        wait_pass(group, node, 'coordinated', offsets[node])
    for node in ('n1', 'n2'):
        log = group.procs[node].log()[offsets[node]:]
        assert 'Coordination outage ended' in log, node

    # The member n3 left behind (it could not leave) expires with its
    # session.
    def three_members():
        members = harness.replicator_members(
            cluster.node_config('n1'), '--config-file',
            group.config('status'))
        return [node for node, _progress in members] == list(NODES)
    nodes.wait_for(three_members, PASS_BOUND, interval=0.5,
                   message='status lists the 3 replicators')


def test_every_peer_down_fails_the_pass_and_shows(cluster, replicators):
    """With both peers' servers down, ``--once`` exits non-zero, each
    peer's errors make one log line with a count (not one per
    partition), and a running replicator's member is degraded in
    coordsync-status with its error count."""
    cluster.put('peers-down', 'obj', b'lonely')
    group = replicators(cluster)
    status = ('--config-file', group.config('status'))
    with cluster.node_down('n2'), cluster.node_down('n3'):
        once = group.spawn('n1-once', 'n1', '--once')
        code = once.popen.wait(120)
        log = once.log()
        assert code == 1, log[-3000:]
        summary = group.recon('n1-once')
        assert summary['failed'] == summary['done'] > 0, summary
        assert summary['peer_errors'] >= 2 * summary['failed']
        peer_lines = re.findall(r'(\d+) errors talking to (\S+)', log)
        peers = [peer for _count, peer in peer_lines]
        assert len(peers) == len(set(peers)) > 0, log
        assert set(peers) <= {
            '%s:%s/%s' % (d['ip'], d['port'], d['device'])
            for d in cluster.ring.devices if d['node'] != 'n1'}, log
        assert sum(int(c) for c, _p in peer_lines) == summary['peer_errors']

        group.spawn('n1', 'n1')

        def degraded():
            code, report, _err = nodes.run_status(
                cluster.node_config('n1'), *status, '--format', 'json')
            mine = [m for m in report['members']
                    if harness.WORKER in m['roles'] and m['node'] == 'n1']
            errors = mine and mine[0]['progress'][harness.WORKER].get('errors')
            return code == 1 and errors and mine[0]['state'] == 'degraded'
        nodes.wait_for(degraded, PASS_BOUND, interval=0.5,
                       message='n1 replicator degraded in status')
