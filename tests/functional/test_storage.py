"""Objects on a real local cluster: placement, handoffs, newest wins, and
bad requests that are refused without touching a disk.

One 3-node cluster (``coordsync-local-cluster up``) serves the whole
module; each test uses object names of its own and leaves every node
running.
"""

import collections
import hashlib
import http.client
import json
import os
import socket
import time

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import direct_client as client
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import signing
from coordsync.common import timestamp
from tests.functional import nodes

NODES = 3
PART_POWER = 6
MAX_SKEW = 300  # [server] max_clock_skew default


def run(module, *args, check=True, timeout=60):
    return nodes.run_module(module, *args, check=check, timeout=timeout,
                            text=False)


class LocalCluster:
    """What the tests need to know of the cluster ``up`` created."""

    def __init__(self, workdir):
        self.workdir = workdir
        with open(os.path.join(workdir, 'cluster.json')) as fh:
            self.meta = json.load(fh)
        self.config = self.node_config('n1')
        self.conf = cfg.ConfigOpts()
        coordsync_conf.register_opts(self.conf)
        self.conf(['--config-file', self.config], default_config_files=[])
        self.ring = ring_mod.Ring(
            os.path.join(workdir, 'object.ring.json'),
            self.meta['hash_path_prefix'], self.meta['hash_path_suffix'])
        self.node_client = client.NodeClient(self.conf)
        self.node_names = ['n%d' % i for i in range(1, NODES + 1)]

    def node_config(self, name):
        return os.path.join(self.workdir, name, 'coordsync.conf')

    def cluster_cmd(self, *args):
        return run('coordsync.cmd.local_cluster', '--workdir', self.workdir,
                   *args)

    def client_cmd(self, *args, check=True):
        return run('coordsync.cmd.client', '--config-file', self.config,
                   *args, check=check)

    def address(self, name):
        index = int(name[1:])
        return '127.0.0.%d' % index, self.meta['base_port'] + index - 1

    def obj_hash(self, account, container, obj):
        return hashing.hash_path(account, container, obj,
                                 prefix=self.meta['hash_path_prefix'],
                                 suffix=self.meta['hash_path_suffix'])

    def part_dir(self, node, device, part):
        return os.path.join(self.workdir, node, 'devices', device,
                            'objects', str(part))

    def devices(self):
        return [(n, 'd%d' % d) for n in self.node_names
                for d in range(1, self.meta['devices'] + 1)]

    def files_of(self, account, container, obj):
        """``{(node, device): [file names]}`` of an object, every device."""
        part = self.ring.get_part(account, container, obj)
        obj_hash = self.obj_hash(account, container, obj)
        found = {}
        for node, device in self.devices():
            hash_dir = os.path.join(self.part_dir(node, device, part),
                                    hashing.suffix_of(obj_hash), obj_hash)
            if os.path.isdir(hash_dir) and os.listdir(hash_dir):
                found[(node, device)] = sorted(os.listdir(hash_dir))
        return found

    def snapshot(self):
        """Every file and directory under every devices dir, with type,
        size and mtime."""
        seen = {}
        for node in self.node_names:
            top = os.path.join(self.workdir, node, 'devices')
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    path = os.path.join(root, name)
                    st = os.lstat(path)
                    seen[os.path.relpath(path, self.workdir)] = (
                        name in dirs, st.st_size, st.st_mtime_ns)
        return seen


@pytest.fixture(scope='module')
def local_cluster(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('storage') / 'cluster')
    argv = ['--workdir', workdir]
    try:
        run('coordsync.cmd.local_cluster', *argv, 'up', '--base-port',
            str(local_cluster_cmd.free_base_port(NODES)), '--part-power',
            str(PART_POWER), '--nodes', str(NODES),
            # NOTE: no replicator: these tests check the disks byte for
            # byte, and a background pass would rehash and move files.
            '--replicate-every', '0')
        yield LocalCluster(workdir)
    finally:
        run('coordsync.cmd.local_cluster', *argv, 'down', check=False)


def primaries_of(cluster, account, container, obj):
    part, primaries = cluster.ring.get_nodes(account, container, obj)
    return part, primaries, {(n['node'], n['device']) for n in primaries}


def data_holders(files):
    return {dev for dev, names in files.items()
            if any(n.endswith('.data') for n in names)}


def stored_at(result):
    """The timestamp coordsync-client printed for a put or delete."""
    return result.stdout.decode().split(' at ')[-1].strip()


def test_put_lands_on_primaries_and_get_returns_same_bytes(local_cluster,
                                                           tmp_path):
    cluster = local_cluster
    for name, size in (('small', 1000), ('dir/big é', 5 * 2 ** 20 + 7)):
        body = os.urandom(size)
        src, dst = tmp_path / 'src', tmp_path / 'dst'
        src.write_bytes(body)
        when = stored_at(cluster.client_cmd('put', 'acct', 'cont', name,
                                            str(src)))

        _part, _nodes, primaries = primaries_of(cluster, 'acct', 'cont',
                                                name)
        files = cluster.files_of('acct', 'cont', name)
        assert set(files) == primaries, name
        assert all(names == [when + '.data'] for names in files.values())
        assert len({node for node, _dev in primaries}) == NODES
        cluster.client_cmd('get', 'acct', 'cont', name, '-o', str(dst))
        assert hashlib.md5(dst.read_bytes()).hexdigest() == \
            hashlib.md5(body).hexdigest(), name


def test_put_with_a_primary_killed_goes_to_a_handoff(local_cluster,
                                                     tmp_path):
    cluster = local_cluster
    name = 'while-a-node-is-down'
    _part, _nodes, primaries = primaries_of(cluster, 'acct', 'cont', name)
    victim = sorted(primaries)[0][0]
    body = os.urandom(70000)
    src, dst = tmp_path / 'src', tmp_path / 'dst'
    src.write_bytes(body)
    cluster.cluster_cmd('stop', victim, '--kill')
    try:
        with pytest.raises(OSError):
            socket.create_connection(cluster.address(victim), 1).close()
        cluster.client_cmd('put', 'acct', 'cont', name, str(src))
        holders = data_holders(cluster.files_of('acct', 'cont', name))
        live_primaries = {d for d in primaries if d[0] != victim}
        handoffs = holders - primaries
        assert live_primaries <= holders
        assert not any(node == victim for node, _dev in holders)
        assert len(handoffs) == 1, holders
        cluster.client_cmd('get', 'acct', 'cont', name, '-o', str(dst))
        assert dst.read_bytes() == body
    finally:
        cluster.cluster_cmd('start', victim)
    assert RawNode(cluster, victim).send('GET', '/healthcheck',
                                         signed=False)[0] == 200


def test_newest_wins_and_delete_hides_the_object(local_cluster, tmp_path):
    cluster = local_cluster
    name = 'versioned'
    for version in (b'version one', b'version two, longer'):
        (tmp_path / 'src').write_bytes(version)
        cluster.client_cmd('put', 'acct', 'cont', name,
                           str(tmp_path / 'src'))
    got = cluster.client_cmd('get', 'acct', 'cont', name)
    assert got.stdout == b'version two, longer'

    deleted = stored_at(cluster.client_cmd('delete', 'acct', 'cont', name))
    gone = cluster.client_cmd('get', 'acct', 'cont', name, check=False)
    assert gone.returncode == 1, gone.stderr
    assert b'not found' in gone.stderr
    assert cluster.client_cmd('head', 'acct', 'cont', name,
                              check=False).returncode == 1
    part, replicas, primaries = primaries_of(cluster, 'acct', 'cont', name)
    files = cluster.files_of('acct', 'cont', name)
    assert {d for d, names in files.items()
            if names == [deleted + '.ts']} == primaries
    obj_hash = cluster.obj_hash('acct', 'cont', name)
    for node in replicas:
        listing = cluster.node_client.list_suffix(
            node, part, hashing.suffix_of(obj_hash))
        assert listing[obj_hash] == {'timestamp': deleted, 'deleted': True}


def _unused_name(cluster, prefix):
    """An object name whose partition holds nothing on any device."""
    for i in range(1000):
        name = '%s-%d' % (prefix, i)
        part = cluster.ring.get_part('acct', 'cont', name)
        if not any(os.path.exists(cluster.part_dir(n, d, part))
                   for n, d in cluster.devices()):
            return name
    raise AssertionError('every partition is in use')


def test_replicate_hashes_agree_and_listing_shows_the_object(local_cluster,
                                                             tmp_path):
    cluster = local_cluster
    name = _unused_name(cluster, 'replicated')
    (tmp_path / 'src').write_bytes(b'replicate me')
    when = stored_at(cluster.client_cmd('put', 'acct', 'cont', name,
                                        str(tmp_path / 'src')))
    part, primaries, _ = primaries_of(cluster, 'acct', 'cont', name)
    obj_hash = cluster.obj_hash('acct', 'cont', name)
    suffix = hashing.suffix_of(obj_hash)
    expected = hashlib.md5(('%s/%s.data\n' % (obj_hash, when))
                           .encode()).hexdigest()

    hashes = [cluster.node_client.replicate(n, part) for n in primaries]
    assert hashes == [{suffix: expected}] * len(primaries)
    again = [cluster.node_client.replicate(n, part, [suffix])
             for n in primaries]
    assert again == hashes
    for node in primaries:
        listing = cluster.node_client.list_suffix(node, part, suffix)
        assert listing == {obj_hash: {'timestamp': when, 'deleted': False}}


# -- bad requests ---------------------------------------------------------

class RawNode:
    """Hand-made requests to one node: raw paths, chosen signatures."""

    def __init__(self, cluster, name):
        self.host, self.port = cluster.address(name)
        self.secret = cluster.meta['cluster_secret']

    def sign(self, method, path, x_timestamp='', query='', now=None,
             secret=None):
        return signing.sign(secret or self.secret, method, path, query,
                            x_timestamp, now=now)

    def send(self, method, path, headers=None, body=None, signed=True):
        """``(status, headers, body)``; ``path`` is sent byte for byte and
        signed as is unless ``signed`` is False (or headers carry one)."""
        headers = dict(headers or {})
        if signed and signing.SIGNATURE_HEADER not in headers:
            raw_path, _, query = path.partition('?')
            headers.update(self.sign(method, raw_path,
                                     headers.get('X-Timestamp', ''), query))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=False,
                            skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


# One request of a table: sent as is, signed unless ``signed`` is False.
Probe = collections.namedtuple(
    'Probe', 'label method path headers body expected signed',
    defaults=(True,))


def _bad_requests(node, part, ts, older):
    """The table of bad requests (:class:`Probe`), all sent to ``node``.

    ``ts`` is the timestamp of the object stored at ``table-object`` and
    ``older`` one second before it.
    """
    obj = '/d1/%d/acct/cont/table-object' % part
    base = '/d1/%d' % part
    new_ts = timestamp.Timestamp.now().normal
    put = {'X-Timestamp': new_ts, 'Content-Length': '4'}
    delete = {'X-Timestamp': new_ts}
    now = time.time()

    def put_with(**headers):
        return dict(put, **headers)

    def signed(method, path, x_timestamp=new_ts, **kw):
        return dict(node.sign(method, path, x_timestamp, **kw),
                    **{'X-Timestamp': x_timestamp})

    def bad_put(label, path, expected, headers=None):
        return Probe(label, 'PUT', path, headers or put, b'body', expected)

    def bad_get(label, path, expected, method='GET'):
        return Probe(label, method, path, {}, None, expected)

    return [
        # Paths that would leave the tree or name nothing.
        bad_put('.. container', base + '/acct/../o', 400),
        bad_put('%2e%2e container', base + '/acct/%2e%2e/o', 400),
        bad_put('.. in object', base + '/acct/cont/a/../b', 400),
        bad_get('. in object', base + '/acct/cont/./b', 400),
        Probe('%2E%2E object', 'DELETE', base + '/acct/cont/%2E%2E', delete,
            None, 400),
        bad_put('empty container', base + '/acct//o', 400),
        bad_put('empty object', base + '/acct/cont/', 400),
        bad_put('empty object segment', base + '/acct/cont/a//b', 400),
        bad_get('empty account', base + '//cont/o', 400),
        bad_get('too few segments', base + '/acct/cont', 400),
        bad_put('object name over 1024 bytes',
                base + '/acct/cont/' + 'x' * 1025, 400),
        bad_get('container name over 256 bytes',
                base + '/acct/%s/o' % ('c' * 257), 400),
        bad_put('control character', obj + '%01', 400),
        bad_get('DEL character', obj + '%7f', 400),
        bad_put('not UTF-8', obj + '%ff', 400),
        # Devices and partitions.
        bad_put('partition abc', '/d1/abc/acct/cont/o', 400),
        bad_put('partition -1', '/d1/-1/acct/cont/o', 400),
        bad_get('partition +1', '/d1/+1/acct/cont/o', 400),
        bad_get('partition too long', '/d1/%s/acct/cont/o' % ('1' * 11),
                400),
        bad_put('device ..', '/../%d/acct/cont/o' % part, 400),
        bad_get('device %2e%2e', '/%%2e%%2e/%d/acct/cont/o' % part, 400),
        bad_get('NUL in device', '/d1%%00/%d/acct/cont/o' % part, 400),
        bad_put('unknown device PUT', '/nosuch/%d/acct/cont/o' % part, 507),
        bad_get('unknown device HEAD', '/nosuch/%d/acct/cont/o' % part,
                507, method='HEAD'),
        bad_get('unknown device REPLICATE', '/nosuch/%d' % part, 507,
                method='REPLICATE'),
        bad_get('unknown device listing', '/nosuch/%d/abc' % part, 507),
        # Headers.
        bad_put('missing X-Timestamp PUT', obj, 400,
                {'Content-Length': '4'}),
        Probe('missing X-Timestamp DELETE', 'DELETE', obj, {}, None, 400),
        bad_put('X-Timestamp nan', obj, 400, put_with(**{
            'X-Timestamp': 'nan'})),
        bad_put('X-Timestamp -1', obj, 400, put_with(**{
            'X-Timestamp': '-1'})),
        Probe('X-Timestamp abc', 'DELETE', obj, {'X-Timestamp': 'abc'}, None,
            400),
        bad_put('X-Timestamp too large', obj, 400, put_with(**{
            'X-Timestamp': '1' * 12})),
        bad_put('Content-Length abc', obj, 400, put_with(**{
            'Content-Length': 'abc'})),
        Probe('Content-Length missing', 'PUT', obj, delete, None, 411),
        bad_put('ETag not hex', obj, 400, put_with(ETag='z' * 32)),
        bad_put('ETag too short', obj, 400, put_with(
            ETag=hashlib.md5(b'body').hexdigest()[:31])),
        # Signatures.
        Probe('unsigned PUT', 'PUT', obj, put, b'body', 401, signed=False),
        Probe('unsigned GET', 'GET', obj, {}, None, 401, signed=False),
        Probe('unsigned REPLICATE', 'REPLICATE', base, {}, None, 401,
            signed=False),
        bad_put('signed for another path', obj, 401, dict(
            put, **signed('PUT', obj + '-other'))),
        Probe('signed for another method', 'DELETE', obj,
            signed('GET', obj), None, 401),
        Probe('signed for another X-Timestamp', 'DELETE', obj,
            dict(signed('DELETE', obj, older), **{'X-Timestamp': new_ts}),
            None, 401),
        Probe('signed for another query', 'GET', obj + '?x=1',
            signed('GET', obj, ''), None, 401),
        Probe('signed with another secret', 'DELETE', obj,
            signed('DELETE', obj, secret='not-the-secret'), None, 401),
        Probe('date beyond max skew', 'DELETE', obj,
            signed('DELETE', obj, now=now - MAX_SKEW - 60), None, 401),
        Probe('date in the future', 'DELETE', obj,
            signed('DELETE', obj, now=now + MAX_SKEW + 60), None, 401),
        Probe('date not a number', 'DELETE', obj, dict(
            signed('DELETE', obj), **{signing.DATE_HEADER: 'yesterday'}),
            None, 401),
        # Methods and replication paths.
        bad_get('REPLICATE suffix zzz', base + '/zzz', 400,
                method='REPLICATE'),
        bad_get('REPLICATE suffix abcd', base + '/abc-abcd', 400,
                method='REPLICATE'),
        bad_get('REPLICATE too deep', base + '/abc/def', 400,
                method='REPLICATE'),
        bad_get('listing suffix zzz', base + '/zzz', 400),
        bad_get('unknown method POST', obj, 405, method='POST'),
        bad_get('unknown method FOO', obj, 405, method='FOO'),
        bad_put('healthcheck PUT', '/healthcheck', 405),
        # Writes not newer than what is stored.
        bad_put('PUT older than stored', obj, 409, put_with(**{
            'X-Timestamp': older})),
        bad_put('PUT as old as stored', obj, 409, put_with(**{
            'X-Timestamp': ts})),
        Probe('DELETE older than stored', 'DELETE', obj,
            {'X-Timestamp': older}, None, 409),
    ]


def _reads(cluster, part):
    """Good read-only requests: they must change nothing on disk either."""
    obj_hash = cluster.obj_hash('acct', 'cont', 'table-object')
    base = '/d1/%d' % part
    return [
        Probe('GET stored', 'GET', base + '/acct/cont/table-object', {}, None,
            200),
        Probe('HEAD stored', 'HEAD', base + '/acct/cont/table-object', {},
            None, 200),
        Probe('GET missing', 'GET', base + '/acct/cont/no-such-object', {},
            None, 404),
        Probe('listing', 'GET', '%s/%s' % (base, hashing.suffix_of(obj_hash)),
            {}, None, 200),
        Probe('healthcheck', 'GET', '/healthcheck', {}, None, 200,
            signed=False),
    ]


def test_bad_requests_are_refused_and_change_nothing(local_cluster):
    cluster = local_cluster
    node = RawNode(cluster, 'n1')
    part = cluster.ring.get_part('acct', 'cont', 'table-object')
    obj = '/d1/%d/acct/cont/table-object' % part
    ts = timestamp.Timestamp.now().normal
    status, _, reply = node.send('PUT', obj, {
        'X-Timestamp': ts, 'Content-Length': '6'}, b'stored')
    assert status == 201, reply
    older = timestamp.Timestamp(float(timestamp.Timestamp(ts)) - 1).normal
    table = _bad_requests(node, part, ts, older)
    assert len(table) >= 20

    before = cluster.snapshot()
    wrong = []
    answers = {}
    for probe in table + _reads(cluster, part):
        status, headers_back, reply = node.send(
            probe.method, probe.path, probe.headers, probe.body,
            probe.signed)
        answers[probe.label] = (status, headers_back, reply)
        if status != probe.expected:
            wrong.append('%s: %s %s -> %d %r (expected %d)' % (
                probe.label, probe.method, probe.path[:80], status,
                reply[:100], probe.expected))
    after = cluster.snapshot()

    assert not wrong, '\n'.join(wrong)
    changed = {path: (before.get(path), after.get(path))
               for path in before.keys() | after.keys()
               if before.get(path) != after.get(path)}
    assert not changed
    for label in ('PUT older than stored', 'DELETE older than stored'):
        assert answers[label][1]['X-Backend-Timestamp'] == ts
    status, headers_back, reply = answers['GET stored']
    assert (reply, headers_back['X-Timestamp']) == (b'stored', ts)
    obj_hash = cluster.obj_hash('acct', 'cont', 'table-object')
    assert json.loads(answers['listing'][2])[obj_hash] == {
        'timestamp': ts, 'deleted': False}
