"""Fencing on a real cluster: a paused lock holder cannot write (I1).

A replicator holding a partition mid-repair is SIGSTOPped past its
ZooKeeper session, in the middle of sending an object's body to a peer;
another node's replicator takes the partition and levels it; the first
one is SIGCONTed and sends the rest of the body. The node server refuses
it (409, ``X-Coordsync-Fenced``) before it commits: the old holder stops
the job and counts it fenced, and no file of that partition changes
after the takeover.

NOTE: why mid-body. A holder paused between two requests usually hears
from ZooKeeper that its session is gone, as soon as it runs again,
before it sends anything more (its own check, the first line of
fencing). A body larger than the sockets between two nodes can buffer
is still being sent when it resumes, whatever it has heard since, and
only the node server's fence stands in its way.

One 3-node cluster (``coordsync-local-cluster up`` on the test run's
ZooKeeper) serves the module; the replicators are the test's own
processes, each with a per-process config (audit log, recon path).
"""

import os
import re
import signal
import time

from coordsync.obj import replicator as replicator_mod
from tests.functional import harness
from tests.functional import nodes

SESSION_TIMEOUT = harness.SESSION_TIMEOUT
CONTAINER = 'fencing'
# Many small objects make a long repair; one big one is the body the
# pause catches: far more than the sockets between two nodes buffer
# (a few MiB each way), so most of it is still unsent.
SMALL_OBJECTS = 200
SMALL_SIZE = 4096
BIG_SIZE = 32 * 2 ** 20
# A body this far along is being sent.
SENDING = 2 ** 20
# Bounds, not timing goals: generous for a loaded 2-core machine.
BOUND = 60.0
JOINED = re.compile(r'Joined coordination group \S+ as (\S+)')


def pause_mid_body(holder, cluster, part):
    """SIGSTOP ``holder`` while a peer receives the big body from it;
    return ``{tmp file: size}`` of the body stuck short of its end."""
    nodes.wait_for(
        lambda: any(size >= SENDING
                    for size in cluster.receiving(part).values()),
        BOUND, interval=0.01, message='n1 sending the big object')
    holder.signal(signal.SIGSTOP)
    # What the sockets held reaches the receiver within a moment.
    time.sleep(1.0)
    first = cluster.receiving(part)
    time.sleep(0.5)
    stuck = {path: size for path, size in cluster.receiving(part).items()
             if first.get(path) == size and size < BIG_SIZE}
    assert stuck, 'the pause did not catch a body mid-way: %s' % first
    return stuck


def audit_events(group, label, part):
    return [line.event for line in group.audit()
            if line.label == label and line.part == part]


def test_paused_holder_is_fenced_after_a_takeover(zk_local_cluster,
                                                  replicators):
    cluster = zk_local_cluster
    part, expected = cluster.fill_one_replica(
        'n1', CONTAINER, [os.urandom(BIG_SIZE)]
        + [os.urandom(SMALL_SIZE)] * SMALL_OBJECTS)
    item = replicator_mod.lock_name(part)
    assert cluster.objects_on('n2', part) == 0
    assert cluster.objects_on('n3', part) == 0

    # n1's replicator: slow (one suffix, one object, one target at a
    # time) and patient (a request in flight outlives the pause).
    paused = replicators(cluster, concurrency=1, suffix_concurrency=1,
                         run_pause=600,
                         sections={'client': {'node_timeout': 120}})
    holder = paused.spawn('n1', 'n1', '--partitions', str(part))
    try:
        stuck = pause_mid_body(holder, cluster, part)
        stopped_at = time.time()
        assert audit_events(paused, 'n1', part) == ['start']
        assert cluster.objects_on('n3', part) < len(expected)
        member = JOINED.search(holder.log()).group(1)

        # Past its session: n1's replicator leaves the group (and its
        # lock znode goes with the session).
        nodes.wait_for(
            lambda: 'n1' not in dict(harness.replicator_members(
                cluster.config)),
            SESSION_TIMEOUT + BOUND, interval=0.5,
            message="n1's replicator expired")

        taker = replicators(cluster)
        once = taker.spawn('n2', 'n2', '--once', '--partitions', str(part))
        code = once.popen.wait(BOUND * 2)
        assert code == 0, once.log()[-3000:]
        taken = [line for line in taker.audit() if line.part == part]
        assert [line.event for line in taken] == ['start', 'end'], taken
        assert taken[0].time > stopped_at
        assert sum(taker.totals(harness.PUSHED)) > 0
        cluster.assert_level(CONTAINER, expected)
        token = cluster.fence_highest('n2', item)
        assert token > 0
        assert [cluster.fence_highest(n, item) for n in ('n1', 'n3')] == [
            token, token], 'a peer did not learn the new token'

        before = cluster.snapshot(part)
        # Still stuck: the body waits for the rest, the server for it.
        assert {p: cluster.receiving(part).get(p) for p in stuck} == stuck
    finally:
        holder.signal(signal.SIGCONT)
    nodes.wait_for(lambda: paused.recon('n1') is not None, BOUND,
                   interval=0.2, message="n1's pass ended")
    after = cluster.snapshot(part)

    assert audit_events(paused, 'n1', part) == ['start', 'end']
    summary = paused.recon('n1')
    # NOTE: the stalled push ends refused by the fence (409) when the
    # receiver still waits for it; on a slow machine the receiver may
    # have dropped the stalled stream first (a cut stream, nothing
    # kept). Either way the job did not succeed.
    assert summary['fenced'] + summary['failed'] >= 1, summary
    log = holder.log()
    refused = re.findall(
        r'%s: .*refused.*fenced: token (\d+) for %s is older than (\d+); '
        r'stopped' % (re.escape(item), re.escape(item)), log)
    assert refused or summary['failed'] >= 1, log[-3000:]
    assert all(int(old) < token == int(new) for old, new in refused), (
        refused, token)

    changed = {path: (before.get(path), after.get(path))
               for path in before.keys() | after.keys()
               if before.get(path) != after.get(path)}
    assert not changed, changed

    # The node servers say who they refused: n1's replicator, on P only
    # (none when the receiver cut the stalled stream first, see above).
    fenced_lines = re.findall(
        r'Fenced (\S+) (\S+) from (\S+): token (\d+) for (\S+) is older',
        ''.join(cluster.node_log(n) for n in cluster.node_names))
    assert fenced_lines or not refused
    for _method, path, sender, old, fenced_item in fenced_lines:
        assert (sender, fenced_item) == (member, item), fenced_lines
        assert int(old) < token
        assert path.split('/')[3] == str(part), path

    cluster.assert_level(CONTAINER, expected)
    hashes = [cluster.node_client.replicate(d, part)
              for d in cluster.ring.get_part_nodes(part)]
    assert hashes[0] and hashes.count(hashes[0]) == len(hashes)
