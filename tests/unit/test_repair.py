"""PartitionRepair against three real object stores served in-process.

Each "node" is a :class:`~coordsync.obj.server.NodeServer` over its own
:class:`~coordsync.obj.diskfile.DiskFileManager` in a temporary directory.
The repair talks to them through :class:`InProcessClient`, a real
:class:`~coordsync.common.direct_client.NodeClient` (so REPLICATE,
listings, sync checks and streams and the signing are the product's
code) whose transport calls the WSGI app instead of opening a socket,
logs every request, can make a node unreachable (for good or for one
request), can run a hook before a request (to land a write at a chosen
moment) and can alter a reply body.
"""

import io
import json
import os
import time
import urllib.parse

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import direct_client as client
from coordsync.common import fencing
from coordsync.common import signing
from coordsync.common import worker
from coordsync.common.timestamp import Timestamp
from coordsync.obj import diskfile
from coordsync.obj import repair
from coordsync.obj import server
from coordsync.obj import sync

SECRET = 'repair-secret'
PART = 7
DEVICE = 'sda'
NAMES = ('n1', 'n2', 'n3')
NOW = float(int(time.time()))


def ts(offset):
    return Timestamp(NOW + offset)


class FakeResponse:
    """What :class:`~coordsync.common.direct_client.Response` offers,
    from bytes; ``signature`` is the one the request was sent with."""

    def __init__(self, status, headers, body, signature=None):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.signature = signature
        self._body = body
        self._offset = 0
        self.closed = False

    def read(self):
        data = self._body[self._offset:]
        self._offset = len(self._body)
        return data

    def read_some(self, amount):
        assert amount > 0
        data = self._body[self._offset:self._offset + amount]
        self._offset += len(data)
        return data

    def iter_body(self, chunk_size=client.CHUNK_SIZE):
        while data := self.read_some(chunk_size):
            yield data

    def json(self):
        return json.loads(self.read().decode('utf-8'))

    def close(self):
        self.closed = True


def kind(method, path):
    """What a request is, from its method and full path."""
    parts = path.split('/')
    route = parts[1]
    if route == 'objects':
        if method == 'REPLICATE':
            return 'rehash' if len(parts) > 4 else 'hashes'
        return 'object ' + method
    if route == 'object-suffixes':
        return 'list'
    if route == 'object-sync':
        if len(parts) == 4:
            return 'push' if method == 'PUT' else 'bad sync'
        return parts[4] if method == 'POST' else 'bad sync'
    return 'unknown'


class InProcessClient(client.NodeClient):
    """A NodeClient whose transport is a WSGI call to in-process nodes.

    Everything above the transport (paths, headers, signatures, fences,
    sync streams) is the product's. ``requests`` logs ``(node, method,
    path)`` with the full path as sent (``/objects/sda/7``,
    ``/object-sync/sda/7/check``, ...); hooks see the same.
    """

    def __init__(self, conf, apps):
        super().__init__(conf)
        self.apps = apps
        self.requests = []
        self.down = set()
        # (node, kind) of requests that fail once, as if the node were
        # down for that one request.
        self.fail_once = set()
        self.hooks = []
        # ``alter(node, kind, body)``: the reply body as received.
        self.alter = None
        # (kind, FakeResponse) of every reply.
        self.replies = []

    def _send(self, node, method, path, query, headers, body):
        self.requests.append((node['node'], method, path))
        for hook in list(self.hooks):
            hook(node, method, path)
        if node['node'] in self.down:
            raise client.NodeError('%s is down' % node['node'])
        if (node['node'], kind(method, path)) in self.fail_once:
            self.fail_once.discard((node['node'], kind(method, path)))
            raise client.NodeError('%s is down for a moment' % node['node'])
        headers = dict(headers)
        if body is not None and not isinstance(body, bytes):
            if 'Content-Length' not in headers:
                headers['Transfer-Encoding'] = 'chunked'
            body = b''.join(body)
        env = {'REQUEST_METHOD': method,
               'PATH_INFO': urllib.parse.unquote_to_bytes(path)
               .decode('latin-1'),
               'RAW_PATH_INFO': path, 'QUERY_STRING': query,
               'wsgi.input': io.BytesIO(body or b'')}
        for name, value in headers.items():
            key = name.upper().replace('-', '_')
            env[key if key in ('CONTENT_LENGTH', 'CONTENT_TYPE')
                else 'HTTP_' + key] = str(value)
        captured = []
        chunks = self.apps[node['node']](
            env, lambda status, hdrs: captured.append((status, hdrs)))
        try:
            data = b''.join(chunks)
        finally:
            if hasattr(chunks, 'close'):
                chunks.close()
        status, reply_headers = captured[0]
        if self.alter is not None:
            data = self.alter(node['node'], kind(method, path), data)
        reply = FakeResponse(int(status.split()[0]), reply_headers, data,
                             headers.get(signing.SIGNATURE_HEADER))
        self.replies.append((kind(method, path), reply))
        return reply

    def kinds(self, node=None):
        """The kinds of the requests sent (to ``node``), in order."""
        return [kind(method, path) for name, method, path in self.requests
                if node is None or name == node]

    def writes(self):
        """Requests that change a remote store, or pull from one."""
        return [r for r in self.requests
                if kind(r[1], r[2]) in ('push', 'pull', 'object PUT',
                                        'object DELETE')]


class ShiftedTime:
    """The ``time`` module as :mod:`coordsync.common.signing` sees it,
    ``offset`` seconds later (or pinned at ``fixed``)."""

    def __init__(self, offset=0, fixed=None):
        self.offset = offset
        self.fixed = fixed

    def time(self):
        return self.fixed if self.fixed is not None \
            else time.time() + self.offset


class Cluster:
    """Three nodes holding partition PART on device DEVICE; each node
    server has its own fencing token store."""

    def __init__(self, tmp_path, monkeypatch):
        conf = cfg.ConfigOpts()
        coordsync_conf.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('cluster_secret', SECRET)
        self.managers, self.nodes, apps = {}, {}, {}
        self.token_stores = {}
        for index, name in enumerate(NAMES):
            devices = tmp_path / name
            os.makedirs(devices / DEVICE)
            manager = diskfile.DiskFileManager(
                str(devices), hash_prefix='pre', hash_suffix='suf')
            self.managers[name] = manager
            self.token_stores[name] = fencing.TokenStore(
                str(tmp_path / name / 'fencing.db'))
            apps[name] = server.NodeServer(
                conf, manager, token_store=self.token_stores[name])
            self.nodes[name] = {'id': index, 'node': name,
                                'ip': '127.0.0.%d' % (index + 1),
                                'port': 6200, 'device': DEVICE}
        self.client = InProcessClient(conf, apps)
        self.signing_time = ShiftedTime()
        monkeypatch.setattr(signing, 'time', self.signing_time)

    def later_pass(self):
        """Requests are signed (and checked) a second later from now on,
        as a later pass's are."""
        self.signing_time.offset += 1

    def job(self, local='n1', peers=None, **kwargs):
        peers = [n for n in NAMES if n != local] if peers is None else peers
        return repair.PartitionRepair(
            self.managers[local], self.client, DEVICE, PART,
            [self.nodes[n] for n in peers], **kwargs)

    def diskfile(self, node, obj):
        return self.managers[node].diskfile(DEVICE, PART, 'AUTH_a', 'c', obj)

    def put(self, nodes, obj, when, body=None, color='blue',
            content_type=None):
        metadata = {'X-Timestamp': when.normal,
                    'X-Object-Meta-Color': color}
        if content_type:
            metadata['Content-Type'] = content_type
        for node in nodes:
            self.diskfile(node, obj).write(
                [body or b'%s at %s' % (obj.encode(), when.normal.encode())],
                metadata)

    def delete(self, nodes, obj, when):
        for node in nodes:
            self.diskfile(node, obj).delete(when)

    def view(self, node, obj):
        """('data', ts, body, meta) / ('deleted', ts) / None."""
        try:
            with self.diskfile(node, obj).reader() as reader:
                meta = reader.metadata
                return ('data', meta['X-Timestamp'], b''.join(reader),
                        meta.get('X-Object-Meta-Color'))
        except exceptions.DiskFileDeleted as err:
            return ('deleted', err.timestamp.normal)
        except exceptions.DiskFileNotFound:
            return None

    def hashes(self, node):
        return self.managers[node].get_hashes(DEVICE, PART)

    def object_files(self, node):
        """Every object file of the partition (path -> bytes): a write of
        any kind shows here."""
        root = os.path.join(self.managers[node].devices_path, DEVICE,
                            'objects', str(PART))
        found = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(('.data', '.ts')):
                    path = os.path.join(dirpath, name)
                    with open(path, 'rb') as fh:
                        found[os.path.relpath(path, root)] = fh.read()
        return found

    def snapshot(self):
        return {node: self.object_files(node) for node in NAMES}

    def partition_exists(self, node):
        return PART in self.managers[node].partitions(DEVICE)

    def tmp_files(self, node):
        tmp_dir = os.path.join(self.managers[node].devices_path, DEVICE,
                               'tmp')
        return os.listdir(tmp_dir) if os.path.isdir(tmp_dir) else []


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    return Cluster(tmp_path, monkeypatch)


def diverge(cluster):
    """Replicas that differ in every way one object can; the expected
    state after repair, for every object."""
    c = cluster
    c.put(NAMES, 'same', ts(1))
    c.put(['n1'], 'only-local', ts(1))
    c.put(['n3'], 'only-remote', ts(1))
    c.put(['n1', 'n3'], 'older-here', ts(1))
    c.put(['n2'], 'older-here', ts(2))
    c.put(['n1'], 'newer-here', ts(3))
    c.put(['n2', 'n3'], 'newer-here', ts(2))
    c.put(['n1', 'n3'], 'deleted-later', ts(1))
    c.delete(['n2'], 'deleted-later', ts(4))
    c.delete(['n1'], 'put-after-delete', ts(1))
    c.put(['n2'], 'put-after-delete', ts(5))
    c.delete(['n3'], 'only-tombstone', ts(2))
    # Equal timestamps: the tombstone wins, held here or elsewhere.
    c.put(['n1', 'n3'], 'tie-tombstone-remote', ts(6))
    c.delete(['n2'], 'tie-tombstone-remote', ts(6))
    c.delete(['n1'], 'tie-tombstone-local', ts(6))
    c.put(['n2', 'n3'], 'tie-tombstone-local', ts(6))
    return {
        'same': c.view('n1', 'same'),
        'only-local': c.view('n1', 'only-local'),
        'only-remote': c.view('n3', 'only-remote'),
        'older-here': c.view('n2', 'older-here'),
        'newer-here': c.view('n1', 'newer-here'),
        'deleted-later': ('deleted', ts(4).normal),
        'put-after-delete': c.view('n2', 'put-after-delete'),
        'only-tombstone': ('deleted', ts(2).normal),
        'tie-tombstone-remote': ('deleted', ts(6).normal),
        'tie-tombstone-local': ('deleted', ts(6).normal),
    }


# -- levelling ---------------------------------------------------------------

def test_one_repair_makes_diverged_replicas_identical(cluster):
    expected = diverge(cluster)
    job = cluster.job()
    synced = job.repair()
    assert synced
    for obj, want in expected.items():
        for node in NAMES:
            assert cluster.view(node, obj) == want, (obj, node)
    hashes = [cluster.hashes(n) for n in NAMES]
    assert hashes[0] and hashes[0] == hashes[1] == hashes[2]
    assert job.stats.errors == 0
    # Pulled: only-remote, older-here, deleted-later, put-after-delete,
    # only-tombstone, tie-tombstone-remote.
    assert job.stats.objects_pulled == 6
    assert job.stats.suffixes_synced == len(synced)
    # Each peer: its hashes, one check, one pull and one push.
    for peer in ('n2', 'n3'):
        assert cluster.client.kinds(peer) == [
            'hashes', 'check', 'pull', 'push'], peer
    pulled = [r for k, r in cluster.client.replies if k == 'pull']
    assert len(pulled) == 2 and all(r.closed for r in pulled)
    # A second repair finds nothing left to do.
    again = cluster.job()
    assert again.repair() == []
    assert not any(cluster.tmp_files(node) for node in NAMES)


def test_repair_keeps_object_metadata(cluster):
    cluster.put(['n2'], 'pulled', ts(1), color='red',
                content_type='text/plain')
    cluster.put(['n1'], 'pushed', ts(1), color='green',
                content_type='image/png', body=b'x' * 100000)
    cluster.job().repair()
    for node in NAMES:
        for obj, color, ctype in (('pulled', 'red', 'text/plain'),
                                  ('pushed', 'green', 'image/png')):
            metadata = cluster.diskfile(node, obj).read_metadata()
            assert metadata['X-Object-Meta-Color'] == color
            assert metadata['Content-Type'] == ctype
            assert metadata['X-Timestamp'] == ts(1).normal
    assert cluster.view('n3', 'pushed')[2] == b'x' * 100000


@pytest.mark.parametrize('objects', [1, 50])
def test_requests_per_peer_do_not_grow_with_the_objects(cluster, objects):
    for i in range(objects):
        cluster.put(['n1'], 'mine-%d' % i, ts(1))
        cluster.put(['n2'], 'theirs-%d' % i, ts(2))
        cluster.delete(['n3'], 'gone-%d' % i, ts(3))
    job = cluster.job()
    job.repair()
    assert cluster.client.kinds('n2') == [
        'hashes', 'check', 'pull', 'push']
    assert cluster.client.kinds('n3') == [
        'hashes', 'check', 'pull', 'push']
    assert job.stats.objects_pulled == 2 * objects
    # mine-* to both; theirs-* to n3; gone-* to n2.
    assert job.stats.objects_pushed == 4 * objects
    assert job.stats.errors == 0
    assert cluster.hashes('n1') == cluster.hashes('n2') \
        == cluster.hashes('n3')


def test_push_of_many_objects_goes_in_several_streams(cluster,
                                                     monkeypatch):
    monkeypatch.setattr(sync, 'STREAM_OBJECTS', 3)
    for i in range(10):
        cluster.put(['n1'], 'o%d' % i, ts(1))
    cluster.delete(['n1'], 'gone', ts(2))
    job = cluster.job(peers=['n2'])
    job.repair()
    assert cluster.client.kinds('n2') == ['hashes', 'check'] + ['push'] * 4
    assert job.stats.objects_pushed == 11
    assert job.stats.errors == 0
    assert cluster.hashes('n2') == cluster.hashes('n1')


def test_split_pushes_to_two_peers_store_everything(cluster, monkeypatch):
    monkeypatch.setattr(sync, 'STREAM_OBJECTS', 100)
    for i in range(300):
        cluster.put(['n1'], 'o%d' % i, ts(1), body=b'x')
    job = cluster.job()
    job.repair()
    assert job.stats.objects_pushed == 600
    assert cluster.hashes('n2') == cluster.hashes('n1') \
        == cluster.hashes('n3')


def test_push_alone_when_the_peers_lack_only(cluster):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.job().repair()
    for peer in ('n2', 'n3'):
        assert cluster.client.kinds(peer) == ['hashes', 'check', 'push']


def test_no_change_repair_sends_only_the_replicates(cluster):
    cluster.put(NAMES, 'a', ts(1))
    cluster.put(NAMES, 'b', ts(1))
    cluster.delete(NAMES, 'c', ts(1))
    for node in NAMES:
        cluster.hashes(node)  # NOTE: warm the caches, as a pass has.
    before = cluster.snapshot()
    job = cluster.job()
    assert job.repair() == []
    assert cluster.client.requests == [
        ('n2', 'REPLICATE', '/objects/sda/%d' % PART),
        ('n3', 'REPLICATE', '/objects/sda/%d' % PART)]
    assert job.stats == repair.RepairStats(replicate_requests=2,
                                           suffixes_checked=len(
                                               cluster.hashes('n1')))
    assert [p.node['node'] for p in job.level_peers] == ['n2', 'n3']
    assert cluster.snapshot() == before


def test_unreachable_peer_is_skipped_and_counted(cluster):
    cluster.put(['n1'], 'o', ts(1))
    cluster.client.down.add('n3')
    job = cluster.job()
    job.repair()
    assert cluster.view('n2', 'o') == cluster.view('n1', 'o')
    assert cluster.view('n3', 'o') is None
    assert job.stats.errors == 1
    assert [p.node['node'] for p in job.level_peers] == ['n2']


@pytest.mark.parametrize('moment', ['check', 'push'])
def test_peer_failing_midway_is_counted_and_the_other_levelled(cluster,
                                                               moment):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n2'], 'theirs', ts(1))
    errors = []
    cluster.client.fail_once.add(('n3', moment))
    job = cluster.job(on_peer_error=lambda peer, err: errors.append(peer))
    job.repair()
    assert job.stats.errors == 1
    assert errors == ['127.0.0.3:6200/sda']
    for obj in ('mine', 'theirs'):
        assert cluster.view('n1', obj) == cluster.view('n2', obj)
        assert cluster.view('n1', obj)[0] == 'data'
        assert cluster.view('n3', obj) is None
    assert [p.node['node'] for p in job.level_peers] == ['n2']


def test_source_failing_its_pull_is_counted_and_the_rest_goes_on(cluster):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n3'], 'theirs', ts(1))
    cluster.client.fail_once.add(('n3', 'pull'))
    job = cluster.job()
    job.repair()
    assert job.stats.errors == 1
    assert job.stats.objects_pulled == 0
    assert cluster.view('n1', 'theirs') is None
    assert cluster.view('n2', 'theirs') is None
    assert cluster.view('n2', 'mine') == cluster.view('n3', 'mine') \
        == cluster.view('n1', 'mine')


def test_pulled_stream_that_does_not_verify_stores_nothing(cluster):
    cluster.put(['n2'], 'theirs', ts(1), body=b'a' * 1000)
    cluster.put(['n1'], 'mine', ts(1))

    def flip(node, what, body):
        if what != 'pull':
            return body
        at = body.index(b'a' * 1000)
        return body[:at] + b'b' + body[at + 1:]
    cluster.client.alter = flip
    job = cluster.job()
    job.repair()
    assert job.stats.errors == 1
    assert job.stats.objects_pulled == 0
    assert cluster.view('n1', 'theirs') is None
    assert cluster.tmp_files('n1') == []
    # What this node had still went out.
    assert cluster.view('n3', 'mine') == cluster.view('n1', 'mine')


def test_peer_answering_a_bad_check_is_counted_and_skipped(cluster):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n3'], 'theirs', ts(1))

    def bad_timestamps(node, what, body):
        if node != 'n3' or what != 'check':
            return body
        answer = json.loads(body)
        for version in answer['newer'].values():
            version[0] = 'garbage'
        return json.dumps(answer).encode()
    cluster.client.alter = bad_timestamps
    job = cluster.job()
    job.repair()
    assert job.stats.errors == 1
    assert cluster.view('n2', 'mine') == cluster.view('n1', 'mine')


def test_corrupt_local_object_is_quarantined_and_the_rest_pushed(cluster):
    cluster.put(['n1'], 'rotten', ts(1), body=b'abcdef' * 100)
    cluster.put(['n1'], 'fine', ts(1))
    df = cluster.diskfile('n1', 'rotten')
    path = os.path.join(df.hash_dir, ts(1).normal + '.data')
    with open(path, 'r+b') as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b'!')
    job = cluster.job()
    job.repair()
    assert cluster.view('n1', 'rotten') is None
    for node in ('n2', 'n3'):
        assert cluster.view(node, 'fine') == cluster.view('n1', 'fine')
        assert cluster.view(node, 'rotten') is None


# -- newest wins -------------------------------------------------------------

@pytest.mark.parametrize('where', ['peer before its push',
                                   'here before the pull'])
def test_write_landing_during_the_repair_is_not_rolled_back(cluster, where):
    late = ts(10)
    if where == 'peer before its push':
        cluster.put(['n1'], 'o', ts(1))
        target, moment = 'n2', 'push'
    else:
        cluster.put(['n2'], 'o', ts(1))
        target, moment = 'n1', 'pull'

    def write_once(node, method, path):
        if kind(method, path) == moment and node['node'] == 'n2':
            cluster.client.hooks.remove(write_once)
            cluster.put([target], 'o', late, body=b'late')
    cluster.client.hooks.append(write_once)
    job = cluster.job()
    job.repair()
    assert job.stats.errors == 0
    assert cluster.view(target, 'o')[1:3] == (late.normal, b'late')
    # The next pass brings the late write everywhere.
    cluster.later_pass()
    cluster.job().repair()
    for node in NAMES:
        assert cluster.view(node, 'o')[1:3] == (late.normal, b'late')


def test_newer_version_on_a_peer_is_pulled_and_spread(cluster):
    cluster.put(NAMES, 'o', ts(1))
    cluster.put(['n3'], 'o', ts(2), body=b'newest')
    cluster.delete(['n2'], 'd', ts(5))
    cluster.put(['n1', 'n3'], 'd', ts(4))
    job = cluster.job()
    job.repair()
    for node in NAMES:
        assert cluster.view(node, 'o')[1:3] == (ts(2).normal, b'newest')
        assert cluster.view(node, 'd') == ('deleted', ts(5).normal)
    assert job.stats.objects_pulled == 2


# -- push-only ---------------------------------------------------------------

def test_push_only_never_writes_locally(cluster):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n2'], 'theirs', ts(1))
    cluster.put(['n1'], 'stale-here', ts(1))
    cluster.put(['n3'], 'stale-here', ts(2))
    cluster.delete(['n2'], 'deleted-there', ts(1))
    local_before = cluster.object_files('n1')
    job = cluster.job()
    job.repair(pull=False)
    assert cluster.object_files('n1') == local_before
    assert job.stats.objects_pulled == 0
    assert 'pull' not in cluster.client.kinds()
    assert cluster.client.kinds('n2') == ['hashes', 'check', 'push']
    # What this node had newest went out; the rest waits for a real pass.
    for node in ('n2', 'n3'):
        assert cluster.view(node, 'mine') == cluster.view('n1', 'mine')
    assert cluster.view('n3', 'theirs') is None
    assert cluster.view('n3', 'deleted-there') is None
    assert cluster.view('n2', 'stale-here') is None
    assert cluster.view('n1', 'stale-here')[1] == ts(1).normal
    assert cluster.view('n3', 'stale-here')[1] == ts(2).normal


# -- fencing -----------------------------------------------------------------

class FakeGrant(worker.Grant):
    """A grant whose lock is still ours while ``still_owner()`` says so
    (no token on the wire)."""

    def __init__(self, still_owner):
        super().__init__(ITEM, token=7)
        self._still_owner = still_owner

    fence = None

    def check(self):
        if not self._still_owner():
            raise repair.LockLost('lost')

    def admit_local(self):
        self.check()


ITEM = fencing.replicate_item(0, PART)


class Owner:
    """A coordinator that says this process holds every lock."""

    healthy = True

    def is_still_owner(self, item):
        return True


def tokened(token=7):
    return worker.Grant(ITEM, token=token, coordinator=Owner())


def test_lost_lock_stops_before_any_write(cluster):
    diverge(cluster)
    before = cluster.snapshot()
    job = cluster.job(grant=FakeGrant(lambda: False))
    with pytest.raises(repair.LockLost):
        job.repair()
    assert cluster.snapshot() == before
    assert cluster.client.writes() == []
    assert job.stats.objects_pushed == job.stats.objects_pulled == 0


def test_lock_lost_during_a_push_stops_at_once(cluster):
    for i in range(5):
        cluster.put(['n1'], 'o%d' % i, ts(1))
    owner = [True]

    def lose(node, method, path):
        # The lock is lost while the stream to n2 is being sent.
        if node['node'] == 'n2' and kind(method, path) == 'push':
            owner[0] = False
    cluster.client.hooks.append(lose)
    job = cluster.job(grant=FakeGrant(lambda: owner[0]))
    with pytest.raises(repair.LockLost):
        job.repair()
    # The push to n3 never started; a stream is stored whole or not.
    assert cluster.object_files('n3') == {}
    assert [r[0] for r in cluster.client.writes()] == ['n2']
    assert len(cluster.object_files('n2')) in (0, 5)
    assert job.stats.objects_pushed == len(cluster.object_files('n2'))


def test_lock_lost_before_publishing_a_pull_stores_nothing(cluster):
    cluster.put(['n2'], 'theirs', ts(1), body=b'y' * 200000)
    cluster.put(['n2'], 'small', ts(1))
    # The check before the pull passes; the one before publishing not.
    answers = iter([True])
    job = cluster.job(grant=FakeGrant(lambda: next(answers, False)))
    with pytest.raises(repair.LockLost):
        job.repair()
    assert cluster.object_files('n1') == {}
    assert cluster.tmp_files('n1') == []
    assert job.stats.objects_pulled == 0
    assert 'push' not in cluster.client.kinds()


def test_fence_travels_with_every_request(cluster):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n2'], 'theirs', ts(1))
    job = cluster.job(grant=tokened(7))
    job.repair()
    assert job.stats.errors == 0
    for node in ('n2', 'n3'):
        assert cluster.token_stores[node].highest(ITEM) == 7
        assert cluster.view(node, 'mine')[0] == 'data'
    assert cluster.view('n1', 'theirs')[0] == 'data'


def test_fenced_peer_stops_the_job_before_anything_is_written(cluster):
    diverge(cluster)
    before = cluster.snapshot()
    assert cluster.token_stores['n3'].admit(ITEM, 9) == (True, 9)
    job = cluster.job(grant=tokened(7))
    with pytest.raises(repair.LockLost, match='refused token 7'):
        job.repair()
    assert cluster.snapshot() == before
    assert cluster.client.writes() == []


@pytest.mark.parametrize('moment', ['check', 'pull', 'push'])
def test_peer_fenced_midway_stops_the_job(cluster, moment):
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n3'], 'theirs', ts(1))

    def newer_holder(node, method, path):
        # Another holder took the lock and talked to n3 first.
        if node['node'] == 'n3' and kind(method, path) == moment:
            cluster.client.hooks.remove(newer_holder)
            cluster.token_stores['n3'].admit(ITEM, 9)
    cluster.client.hooks.append(newer_holder)
    before = cluster.object_files('n3')
    job = cluster.job(grant=tokened(7))
    with pytest.raises(repair.LockLost, match='refused token 7'):
        job.repair()
    assert cluster.object_files('n3') == before
    assert 'rehash' not in cluster.client.kinds()
    assert job.stats.errors == 0
    # Nothing was sent after the refusal.
    assert cluster.client.requests[-1][0] == 'n3'
    assert kind(*cluster.client.requests[-1][1:]) == moment


# -- handoffs ----------------------------------------------------------------

def handoff(cluster, objects=4):
    """n1 holds a partition whose primaries are n2 and n3."""
    for i in range(objects):
        cluster.put(['n1'], 'h%d' % i, ts(i + 1))
    cluster.delete(['n1'], 'gone', ts(9))
    return ['h%d' % i for i in range(objects)] + ['gone']


def test_handoff_is_deleted_once_every_primary_has_it(cluster):
    objects = handoff(cluster)
    expected = {obj: cluster.view('n1', obj) for obj in objects}
    assert cluster.job().push_handoff(needed=2) is True
    assert not cluster.partition_exists('n1')
    for node in ('n2', 'n3'):
        assert {obj: cluster.view(node, obj) for obj in objects} == expected
    assert 'pull' not in cluster.client.kinds()


def test_handoff_is_kept_while_a_primary_is_missing(cluster):
    objects = handoff(cluster)
    cluster.client.down.add('n3')
    assert cluster.job().push_handoff(needed=2) is False
    assert cluster.partition_exists('n1')
    assert all(cluster.view('n2', o) == cluster.view('n1', o)
               for o in objects)
    # handoff_delete = 1: one confirmed primary is enough.
    assert cluster.job().push_handoff(needed=1) is True
    assert not cluster.partition_exists('n1')


def test_handoff_is_kept_when_a_primary_refuses_an_object(cluster):
    handoff(cluster)

    def refuse(node, what, body):
        if node == 'n3' and what == 'push':
            answer = json.loads(body)
            answer['results']['/AUTH_a/c/h0'] = 422
            return json.dumps(answer).encode()
        return body
    cluster.client.alter = refuse
    job = cluster.job()
    assert job.push_handoff(needed=2) is False
    assert job.stats.errors == 1
    assert cluster.partition_exists('n1')
    assert [p.node['node'] for p in job.level_peers] == ['n2']


class LateWriteGrant(worker.Grant):
    """A static grant; a write lands here right before the handoff's
    local copy would be deleted."""

    def __init__(self, write):
        super().__init__('static')
        self._write = write

    def admit_local(self):
        self._write()


@pytest.mark.parametrize('moment', ['first push', 'last push',
                                    'before the delete'])
def test_handoff_is_kept_when_a_write_lands_during_the_push(cluster,
                                                            moment):
    handoff(cluster)
    late = ts(20)
    pushes = []

    def write_late():
        cluster.put(['n1'], 'late', late)

    def write_once(node, method, path):
        if kind(method, path) != 'push':
            return
        pushes.append(node['node'])
        if moment == 'first push' or len(pushes) == 2:
            cluster.client.hooks.remove(write_once)
            write_late()

    grant = None
    if moment == 'before the delete':
        grant = LateWriteGrant(write_late)
    else:
        cluster.client.hooks.append(write_once)
    assert cluster.job(grant=grant).push_handoff(needed=2) is False
    assert cluster.partition_exists('n1')
    assert cluster.view('n1', 'late')[1] == late.normal
    # The next pass sends the late write home too, then deletes.
    cluster.later_pass()
    assert cluster.job().push_handoff(needed=2) is True
    assert not cluster.partition_exists('n1')
    for node in ('n2', 'n3'):
        assert cluster.view(node, 'late')[1] == late.normal


def test_two_pushes_in_one_second_are_both_accepted(cluster):
    """Their requests sign alike (same path, fence and date); their
    streams differ, so neither is taken for a replay of the other."""
    cluster.signing_time.fixed = float(int(time.time()))
    cluster.put(['n1'], 'first', ts(1))
    assert cluster.job().repair()
    cluster.put(['n1'], 'second', ts(2))
    job = cluster.job()
    job.repair()
    assert job.stats.errors == 0
    assert cluster.view('n2', 'second') == cluster.view('n1', 'second')
    pushes = [(n, p) for n, m, p in cluster.client.requests
              if kind(m, p) == 'push']
    assert pushes == [('n2', '/object-sync/sda/7'),
                      ('n3', '/object-sync/sda/7')] * 2
