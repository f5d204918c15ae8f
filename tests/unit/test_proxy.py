"""The Swift API app over an in-memory cluster (fake node servers).

The fake nodes answer the node routes (objects, containers, accounts)
from dicts, apply the container updates that object writes name in
``X-Container-*`` headers, and can be taken down; the app, its auth, its
backend quorum logic and the real rings are the code under test.
"""

import hashlib
import io
import json
import logging
import urllib.parse

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import timestamp
from coordsync.common.ring import builder
from coordsync.common.ring import ring as ring_mod
from coordsync.proxy import auth as auth_mod
from coordsync.proxy import backend as backend_mod
from coordsync.proxy import server

ACCOUNT = 'AUTH_test'
KEY = 'testing'


# -- fake node servers --------------------------------------------------------

class FakeResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self._body = body
        self.closed = False

    def read(self):
        return self._body

    def iter_body(self):
        for i in range(0, len(self._body), 7):
            yield self._body[i:i + 7]
        self.closed = True

    def close(self):
        self.closed = True


class FakeNodes:
    """Node servers in memory, keyed by node name.

    As the real ones: objects of policy N are under ``/objects-N``; a
    container keeps its policy (the PUT's index, else the default sent)
    unless deleted and put again, refuses another index while live
    (409), and lists and counts the rows of its policy only.
    """

    def __init__(self):
        # (node, policy, a, c, o) -> (ts, headers, body|None)
        self.objects = {}
        # (node, a, c) -> dict; its 'objects' are keyed (name, policy).
        self.containers = {}
        self.accounts = {}     # (node, a) -> dict
        self.down = set()
        self.requests = []
        self.sent = []         # the headers of each request, in order
        self.hosts = {}        # 'ip:port' -> node name

    def register(self, ring):
        for dev in ring.devices:
            if dev:
                self.hosts['%s:%s' % (dev['ip'], dev['port'])] = dev['node']

    def request(self, node, method, path, headers=None, body=None,
                query=''):
        status, hdrs, data = self.call(node, method, path, headers=headers,
                                       body=body, query=query)
        return FakeResponse(status, hdrs, data)

    def call(self, node, method, path, headers=None, body=None, query=''):
        self.requests.append((node['node'], method, path))
        self.sent.append(dict(headers or {}))
        if node['node'] in self.down:
            raise direct_client.NodeError('%s is down' % node['node'])
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if body is not None and not isinstance(body, bytes):
            body = b''.join(body)
        parts = [urllib.parse.unquote(p) for p in path.split('/')[1:]]
        kind, names = parts[0], parts[3:]
        name = node['node']
        params = dict(urllib.parse.parse_qsl(query))
        if kind == 'objects' or kind.startswith('objects-'):
            policy = int(kind[8:] or 0)
            a, c = names[0], names[1]
            o = '/'.join(names[2:])
            return self._object(name, method, (a, c, o), headers, body,
                                policy)
        if kind == 'containers':
            return self._container(name, method, names[0], names[1],
                                   headers, params)
        if kind == 'accounts':
            return self._account(name, method, names[0], headers, params)
        return 404, {}, b''

    # objects
    def _object(self, node, method, names, headers, body, policy=0):
        key = (node, policy) + names
        stored = self.objects.get(key)
        if method in ('GET', 'HEAD'):
            if stored is None:
                return 404, {}, b''
            if stored[2] is None:
                return 404, {'x-backend-timestamp': stored[0].normal}, b''
            return 200, dict(stored[1]), stored[2] if method == 'GET' \
                else b''
        when = timestamp.Timestamp(headers['x-timestamp'])
        if stored is not None and stored[0] >= when:
            return 409, {}, b''
        if method == 'PUT':
            assert hashlib.md5(body).hexdigest() == headers['etag']
            assert int(headers['content-length']) == len(body)
            kept = {k: v for k, v in headers.items()
                    if k.startswith('x-object-meta-') or k in (
                        'content-type', 'etag', 'content-length',
                        'x-timestamp')}
            self.objects[key] = (when, kept, body)
            status = 201
        else:
            self.objects[key] = (when, {}, None)
            status = 204 if stored and stored[2] is not None else 404
        self._update_containers(names, method, when, headers, body, policy)
        return status, {}, b''

    def _update_containers(self, names, method, when, headers, body,
                           policy):
        hosts = headers.get('x-container-host', '')
        for host in filter(None, hosts.split(',')):
            node = self.hosts[host]
            if node in self.down:
                continue
            db = self.containers.get((node, names[0], names[1]))
            if db is None:
                continue
            row = db['objects'].get((names[2], policy))
            if row and row['ts'] >= when:
                continue
            db['objects'][(names[2], policy)] = {
                'ts': when, 'deleted': method == 'DELETE',
                'bytes': len(body or b''), 'hash': headers.get('etag'),
                'content_type': headers.get('content-type')}

    # containers
    def _container(self, node, method, a, c, headers, params):
        key = (node, a, c)
        db = self.containers.get(key)
        live = db is not None and not db['deleted']
        if method == 'PUT':
            index = headers.get('x-backend-storage-policy-index')
            if live:
                if index is not None and int(index) != db['policy']:
                    return 409, {'x-backend-storage-policy-index':
                                 str(db['policy'])}, b''
                db['meta'].update(_meta(headers, 'container'))
                return 202, {}, b''
            policy = int(index if index is not None else headers.get(
                'x-backend-storage-policy-default', 0))
            self.containers[key] = {
                'deleted': False, 'put': headers['x-timestamp'],
                'objects': db['objects'] if db else {}, 'policy': policy,
                'meta': _meta(headers, 'container')}
            for host in filter(None, headers.get('x-account-host',
                                                 '').split(',')):
                acct = self.accounts.setdefault(
                    (self.hosts[host], a), {'meta': {}, 'containers': {}})
                acct['containers'][c] = policy
            return 201, {}, b''
        if not live:
            return 404, {}, b''
        if method == 'POST':
            db['meta'].update(_meta(headers, 'container'))
            return 204, {}, b''
        if method == 'DELETE':
            if any(not r['deleted'] for r in db['objects'].values()):
                return 409, {}, b''
            db['deleted'] = True
            return 204, {}, b''
        rows = {n: r for (n, p), r in db['objects'].items()
                if not r['deleted'] and p == db['policy']}
        info = {'x-container-object-count': str(len(rows)),
                'x-container-bytes-used': str(sum(r['bytes']
                                                  for r in rows.values())),
                'x-timestamp': db['put'], 'x-put-timestamp': db['put'],
                'x-backend-storage-policy-index': str(db['policy'])}
        info.update(db['meta'])
        if method == 'HEAD':
            return 204, info, b''
        listing = _listing(sorted(rows), params)
        out = []
        for item in listing:
            if isinstance(item, tuple):
                out.append({'subdir': item[1]})
                continue
            r = rows[item]
            out.append({'name': item, 'hash': r['hash'],
                        'bytes': r['bytes'],
                        'content_type': r['content_type'],
                        'last_modified': '2024-01-01T00:00:00.000000'})
        return 200, info, json.dumps(out).encode()

    def _account(self, node, method, a, headers, params):
        acct = self.accounts.get((node, a))
        if method == 'PUT':
            self.accounts.setdefault((node, a),
                                     {'meta': {}, 'containers': {}})
            return 201, {}, b''
        if acct is None:
            return 404, {}, b''
        if method == 'POST':
            acct['meta'].update(_meta(headers, 'account'))
            return 204, {}, b''
        info = {'x-account-container-count': str(len(acct['containers'])),
                'x-account-object-count': '0',
                'x-account-bytes-used': '0', 'x-timestamp': '1.00000'}
        for policy in set(acct['containers'].values()):
            prefix = 'x-backend-storage-policy-%d-' % policy
            info[prefix + 'container-count'] = str(sum(
                1 for p in acct['containers'].values() if p == policy))
            info[prefix + 'object-count'] = '0'
            info[prefix + 'bytes-used'] = '0'
        info.update(acct['meta'])
        if method == 'HEAD':
            return 204, info, b''
        names = _listing(sorted(acct['containers']), params)
        out = [{'subdir': n[1]} if isinstance(n, tuple) else
               {'name': n, 'count': 0, 'bytes': 0,
                'last_modified': '2024-01-01T00:00:00.000000'}
               for n in names]
        return 200, info, json.dumps(out).encode()


def _meta(headers, kind):
    """What a node stores of a PUT or POST (metadata, sysmeta and the
    container's ACLs and sync settings)."""
    return {k: v for k, v in headers.items()
            if k.startswith(('x-%s-meta-' % kind, 'x-%s-sysmeta-' % kind))
            or k in ('x-container-read', 'x-container-write',
                     'x-container-sync-to', 'x-container-sync-key')}


def _listing(names, params):
    """A straightforward model of Swift's listing arguments."""
    prefix = params.get('prefix', '')
    delimiter = params.get('delimiter')
    marker = params.get('marker', '')
    end_marker = params.get('end_marker')
    limit = int(params.get('limit', 10000))
    reverse = params.get('reverse') == 'true'
    if reverse:
        names = names[::-1]
    out = []
    seen = set()
    for n in names:
        if not n.startswith(prefix):
            continue
        if marker and ((n <= marker) if not reverse else (n >= marker)):
            continue
        if end_marker and ((n >= end_marker) if not reverse
                           else (n <= end_marker)):
            continue
        if delimiter:
            rest = n[len(prefix):]
            if delimiter in rest:
                sub = prefix + rest.split(delimiter)[0] + delimiter
                if sub not in seen:
                    seen.add(sub)
                    out.append(('subdir', sub))
                continue
        out.append(n)
        if len(out) >= limit:
            break
    return out[:limit]


# -- fixtures -----------------------------------------------------------------

def make_ring(path, nodes=3):
    ring = builder.RingBuilder(4, 3)
    for i in range(1, nodes + 1):
        ring.add_device('n%d' % i, '127.0.0.%d' % i, 6200 + i, 'd1', 1.0,
                        zone=i)
    ring.rebalance()
    ring.save(str(path))
    return ring_mod.Ring(str(path))


def make_conf(**proxy):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    for key, value in proxy.items():
        conf.set_override(key, value, 'proxy')
    return conf


class Cluster:
    """The app over fake nodes. ``policies``: a StoragePolicies (each
    policy N > 0 gets its own object ring, ``object_rings[N]``);
    default: the config's, policy 0 only."""

    def __init__(self, tmp_path, policies=None, **proxy):
        self.nodes = FakeNodes()
        rings = [make_ring(tmp_path / ('%s.ring.json' % kind), nodes=4)
                 for kind in ('object', 'container', 'account')]
        for ring in rings:
            self.nodes.register(ring)
        self.object_ring, self.container_ring, self.account_ring = rings
        self.object_rings = {0: self.object_ring}
        for policy in policies or ():
            if policy.index:
                self.object_rings[policy.index] = make_ring(
                    tmp_path / ('object-%d.ring.json' % policy.index),
                    nodes=4)
        self.conf = make_conf(**proxy)
        self.backend = backend_mod.Backend(
            self.nodes, self.object_rings, self.container_ring,
            self.account_ring)
        self.policies = policies
        self.auth = auth_mod.TokenAuth(auth_mod.parse_users([
            'test:tester %s .admin' % KEY, 'test:reader r',
            'other:admin o .admin']))
        self.access = []
        handler = ListHandler(self.access)
        access_log = logging.getLogger('test.proxy.access')
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        self.app = server.ProxyApp(self.conf, self.backend, self.auth,
                                   access_log=access_log, policies=policies)
        self.token = self.login('test:tester', KEY)

    def login(self, user, key):
        status, headers, _ = self.call('GET', '/auth/v1.0', headers={
            'X-Auth-User': user, 'X-Auth-Key': key})
        assert status == 200, status
        return headers['X-Auth-Token']

    def call(self, method, path, headers=None, body=b'', query='',
             token=None):
        env = {'REQUEST_METHOD': method, 'PATH_INFO': path,
               'QUERY_STRING': query, 'wsgi.input': io.BytesIO(body),
               'REMOTE_ADDR': '127.0.0.9', 'HTTP_HOST': 'proxy:8080'}
        headers = dict(headers or {})
        if token:
            headers['X-Auth-Token'] = token
        for key, value in headers.items():
            name = key.upper().replace('-', '_')
            if name in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
                env[name] = value
            else:
                env['HTTP_' + name] = value
        if method == 'PUT' and 'CONTENT_LENGTH' not in env \
                and 'HTTP_TRANSFER_ENCODING' not in env:
            env['CONTENT_LENGTH'] = str(len(body))
        seen = {}

        def start_response(status, hdrs):
            seen['status'] = int(status.split()[0])
            seen['headers'] = dict(hdrs)
        result = self.app(env, start_response)
        data = b''.join(result)
        if hasattr(result, 'close'):
            result.close()
        return seen['status'], seen['headers'], data

    def api(self, method, path='', **kwargs):
        kwargs.setdefault('token', self.token)
        return self.call(method, '/v1/%s%s' % (ACCOUNT, path), **kwargs)

    def state(self):
        """Everything the nodes store (to check nothing changed)."""
        return repr((sorted(self.nodes.objects.items()),
                     sorted((k, repr(v)) for k, v in
                            self.nodes.containers.items()),
                     sorted((k, repr(v)) for k, v in
                            self.nodes.accounts.items())))


class ListHandler(logging.Handler):
    def __init__(self, lines):
        super().__init__()
        self.lines = lines

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


# -- auth and info ------------------------------------------------------------

def test_auth_gives_token_and_storage_url(cluster):
    status, headers, _ = cluster.call('GET', '/auth/v1.0', headers={
        'X-Storage-User': 'test:tester', 'X-Storage-Pass': KEY})
    assert status == 200
    assert headers['X-Storage-Url'] == 'http://proxy:8080/v1/AUTH_test'
    assert headers['X-Auth-Token'].startswith('AUTH_tk')
    assert headers['X-Auth-Token'] != cluster.token


@pytest.mark.parametrize('user,key', [('test:tester', 'wrong'),
                                      ('test:nobody', KEY), ('', ''),
                                      ('test:tester', None)])
def test_bad_credentials_401(cluster, user, key):
    headers = {'X-Auth-User': user}
    if key is not None:
        headers['X-Auth-Key'] = key
    status, headers, _ = cluster.call('GET', '/auth/v1.0', headers=headers)
    assert status == 401
    assert 'X-Auth-Token' not in headers


def test_token_expires():
    now = [1000.0]
    auth = auth_mod.TokenAuth(auth_mod.parse_users(['a:b k']), ttl=10,
                              clock=lambda: now[0])
    token, _ = auth.authenticate('a:b', 'k')
    assert auth.identify(token).label == 'a:b'
    now[0] += 11
    assert auth.identify(token) is None


def test_max_tokens_drops_oldest():
    auth = auth_mod.TokenAuth(auth_mod.parse_users(['a:b k']),
                              max_tokens=2)
    first, _ = auth.authenticate('a:b', 'k')
    auth.authenticate('a:b', 'k')
    auth.authenticate('a:b', 'k')
    assert auth.identify(first) is None


@pytest.mark.parametrize('line', ['a:b', 'ab key', 'a: key', ':b key',
                                  'a:b key .root'])
def test_bad_user_lines(line):
    with pytest.raises(exceptions.ConfigError):
        auth_mod.parse_users([line])


def test_key_not_in_user_errors():
    with pytest.raises(exceptions.ConfigError) as err:
        auth_mod.parse_users(['a:b s3cr3t .bogus'])
    assert 's3cr3t' not in str(err.value)


def test_info_and_healthcheck(cluster):
    status, _, body = cluster.call('GET', '/info')
    assert status == 200
    info = json.loads(body)
    assert info['swift']['container_listing_limit'] == 10000
    assert cluster.call('GET', '/healthcheck')[0] == 200
    assert cluster.call('PUT', '/info')[0] == 405


# -- containers and objects ---------------------------------------------------

def test_container_put_list_object_roundtrip(cluster):
    status, _, _ = cluster.api('PUT', '/c1', headers={
        'X-Container-Meta-Color': 'blue'})
    assert status == 201
    assert cluster.api('PUT', '/c1')[0] == 202
    body = b'hello world' * 100
    status, headers, _ = cluster.api('PUT', '/c1/dir/o.txt', body=body)
    assert status == 201
    assert headers['ETag'] == hashlib.md5(body).hexdigest()
    status, headers, data = cluster.api('GET', '/c1/dir/o.txt')
    assert status == 200 and data == body
    assert headers['Content-Type'] == 'text/plain'  # guessed, as Swift
    assert headers['Content-Length'] == str(len(body))
    status, headers, _ = cluster.api('HEAD', '/c1')
    assert status == 204
    assert headers['X-Container-Object-Count'] == '1'
    assert headers['X-Container-Meta-Color'] == 'blue'
    status, headers, data = cluster.api('GET', '/c1', query='format=json')
    assert status == 200
    rows = json.loads(data)
    assert [r['name'] for r in rows] == ['dir/o.txt']
    status, _, data = cluster.api('GET', '/c1')
    assert data == b'dir/o.txt\n'
    status, _, data = cluster.api('GET', '', query='format=json')
    assert [r['name'] for r in json.loads(data)] == ['c1']


def test_object_put_names_container_replicas(cluster):
    cluster.api('PUT', '/c')
    cluster.api('PUT', '/c/o', body=b'x')
    # Every container replica got the row through the object servers.
    c_part, c_nodes = cluster.container_ring.get_nodes(ACCOUNT, 'c')
    for node in c_nodes:
        db = cluster.nodes.containers[(node['node'], ACCOUNT, 'c')]
        assert ('o', 0) in db['objects']


def test_update_headers_spread_like_swift():
    nodes = [{'ip': '1.1.1.%d' % i, 'port': 1, 'device': 'd%d' % i}
             for i in range(3)]
    headers = backend_mod.update_headers(nodes, 5, 2, 'Container')
    assert headers[0]['X-Container-Host'] == '1.1.1.0:1,1.1.1.2:1'
    assert headers[0]['X-Container-Device'] == 'd0,d2'
    assert headers[1]['X-Container-Partition'] == '5'


def test_object_put_needs_container(cluster):
    before = cluster.state()
    assert cluster.api('PUT', '/nope/o', body=b'x')[0] == 404
    assert cluster.state() == before


def test_ranged_get(cluster):
    cluster.api('PUT', '/c')
    body = bytes(range(256))
    cluster.api('PUT', '/c/o', body=body)
    for rng, expected in (('bytes=0-9', body[:10]),
                          ('bytes=10-', body[10:]),
                          ('bytes=-5', body[-5:]),
                          ('bytes=250-1000', body[250:]),
                          ('bytes=17-17', body[17:18])):
        status, headers, data = cluster.api('GET', '/c/o',
                                            headers={'Range': rng})
        assert status == 206, rng
        assert data == expected, rng
        assert headers['Content-Length'] == str(len(expected))
    status, headers, _ = cluster.api('GET', '/c/o',
                                     headers={'Range': 'bytes=256-'})
    assert status == 416
    assert headers['Content-Range'] == 'bytes */256'
    status, _, data = cluster.api('GET', '/c/o',
                                  headers={'Range': 'bytes=x-y'})
    assert status == 200 and data == body


def test_conditional_get(cluster):
    cluster.api('PUT', '/c')
    _, headers, _ = cluster.api('PUT', '/c/o', body=b'abc')
    etag = headers['ETag']
    assert cluster.api('GET', '/c/o', headers={
        'If-None-Match': etag})[0] == 304
    assert cluster.api('GET', '/c/o', headers={'If-Match': 'x'})[0] == 412


def test_delete_object_and_container(cluster):
    cluster.api('PUT', '/c')
    cluster.api('PUT', '/c/o', body=b'abc')
    assert cluster.api('DELETE', '/c')[0] == 409
    assert cluster.api('DELETE', '/c/o')[0] == 204
    assert cluster.api('GET', '/c/o')[0] == 404
    assert cluster.api('DELETE', '/c/o')[0] == 404
    assert cluster.api('DELETE', '/c')[0] == 204
    assert cluster.api('HEAD', '/c')[0] == 404
    assert cluster.api('DELETE', '/c')[0] == 404


def test_object_post_changes_metadata_keeps_body(cluster):
    cluster.api('PUT', '/c')
    cluster.api('PUT', '/c/o', body=b'abc', headers={
        'X-Object-Meta-A': '1', 'Content-Type': 'x/y'})
    assert cluster.api('POST', '/c/o', headers={
        'X-Object-Meta-B': '2'})[0] == 202
    status, headers, data = cluster.api('GET', '/c/o')
    assert data == b'abc'
    assert headers['X-Object-Meta-B'] == '2'
    assert 'X-Object-Meta-A' not in headers
    assert headers['Content-Type'] == 'x/y'


def test_quorum_with_one_node_down(cluster):
    cluster.api('PUT', '/c')
    _, primaries = cluster.object_ring.get_nodes(ACCOUNT, 'c', 'o')
    cluster.nodes.down.add(primaries[0]['node'])
    assert cluster.api('PUT', '/c/o', body=b'abc')[0] == 201
    assert cluster.api('GET', '/c/o')[2] == b'abc'


def test_no_quorum_503(cluster):
    cluster.api('PUT', '/c')
    cluster.nodes.down.update({'n1', 'n2', 'n3', 'n4'})
    assert cluster.api('PUT', '/c/o', body=b'abc')[0] == 503
    assert cluster.api('PUT', '/d')[0] == 503


def test_account_head_autocreated_and_post(cluster):
    status, headers, _ = cluster.api('HEAD')
    assert status == 204
    assert headers['X-Account-Container-Count'] == '0'
    assert cluster.api('POST', headers={
        'X-Account-Meta-Color': 'red'})[0] == 204
    _, headers, _ = cluster.api('HEAD')
    assert headers['X-Account-Meta-Color'] == 'red'
    assert cluster.api('PUT')[0] == 405
    assert cluster.api('DELETE')[0] == 405


def test_listing_limit_marker_prefix_delimiter(cluster):
    cluster.api('PUT', '/c')
    for name in ('a', 'b/1', 'b/2', 'c'):
        cluster.api('PUT', '/c/' + name, body=b'x')

    def names(query):
        status, _, data = cluster.api('GET', '/c', query=query)
        return data.decode().splitlines()
    assert names('limit=2') == ['a', 'b/1']
    assert names('marker=b/1') == ['b/2', 'c']
    assert names('delimiter=/') == ['a', 'b/', 'c']
    assert names('prefix=b/&delimiter=/') == ['b/1', 'b/2']
    assert cluster.api('GET', '/c', query='limit=0')[0] == 204
    status, _, data = cluster.api('GET', '/c',
                                  query='format=xml&limit=1')
    assert status == 200 and b'<name>a</name>' in data


def test_non_admin_needs_acl(cluster):
    cluster.api('PUT', '/c')
    cluster.api('PUT', '/c/o', body=b'x')
    reader = cluster.login('test:reader', 'r')
    assert cluster.api('GET', '/c/o', token=reader)[0] == 403
    cluster.api('POST', '/c', headers={'X-Container-Read': 'test:reader'})
    assert cluster.api('GET', '/c/o', token=reader)[0] == 200
    assert cluster.api('PUT', '/c/o', token=reader, body=b'y')[0] == 403
    assert cluster.api('PUT', '/d', token=reader)[0] == 403


def test_public_read_acl(cluster):
    cluster.api('PUT', '/pub', headers={'X-Container-Read': '.r:*'})
    cluster.api('PUT', '/pub/o', body=b'x')
    assert cluster.api('GET', '/pub/o', token='')[2] == b'x'
    # No .rlistings: no listing for anonymous readers.
    assert cluster.api('GET', '/pub', token='')[0] == 401


def test_other_account_forbidden(cluster):
    other = cluster.login('other:admin', 'o')
    before = cluster.state()
    assert cluster.api('PUT', '/c', token=other)[0] == 403
    assert cluster.api('GET', '', token=other)[0] == 403
    assert cluster.state() == before


def test_access_log_line_per_request_no_secrets(cluster):
    cluster.api('PUT', '/c')
    cluster.call('GET', '/auth/v1.0', headers={'X-Auth-User': 'test:tester',
                                                'X-Auth-Key': KEY})
    lines = cluster.access
    assert len(lines) == 3  # the fixture's login, the PUT, this login
    fields = lines[1].split(' ')
    assert len(fields) == 9
    assert fields[1:4] == ['PUT', '"/v1/AUTH_test/c"', '201']
    assert fields[6] == 'test:tester'
    for line in lines:
        assert KEY not in line and cluster.token not in line


def test_stamper_strictly_increasing():
    stamp = server.Stamper(clock=lambda: 1700000000.0)
    first, second = stamp(), stamp()
    assert second > first
    assert second.normal == '1700000000.00001'


def test_large_body_spooled_to_file(cluster, monkeypatch):
    monkeypatch.setattr(server, 'MEMORY_BODY', 1000)
    monkeypatch.setattr(server.Spool.__init__, '__defaults__', (1000,))
    cluster.api('PUT', '/c')
    body = bytes(range(256)) * 50
    assert cluster.api('PUT', '/c/big', body=body)[0] == 201
    assert cluster.api('GET', '/c/big')[2] == body


# -- malformed and hostile requests: 4xx, nothing changed ---------------------

HOSTILE = [
    # (method, path, headers, body, query, token?, status)
    ('PUT', '/c', {}, b'', '', False, 401),
    ('PUT', '/c/o', {}, b'x', '', False, 401),
    ('DELETE', '/c/o', {}, b'', '', False, 401),
    ('PUT', '/c/o', {'X-Auth-Token': 'AUTH_tkbogus'}, b'x', '', False, 401),
    ('POST', '', {'X-Account-Meta-A': 'b'}, b'', '', False, 401),
    ('PUT', '/c/..', {}, b'x', '', True, 400),
    ('PUT', '/c/a/../b', {}, b'x', '', True, 400),
    ('PUT', '/c/a//b', {}, b'x', '', True, 400),
    ('PUT', '/c/./b', {}, b'x', '', True, 400),
    ('PUT', '/c/' + 'o' * 1025, {}, b'x', '', True, 400),
    ('PUT', '/' + 'c' * 257, {}, b'', '', True, 400),
    ('PUT', '/c/a\x01b', {}, b'x', '', True, 400),
    ('PUT', '/c/o', {'X-Object-Meta-Big': 'v' * 257}, b'x', '', True, 400),
    ('PUT', '/c/o', {'X-Object-Meta-' + 'n' * 129: 'v'}, b'x', '', True,
     400),
    ('PUT', '/c/o', {'X-Object-Meta-': 'v'}, b'x', '', True, 400),
    ('PUT', '/c/o', {'X-Huge': 'h' * 9000}, b'x', '', True, 400),
    ('PUT', '/c/o', {'Content-Length': 'abc'}, b'x', '', True, 400),
    ('PUT', '/c/o', {'Content-Length': '-1'}, b'x', '', True, 400),
    ('PUT', '/c/o', {'Content-Length': str(6 * 2 ** 30)}, b'x', '', True,
     413),
    ('PUT', '/c/o', {'ETag': 'f' * 32}, b'x', '', True, 422),
    ('PUT', '/c/o', {'X-Timestamp': 'yesterday'}, b'x', '', True, 400),
    ('PUT', '/c/o', {'X-Timestamp': '-5'}, b'x', '', True, 400),
    ('DELETE', '/c/o', {'X-Timestamp': 'nan'}, b'', '', True, 400),
    ('PUT', '/c/o', {'X-Copy-From': '/c/other'}, b'', '', True, 501),
    ('PUT', '/c2', {'X-Storage-Policy': 'gold'}, b'', '', True, 400),
    ('PUT', '/c2', {'X-Container-Meta-X': 'v' * 300}, b'', '', True, 400),
    ('GET', '/c', {}, b'', 'limit=10001', True, 412),
    ('GET', '/c', {}, b'', 'limit=-1', True, 412),
    ('GET', '/c', {}, b'', 'limit=abc', True, 412),
    ('GET', '/c', {}, b'', 'delimiter=ab', True, 412),
    ('GET', '/c', {}, b'', 'prefix=%FF', True, 412),
    ('GET', '', {}, b'', 'limit=99999', True, 412),
    ('COPY', '/c/o', {}, b'', '', True, 405),
    ('PUT', '', {}, b'', '', True, 405),
    ('DELETE', '', {}, b'', '', True, 405),
    ('GET', '/c/o', {}, b'', '', True, 404),
    ('DELETE', '/nope/o', {}, b'', '', True, 404),
]


@pytest.mark.parametrize('method,path,headers,body,query,auth,status',
                         HOSTILE)
def test_hostile_requests_refused_nothing_changed(cluster, method, path,
                                                  headers, body, query,
                                                  auth, status):
    cluster.api('PUT', '/c')
    cluster.api('PUT', '/c/keep', body=b'k')
    before = cluster.state()
    requests = len(cluster.nodes.requests)
    got = cluster.api(method, path, headers=headers, body=body, query=query,
                      token=cluster.token if auth else None)[0]
    assert got == status
    assert cluster.state() == before
    writes = [r for r in cluster.nodes.requests[requests:]
              if r[1] in ('PUT', 'POST', 'DELETE')]
    assert writes == []


def test_bad_utf8_path(cluster):
    status, _, _ = cluster.call('GET', '/v1/AUTH_test/c/\xff',
                                token=cluster.token)
    assert status == 412


def test_content_length_short_body_changes_nothing(cluster):
    cluster.api('PUT', '/c')
    before = cluster.state()
    status, _, _ = cluster.api('PUT', '/c/o', body=b'abc',
                               headers={'Content-Length': '10'})
    assert status == 499
    assert cluster.state() == before


def test_chunked_put(cluster):
    cluster.api('PUT', '/c')
    status, _, _ = cluster.api('PUT', '/c/o', body=b'abcdef',
                               headers={'Transfer-Encoding': 'chunked'})
    assert status == 201
    assert cluster.api('GET', '/c/o')[2] == b'abcdef'
