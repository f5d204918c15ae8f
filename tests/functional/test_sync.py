"""Partition sync on a real cluster: one signed stream per peer and
partition instead of one request per object.

Diverged replicas converge through the sync requests alone (missing
check, push, pull) and no per-object replication write is sent; a sender
SIGKILLed mid-stream leaves nothing visible and no temporary file on its
receivers, and the next pass finishes the job; a stream altered, signed
with another key, cut short or replayed is refused and changes no file;
newest wins as on disk (a tombstone wins a tie); the fencing token rides
on every sync request and a stale one is refused; a node at its
``[replicator] max_incoming`` answers 503 and takes the push once free.

One 3-node cluster (``coordsync-local-cluster up`` on the test run's
ZooKeeper) serves the module, but for the busy-node test, which brings
up one of its own with ``max_incoming = 1``. Each test uses a container
of its own and its own replicator processes; faults are made for real
(signals, files written behind a server's back, raw requests).
"""

import hashlib
import http.client
import json
import os
import re
import threading
import time
import urllib.request

import pytest

from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import timestamp
from coordsync.obj import layout
from coordsync.obj import replicator as replicator_mod
from coordsync.obj import sync
from coordsync.obj import syncstream
from tests.functional import harness
from tests.functional import nodes

ACCOUNT = harness.ACCOUNT
SESSION_TIMEOUT = harness.SESSION_TIMEOUT
# Bounds, not timing goals: generous for a loaded 2-core machine.
BOUND = 60.0
# A long push: many small objects and one body far larger than the
# sockets between two nodes buffer.
SMALL_OBJECTS = 300
SMALL_SIZE = 4096
BIG_SIZE = 64 * 2 ** 20
# A temporary file this large is a body being received.
SENDING = 2 ** 20
JOINED = re.compile(r'Joined coordination group \S+ as (\S+)')


@pytest.fixture(scope='module')
def cluster(zk_local_cluster):
    return zk_local_cluster


# -- helpers ------------------------------------------------------------------

def names_in(cluster, container, part, count, prefix='obj'):
    """``count`` object names of ``container`` in partition ``part``."""
    found = []
    for i in range(count * len(cluster.partitions) * 8):
        name = '%s-%d' % (prefix, i)
        if cluster.locate(container, name)[0] == part:
            found.append(name)
            if len(found) == count:
                return found
    raise AssertionError('too few names in partition %d' % part)


def held(cluster, container, names, node_names):
    """How many of the objects ``names`` each node has a file of (other
    tests' objects may share the partition)."""
    return [sum(bool(cluster.primary_files(container, name)[node])
                for name in names) for node in node_names]


def ring_node(cluster, part, node):
    """The ring device dict of ``node``'s replica of ``part``."""
    for dev in cluster.ring.get_part_nodes(part):
        if dev['node'] == node:
            return dev
    raise AssertionError('%s holds no replica of %d' % (node, part))


def sync_lines(cluster, since, part=None):
    """Access lines of ``/object-sync/`` requests arrived since
    ``since`` (of partition ``part``)."""
    found = []
    for line in harness.access_lines(cluster):
        if line.start < since - harness.LOG_RESOLUTION:
            continue
        parts = line.path.split('?')[0].split('/')
        if len(parts) < 4 or parts[1] != 'object-sync':
            continue
        if part is not None and parts[3] != str(part):
            continue
        found.append(line)
    return found


def wait_sync_lines(cluster, since, part=None, count=1, where=None):
    """:func:`sync_lines` once at least ``count`` of them (matching
    ``where(line)``) were logged: a server logs a request once its
    answer is sent, which may be after the client read it."""
    found = []

    def logged():
        found[:] = [line for line in sync_lines(cluster, since, part)
                    if where is None or where(line)]
        return len(found) >= count
    nodes.wait_for(logged, BOUND, interval=0.2,
                   message='%d sync requests logged' % count)
    return found


def sync_kind(line):
    """``check``, ``push`` or ``pull``."""
    if line.method == 'PUT':
        return 'push'
    return line.path.split('?')[0].rsplit('/', 1)[-1]


def tmp_files(cluster, part, nodes_=None, besides=()):
    """``{tmp file: size}`` in the device tmp dirs of ``part``'s
    primaries (on ``nodes_`` only), but for the files in ``besides``
    (there before: a tmp dir serves every partition of its device)."""
    sizes = {}
    for node, device in cluster.primaries(part).items():
        if nodes_ is not None and node not in nodes_:
            continue
        tmp = os.path.join(cluster.workdir, node, 'devices', device,
                           layout.TMPDIR)
        try:
            entries = list(os.scandir(tmp))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and \
                        entry.path not in besides:
                    sizes[entry.path] = entry.stat().st_size
            except FileNotFoundError:
                pass
    return sizes


def disk_state(cluster, node_names=None):
    """:meth:`LocalCluster.snapshot` of every device (of ``node_names``),
    but for the mtime of the device tmp dirs: a refused stream may come
    and go there, its files must not stay."""
    state = {}
    for path, (is_dir, size, mtime, inode) in cluster.snapshot().items():
        if node_names is not None and path.split(os.sep)[0] not in \
                node_names:
            continue
        if is_dir and os.path.basename(path) == layout.TMPDIR:
            mtime = None
        state[path] = (is_dir, size, mtime, inode)
    return state


def receiver_dirs(cluster, part, node_names):
    """:meth:`LocalCluster.snapshot` of ``part``'s directories on the
    devices of ``node_names``."""
    return {path: value for path, value in cluster.snapshot(part).items()
            if path.split(os.sep)[0] in node_names}


def changes(before, after):
    return {path: (before.get(path), after.get(path))
            for path in before.keys() | after.keys()
            if before.get(path) != after.get(path)}


def wait_lease_over(cluster, node, part):
    """Wait until ``node`` stops holding token-less replication writes
    into ``part`` back (the lease of a recent holder's requests)."""
    conf = cluster.node_conf(node)
    lease = fencing.fence_lease(conf)
    item = replicator_mod.lock_name(part)
    store = fencing.TokenStore(conf.server.fence_db)
    try:
        def over():
            admitted_at = store.admitted_at(item)
            return admitted_at is None or \
                time.time() - admitted_at > lease + 1.0
        nodes.wait_for(over, lease + BOUND, interval=0.2,
                       message='lease of %s on %s over' % (item, node))
    finally:
        store.close()


def entry(container, name, when, body, etag=True):
    """A push entry: ``(metadata, length, [body])``."""
    metadata = {'name': '/%s/%s/%s' % (ACCOUNT, container, name),
                'X-Timestamp': when,
                'Content-Type': 'application/octet-stream'}
    if etag:
        metadata['ETag'] = hashlib.md5(body).hexdigest()
    return metadata, len(body), [body]


def encoded(entries, key, signature, direction=sync.PUSH_SEED):
    """The whole stream of ``entries`` as one bytes object."""
    return b''.join(syncstream.encode(entries, key,
                                      sync.seed(direction, signature)))


class RecordingClient(direct_client.NodeClient):
    """A NodeClient that keeps what it sent last (headers and body
    pieces, read whole before sending), to send the very same request
    again."""

    sent = None

    def _send(self, node, method, path, query, headers, body):
        if body is not None and not isinstance(body, bytes):
            body = list(body)
        self.sent = (method, path, query, dict(headers), body)
        return super()._send(node, method, path, query, headers, body)


def client(cluster, label, recording=False):
    """A NodeClient of the cluster (its secret), as member ``label``.

    NOTE: each case has a member of its own: two requests of one member
    to one path within the same second would sign alike, and a push
    whose signature was seen is refused as a replay.
    """
    cls = RecordingClient if recording else direct_client.NodeClient
    return cls(cluster.conf, member_id='%s@sync-test.%s' % (
        label, os.urandom(3).hex()))


def push(node_client, node, part, stream, fence=None):
    """``(status, headers, body)`` of a push made with ``stream``."""
    resp = node_client.request(node, 'PUT', direct_client.sync_path(
        node['device'], part), stream=stream, fence=fence,
        replication=True)
    return resp.status, resp.headers, resp.read()


def send_raw(cluster, node, method, path, query, headers, pieces):
    """Send a request byte for byte as given (chunked body)."""
    host, port = cluster.address(node)
    conn = http.client.HTTPConnection(host, port, timeout=BOUND)
    try:
        conn.request(method, path + ('?' + query if query else ''),
                     body=iter(pieces), headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def healthy(cluster, node):
    host, port = cluster.address(node)
    with urllib.request.urlopen('http://%s:%d/healthcheck' % (host, port),
                                timeout=10) as resp:
        return resp.status == 200 and resp.read() == b'OK\n'


# -- the tests ----------------------------------------------------------------

def test_diverged_replicas_converge_through_sync_requests(cluster,
                                                          replicators):
    """Lost files, newer versions, tombstones that missed two nodes and
    objects on one node only are levelled by one pass, with missing
    checks, pushes and pulls only: no per-object replication write."""
    container = 'sync-converge'
    names = ['obj-%02d' % i for i in range(18)]
    lost, newer, deleted = names[0:6], names[6:12], names[12:18]
    written = {n: cluster.put(container, n, b'v1 ' + n.encode())
               for n in names}
    expected = {n: written[n] + '.data' for n in names}
    bodies = {n: b'v1 ' + n.encode() for n in names}
    for name in lost:
        cluster.lose_files('n3', container, name)
    for name in newer:
        part, _hash = cluster.locate(container, name)
        when = timestamp.Timestamp.now().normal
        bodies[name] = b'v2 ' + name.encode()
        cluster.disk('n2').diskfile(
            cluster.primaries(part)['n2'], part, ACCOUNT, container,
            name).write([bodies[name]], {'X-Timestamp': when})
        expected[name] = when + '.data'
    for name in deleted:
        part, _hash = cluster.locate(container, name)
        when = timestamp.Timestamp.now()
        cluster.disk('n1').diskfile(
            cluster.primaries(part)['n1'], part, ACCOUNT, container,
            name).delete(when)
        bodies[name] = None
        expected[name] = when.normal + '.ts'
    # One partition with an object on each node only: whichever node
    # holds it pulls two and pushes two to each peer.
    lonely_part = cluster.locate(container, 'lonely')[0]
    lonely = names_in(cluster, container, lonely_part, 3, 'lonely')
    for node, name in zip(cluster.node_names, lonely, strict=True):
        when = timestamp.Timestamp.now().normal
        bodies[name] = b'only on ' + node.encode()
        cluster.disk(node).diskfile(
            cluster.primaries(lonely_part)[node], lonely_part, ACCOUNT,
            container, name).write([bodies[name]], {'X-Timestamp': when})
        expected[name] = when + '.data'
    before = {n: cluster.primary_files(container, n) for n in expected}
    assert all(before[n]['n3'] == [] for n in lost), before
    assert all(before[n]['n2'] == [expected[n]] != before[n]['n1']
               for n in newer), before
    assert all(before[n]['n1'] == [expected[n]] != before[n]['n3']
               for n in deleted), before
    assert all(sum(files == [] for files in before[n].values()) == 2
               for n in lonely), before
    since = time.time()

    replicators(cluster).run_once()

    cluster.assert_level(container, expected)
    for name, body in sorted(bodies.items()):
        assert cluster.get(container, name) == body, name

    lines = wait_sync_lines(cluster, since)
    kinds = {(sync_kind(line), line.status) for line in lines}
    assert {('check', 200), ('push', 200), ('pull', 200)} <= kinds, kinds
    assert all(line.member is not None for line in lines), lines
    pushes = [line for line in lines if sync_kind(line) == 'push']
    assert all(line.path.endswith('?replication=true')
               for line in pushes), pushes
    lonely_kinds = {sync_kind(line) for line in lines
                    if line.path.split('?')[0].split('/')[3]
                    == str(lonely_part) and line.status == 200}
    assert lonely_kinds == {'check', 'push', 'pull'}, lonely_kinds
    # No object write from a member (a replicator) at all, and nothing
    # marked as a per-object replication write.
    writes = [line for _part, line in harness.object_writes(
        cluster, accepted=False) if line.start >= since
        and not line.path.startswith('/object-sync/')]
    assert not writes, writes
    per_object = [line for line in harness.access_lines(cluster)
                  if line.start >= since
                  and line.path.startswith('/objects/')
                  and 'replication=true' in line.path]
    assert not per_object, per_object


def test_sender_killed_mid_stream_leaves_nothing_visible(cluster,
                                                         replicators):
    """A replicator SIGKILLed while its push streams are being received:
    its receivers publish none of the stream's objects and remove every
    temporary file of it; they keep serving, and the next pass levels
    the partition."""
    container = 'sync-killed'
    part, expected = cluster.fill_one_replica(
        'n1', container, [os.urandom(BIG_SIZE)]
        + [os.urandom(SMALL_SIZE)] * SMALL_OBJECTS)
    receivers = ('n2', 'n3')
    assert held(cluster, container, expected, receivers) == [0, 0]
    leftover = set(tmp_files(cluster, part))

    # Slow and patient: a push at a time per peer, a long answer timeout.
    group = replicators(cluster, concurrency=1, suffix_concurrency=1,
                        sections={'client': {'node_timeout': 120}})
    sender = group.spawn('n1', 'n1', '--once', '--partitions', str(part))
    since = time.time()
    seen = {}

    def big_body_arriving():
        seen.update(sizes=tmp_files(cluster, part, receivers, leftover))
        return any(size >= SENDING for size in seen['sizes'].values())
    nodes.wait_for(big_body_arriving, BOUND, interval=0.01,
                   message='a receiver writing the big body')
    sender.kill()
    assert sender.popen.returncode == -9
    # Mid-stream: the big body on its way (with the small objects
    # received before it, sealed), all in tmp, nothing published.
    assert any(SENDING <= size < BIG_SIZE
               for size in seen['sizes'].values()), seen
    assert held(cluster, container, expected, receivers) == [0, 0]
    at_kill = receiver_dirs(cluster, part, receivers)

    nodes.wait_for(
        lambda: not tmp_files(cluster, part, receivers, leftover), BOUND,
        interval=0.1, message='receivers drop the cut stream')
    assert held(cluster, container, expected, receivers) == [0, 0]
    assert not changes(at_kill, receiver_dirs(cluster, part, receivers))
    # The receivers saw the stream cut: each push answered an error.
    cut = wait_sync_lines(cluster, since, part, count=2,
                          where=lambda line: sync_kind(line) == 'push')
    assert all(line.status >= 400 for line in cut), cut
    assert sorted(line.node for line in cut) == list(receivers), cut
    for node in receivers:
        assert healthy(cluster, node)
        assert cluster.node_client.replicate(ring_node(cluster, part, node),
                                             part) is not None

    # Once its session expired (its lock with it), a new pass finishes.
    nodes.wait_for(
        lambda: 'n1' not in dict(harness.replicator_members(
            cluster.config)),
        SESSION_TIMEOUT + BOUND, interval=0.5,
        message="the killed replicator expired")
    again = replicators(cluster).spawn('n1-again', 'n1', '--once',
                                       '--partitions', str(part))
    code = again.popen.wait(2 * BOUND)
    assert code == 0, again.log()[-3000:]
    cluster.assert_level(container, expected)
    assert held(cluster, container, expected, receivers) == [
        len(expected)] * 2
    assert not tmp_files(cluster, part, besides=leftover)
    assert not cluster.stray_files()


def test_bad_streams_are_refused_and_change_nothing(cluster):
    """Pushes with a flipped body byte, another key, no END line, the
    other direction's seed or trailing bytes get 400; the same signed
    request sent again gets 401; none changes a file. A good stream is
    stored (the control)."""
    container = 'sync-refused'
    part = cluster.locate(container, 'seed')[0]
    # The partition and tmp dirs exist on every replica from here on.
    cluster.put(container, 'seed', b'seed')
    target = ring_node(cluster, part, 'n2')
    wait_lease_over(cluster, 'n2', part)
    leftover = set(tmp_files(cluster, part))
    # Small objects and a large one: the receiver writes them to tmp
    # files (the small ones a batch at a time, before the large one).
    names = names_in(cluster, container, part, 4, 'pushed')
    bodies = {name: b'body of ' + name.encode() for name in names}
    bodies[names[2]] += os.urandom(256 * 1024)
    key = cluster.conf.cluster_secret.encode('utf-8')

    def entries(flipped=None):
        when = timestamp.Timestamp.now().normal
        return [entry(container, name, when, bodies[name],
                      etag=name != flipped) for name in names]

    def flip(signature):
        # NOTE: in an object sent without an ETag: only the stream's
        # signature can tell.
        data = bytearray(encoded(entries(flipped=names[1]), key,
                                 signature))
        at = data.index(b'body of ' + names[1].encode())
        data[at] ^= 0x01
        return [bytes(data[:at + 1]), bytes(data[at + 1:])]

    def other_key(signature):
        return [encoded(entries(), b'not-the-cluster-secret', signature)]

    def no_end(signature):
        data = encoded(entries(), key, signature)
        return [data[:data.rindex(b'END ')]]

    def as_pull(signature):
        return [encoded(entries(), key, signature, sync.PULL_SEED)]

    def trailing(signature):
        return [encoded(entries(), key, signature) + b'\n']

    before = disk_state(cluster)
    unsigned = b'stream signature does not match'
    for stream, reason in ((flip, unsigned),
                           (other_key, unsigned),
                           (no_end, b'stream truncated before END'),
                           (as_pull, unsigned),
                           (trailing, b'trailing bytes after END')):
        label = stream.__name__
        status, _headers, body = push(client(cluster, 'refused'), target,
                                      part, stream)
        assert status == 400 and body.startswith(
            b'bad sync stream: ' + reason), (label, status, body)
        assert not changes(before, disk_state(cluster)), label
    assert not tmp_files(cluster, part, besides=leftover)
    for name in names:
        assert cluster.primary_files(container, name)['n2'] == [], name

    # The control: a good stream is stored, object by object.
    good = entries()
    sender = client(cluster, 'good', recording=True)
    status, _headers, body = push(
        sender, target, part,
        lambda signature: syncstream.encode(
            good, key, sync.seed(sync.PUSH_SEED, signature)))
    assert status == 200, body
    answer = json.loads(body)
    assert answer['results'] == {meta['name']: 201
                                 for meta, _l, _c in good}, answer
    assert answer['stored'] == len(names)
    for meta, _length, _chunks in good:
        name = meta['name'].rsplit('/', 1)[-1]
        assert cluster.primary_files(container, name)['n2'] == [
            meta['X-Timestamp'] + '.data'], name

    # The same request again, byte for byte: a replay.
    method, path, query, headers, pieces = sender.sent
    assert b''.join(pieces).startswith(syncstream.MAGIC)
    stored = disk_state(cluster)
    status, _headers, body = send_raw(cluster, 'n2', method, path, query,
                                      headers, pieces)
    assert (status, body) == (401, b'replayed sync request\n'), (status,
                                                                 body)
    assert not changes(stored, disk_state(cluster))
    assert not tmp_files(cluster, part, besides=leftover)


def test_newest_wins_and_tombstone_wins_a_tie(cluster, replicators):
    """Versions written straight to the disks at chosen timestamps: a
    later tombstone beats data, later data beats a tombstone, and a
    tombstone beats data of the same timestamp, whichever node holds
    which and whichever node repairs."""
    container = 'sync-newest'
    base = float(timestamp.Timestamp.now()) - 60
    t1 = timestamp.Timestamp(base)
    t2 = timestamp.Timestamp(base + 1)
    expected, bodies = {}, {}

    def write(node, name, when, tombstone):
        part, _hash = cluster.locate(container, name)
        df = cluster.disk(node).diskfile(cluster.primaries(part)[node],
                                         part, ACCOUNT, container, name)
        if tombstone:
            df.delete(when)
        else:
            df.write([b'%s at %s' % (name.encode(), when.normal.encode())],
                     {'X-Timestamp': when.normal})

    # Each case three times, the odd replica on each node in turn.
    for odd in cluster.node_names:
        others = [n for n in cluster.node_names if n != odd]
        cases = {
            # Deleted on one replica after the data the others hold.
            'deleted-later-on-%s' % odd: (
                [(n, t1, False) for n in others] + [(odd, t2, True)],
                t2, True),
            # Written on one replica after the others' tombstones.
            'written-later-on-%s' % odd: (
                [(n, t1, True) for n in others] + [(odd, t2, False)],
                t2, False),
            # A tombstone and data at the same timestamp.
            'tie-deleted-on-%s' % odd: (
                [(n, t1, False) for n in others] + [(odd, t1, True)],
                t1, True),
            'tie-written-on-%s' % odd: (
                [(others[0], t1, True), (odd, t1, False)], t1, True),
        }
        for name, (writes, when, tombstone) in cases.items():
            for node, at, is_tombstone in writes:
                write(node, name, at, is_tombstone)
            expected[name] = when.normal + ('.ts' if tombstone else '.data')
            bodies[name] = None if tombstone else b'%s at %s' % (
                name.encode(), when.normal.encode())
    with pytest.raises(AssertionError):
        cluster.assert_level(container, expected)

    replicators(cluster).run_once()

    cluster.assert_level(container, expected)
    for name, body in sorted(bodies.items()):
        assert cluster.get(container, name) == body, name


def test_sync_requests_carry_the_fence_and_stale_ones_are_refused(
        cluster, replicators):
    """Every sync request of a pass carries the partition's item and the
    holder's token; a push, check or pull with an older token is refused
    (409, fenced) and changes nothing."""
    container = 'sync-fenced'
    part, expected = cluster.fill_one_replica(
        'n1', container, [os.urandom(1000) for _i in range(5)])
    item = replicator_mod.lock_name(part)
    since = time.time()
    group = replicators(cluster)
    once = group.spawn('n1', 'n1', '--once', '--partitions', str(part))
    assert once.popen.wait(2 * BOUND) == 0, once.log()[-3000:]
    cluster.assert_level(container, expected)

    lines = wait_sync_lines(cluster, since, part, count=4)
    assert {(sync_kind(line), line.node) for line in lines} >= {
        ('check', 'n2'), ('check', 'n3'), ('push', 'n2'),
        ('push', 'n3')}, lines
    assert all(line.status == 200 for line in lines), lines
    assert {line.item for line in lines} == {item}, lines
    tokens = {line.token for line in lines}
    assert len(tokens) == 1 and None not in tokens, lines
    token = tokens.pop()
    assert token > 1
    assert [cluster.fence_highest(n, item) for n in ('n2', 'n3')] == [
        token, token]
    assert {line.member for line in lines} == {
        JOINED.search(once.log()).group(1)}, lines

    # A stale holder's requests: one token older than n2's highest.
    stale = fencing.Fence(item, cluster.fence_highest('n2', item) - 1)
    target = ring_node(cluster, part, 'n2')
    key = cluster.conf.cluster_secret.encode('utf-8')
    name = names_in(cluster, container, part, 1, 'stale')[0]
    stale_entries = [entry(container, name,
                           timestamp.Timestamp.now().normal, b'stale')]
    before = disk_state(cluster)
    since = time.time()
    status, headers, body = push(
        client(cluster, 'stale'), target, part,
        lambda signature: syncstream.encode(
            stale_entries, key, sync.seed(sync.PUSH_SEED, signature)),
        fence=stale)
    assert status == 409, body
    assert headers.get(fencing.FENCED_HEADER.lower()) == 'true', headers
    stale_sync = sync.SyncClient(client(cluster, 'stale-sync'))
    obj_hash = cluster.obj_hash(container, name)
    with pytest.raises(direct_client.NodeError) as checked:
        stale_sync.check(target, part, [obj_hash[-3:]],
                         {obj_hash: (timestamp.Timestamp.now().normal,
                                     False)}, fence=stale)
    assert checked.value.fenced, checked.value
    with pytest.raises(direct_client.NodeError) as pulled:
        stale_sync.pull(target, part, [obj_hash], fence=stale)
    assert pulled.value.fenced, pulled.value
    assert not changes(before, disk_state(cluster))
    assert cluster.primary_files(container, name)['n2'] == []
    assert cluster.fence_highest('n2', item) == token
    refused = wait_sync_lines(cluster, since, part, count=3)
    assert sorted(sync_kind(line) for line in refused) == [
        'check', 'pull', 'push'], refused
    assert all((line.status, line.item, line.token) == (
        409, item, token - 1) for line in refused), refused


def test_busy_node_answers_503_then_takes_the_push(zk_server, tmp_path):
    """With ``max_incoming = 1``, a node receiving one push answers a
    second one 503 with Retry-After; a sync client retrying after that
    gets its push stored once the first push ended."""
    with harness.local_cluster(
            tmp_path / 'busy', part_power=5, backend=zk_server.url,
            session_timeout=SESSION_TIMEOUT,
            settings={'replicator.max_incoming': 1}) as busy:
        assert busy.node_conf('n2').replicator.max_incoming == 1
        container = 'sync-busy'
        part = busy.locate(container, 'slow')[0]
        target = ring_node(busy, part, 'n2')
        key = busy.conf.cluster_secret.encode('utf-8')
        slow, quick, late = names_in(busy, container, part, 3, 'push')
        half = os.urandom(2 ** 19)
        release = threading.Event()
        leftover = set(tmp_files(busy, part))

        def slow_body():
            yield half
            assert release.wait(BOUND), 'never released'
            yield half

        slow_meta = entry(container, slow, timestamp.Timestamp.now().normal,
                          half + half)[0]
        first = []

        def first_push():
            first.append(push(
                client(busy, 'slow'), target, part,
                lambda signature: syncstream.encode(
                    [(slow_meta, 2 * len(half), slow_body())], key,
                    sync.seed(sync.PUSH_SEED, signature))))
        thread = threading.Thread(target=first_push, daemon=True)
        thread.start()
        try:
            nodes.wait_for(
                lambda: any(size >= len(half) for size in tmp_files(
                    busy, part, ('n2',), leftover).values()),
                BOUND, interval=0.05, message='n2 receiving the slow push')

            status, headers, body = push(
                client(busy, 'quick'), target, part,
                lambda signature: syncstream.encode(
                    [entry(container, quick,
                           timestamp.Timestamp.now().normal, b'quick')],
                    key, sync.seed(sync.PUSH_SEED, signature)))
            assert (status, body[:5]) == (503, b'busy:'), (status, body)
            assert headers.get('retry-after') == '1', headers
            assert busy.primary_files(container, quick)['n2'] == []

            # A sync client tries again; the first push ends meanwhile.
            tries = []

            def sleep(delay):
                tries.append(delay)
                release.set()
                thread.join(BOUND)
                time.sleep(delay)
            late_entry = entry(container, late,
                               timestamp.Timestamp.now().normal, b'late')
            results = sync.SyncClient(
                client(busy, 'late'), sleep=sleep).push(
                    target, part, lambda: [late_entry])
        finally:
            release.set()
            thread.join(BOUND)
        assert len(tries) == 1, tries
        assert results == {late_entry[0]['name']: 201}, results
        status, _headers, body = first[0]
        assert status == 200, body
        assert json.loads(body)['results'] == {
            slow_meta['name']: 201}
        for name, ending in ((slow, '.data'), (late, '.data')):
            files = busy.primary_files(container, name)['n2']
            assert len(files) == 1 and files[0].endswith(ending), files
        assert busy.primary_files(container, quick)['n2'] == []
        busy_lines = wait_sync_lines(busy, 0, part, count=4,
                                     where=lambda line: line.node == 'n2')
        assert sorted(line.status for line in busy_lines) == [
            200, 200, 503, 503], busy_lines
        assert not tmp_files(busy, part, besides=leftover)
