"""The Swift API on a real local cluster, driven by python-swiftclient.

One 3-node cluster on the test run's ZooKeeper (``coordsync-local-cluster
up`` starts the nodes and one ``coordsync-proxy``) serves the module; the
client is python-swiftclient: its ``Connection`` API and its ``swift``
command. Expected listings are written out by hand from Swift's
documented listing semantics (names sorted by UTF-8 bytes; ``prefix``,
``delimiter`` rolling names up to ``subdir`` entries, a subdir equal to
the marker left out; ``marker``/``end_marker`` exclusive; ``limit``;
``reverse``), not computed by our own code. The storage policy tests
run on a second cluster of the same shape with two policies (0 gold,
the default, and 1 silver).
"""

import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest
from swiftclient import client as swift

from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import direct_client
from coordsync.common import ring as ring_mod
from tests.functional import nodes

USER, KEY = local_cluster_cmd.TEST_USER, local_cluster_cmd.TEST_KEY


@pytest.fixture(scope='module')
def api(zk_local_cluster):
    cluster = zk_local_cluster
    url = local_cluster_cmd.proxy_auth_url(cluster.meta)
    return API(cluster, url)


class API:
    def __init__(self, cluster, auth_url):
        self.cluster = cluster
        self.auth_url = auth_url
        self.conn = self.connect()
        self.storage_url, self.token = self.conn.get_auth()
        parsed = urllib.parse.urlsplit(self.storage_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.account = urllib.parse.unquote(parsed.path.split('/')[2])
        self.container_ring = ring_mod.Ring(
            os.path.join(cluster.workdir,
                         local_cluster_cmd.CONTAINER_RING),
            cluster.meta['hash_path_prefix'],
            cluster.meta['hash_path_suffix'])

    def connect(self, key=KEY):
        return swift.Connection(self.auth_url, USER, key, retries=0,
                                timeout=60)

    def swift_cmd(self, *args, cwd=None, check=True):
        argv = [sys.executable, '-m', 'swiftclient.shell', '-A',
                self.auth_url, '-U', USER, '-K', KEY, *args]
        result = subprocess.run(argv, cwd=cwd, capture_output=True,
                                text=True, timeout=120)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def raw(self, method, path, headers=None, body=None, token=True):
        """One request with http.client: (status, headers, body)."""
        headers = dict(headers or {})
        if token:
            headers.setdefault('X-Auth-Token', self.token)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            if body is not None and 'Content-Length' not in headers:
                conn.putheader('Content-Length', str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def path(self, *names):
        return '/v1/%s/%s' % (self.account, '/'.join(
            urllib.parse.quote(n) for n in names))

    def replica_listings(self, container):
        """``{node: [names]}`` straight from every container replica."""
        part, primaries = self.container_ring.get_nodes(self.account,
                                                        container)
        found = {}
        for node in primaries:
            status, _, body = self.cluster.node_client.call(
                node, 'GET', direct_client.container_path(
                    node['device'], part, self.account, container),
                query='format=json')
            assert status == 200, (node['node'], status)
            found[node['node']] = [r['name'] for r in json.loads(body)]
        return found

    def disk_snapshot(self):
        """Every file under every node's devices: (path, size, mtime)."""
        seen = set()
        for name in self.cluster.node_names:
            root = os.path.join(self.cluster.workdir, name, 'devices')
            for dirpath, _, files in os.walk(root):
                for f in files:
                    if f.endswith(('-shm', '-wal')):
                        continue
                    st = os.stat(os.path.join(dirpath, f))
                    seen.add((os.path.join(dirpath, f), st.st_size,
                              st.st_mtime_ns))
        return seen

    def flush_updates(self):
        """Deliver async pendings (none expected; an overloaded container
        replica may have missed an update) with one updater sweep."""
        for name in self.cluster.node_names:
            nodes.run_module('coordsync.cmd.updater', '--config-file',
                             self.cluster.node_config(name), '--once',
                             check=False, timeout=60)


# -- the basic cycle ----------------------------------------------------------

def test_put_list_get_range_stat_delete(api):
    conn = api.conn
    conn.put_container('cycle', headers={'X-Container-Meta-Kind': 'test'})
    bodies = {'obj-%02d' % i: os.urandom(random.randrange(0, 5000))
              for i in range(25)}
    bodies['big/é one'] = os.urandom(3 * 2 ** 20 + 11)
    for name, body in bodies.items():
        etag = conn.put_object('cycle', name, body)
        assert etag == hashlib.md5(body).hexdigest()
    _, listing = conn.get_container('cycle', full_listing=True)
    assert [r['name'] for r in listing] == sorted(
        bodies, key=lambda n: n.encode('utf-8'))
    for row in listing:
        assert row['bytes'] == len(bodies[row['name']])
        assert row['hash'] == hashlib.md5(bodies[row['name']]).hexdigest()
    for name, body in bodies.items():
        headers, data = conn.get_object('cycle', name)
        assert data == body
        assert headers['etag'] == hashlib.md5(body).hexdigest()
    big = bodies['big/é one']
    headers, data = conn.get_object('cycle', 'big/é one',
                                    headers={'Range': 'bytes=1000-1999'})
    assert data == big[1000:2000]
    assert headers['content-range'] == 'bytes 1000-1999/%d' % len(big)
    _, data = conn.get_object('cycle', 'big/é one',
                              headers={'Range': 'bytes=-10'})
    assert data == big[-10:]
    stat = conn.head_container('cycle')
    assert stat['x-container-object-count'] == str(len(bodies))
    assert stat['x-container-bytes-used'] == str(
        sum(len(b) for b in bodies.values()))
    assert stat['x-container-meta-kind'] == 'test'
    account = conn.head_account()
    assert int(account['x-account-container-count']) >= 1
    names = [c['name'] for c in conn.get_account(full_listing=True)[1]]
    assert 'cycle' in names
    for name in list(bodies)[:10]:
        conn.delete_object('cycle', name)
        del bodies[name]
    with pytest.raises(swift.ClientException) as err:
        conn.get_object('cycle', 'obj-00')
    assert err.value.http_status == 404
    _, listing = conn.get_container('cycle', full_listing=True)
    assert sorted(r['name'] for r in listing) == sorted(bodies)
    with pytest.raises(swift.ClientException) as err:
        conn.delete_container('cycle')
    assert err.value.http_status == 409
    conn.post_object('cycle', 'obj-20', {'X-Object-Meta-Color': 'red'})
    headers = conn.head_object('cycle', 'obj-20')
    assert headers['x-object-meta-color'] == 'red'
    assert conn.get_object('cycle', 'obj-20')[1] == bodies['obj-20']


# -- listings as Swift documents them -----------------------------------------

LISTING_NAMES = ['a', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/x', 'c.d',
                 'c/d/e']

# (query, expected): names as strings, subdirs as ('subdir', name).
# Order is by UTF-8 bytes: '.' (0x2e) < '/' (0x2f) < letters.
LISTING_CASES = [
    ({}, ['a', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/x', 'c.d', 'c/d/e']),
    ({'limit': '3'}, ['a', 'a/b', 'a/b/c']),
    ({'marker': 'a/c'}, ['ab', 'b', 'b/x', 'c.d', 'c/d/e']),
    ({'marker': 'a/c', 'limit': '2'}, ['ab', 'b']),
    ({'end_marker': 'b'}, ['a', 'a/b', 'a/b/c', 'a/c', 'ab']),
    ({'marker': 'a', 'end_marker': 'ab'}, ['a/b', 'a/b/c', 'a/c']),
    ({'prefix': 'a/'}, ['a/b', 'a/b/c', 'a/c']),
    ({'prefix': 'c'}, ['c.d', 'c/d/e']),
    ({'prefix': 'zz'}, []),
    ({'delimiter': '/'}, ['a', ('subdir', 'a/'), 'ab', 'b',
                          ('subdir', 'b/'), 'c.d', ('subdir', 'c/')]),
    ({'delimiter': '/', 'limit': '2'}, ['a', ('subdir', 'a/')]),
    # A subdir equal to the marker is not listed again (paging).
    ({'delimiter': '/', 'marker': 'a/'}, ['ab', 'b', ('subdir', 'b/'),
                                          'c.d', ('subdir', 'c/')]),
    ({'prefix': 'a/', 'delimiter': '/'}, ['a/b', ('subdir', 'a/b/'),
                                          'a/c']),
    ({'prefix': 'b', 'delimiter': '/'}, ['b', ('subdir', 'b/')]),
    ({'delimiter': '.'}, ['a', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/x',
                          ('subdir', 'c.'), 'c/d/e']),
    ({'reverse': 'true'}, ['c/d/e', 'c.d', 'b/x', 'b', 'ab', 'a/c',
                           'a/b/c', 'a/b', 'a']),
    ({'reverse': 'true', 'marker': 'b', 'limit': '2'}, ['ab', 'a/c']),
    ({'reverse': 'true', 'prefix': 'a/'}, ['a/c', 'a/b/c', 'a/b']),
]


@pytest.fixture(scope='module')
def listed(api):
    api.conn.put_container('listing')
    for name in LISTING_NAMES:
        api.conn.put_object('listing', name, name.encode())
    return 'listing'


@pytest.mark.parametrize('query,expected', LISTING_CASES,
                         ids=[json.dumps(q) for q, _ in LISTING_CASES])
def test_listing_matches_swift_semantics(api, listed, query, expected):
    kwargs = {k: int(v) if k == 'limit' else v for k, v in query.items()
              if k != 'reverse'}
    if 'reverse' in query:
        kwargs['query_string'] = 'reverse=%s' % query['reverse']
    _, rows = api.conn.get_container(listed, **kwargs)
    got = [('subdir', r['subdir']) if 'subdir' in r else r['name']
           for r in rows]
    assert got == expected
    # The plain listing of the same query: one name or subdir a line.
    status, _, body = api.raw('GET', api.path(listed) + '?' +
                              urllib.parse.urlencode(query))
    plain = [e[1] if isinstance(e, tuple) else e for e in expected]
    assert status == (200 if plain else 204)
    assert body.decode().splitlines() == plain


def test_listing_full_walk_by_marker(api, listed):
    _, rows = api.conn.get_container(listed, limit=2, full_listing=True)
    assert [r['name'] for r in rows] == LISTING_NAMES


def test_swift_cli_list_with_prefix_and_delimiter(api, listed):
    out = api.swift_cmd('list', listed, '--prefix', 'a/', '--delimiter',
                        '/').stdout.splitlines()
    assert out == ['a/b', 'a/b/', 'a/c']


# -- the swift command --------------------------------------------------------

def test_swift_cli_upload_download_stat_delete(api, tmp_path):
    src = tmp_path / 'src'
    (src / 'sub').mkdir(parents=True)
    files = {'one.txt': b'one\n', 'sub/two.bin': os.urandom(70000),
             'sub/three': os.urandom(10)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    api.swift_cmd('upload', 'cli', '.', cwd=str(src))
    listed = api.swift_cmd('list', 'cli').stdout.split()
    assert listed == sorted(files)
    dst = tmp_path / 'dst'
    dst.mkdir()
    api.swift_cmd('download', 'cli', cwd=str(dst))
    for name, data in files.items():
        assert (dst / name).read_bytes() == data
    stat = api.swift_cmd('stat', 'cli').stdout
    assert 'Objects: 3' in stat
    assert 'Account: %s' % api.account in api.swift_cmd('stat').stdout
    api.swift_cmd('delete', 'cli')
    result = api.swift_cmd('stat', 'cli', check=False)
    assert result.returncode != 0
    shutil.rmtree(str(dst))


# -- authentication -----------------------------------------------------------

def test_wrong_key_or_no_token_401_nothing_changed(api):
    api.conn.put_container('guarded')
    api.conn.put_object('guarded', 'o', b'original')
    before = api.disk_snapshot()
    bad = api.connect(key='wrong')
    with pytest.raises(swift.ClientException) as err:
        bad.get_auth()
    assert err.value.http_status == 401
    with pytest.raises(swift.ClientException):
        bad.put_object('guarded', 'o', b'changed')
    for method, path, body in (
            ('PUT', api.path('guarded', 'o'), b'changed'),
            ('DELETE', api.path('guarded', 'o'), None),
            ('POST', api.path('guarded', 'o'), b''),
            ('PUT', api.path('newcont'), b''),
            ('DELETE', api.path('guarded'), None),
            ('POST', api.path(), b''),
            ('GET', api.path('guarded', 'o'), None),
            ('GET', api.path(), None)):
        for token in (None, 'AUTH_tk' + 'f' * 32):
            headers = {'X-Auth-Token': token} if token else {}
            status, _, _ = api.raw(method, path, headers=headers, body=body,
                                   token=False)
            assert status == 401, (method, path, token)
    assert api.disk_snapshot() == before
    assert api.conn.get_object('guarded', 'o')[1] == b'original'


# -- concurrent writers -------------------------------------------------------

def test_concurrent_put_and_delete_newest_wins_on_every_replica(api):
    api.conn.put_container('race')
    names = ['n%d' % i for i in range(12)]
    log = []
    lock = threading.Lock()

    def writer(seed):
        """Random PUTs and DELETEs; every one that reached the nodes is
        logged with the X-Timestamp the proxy stamped it with, whatever
        its status (a DELETE's 404 still wrote a tombstone; a 409 or
        202 lost to a newer write, which is in the log too)."""
        conn = api.connect()
        rng = random.Random(seed)
        for _ in range(60):
            name = rng.choice(names)
            op = 'PUT' if rng.random() < 0.6 else 'DELETE'
            resp = {}
            try:
                if op == 'PUT':
                    conn.put_object('race', name, b'%d' % seed,
                                    response_dict=resp)
                else:
                    conn.delete_object('race', name, response_dict=resp)
                headers = resp['headers']
            except swift.ClientException as err:
                assert err.http_status in (404, 409), err
                headers = {k.lower(): v for k, v in
                           (err.http_response_headers or {}).items()}
            with lock:
                log.append((headers['x-timestamp'], name, op))

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    newest = {}
    for _when, name, op in sorted(log):
        newest[name] = op
    expected = sorted(n for n, op in newest.items() if op == 'PUT')
    listings = api.replica_listings('race')
    if any(names != expected for names in listings.values()):
        api.flush_updates()
        listings = api.replica_listings('race')
    for node, listed in listings.items():
        assert listed == expected, node
    _, rows = api.conn.get_container('race')
    assert [r['name'] for r in rows] == expected


# -- malformed and hostile requests -------------------------------------------

def _hostile_cases(api):
    p = api.path
    big = 'v' * 9000
    return [
        # (method, path, headers, body, status)
        ('PUT', p('hostile', '..'), {}, b'x', 400),
        ('PUT', p('hostile') + '/a/../b', {}, b'x', 400),
        ('PUT', p('hostile') + '/a//b', {}, b'x', 400),
        ('PUT', p('hostile') + '/./b', {}, b'x', 400),
        ('PUT', p('..'), {}, b'', 400),
        ('PUT', '/v1/../x', {}, b'', 400),
        ('PUT', p('hostile', 'o' * 1025), {}, b'x', 400),
        ('PUT', p('c' * 257), {}, b'', 400),
        ('PUT', p('hostile') + '/a%01b', {}, b'x', 400),
        ('PUT', p('hostile') + '/a%00b', {}, b'x', 400),
        ('PUT', p('hostile') + '/%FF', {}, b'x', 412),
        ('PUT', p('hostile', 'o'), {'X-Object-Meta-Big': 'v' * 257}, b'x',
         400),
        ('PUT', p('hostile', 'o'), {'X-Object-Meta-' + 'n' * 129: 'v'},
         b'x', 400),
        ('PUT', p('hostile', 'o'), {'X-Huge': big}, b'x', 400),
        ('PUT', p('hostile', 'o'), {'Content-Length': 'abc'}, b'x', 400),
        ('PUT', p('hostile', 'o'), {'Content-Length': str(6 * 2 ** 30)},
         b'', 413),
        ('PUT', p('hostile', 'o'), {'ETag': 'f' * 32}, b'x', 422),
        ('PUT', p('hostile', 'o'), {'X-Timestamp': 'yesterday'}, b'x', 400),
        ('DELETE', p('hostile', 'keep'), {'X-Timestamp': '-1'}, None, 400),
        ('PUT', p('hostile', 'o'), {'X-Copy-From': '/hostile/keep'}, b'',
         501),
        ('PUT', p('hostile2'), {'X-Storage-Policy': 'platinum'}, b'',
         400),
        ('PUT', p('hostile2'), {'X-Container-Meta-A': 'v' * 300}, b'', 400),
        ('POST', p('hostile'), {'X-Container-Meta-': 'v'}, b'', 400),
        ('GET', p('hostile') + '?limit=10001', {}, None, 412),
        ('GET', p('hostile') + '?limit=-1', {}, None, 412),
        ('GET', p('hostile') + '?delimiter=ab', {}, None, 412),
        ('GET', p('hostile') + '?prefix=%FF', {}, None, 412),
        ('GET', p() + '?limit=99999', {}, None, 412),
        ('COPY', p('hostile', 'keep'), {}, None, 405),
        ('PUT', p(), {}, b'', 405),
        ('DELETE', p(), {}, None, 405),
        ('PUT', '/v1/AUTH_other/c', {}, b'', 403),
        ('DELETE', p('nosuch', 'o'), {}, None, 404),
        ('PUT', p('nosuch', 'o'), {}, b'x', 404),
        ('DELETE', p('nosuch'), {}, None, 404),
        ('GET', '/v2/x', {}, None, 404),
    ]


def test_hostile_requests_refused_nothing_changed_on_disk(api):
    api.conn.put_container('hostile')
    api.conn.put_object('hostile', 'keep', b'k')
    cases = _hostile_cases(api)
    assert len(cases) >= 20
    before = api.disk_snapshot()
    failures = []
    for method, path, headers, body, status in cases:
        got, _, reply = api.raw(method, path, headers=headers, body=body)
        if got != status:
            failures.append((method, path[:80], status, got, reply[:100]))
    assert failures == []
    assert api.disk_snapshot() == before
    assert api.conn.get_object('hostile', 'keep')[1] == b'k'
    _, rows = api.conn.get_container('hostile')
    assert [r['name'] for r in rows] == ['keep']


# -- storage policies ---------------------------------------------------------

@pytest.fixture(scope='module')
def policy_api(zk_policy_cluster):
    """The Swift API of a cluster with two storage policies: 0 gold (the
    default) and 1 silver."""
    cluster = zk_policy_cluster
    return API(cluster, local_cluster_cmd.proxy_auth_url(cluster.meta))


def _live_policies(api, container, name):
    """``{policy: number of devices with a live copy}`` of an object."""
    return {policy: len(copies) for policy, copies in
            api.cluster.live_policies(container, name,
                                      account=api.account).items()}


def test_swift_cli_container_of_a_policy(policy_api, tmp_path):
    """``swift post -H "X-Storage-Policy: silver"`` makes a silver
    container, ``swift stat`` shows it, ``swift upload`` and ``download``
    work, and the objects live in policy 1's ring only."""
    api = policy_api
    status, _, body = api.raw('GET', '/info', token=False)
    assert status == 200
    assert json.loads(body)['swift']['policies'] == [
        {'name': 'gold', 'aliases': 'gold', 'default': True},
        {'name': 'silver', 'aliases': 'silver'}]
    api.swift_cmd('post', '-H', 'X-Storage-Policy: silver', 'pol')
    assert 'X-Storage-Policy: silver' in api.swift_cmd('stat',
                                                       'pol').stdout
    src = tmp_path / 'src'
    (src / 'sub').mkdir(parents=True)
    files = {'one.txt': b'one\n', 'sub/two.bin': os.urandom(70000)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    api.swift_cmd('upload', 'pol', '.', cwd=str(src))
    dst = tmp_path / 'dst'
    dst.mkdir()
    api.swift_cmd('download', 'pol', cwd=str(dst))
    for name, data in files.items():
        assert (dst / name).read_bytes() == data
        assert _live_policies(api, 'pol', name) == {
            1: api.cluster.meta['replicas']}
    assert api.swift_cmd('list', 'pol').stdout.split() == sorted(files)
    for node, listed in api.replica_listings('pol').items():
        assert listed == sorted(files), node
    stat = api.conn.head_container('pol')
    assert stat['x-storage-policy'] == 'silver'
    assert stat['x-container-object-count'] == str(len(files))
    account = api.conn.head_account()
    assert int(account['x-account-storage-policy-silver-container-count']) \
        >= 1
    assert 'Containers in policy "silver"' in api.swift_cmd('stat').stdout


def test_a_containers_policy_cannot_change(policy_api):
    api = policy_api
    api.conn.put_container('fixed', headers={'X-Storage-Policy': 'silver'})
    api.conn.put_object('fixed', 'o', b'silver data')
    before = api.disk_snapshot()
    for method, headers, status in (
            ('PUT', {'X-Storage-Policy': 'gold'}, 409),
            ('PUT', {'X-Storage-Policy': 'platinum'}, 400),
            ('POST', {'X-Storage-Policy': 'gold'}, 400)):
        got, _, reply = api.raw(method, api.path('fixed'), headers=headers,
                                body=b'')
        assert got == status, (method, headers, got, reply)
        assert reply.count(b'\n') == 1
    assert api.disk_snapshot() == before
    # Put again without a policy, or naming its own: kept.
    for headers in ({}, {'X-Storage-Policy': 'SILVER'}):
        assert api.raw('PUT', api.path('fixed'), headers=headers,
                       body=b'')[0] == 202
    assert api.conn.head_container('fixed')['x-storage-policy'] == 'silver'
    assert api.conn.get_object('fixed', 'o')[1] == b'silver data'


def test_recreated_container_takes_the_default_policy(policy_api):
    api = policy_api
    conn = api.conn
    conn.put_container('again', headers={'X-Storage-Policy': 'silver'})
    conn.put_object('again', 'first', b'1')
    assert _live_policies(api, 'again', 'first') == {
        1: api.cluster.meta['replicas']}
    conn.delete_object('again', 'first')
    conn.delete_container('again')
    conn.put_container('again')
    assert conn.head_container('again')['x-storage-policy'] == 'gold'
    conn.put_object('again', 'second', b'2')
    assert _live_policies(api, 'again', 'second') == {
        0: api.cluster.meta['replicas']}
    _, rows = conn.get_container('again')
    assert [r['name'] for r in rows] == ['second']
