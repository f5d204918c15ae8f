"""The misplaced-object reconciler on real processes (issue 11).

One 3-node cluster with two storage policies (0 ``gold``, the default;
1 ``silver``) on the test run's ZooKeeper serves the module; the API
client is python-swiftclient. Objects get misplaced the way they do in
a real cluster:

* **by a split-brain** (:func:`test_split_brain_is_repaired`): the node
  of one container replica is down while the container is deleted and
  created again with another policy; once back, its stale replica is
  the first the proxy asks (it is the container's first primary, and
  the proxy reads the container afresh for every request), so the
  objects uploaded then go into the old policy, their rows into every
  replica under it. ``coordsync-container-replicator`` settles the
  replicas' policy and queues the misplaced rows;
* **by a writer that took the container for a gold one** (the other
  tests): objects written straight to gold's nodes with the container
  replicas named, then their queue entries written the way the
  container replicator writes them, so that each test controls exactly
  which entries exist, and when.

``coordsync-reconciler`` processes then move them. Evidence is read
independently of the reconciler: the objects' files on every node's
disks (per policy directory), each container replica's listing (node
API), the queue containers found in the databases on disk, the node
servers' access logs (who wrote what), the lock znodes polled straight
from ZooKeeper, and the reconcilers' audit logs.

Tombstones stay in the wrong policy (until reclaim_age, as Swift's):
"only in the winning policy" means no live copy anywhere else.
"""

import glob
import hashlib
import os
import re
import time
import urllib.parse

import pytest
from swiftclient import client as swift

from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import direct_client
from coordsync.common import division
from coordsync.common import timestamp
from coordsync.container import backend
from coordsync.reconciler import queue as queue_mod
from tests.functional import harness
from tests.functional import nodes

GOLD, SILVER = 0, 1
USER, KEY = local_cluster_cmd.TEST_USER, local_cluster_cmd.TEST_KEY
PAUSE_ENV = 'COORDSYNC_RECONCILER_PAUSE_AFTER'
JOINED = re.compile(r'Joined coordination group \S+ as (\S+)')
# Bounds, not timing goals: generous for a loaded 2-core machine.
BOUND = 60.0
PASS_TIMEOUT = 120


@pytest.fixture(scope='module')
def cluster(zk_policy_cluster):
    return zk_policy_cluster


@pytest.fixture(scope='module')
def api(cluster):
    """``(swiftclient Connection, account)`` of the test user."""
    conn = swift.Connection(local_cluster_cmd.proxy_auth_url(cluster.meta),
                            USER, KEY, retries=0, timeout=60)
    storage_url, _token = conn.get_auth()
    account = urllib.parse.unquote(
        urllib.parse.urlsplit(storage_url).path.split('/')[2])
    return conn, account


# -- the queue, read and written through the node API -------------------------

class Queue:
    """The ``.misplaced_objects`` queue containers of a cluster."""

    def __init__(self, cluster):
        self.cluster = cluster

    def names(self):
        """Every queue container with a database on some node's disk."""
        found = set()
        pattern = os.path.join(self.cluster.workdir, 'n*', 'devices', '*',
                               backend.CONTAINER_DATADIR, '*', '*', '*',
                               '*.db')
        for path in glob.glob(pattern):
            broker = backend.ContainerBroker(path)
            try:
                info = broker.get_info()
            except backend.DatabaseError:
                continue
            finally:
                broker.close()
            if info['account'] == queue_mod.MISPLACED_ACCOUNT:
                found.add(info['container'])
        return sorted(found)

    def entries(self, names=None):
        """``{entry name: (queue container, row)}``: the union of every
        replica's listing of every queue container."""
        found = {}
        for name in self.names() if names is None else names:
            listings = self.cluster.container_listings(
                name, queue_mod.MISPLACED_ACCOUNT)
            for rows in listings.values():
                for row in rows or ():
                    found[row['name']] = (name, row)
        return found

    def nodes_of(self, name):
        return [n['node'] for n in self.cluster.container_replicas(
            name, queue_mod.MISPLACED_ACCOUNT)[1]]

    def enqueue(self, policy, account, container, obj, when, op='PUT'):
        """Queue one misplaced row as the container replicator does (a
        row PUT on every replica of its queue container); ``(queue
        container, entry name)``."""
        name, entry = queue_mod.entry_row(
            {'name': obj, 'created_at': when, 'deleted': op == 'DELETE'},
            policy, account, container)
        part, replicas = self.cluster.container_replicas(
            name, queue_mod.MISPLACED_ACCOUNT)
        headers = {'X-Timestamp': entry['created_at'],
                   'X-Size': str(entry['size']),
                   'X-Content-Type': entry['content_type'],
                   'X-Etag': entry['etag'],
                   'X-Backend-Storage-Policy-Index': '0'}
        for node in replicas:
            status, _, body = self.cluster.node_client.call(
                node, 'PUT', direct_client.container_row_path(
                    node['device'], part, queue_mod.MISPLACED_ACCOUNT, name,
                    entry['name']), headers=headers)
            assert status == 201, (node['node'], status, body[:200])
        return name, entry['name']


def assert_queue_empty(queue, names=None):
    left = queue.entries(names)
    assert not left, 'entries left in the queue: %s' % sorted(left)[:20]


# -- processes ----------------------------------------------------------------

def run_container_replicators(cluster, workers):
    workers(harness.ContainerReplicators, cluster).run_once(
        timeout=PASS_TIMEOUT)


def run_reconcilers(cluster, workers, **options):
    """One ``--once`` pass of a reconciler on every node at once."""
    return workers(harness.Reconcilers, cluster, **options).run_once(
        timeout=PASS_TIMEOUT)


def member_of(proc):
    found = JOINED.findall(proc.log())
    assert found, '%s never joined:\n%s' % (proc.name, proc.log()[-2000:])
    return found[0]


def history_of(cluster):
    return harness.LockHistory.of_url(cluster.conf.coordination.backend_url,
                                      cluster.conf.coordination.group)


def queue_of_item(item):
    """The queue container of a reconciler audit line's item."""
    return urllib.parse.unquote(str(item)).rpartition('/')[2]


def process_state(pid):
    """The state letter of ``/proc/<pid>/stat`` ('T': stopped)."""
    try:
        with open('/proc/%d/stat' % pid) as fh:
            return fh.read().rpartition(')')[2].split()[0]
    except FileNotFoundError:
        return None


# -- what is where ------------------------------------------------------------

def policy_writes(cluster, account, container, policy, method='PUT'):
    """``{object: [access log lines]}``: the accepted ``method``
    requests on the container's objects in ``policy``'s routes (every
    node's access log)."""
    prefix = direct_client.policy_prefix(direct_client.OBJECTS, policy)
    found = {}
    for line in harness.access_lines(cluster):
        parts = line.path.split('?')[0].split('/', 6)
        if line.method == method and 200 <= line.status < 300 and \
                len(parts) == 7 and '/' + parts[1] == prefix and \
                parts[4:6] == [account, container]:
            found.setdefault(parts[6], []).append(line)
    return found


def assert_only_in(cluster, account, container, names, policy, quorum=2):
    """Each object has live copies in ``policy`` only: at least
    ``quorum`` of that policy's primaries hold its newest ``.data``,
    and no device holds more than one ``.data`` of it there."""
    wrong = {}
    ring = cluster.policy_ring(policy)
    for name in names:
        live = cluster.live_policies(container, name, account)
        files = cluster.policy_files(container, name, account).get(
            policy, {})
        part = ring.get_part(account, container, name)
        primaries = {(d['node'], d['device'])
                     for d in ring.get_part_nodes(part)}
        newest = max(live.get(policy, {}).values(), default=None)
        on_primaries = [w for w, f in live.get(policy, {}).items()
                        if w in primaries and f == newest]
        doubled = {w: f for w, f in files.items()
                   if sum(n.endswith('.data') for n in f) > 1}
        if set(live) != {policy} or len(on_primaries) < quorum or doubled:
            wrong[name] = (live, files)
    assert not wrong, '\n'.join('%s: live %s, files in %d: %s' % (
        name, live, policy, files) for name, (live, files) in
        sorted(wrong.items()))


def assert_listings(cluster, account, container, bodies, policy):
    """Every container replica has ``policy`` and lists exactly the
    objects of ``bodies`` (name and ETag)."""
    for node, (status, headers) in cluster.container_heads(
            container, account).items():
        assert status == 204, (node, status)
        assert headers['x-backend-storage-policy-index'] == str(policy), (
            node, headers)
    expected = [(name, hashlib.md5(bodies[name]).hexdigest())
                for name in sorted(bodies)]
    listings = {node: [(row['name'], row['hash']) for row in rows or ()]
                for node, rows in cluster.container_listings(
                    container, account).items()}
    assert listings == {node: expected for node in listings}, listings


def assert_served(conn, container, bodies):
    _headers, listing = conn.get_container(container, full_listing=True)
    assert [row['name'] for row in listing] == sorted(bodies)
    for name, body in sorted(bodies.items()):
        assert conn.get_object(container, name)[1] == body, name


# -- the split-brain ----------------------------------------------------------

def test_split_brain_is_repaired(cluster, api, workers):
    """A container deleted and created again as silver while one of its
    replicas' node is down; objects uploaded before and after the node
    is back, one overwritten and one deleted after. The container
    replicator and the reconciler repair it all."""
    conn, account = api
    container = 'split-brain'
    queue = Queue(cluster)
    replicas = [n['node'] for n in cluster.container_replicas(
        container, account)[1]]
    stale = replicas[0]
    conn.put_container(container)
    assert conn.head_container(container)['x-storage-policy'] == 'gold'
    bodies = {}
    with cluster.node_down(stale):
        conn.delete_container(container)
        conn.put_container(container, headers={'X-Storage-Policy': 'silver'})
        assert conn.head_container(container)['x-storage-policy'] == \
            'silver'
        for i in range(6):
            name = 'early-%02d' % i
            bodies[name] = b'early %d ' % i + os.urandom(500)
            conn.put_object(container, name, bodies[name])
    # The stale replica (gold, live, never saw the delete) answers first.
    assert conn.head_container(container)['x-storage-policy'] == 'gold'
    late = ['late-%02d' % i for i in range(8)]
    for name in late:
        bodies[name] = b'%s ' % name.encode() + os.urandom(700)
        conn.put_object(container, name, bodies[name])
    bodies['early-00'] = b'early 0, written again after the split'
    conn.put_object(container, 'early-00', bodies['early-00'])
    with pytest.raises(swift.ClientException) as err:
        conn.delete_object(container, 'early-01')
    assert err.value.http_status == 404     # gold never had it
    del bodies['early-01']
    # Misplaced for real: the late objects live in gold only, early-00's
    # newer version too; the delete went to gold alone.
    expected = dict.fromkeys(late, {GOLD})
    expected.update({'early-00': {GOLD, SILVER}, 'early-01': {SILVER}})
    assert {name: set(cluster.live_policies(container, name, account))
            for name in expected} == expected

    def where():
        """``{object: [policies with a live copy on their primaries]}``
        (early-01's copy on a silver handoff, written while its primary
        was down, waits for the object replicator; the tombstone on the
        primaries wins over it there)."""
        return {name: sorted(cluster.live_primaries(container, name,
                                                    account))
                for name in settled}
    settled = dict.fromkeys(bodies, [SILVER])
    settled['early-01'] = []
    for _round in range(4):
        run_container_replicators(cluster, workers)
        if not queue.entries() and where() == settled:
            break
        run_reconcilers(cluster, workers)
    assert where() == settled
    assert not queue.entries()
    # No live copy left in gold anywhere.
    assert not [name for name in settled if GOLD in cluster.live_policies(
        container, name, account)]
    assert_served(conn, container, bodies)
    with pytest.raises(swift.ClientException) as err:
        conn.get_object(container, 'early-01')
    assert err.value.http_status == 404
    assert conn.head_container(container)['x-storage-policy'] == 'silver'
    assert_only_in(cluster, account, container, sorted(bodies), SILVER)
    assert_listings(cluster, account, container, bodies, SILVER)
    assert_queue_empty(queue)


# -- killed between two steps of a move ---------------------------------------

@pytest.mark.parametrize('step', ['copy', 'tombstones'])
def test_killed_after_a_step_the_next_pass_finishes(cluster, api, workers,
                                                    step):
    """A reconciler stopped right after ``step`` of a move and SIGKILLed
    there: the next pass finishes the move; the object was copied
    once, has no live copy left in gold, and its entry is gone."""
    conn, account = api
    container = 'killed-after-%s' % step
    queue = Queue(cluster)
    conn.put_container(container, headers={'X-Storage-Policy': 'silver'})
    body = os.urandom(3000)
    when = cluster.policy_client(GOLD).put(
        account, container, 'obj', body, content_type='text/x-test',
        metadata={'X-Object-Meta-Color': 'blue'})
    name, entry = queue.enqueue(GOLD, account, container, 'obj', when)
    lock = queue_mod.lock_name(name)
    node = queue.nodes_of(name)[0]
    group = workers(harness.Reconcilers, cluster)
    with history_of(cluster) as history:
        paused = group.spawn('paused', node, '--once',
                             env={PAUSE_ENV: step})
        paused.wait_log('pausing after %s of /%s/%s/obj' % (
            step, account, container), timeout=BOUND)
        nodes.wait_for(lambda: process_state(paused.popen.pid) == 'T',
                       BOUND, message='the reconciler stopped itself')
        paused.kill()
        # What the killed one left: the step done, the entry queued.
        assert entry in queue.entries([name])
        live = cluster.live_policies(container, 'obj', account)
        assert len(live.get(SILVER, {})) >= 2, live
        assert (GOLD in live) == (step == 'copy'), live
        # Its session ends; so does its hold on the lock.
        nodes.wait_for(lambda: history.of(lock) and all(
            h.gone for h in history.of(lock)), BOUND, interval=0.1,
            message='the killed reconciler\'s lock released')
        killed = history.of(lock)[-1].member
        group.run_once({'again': node}, timeout=PASS_TIMEOUT,
                       wait_for_peers=False)
    assert conn.get_object(container, 'obj')[1] == body
    headers = conn.head_object(container, 'obj')
    assert headers['x-object-meta-color'] == 'blue'
    assert headers['content-type'] == 'text/x-test'
    assert_only_in(cluster, account, container, ['obj'], SILVER)
    assert_listings(cluster, account, container, {'obj': body}, SILVER)
    assert entry not in queue.entries([name])
    # One copy: the killed reconciler's, on each of silver's primaries.
    copies = policy_writes(cluster, account, container, SILVER)['obj']
    assert len(copies) == 3, copies
    assert {line.member for line in copies} == {killed}, copies


# -- two reconcilers, one queue container -------------------------------------

def owned_buckets(count, members=('n1', 'n2'), eligible=('n1', 'n2', 'n3')):
    """``count`` queue containers (hours ago) owned by each of
    ``members`` when they are the live ones: each member has some of
    its own, which the other takes while it is away."""
    now = timestamp.Timestamp.now().ticks // timestamp.TICKS_PER_SECOND
    picked = {member: [] for member in members}
    ring = division.Division(members[0], members)
    for hours in range(2, 200):
        name = queue_mod.queue_container(now - hours * 3600)
        owner = ring.owner(queue_mod.lock_name(name), set(members) &
                           set(eligible))
        if len(picked[owner]) < count:
            picked[owner].append(name)
        if all(len(found) == count for found in picked.values()):
            return [name for found in picked.values() for name in found]
    raise AssertionError('no %d queue containers for each of %s'
                         % (count, members))


def test_two_reconcilers_never_work_one_queue_container_at_once(
        cluster, api, workers):
    """n2's reconciler is started again and again (``--once``) while
    n1's runs pass after pass: each start and end changes who plans
    which queue container. n2's first run plans alone (n1 starts once it
    works), so it takes n1's queue containers too, which n1 then wants;
    once it is gone, n1 takes n2's, which n2 worked. Their audit logs
    show no two holds of one queue container overlapping, and the lock
    znodes polled from ZooKeeper agree: no job ran while another
    member's znode of its lock was seen, and every job long enough to be
    seen ran under a znode of its own member's. Every object is moved
    once."""
    conn, account = api
    container = 'two-reconcilers'
    queue = Queue(cluster)
    conn.put_container(container, headers={'X-Storage-Policy': 'silver'})
    gold = cluster.policy_client(GOLD)
    buckets = owned_buckets(2)
    bodies = {}
    for b, bucket in enumerate(buckets):
        for i in range(20):
            obj = 'q%d-obj-%02d' % (b, i)
            bodies[obj] = b'%s ' % obj.encode() + os.urandom(300)
            when = timestamp.Timestamp(int(bucket) + 60 + i)
            gold.put(account, container, obj, bodies[obj], when=when)
            assert queue.enqueue(GOLD, account, container, obj,
                                 when)[0] == bucket
    group = workers(harness.Reconcilers, cluster, run_pause=0.2,
                    entries_per_pass=2, entry_concurrency=1)
    codes = {}
    with history_of(cluster) as history:
        first = group.spawn('n2-1', 'n2', '--once')
        nodes.wait_for(lambda: os.path.exists(group.audit_path('n2-1')),
                       BOUND, message='n2\'s first run works')
        daemon = group.spawn('n1', 'n1')
        codes['n2-1'] = first.popen.wait(PASS_TIMEOUT)
        first.stop()
        deadline = time.monotonic() + 4 * BOUND
        while queue.entries(buckets) and time.monotonic() < deadline:
            label = 'n2-%d' % (len(codes) + 1)
            proc = group.spawn(label, 'n2', '--once')
            codes[label] = proc.popen.wait(PASS_TIMEOUT)
            proc.stop()
        daemon.stop()
    assert_queue_empty(queue, buckets)
    assert set(codes.values()) <= {0, 1}, [
        (label, group.procs[label].log()[-2000:]) for label, code in
        codes.items() if code not in (0, 1)]
    jobs = harness.jobs_of(group.audit())
    worked = {}
    for job in jobs:
        worked.setdefault(queue_of_item(job.part), set()).add(
            job.label.partition('-')[0])
    assert set(buckets) <= set(worked), worked
    assert not harness.overlapping(jobs), harness.overlapping(jobs)[:5]
    # Both took queue containers the other one took too.
    assert [b for b in buckets if worked[b] == {'n1', 'n2'}], worked
    # The lock, seen from ZooKeeper.
    members = {label: member_of(proc) for label, proc in group.procs.items()}
    eps = harness.LOG_RESOLUTION
    seen = 0
    for job in jobs:
        holdings = history.of(queue_mod.lock_name(queue_of_item(job.part)))
        mine = members[job.label]
        others = [h for h in holdings if h.member != mine and
                  job.start + eps < h.last and job.end - eps > h.first]
        assert not others, (job, others)
        if job.end - job.start > 2 * history.max_gap + eps:
            seen += 1
            assert any(h.member == mine and h.first <= job.end and
                       h.last >= job.start for h in holdings), (job,
                                                                 holdings)
    assert seen, 'no job long enough to be seen in ZooKeeper (polls up ' \
        'to %.3fs apart)' % history.max_gap
    # And the work is right: every object moved once.
    assert_served(conn, container, bodies)
    assert_only_in(cluster, account, container, sorted(bodies), SILVER)
    assert_listings(cluster, account, container, bodies, SILVER)
    copies = policy_writes(cluster, account, container, SILVER)
    assert {obj: len(copies.get(obj, ())) for obj in bodies} == \
        dict.fromkeys(bodies, 3)


# -- a newer write in the right policy ----------------------------------------

def test_a_newer_write_in_the_right_policy_is_never_overwritten(
        cluster, api, workers):
    """Misplaced old versions queued, then newer ones written into the
    right policy through the API (an overwrite, a delete): the
    reconciler keeps the newer ones and removes the old from gold."""
    conn, account = api
    container = 'newer-wins'
    queue = Queue(cluster)
    conn.put_container(container, headers={'X-Storage-Policy': 'silver'})
    gold = cluster.policy_client(GOLD)
    entries = {}
    for obj in ('overwritten', 'deleted'):
        when = gold.put(account, container, obj, b'old %s' % obj.encode())
        entries[obj] = queue.enqueue(GOLD, account, container, obj, when)
    new_body = b'the newer version, written in silver'
    conn.put_object(container, 'overwritten', new_body)
    newer = conn.head_object(container, 'overwritten')['x-timestamp']
    with pytest.raises(swift.ClientException) as err:
        conn.delete_object(container, 'deleted')
    assert err.value.http_status == 404     # silver never had it
    run_reconcilers(cluster, workers)
    assert conn.get_object(container, 'overwritten')[1] == new_body
    with pytest.raises(swift.ClientException) as err:
        conn.get_object(container, 'deleted')
    assert err.value.http_status == 404
    assert_only_in(cluster, account, container, ['overwritten'], SILVER)
    # The API's version itself, not a copy over it.
    assert set(cluster.live_policies(container, 'overwritten', account)[
        SILVER].values()) == {timestamp.Timestamp(newer).normal + '.data'}
    assert not cluster.live_policies(container, 'deleted', account)
    # The API's PUT on each of silver's primaries, and no other.
    assert len(policy_writes(cluster, account, container, SILVER)[
        'overwritten']) == 3
    assert_listings(cluster, account, container,
                    {'overwritten': new_body}, SILVER)
    names = {name for name, _entry in entries.values()}
    left = queue.entries(sorted(names))
    assert not {entry for _name, entry in entries.values()} & set(left)
