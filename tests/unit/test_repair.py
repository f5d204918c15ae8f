"""PartitionRepair against three real object stores served in-process.

Each "node" is a :class:`~coordsync.obj.server.NodeServer` over its own
:class:`~coordsync.obj.diskfile.DiskFileManager` in a temporary directory.
The repair talks to them through :class:`InProcessClient`, a real
:class:`~coordsync.common.direct_client.NodeClient` (so REPLICATE,
listings and the signing are the product's code) whose transport
calls the WSGI app instead of opening a socket, logs every request, can
make a node unreachable and can run a hook before a request (to land a
write at a chosen moment).
"""

import io
import os
import time
import urllib.parse

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import direct_client as client
from coordsync.common import worker
from coordsync.common.timestamp import Timestamp
from coordsync.obj import diskfile
from coordsync.obj import repair
from coordsync.obj import server

SECRET = 'repair-secret'
PART = 7
DEVICE = 'sda'
NAMES = ('n1', 'n2', 'n3')
NOW = float(int(time.time()))


def ts(offset):
    return Timestamp(NOW + offset)


class FakeResponse:
    """What :class:`~coordsync.common.direct_client.Response` offers,
    from bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self._body = body

    def read(self):
        return self._body

    def iter_body(self, chunk_size=client.CHUNK_SIZE):
        for start in range(0, len(self._body), chunk_size):
            yield self._body[start:start + chunk_size]

    def json(self):
        import json
        return json.loads(self._body.decode('utf-8'))

    def close(self):
        pass


class InProcessClient(client.NodeClient):
    """A NodeClient whose transport is a WSGI call to in-process nodes.

    Everything above the transport (paths, headers, signatures, fences)
    is the product's. ``requests`` logs ``(node, method, path)`` with the
    path's route prefix (``/objects``, ``/object-suffixes``,
    ``/object-hashes``) left out, as these tests compare them; hooks see
    the same.
    """

    def __init__(self, conf, apps):
        super().__init__(conf)
        self.apps = apps
        self.requests = []
        self.down = set()
        self.hooks = []

    def _send(self, node, method, path, query, headers, body):
        short = '/' + path.split('/', 2)[2]
        self.requests.append((node['node'], method, short))
        for hook in list(self.hooks):
            hook(node, method, short)
        if node['node'] in self.down:
            raise client.NodeError('%s is down' % node['node'])
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
        return FakeResponse(int(status.split()[0]), reply_headers, data)

    def writes(self):
        """Requests that change a remote store, or pull from one."""
        return [r for r in self.requests
                if r[1] in ('PUT', 'DELETE')
                or (r[1] == 'GET' and r[2].count('/') == 4)]


class Cluster:
    """Three nodes holding partition PART on device DEVICE."""

    def __init__(self, tmp_path):
        conf = cfg.ConfigOpts()
        coordsync_conf.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('cluster_secret', SECRET)
        self.managers, self.nodes, apps = {}, {}, {}
        for index, name in enumerate(NAMES):
            devices = tmp_path / name
            os.makedirs(devices / DEVICE)
            manager = diskfile.DiskFileManager(
                str(devices), hash_prefix='pre', hash_suffix='suf')
            self.managers[name] = manager
            apps[name] = server.NodeServer(conf, manager)
            self.nodes[name] = {'id': index, 'node': name,
                                'ip': '127.0.0.%d' % (index + 1),
                                'port': 6200, 'device': DEVICE}
        self.client = InProcessClient(conf, apps)

    def job(self, local='n1', peers=None, **kwargs):
        peers = [n for n in NAMES if n != local] if peers is None else peers
        return repair.PartitionRepair(
            self.managers[local], self.client, DEVICE, PART,
            [self.nodes[n] for n in peers], **kwargs)

    def diskfile(self, node, obj):
        return self.managers[node].diskfile(DEVICE, PART, 'AUTH_a', 'c', obj)

    def put(self, nodes, obj, when, body=None):
        for node in nodes:
            self.diskfile(node, obj).write(
                [body or b'%s at %s' % (obj.encode(), when.normal.encode())],
                {'X-Timestamp': when.normal,
                 'X-Object-Meta-Color': 'blue'})

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


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


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
    assert job.stats.objects_pulled >= 3   # only-remote, older, put-after..
    # A second repair finds nothing left to do.
    again = cluster.job()
    assert again.repair() == []


def test_repair_keeps_object_metadata(cluster):
    cluster.put(['n2'], 'o', ts(1))
    cluster.job().repair()
    for node in NAMES:
        assert cluster.view(node, 'o')[3] == 'blue'


def test_no_change_repair_costs_r_minus_1_replicate_requests(cluster):
    cluster.put(NAMES, 'a', ts(1))
    cluster.put(NAMES, 'b', ts(1))
    cluster.delete(NAMES, 'c', ts(1))
    for node in NAMES:
        cluster.hashes(node)  # NOTE: warm the caches, as a pass has.
    before = cluster.snapshot()
    job = cluster.job()
    assert job.repair() == []
    assert cluster.client.requests == [
        ('n2', 'REPLICATE', '/sda/%d' % PART),
        ('n3', 'REPLICATE', '/sda/%d' % PART)]
    assert job.stats == repair.RepairStats(replicate_requests=2,
                                           suffixes_checked=len(
                                               cluster.hashes('n1')))
    assert cluster.snapshot() == before


def test_unreachable_peer_is_skipped_and_counted(cluster):
    cluster.put(['n1'], 'o', ts(1))
    cluster.client.down.add('n3')
    job = cluster.job()
    job.repair()
    assert cluster.view('n2', 'o') == cluster.view('n1', 'o')
    assert cluster.view('n3', 'o') is None
    assert job.stats.errors == 1


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
    assert not [r for r in cluster.client.requests
                if r[1] == 'GET' and r[2].count('/') == 4]
    # What this node had newest went out; the rest waits for a real pass.
    for node in ('n2', 'n3'):
        assert cluster.view(node, 'mine') == cluster.view('n1', 'mine')
    assert cluster.view('n3', 'theirs') is None
    assert cluster.view('n2', 'stale-here') is None
    assert cluster.view('n1', 'stale-here')[1] == ts(1).normal


# -- fencing -----------------------------------------------------------------

class FakeGrant(worker.Grant):
    """A grant whose lock is still ours while ``still_owner()`` says so
    (no token on the wire: these node servers keep no token store)."""

    def __init__(self, still_owner):
        super().__init__('coordsync/replicate/0/%d' % PART, token=7)
        self._still_owner = still_owner

    fence = None

    def check(self):
        if not self._still_owner():
            raise repair.LockLost('lost')

    def admit_local(self):
        self.check()


def test_lost_lock_stops_before_any_write(cluster):
    diverge(cluster)
    before = cluster.snapshot()
    job = cluster.job(grant=FakeGrant(lambda: False))
    with pytest.raises(repair.LockLost):
        job.repair()
    assert cluster.snapshot() == before
    assert cluster.client.writes() == []
    assert job.stats.objects_pushed == job.stats.objects_pulled == 0


def test_lock_lost_midway_stops_at_once(cluster):
    for i in range(5):
        cluster.put(['n1'], 'o%d' % i, ts(1))
    # One check before the object, one before each of its two targets.
    answers = iter([True, True, True])
    job = cluster.job(grant=FakeGrant(lambda: next(answers, False)))
    with pytest.raises(repair.LockLost):
        job.repair()
    # One object went out (to both peers) before the loss, none after.
    assert job.stats.objects_pushed == 2
    assert len(cluster.object_files('n2')) == 1
    assert len(cluster.object_files('n3')) == 1


def test_lock_lost_between_two_targets_stops_the_second(cluster):
    cluster.put(['n1'], 'o0', ts(1))
    answers = iter([True, True])
    job = cluster.job(grant=FakeGrant(lambda: next(answers, False)))
    with pytest.raises(repair.LockLost):
        job.repair()
    assert job.stats.objects_pushed == 1
    assert len(cluster.object_files('n2')) + len(
        cluster.object_files('n3')) == 1


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


@pytest.mark.parametrize('moment', ['push', 'rehash'])
def test_handoff_is_kept_when_a_write_lands_during_the_push(cluster,
                                                            moment):
    handoff(cluster)
    late = ts(20)

    def write_once(node, method, path):
        during_push = moment == 'push' and method == 'PUT'
        # NOTE: the last requests before the delete are the peers'
        # REPLICATE with the suffixes to rehash.
        rehash = (moment == 'rehash' and method == 'REPLICATE'
                  and path.count('/') == 3)
        if during_push or rehash:
            cluster.client.hooks.remove(write_once)
            cluster.put(['n1'], 'late', late)

    cluster.client.hooks.append(write_once)
    assert cluster.job().push_handoff(needed=2) is False
    assert cluster.partition_exists('n1')
    assert cluster.view('n1', 'late')[1] == late.normal
    # The next pass sends the late write home too, then deletes.
    assert cluster.job().push_handoff(needed=2) is True
    assert not cluster.partition_exists('n1')
    for node in ('n2', 'n3'):
        assert cluster.view(node, 'late')[1] == late.normal
