"""Exclusion at the edges (issue 14), on a real cluster and real faults.

No replicator writes into a partition while another member holds its
lock, nor after its own lock on it is gone: on SIGTERM mid-repair, when
the ZooKeeper ensemble's leader is killed during passes, when ZooKeeper
is down past ``static_after`` and back, and when a holder is paused past
its session and resumed.

The evidence is independent of the replicators' own logs:

* who held which lock when: :class:`harness.LockHistory`, a thread of
  the test with a kazoo client of its own listing the lock znodes every
  10 ms (a holding is known held from its first to its last sighting,
  and known released before the first poll that no longer lists it);
* who wrote what when: the node servers' access logs (sender member,
  arrival, duration of every PUT/DELETE on ``/objects/<dev>/<part>/``).

The clusters are 3 nodes of this module's own, so that their node
servers can have a short ``[server] fence_lease`` (static passes are
refused a partition for that long after its last coordinated request):
one for the module, one per test whose replicators use another
ZooKeeper (see :func:`own_cluster`).
"""

import os
import random
import re
import signal
import threading
import time

import pytest

from tests.functional import harness
from tests.functional import nodes
from tests.functional import zookeeper

NODES = ('n1', 'n2', 'n3')
SESSION_TIMEOUT = harness.SESSION_TIMEOUT
FENCE_LEASE = 4.0
STATIC_AFTER = 5.0
# Bounds, not timing goals: generous for a loaded 2-core machine.
BOUND = 45.0
JOINED = re.compile(r'Joined coordination group \S+ as (\S+)')
PASS_LINE = re.compile(
    r'Replication pass (\d+) \((coordinated|static|waiting)\)')


def make_cluster(workdir, backend):
    return harness.local_cluster(
        workdir, part_power=5, backend=backend,
        session_timeout=SESSION_TIMEOUT,
        settings={'server.fence_lease': FENCE_LEASE})


@pytest.fixture(scope='module')
def cluster(zk_server, tmp_path_factory):
    """The module's cluster, for replicators on the test run's
    ZooKeeper."""
    with make_cluster(tmp_path_factory.mktemp('exclusion') / 'cluster',
                      zk_server.url) as made:
        yield made


@pytest.fixture
def own_cluster(tmp_path):
    """``make(backend_url)``: a cluster of the test's own whose node
    servers and replicators use another ZooKeeper, stopped afterwards.

    NOTE: fencing tokens are lock znodes' zxids, which only grow within
    one ZooKeeper: tokens from another one (an ensemble past an election
    has a higher epoch) would leave the module's node servers fencing
    out every later holder on the test run's ZooKeeper. And the node
    servers read lock holders from the replicators' backend (a static
    push into a partition locked there is refused).
    """
    made = []

    def make(backend_url):
        context = make_cluster(tmp_path / 'cluster', backend_url)
        made.append(context)
        return context.__enter__()
    yield make
    for context in made:
        context.__exit__(None, None, None)


def group_name(cluster):
    return cluster.conf.coordination.group


def history_on(url, cluster):
    return harness.LockHistory.of_url(url, group_name(cluster))


def members_of(group):
    """Every member id the group's processes joined as."""
    return {member for proc in group.procs.values()
            for member in JOINED.findall(proc.log())}


def wait_member(proc):
    proc.wait_log('Joined coordination group', timeout=BOUND)
    return JOINED.search(proc.log()).group(1)


def passes_since(proc, offset):
    return [mode for _n, mode in PASS_LINE.findall(proc.log()[offset:])]


def wait_pass(group, label, mode, offset=0, timeout=BOUND):
    nodes.wait_for(lambda: mode in passes_since(group.procs[label], offset),
                   timeout, interval=0.2,
                   message='%s logs a %s pass' % (label, mode))


class Churn:
    """A thread losing a replica of a random object every ``every``
    seconds: the replicators keep repairing. Object i is only ever lost
    on node i % 3, so two of its replicas are always left."""

    def __init__(self, cluster, container, names, every=0.15):
        self.cluster = cluster
        self.container = container
        self.names = sorted(names)
        self.every = every
        self.lost = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        rng = random.Random(14)
        while not self._stop.wait(self.every):
            try:
                i = rng.randrange(len(self.names))
                self.cluster.lose_files(NODES[i % len(NODES)],
                                        self.container, self.names[i])
                self.lost += 1
            except (AssertionError, OSError):
                pass  # that replica is lost already, or being rewritten


# A long repair: many small objects and one body far larger than the
# sockets between two nodes buffer, so a push stream is still being
# sent when the fault comes.
BODIES = [os.urandom(4096)] * 300 + [os.urandom(32 * 2 ** 20)]
# A stream this far into the big body is being received.
STREAMING = 2 ** 20


def wait_streaming(cluster, part, history, lock, member):
    """Wait until ``member`` holds ``lock`` and a peer is receiving the
    big body of its push stream (objects become visible only at the
    stream's end)."""
    nodes.wait_for(
        lambda: history.of(lock, member) and any(
            size >= STREAMING
            for size in cluster.receiving(part).values()),
        BOUND, interval=0.01, message='n1 streaming into partition %d'
        % part)


def put_objects(cluster, container, count):
    return {name: cluster.put(container, name, b'%s body' % name.encode())
            + '.data' for name in ('obj-%02d' % i for i in range(count))}


def describe(overlaps):
    return '\n'.join(
        'partition %d: %s %s from %s at %.3f-%.3f (%d, token %s) while %s '
        'held %s (czxid %d, seen %.3f-%.3f, gone by %s%s)' % (
            part, write.method, write.path, write.member, write.start,
            write.end, write.status, write.token, holding.member,
            holding.name, holding.czxid, holding.first, holding.last,
            holding.gone and '%.3f' % holding.gone,
            ', restored after an outage' if holding.restored else '')
        for part, write, holding in overlaps[:20])


def assert_no_overlap(cluster, history, members, group=None):
    """No accepted write from one of ``members`` overlaps a holding of
    its partition's lock by another member; returns the writes.

    With ``group``, a holding ``restored`` with its session after
    ZooKeeper was down (a lock znode that was there before the outage,
    seen again when ZooKeeper is back and until its member, back in the
    group, releases it) is not counted when its member ran no
    coordinated job of that partition during the write (audit log):
    nobody worked under it. Those are returned apart.
    """
    writes = [(part, write) for part, write in harness.object_writes(cluster)
              if write.member in members]
    overlaps = harness.writes_under_others_locks(writes, history)
    stale = []
    if group is not None:
        jobs = harness.jobs_of(group.audit())
        label_of = {member: label for label, proc in group.procs.items()
                    for member in JOINED.findall(proc.log())}

        def worked(part, write, holding):
            return any(job.label == label_of.get(holding.member) and
                       job.part == part and job.mode != 'static' and
                       job.start < write.end and job.end > write.start
                       for job in jobs)
        stale = [o for o in overlaps if o[2].restored and not worked(*o)]
        overlaps = [o for o in overlaps if o not in stale]
    assert not overlaps, describe(overlaps)
    return writes, stale


# -- tests ------------------------------------------------------------------

def test_sigterm_mid_repair_writes_nothing_after_release(cluster,
                                                         replicators):
    """SIGTERM a replicator mid-repair: it exits 0, and no write of its
    into the partition starts or is in flight after its lock znode is
    gone."""
    part, expected = cluster.fill_one_replica('n1', 'sigterm', BODIES)
    lock = harness.lock_of(part)
    group = replicators(cluster, concurrency=1, suffix_concurrency=1,
                        run_pause=600)
    with history_on(cluster.conf.coordination.backend_url,
                    cluster) as history:
        holder = group.spawn('n1', 'n1', '--partitions', str(part))
        member = wait_member(holder)
        wait_streaming(cluster, part, history, lock, member)
        holder.signal(signal.SIGTERM)
        assert min(cluster.objects_on(n, part)
                   for n in ('n2', 'n3')) < len(expected), (
            'the repair was over before SIGTERM')
        code = holder.popen.wait(BOUND)
        assert code == 0, holder.log()[-3000:]
        nodes.wait_for(lambda: all(h.gone for h in history.of(lock)),
                       BOUND, interval=0.05, message='lock released')
    # The node servers log a request once its answer is sent.
    time.sleep(1.0)
    holdings = history.of(lock)
    assert len(holdings) == 1 and holdings[0].member == member, holdings
    released = holdings[0].gone
    writes = [w for _p, w in harness.object_writes(
        cluster, member=member, part=part, accepted=False)]
    assert writes, 'no write of n1 into partition %d logged' % part
    late = [w for w in writes if w.end - harness.LOG_RESOLUTION > released]
    assert not late, 'lock gone at %.3f (last seen %.3f), writes after:\n%s' \
        % (released, holdings[0].last, '\n'.join(map(str, late[:20])))
    log = holder.log()
    assert 'Traceback' not in log, log[-3000:]


def test_ensemble_leader_killed_during_passes(own_cluster, replicators,
                                              tmp_path):
    """Kill the ZooKeeper ensemble's leader while 3 replicators repair:
    no write into a partition while another member holds its lock; every
    replicator runs a coordinated pass again within a bound, none a
    static one."""
    ensemble = zookeeper.ZooKeeperEnsemble(str(tmp_path / 'ensemble'))
    group = None
    try:
        ensemble.start()
        cluster = own_cluster(ensemble.url)
        container = 'leader-killed'
        expected = put_objects(cluster, container, 30)
        group = replicators(cluster, run_pause=0.2)
        with history_on(ensemble.url, cluster) as history:
            group.start()
            for node in NODES:
                wait_pass(group, node, 'coordinated')
            with Churn(cluster, container, expected):
                time.sleep(3.0)
                offsets = group.log_offsets()
                leader = ensemble.leader()
                assert leader is not None
                killed_at = time.time()
                ensemble.kill(leader)
                for node in NODES:
                    wait_pass(group, node, 'coordinated', offsets[node])
                time.sleep(2.0)
            cluster.wait_level(container, expected, BOUND)
            time.sleep(1.0)
        members = members_of(group)
        assert len(members) >= 3, members
        writes, _stale = assert_no_overlap(cluster, history, members)
        assert any(w.start > killed_at for _p, w in writes), (
            'no repair after the kill')
        for node in NODES:
            modes = passes_since(group.procs[node], offsets[node])
            assert 'static' not in modes, (node, modes)
    finally:
        if group is not None:
            group.stop()
        ensemble.stop()


def test_zookeeper_down_past_static_after(own_zk, own_cluster,
                                          replicators):
    """ZooKeeper down longer than ``static_after``: static passes repair
    lost files; back up: coordinated again; no write overlaps a lock held
    by another member around both transitions."""
    cluster = own_cluster(own_zk.url)
    container = 'zk-down'
    expected = put_objects(cluster, container, 24)
    group = replicators(cluster,
                        coordination={'static_after': STATIC_AFTER},
                        run_pause=0.3)
    try:
        with history_on(own_zk.url, cluster) as history:
            group.start()
            for node in NODES:
                wait_pass(group, node, 'coordinated')
            with Churn(cluster, container, expected):
                time.sleep(2.0)
                offsets = group.log_offsets()
                own_zk.stop()
                stopped_at = time.time()
                for node in NODES:
                    wait_pass(group, node, 'static', offsets[node],
                              STATIC_AFTER + BOUND)
            # Objects the churn loses on n3 only: two replicas are left.
            for name in sorted(expected)[2::3]:
                try:
                    cluster.lose_files('n3', container, name)
                except (AssertionError, OSError):
                    pass  # lost by the churn already
            cluster.wait_level(container, expected, FENCE_LEASE + BOUND)
            assert not own_zk.serving()
            static_writes = [w for _p, w in harness.object_writes(cluster)
                             if w.token is None and w.start > stopped_at
                             and w.member in members_of(group)]
            assert static_writes, 'the static passes repaired nothing'

            with Churn(cluster, container, expected):
                offsets = group.log_offsets()
                own_zk.start()
                restarted_at = time.time()
                for node in NODES:
                    wait_pass(group, node, 'coordinated', offsets[node])
                time.sleep(2.0)
            cluster.wait_level(container, expected, BOUND)
            time.sleep(1.0)
        members = members_of(group)
        writes, stale = assert_no_overlap(cluster, history, members, group)
        if stale:
            print('writes under lock znodes restored after the outage, '
                  'nobody working under them:\n' + describe(stale))
        assert any(w.start > restarted_at and w.token is not None
                   for _p, w in writes), 'no coordinated repair after'
    finally:
        # Before own_zk goes: a replicator leaves while it can.
        group.stop()


# Probes ask ZooKeeper every coordination.PROBE_EVERY seconds; a write
# begun before a probe may still be sent: a bound, not a goal.
SERVES_AGAIN_GRACE = 3.0


def test_static_pass_ends_when_zookeeper_serves_before_its_reconnect(
        own_zk, own_cluster, replicators):
    """Back from an outage past ``static_after``, a replicator whose own
    reconnect comes late (long backoffs, or a loaded machine) ends its
    static work once a ZooKeeper server serves again, not once it has
    rejoined: others may lock its partitions from then on.

    Found by the default run on a loaded machine: a token-less write of
    a replicator still in its static pass was accepted while another
    member held the partition's lock, taken after its settle time.
    """
    cluster = own_cluster(own_zk.url)
    container = 'zk-late'
    expected = put_objects(cluster, container, 24)
    # NOTE: reconnect delays of 2..30 s (kazoo's and the coordinator's):
    # after a 15 s outage a process reconnects seconds after ZooKeeper
    # is back, as the slowest node of a real fleet does.
    group = replicators(cluster, run_pause=0.3, coordination={
        'static_after': STATIC_AFTER, 'initial_reconnect_backoff': 2.0,
        'max_reconnect_backoff': 30.0})
    try:
        group.start()
        for node in NODES:
            wait_pass(group, node, 'coordinated')
        with Churn(cluster, container, expected):
            offsets = group.log_offsets()
            own_zk.stop()
            for node in NODES:
                wait_pass(group, node, 'static', offsets[node],
                          STATIC_AFTER + BOUND)
            time.sleep(8.0)
            offsets = group.log_offsets()
            own_zk.start()
            serving_at = time.time()
            for node in NODES:
                wait_pass(group, node, 'coordinated', offsets[node],
                          BOUND + 30.0)
            time.sleep(1.0)
        members = members_of(group)
        late = [w for _p, w in harness.object_writes(cluster)
                if w.token is None and w.member in members
                and w.start > serving_at + SERVES_AGAIN_GRACE]
        assert not late, 'static writes after ZooKeeper served again:\n' \
            + '\n'.join('%s %s from %s at %.3f (ZooKeeper at %.3f)' % (
                w.method, w.path, w.member, w.start, serving_at)
                for w in late[:20])
        # Evidence that a process was still out of the group then: it
        # planned nothing unlocked because ZooKeeper served again.
        waited = [label for label, proc in group.procs.items()
                  if 'serves again; no unlocked work'
                  in proc.log()[offsets[label]:]]
        assert waited, 'every replicator rejoined at once; nothing tested'
        cluster.wait_level(container, expected, BOUND)
    finally:
        group.stop()


def test_paused_holder_resumes_coordinated(cluster, replicators):
    """SIGSTOP a holder past its session, let another node take its
    partition, SIGCONT: its next pass is coordinated, not static, and no
    write of its into the partition is accepted after the takeover
    (except under a lock of its own taken later)."""
    part, expected = cluster.fill_one_replica('n1', 'paused', BODIES)
    lock = harness.lock_of(part)
    paused = replicators(cluster, concurrency=1, suffix_concurrency=1,
                         run_pause=1.0)
    with history_on(cluster.conf.coordination.backend_url,
                    cluster) as history:
        holder = paused.spawn('n1', 'n1', '--partitions', str(part))
        member = wait_member(holder)
        wait_streaming(cluster, part, history, lock, member)
        holder.signal(signal.SIGSTOP)
        try:
            assert min(cluster.objects_on(n, part)
                       for n in ('n2', 'n3')) < len(expected)
            nodes.wait_for(lambda: all(h.gone for h in history.of(lock)),
                           SESSION_TIMEOUT + BOUND, interval=0.1,
                           message="n1's lock expired")
            taker = replicators(cluster)
            once = taker.spawn('n2', 'n2', '--once', '--partitions',
                               str(part))
            taker_member = wait_member(once)
            code = once.popen.wait(BOUND * 2)
            assert code == 0, once.log()[-3000:]
            cluster.assert_level('paused', expected)
            offset = len(holder.log())
        finally:
            holder.signal(signal.SIGCONT)
        nodes.wait_for(lambda: passes_since(holder, offset), BOUND,
                       interval=0.2, message="n1's next pass")
        time.sleep(1.0)
    modes = passes_since(holder, offset)
    assert modes[0] == 'coordinated', (modes, holder.log()[offset:][-3000:])
    taken = history.of(lock, taker_member)
    assert taken, history.of(lock)
    takeover = taken[0].first
    own_later = [h for h in history.of(lock, member) if h.first > takeover]
    late = []
    for _p, write in harness.object_writes(cluster, member=member,
                                           part=part):
        if write.end - harness.LOG_RESOLUTION <= takeover:
            continue
        if not any(write.start + harness.LOG_RESOLUTION >= h.first and
                   write.end - harness.LOG_RESOLUTION <= (h.gone or h.last)
                   for h in own_later):
            late.append(write)
    assert not late, '\n'.join(map(str, late[:20]))
    assert not harness.writes_under_others_locks(
        harness.object_writes(cluster, part=part), history)
    cluster.assert_level('paused', expected)
    # Its suffix workers were fenced: the item's other green threads
    # were cancelled with it, and no traceback escaped to the hub.
    assert 'Traceback' not in holder.log(), holder.log()[-3000:]
