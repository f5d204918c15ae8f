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

from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import direct_client as client
from coordsync.common import fencing
from coordsync.common import hashing
from coordsync.common import signing
from coordsync.common import timestamp
from tests.functional import harness
from tests.functional import nodes

NODES = 3
PART_POWER = 6
MAX_SKEW = 300  # [server] max_clock_skew default


@pytest.fixture(scope='module')
def local_cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('storage') / 'cluster'
    with harness.local_cluster(workdir, nodes_count=NODES,
                               part_power=PART_POWER) as cluster:
        yield cluster


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
        files = cluster.files_of('cont', name)
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
    with cluster.node_down(victim, kill=True):
        with pytest.raises(OSError):
            socket.create_connection(cluster.address(victim), 1).close()
        cluster.client_cmd('put', 'acct', 'cont', name, str(src))
        holders = data_holders(cluster.files_of('cont', name))
        live_primaries = {d for d in primaries if d[0] != victim}
        handoffs = holders - primaries
        assert live_primaries <= holders
        assert not any(node == victim for node, _dev in holders)
        assert len(handoffs) == 1, holders
        cluster.client_cmd('get', 'acct', 'cont', name, '-o', str(dst))
        assert dst.read_bytes() == body
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
    files = cluster.files_of('cont', name)
    assert {d for d, names in files.items()
            if names == [deleted + '.ts']} == primaries
    obj_hash = cluster.obj_hash('cont', name)
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
    obj_hash = cluster.obj_hash('cont', name)
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

    def sign(self, method, path, headers=None, query='', now=None,
             secret=None):
        """``headers`` with a signature over them added."""
        headers = dict(headers or {})
        headers.update(signing.sign(secret or self.secret, method, path,
                                    query, headers, now=now))
        return headers

    def send(self, method, path, headers=None, body=None, signed=True):
        """``(status, headers, body)``; ``path`` is sent byte for byte and
        signed as is (with the headers) unless ``signed`` is False (or
        headers carry a signature). Only the headers given are sent."""
        headers = dict(headers or {})
        if signed and signing.SIGNATURE_HEADER not in headers:
            raw_path, _, query = path.partition('?')
            headers = self.sign(method, raw_path, headers, query)
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


def replicate_item(part):
    """The lock (and fence) name of an object partition."""
    return 'coordsync/replicate/0/%d' % part


# One request of a table: sent as is, signed unless ``signed`` is False.
Probe = collections.namedtuple(
    'Probe', 'label method path headers body expected signed',
    defaults=(True,))


def _bad_requests(node, part, ts, older):
    """The table of bad requests (:class:`Probe`), all sent to ``node``.

    ``ts`` is the timestamp of the object stored at ``table-object`` and
    ``older`` one second before it.
    """
    obj = '/objects/d1/%d/acct/cont/table-object' % part
    base = '/objects/d1/%d' % part
    listing = '/object-suffixes/d1/%d' % part
    new_ts = timestamp.Timestamp.now().normal
    put = {'X-Timestamp': new_ts, 'Content-Length': '4'}
    delete = {'X-Timestamp': new_ts}
    now = time.time()

    def put_with(**headers):
        return dict(put, **headers)

    def signed(method, path, headers=None, **kw):
        return node.sign(method, path, headers or delete, **kw)

    def fenced(item=None, token='5', **headers):
        item = item or replicate_item(part)
        return dict(put, **{fencing.ITEM_HEADER: item,
                            fencing.TOKEN_HEADER: token}, **headers)

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
        bad_put('partition abc', '/objects/d1/abc/acct/cont/o', 400),
        bad_put('partition -1', '/objects/d1/-1/acct/cont/o', 400),
        bad_get('partition +1', '/objects/d1/+1/acct/cont/o', 400),
        bad_get('partition too long',
                '/objects/d1/%s/acct/cont/o' % ('1' * 11), 400),
        bad_put('device ..', '/objects/../%d/acct/cont/o' % part, 400),
        bad_get('device %2e%2e', '/objects/%%2e%%2e/%d/acct/cont/o' % part,
                400),
        bad_get('NUL in device', '/objects/d1%%00/%d/acct/cont/o' % part,
                400),
        bad_put('unknown device PUT',
                '/objects/nosuch/%d/acct/cont/o' % part, 507),
        bad_get('unknown device HEAD',
                '/objects/nosuch/%d/acct/cont/o' % part, 507,
                method='HEAD'),
        bad_get('unknown device REPLICATE', '/objects/nosuch/%d' % part,
                507, method='REPLICATE'),
        bad_get('unknown device listing',
                '/object-suffixes/nosuch/%d/abc' % part, 507),
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
        bad_put('signed for another path', obj, 401,
                signed('PUT', obj + '-other', put)),
        Probe('signed for another method', 'DELETE', obj,
            signed('GET', obj), None, 401),
        Probe('signed for another X-Timestamp', 'DELETE', obj,
            dict(signed('DELETE', obj, {'X-Timestamp': older}),
                 **{'X-Timestamp': new_ts}), None, 401),
        Probe('signed for another query', 'GET', obj + '?x=1',
            signed('GET', obj, {}), None, 401),
        bad_put('signed for another Content-Length', obj, 401, dict(
            signed('PUT', obj, put_with(**{'Content-Length': '5'})),
            **{'Content-Length': '4'})),
        bad_put('signed for another ETag', obj, 401, dict(
            signed('PUT', obj, put_with(ETag='0' * 32)),
            ETag=hashlib.md5(b'body').hexdigest())),
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
        bad_get('listing suffix zzz', listing + '/zzz', 400),
        bad_get('unknown method POST', obj, 405, method='POST'),
        bad_get('unknown method FOO', obj, 405, method='FOO'),
        bad_put('healthcheck PUT', '/healthcheck', 405),
        bad_get('unknown prefix', '/d1/%d/acct/cont/o' % part, 404),
        bad_get('REPLICATE on listing route', listing + '/abc', 405,
                method='REPLICATE'),
        # Fencing headers (the item is this node's partition).
        bad_put('token without item', obj, 400, put_with(**{
            fencing.TOKEN_HEADER: '5'})),
        bad_put('item without token', obj, 400, put_with(**{
            fencing.ITEM_HEADER: replicate_item(part)})),
        bad_put('token 0', obj, 400, fenced(token='0')),
        bad_put('token not decimal', obj, 400, fenced(token='0x10')),
        bad_put('token above 2**63-1', obj, 400, fenced(token=str(2 ** 63))),
        bad_put('token of 5000 digits', obj, 400, fenced(token='9' * 5000)),
        bad_put('item not coordsync/', obj, 400, fenced(
            item='other/replicate/0/%d' % part)),
        bad_put('item with ..', obj, 400, fenced(
            item='coordsync/replicate/../%d' % part)),
        bad_put('item with a control character', obj, 400, fenced(
            item='coordsync/replicate/0/%d%%01' % part)),
        bad_put('item over 512 bytes', obj, 400, fenced(
            item='coordsync/sync/' + 'a' * 600)),
        bad_put('item of 5000 bytes', obj, 400, fenced(
            item='coordsync/sync/' + 'a' * 5000)),
        bad_put('item of another partition', obj, 400, fenced(
            item=replicate_item(part + 1))),
        Probe('fence not signed', 'PUT', obj, dict(
            signed('PUT', obj, put), **fencing.Fence(
                replicate_item(part), 5).headers()), b'body', 401),
        Probe('fence, request unsigned', 'PUT', obj, fenced(), b'body', 401,
            signed=False),
        Probe('fence unsigned, REPLICATE', 'REPLICATE', base, {
            fencing.ITEM_HEADER: replicate_item(part),
            fencing.TOKEN_HEADER: '5'}, None, 401, signed=False),
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
    obj_hash = cluster.obj_hash('cont', 'table-object')
    base = '/objects/d1/%d' % part
    pull = json.dumps({'hashes': [obj_hash]}).encode()
    return [
        Probe('GET stored', 'GET', base + '/acct/cont/table-object', {}, None,
            200),
        Probe('HEAD stored', 'HEAD', base + '/acct/cont/table-object', {},
            None, 200),
        Probe('GET missing', 'GET', base + '/acct/cont/no-such-object', {},
            None, 404),
        Probe('listing', 'GET', client.suffix_path(
            'd1', part, hashing.suffix_of(obj_hash)), {}, None, 200),
        Probe('sync pull', 'POST', client.sync_path('d1', part, 'pull'),
            {'ETag': hashlib.md5(pull).hexdigest(),
             'Content-Length': str(len(pull))}, pull, 200),
        Probe('healthcheck', 'GET', '/healthcheck', {}, None, 200,
            signed=False),
    ]


def test_bad_requests_are_refused_and_change_nothing(local_cluster):
    cluster = local_cluster
    node = RawNode(cluster, 'n1')
    part = cluster.ring.get_part('acct', 'cont', 'table-object')
    obj = '/objects/d1/%d/acct/cont/table-object' % part
    ts = timestamp.Timestamp.now().normal
    status, _, reply = node.send('PUT', obj, {
        'X-Timestamp': ts, 'Content-Length': '6'}, b'stored')
    assert status == 201, reply
    older = timestamp.Timestamp(float(timestamp.Timestamp(ts)) - 1).normal
    table = _bad_requests(node, part, ts, older)
    assert len(table) >= 56 + 15

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
    obj_hash = cluster.obj_hash('cont', 'table-object')
    assert json.loads(answers['listing'][2])[obj_hash] == {
        'timestamp': ts, 'deleted': False}


@pytest.mark.parametrize('date', ['9' * 40, '1e400', '-1', '9' * 5000,
                                  '\u0661\u0667\u0660\u0660'.encode()])
def test_absurd_date_gets_one_line_401_without_traceback(local_cluster,
                                                         date):
    node = RawNode(local_cluster, 'n1')
    path = '/objects/d1/1/acct/cont/absurd-date'
    headers = node.sign('DELETE', path, {
        'X-Timestamp': timestamp.Timestamp.now().normal})
    headers[signing.DATE_HEADER] = date
    before = local_cluster.snapshot()
    status, _, reply = node.send('DELETE', path, headers)
    assert (status, reply) == (401, b'bad X-Coordsync-Date\n')
    assert local_cluster.snapshot() == before


# -- fencing, connections -------------------------------------------------

def _device_of(cluster, node_name, part):
    return next(d for d in cluster.ring.get_part_nodes(part)
                if d['node'] == node_name)


def test_restarted_node_keeps_refusing_older_tokens(local_cluster):
    cluster = local_cluster
    part = next(p for p in range(2 ** PART_POWER)
                if any(d['node'] == 'n2'
                       for d in cluster.ring.get_part_nodes(p)))
    node = _device_of(cluster, 'n2', part)
    item = replicate_item(part)
    replicate = cluster.node_client.replicate
    assert isinstance(replicate(node, part, fence=fencing.Fence(item, 9)),
                      dict)
    with pytest.raises(client.NodeError) as err:
        replicate(node, part, fence=fencing.Fence(item, 5))
    assert err.value.fenced

    cluster.stop('n2')
    cluster.start('n2')
    with pytest.raises(client.NodeError) as err:
        replicate(node, part, fence=fencing.Fence(item, 8))
    assert err.value.fenced
    assert str(err.value).endswith(
        '409 fenced: token 8 for %s is older than 9' % item)
    assert isinstance(replicate(node, part, fence=fencing.Fence(item, 9)),
                      dict)
    # A fenced write changes nothing.
    path = client.object_path(node['device'], part, 'acct', 'cont', 'fenced')
    status, headers, _ = cluster.node_client.call(
        node, 'PUT', path, body=b'late', fence=fencing.Fence(item, 8),
        headers={'X-Timestamp': timestamp.Timestamp.now().normal})
    assert (status, headers['x-coordsync-fenced']) == (409, 'true')
    assert cluster.files_of('cont', 'fenced') == {}


def test_node_client_streams_and_keeps_connections_alive(local_cluster):
    cluster = local_cluster
    nodes_client = client.NodeClient(cluster.conf, member_id='test@here.1')
    name = 'streamed'
    part, replicas = cluster.ring.get_nodes('acct', 'cont', name)
    node = replicas[0]
    body = os.urandom(3 * 2 ** 20 + 5)
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    status, _, reply = nodes_client.call(
        node, 'PUT', client.object_path(node['device'], part, 'acct',
                                        'cont', name),
        headers={'X-Timestamp': timestamp.Timestamp.now().normal},
        body=chunks)
    assert status == 201, reply
    obj_hash = cluster.obj_hash('cont', name)
    for _ in range(3):
        resp = nodes_client.request(node, 'GET', client.object_path(
            node['device'], part, 'acct', 'cont', name))
        assert resp.status == 200
        md5 = hashlib.md5()
        for chunk in resp.iter_body(10000):
            md5.update(chunk)
        assert md5.hexdigest() == hashlib.md5(body).hexdigest()
        assert nodes_client.list_suffix(node, part, obj_hash[-3:])
    # NOTE: one after another, every request went over one connection.
    pool = nodes_client._pools.connection_from_host(node['ip'],
                                                    node['port'])
    assert (pool.num_connections, pool.num_requests) == (1, 7)


@pytest.fixture
def small_node(tmp_path):
    """A node server alone, with [server] max_connections = 8."""
    ip, port = '127.0.0.1', local_cluster_cmd.free_base_port(1)
    config = nodes.write_config(str(tmp_path / 'small.conf'), {
        'DEFAULT': {'node_name': 'small', 'state_path': tmp_path / 'state',
                    'devices': tmp_path / 'devices', 'bind_ip': ip,
                    'bind_port': port, 'cluster_secret': 'small-secret',
                    'use_stderr': 'true'},
        'coordination': {'backend_url': 'file://%s' % (tmp_path / 'co')},
        'server': {'max_connections': 8, 'client_timeout': 5}})
    os.makedirs(tmp_path / 'devices' / 'd1')
    proc = nodes.Process('small', nodes.module_argv(
        'coordsync.cmd.server', '--config-file', config),
        str(tmp_path / 'small.log'))
    try:
        proc.wait_log('Node server listening')
        yield ip, port
    finally:
        proc.stop()


def _ask(address, request):
    """Send raw bytes; the whole answer (the server closes after it)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        answer = b''
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def test_healthcheck_answers_beyond_max_connections(small_node):
    idle = [socket.create_connection(small_node, timeout=10)
            for _ in range(12)]
    try:
        health = _ask(small_node, b'GET /healthcheck HTTP/1.1\r\n'
                                  b'Host: x\r\nConnection: close\r\n\r\n')
        assert health.startswith(b'HTTP/1.1 200 OK\r\n')
        assert health.endswith(b'\r\n\r\nOK\n')
        extra = _ask(small_node, b'PUT /objects/d1/1/a/c/o HTTP/1.1\r\n'
                                 b'Host: x\r\nContent-Length: 70000\r\n\r\n'
                                 + b'x' * 70000)
        assert extra.startswith(b'HTTP/1.1 503 Service Unavailable\r\n')
        assert extra.endswith(b'\r\n\r\ntoo many connections\n')
        # Idle connections are closed: those served after [server]
        # client_timeout, the ones beyond the cap at once, with a 503.
        answers = []
        for sock in idle:
            sock.settimeout(30)
            answers.append(b''.join(iter(lambda s=sock: s.recv(65536),
                                         b'')))
        assert answers.count(b'') == 8
        assert all(a.startswith(b'HTTP/1.1 503 ') for a in answers if a)
    finally:
        for sock in idle:
            sock.close()
    served = _ask(small_node, b'GET /nowhere HTTP/1.1\r\nHost: x\r\n'
                              b'Connection: close\r\n\r\n')
    assert served.startswith(b'HTTP/1.1 404 Not Found\r\n')
    assert served.endswith(b'\r\n\r\nno such path: /nowhere\n')
