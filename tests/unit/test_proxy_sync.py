"""The receiving side of container sync: the Swift API's sync requests
(over the in-memory cluster of :mod:`tests.unit.test_proxy`), and the
node storing sysmeta."""

import logging
import urllib.parse

import pytest

from coordsync.common import direct_client
from coordsync.common import wsgi
from coordsync.container import server as container_server
from coordsync.proxy import server
from coordsync.sync import realms
from tests.unit.test_proxy import ACCOUNT
from tests.unit.test_proxy import Cluster
from tests.unit.test_server import call as node_call
from tests.unit.test_server import ts

REALM_KEY = '9ff3b71c849749dbaec4ccdd3cbab62b'
REALM_KEY2 = '1a0a5a0cbd66448084089304442d6776'
SYNC_KEY = 's3cr3t-sync-key'
WHEN = '1600000000.00000'
SOURCE = '0123456789abcdef'
REFUSED = (b'X-Container-Sync-Auth header not valid; contact cluster '
           b'operator for support.\n')


class SyncCluster(Cluster):
    """The fake cluster with a realms file and a destination container
    ``dest`` holding the sync key."""

    def __init__(self, tmp_path, allowed=('127.0.0.1',), policies=None,
                 dest_headers=None):
        super().__init__(tmp_path, policies=policies)
        path = tmp_path / 'container-sync-realms.conf'
        path.write_text('[US]\nkey = %s\nkey2 = %s\n'
                        'cluster_dfw1 = http://127.0.0.1:8080/v1/\n'
                        % (REALM_KEY, REALM_KEY2))
        self.conf.set_override('container_sync_realms_file', str(path))
        self.conf.set_override('allowed_sync_hosts', list(allowed))
        self.realms = realms.Realms(str(path))
        self.app = server.ProxyApp(
            self.conf, self.backend, self.auth,
            access_log=logging.getLogger('test.proxy.access'),
            realms=self.realms, nonces=realms.NonceCache(300),
            policies=policies)
        assert self.api('PUT', '/dest', headers=dict(
            {'X-Container-Sync-Key': SYNC_KEY}, **(dest_headers or {}))
        )[0] == 201

    def signed(self, method, path, x_timestamp=None, key=SYNC_KEY):
        """The auth headers the sending daemon makes for ``path``
        (under the account), as :func:`realms.sync_headers` does."""
        target = realms.parse_sync_to('//us/dfw1/%s/dest' % ACCOUNT,
                                      self.realms, [])
        quoted = urllib.parse.quote('/v1/%s%s' % (ACCOUNT, path))
        headers = realms.sync_headers(method, target, quoted,
                                      x_timestamp or '0', key, self.realms)
        if x_timestamp:
            headers['X-Timestamp'] = x_timestamp
        return headers

    def sync(self, method, path, headers, body=b''):
        return self.api(method, path, headers=headers, body=body,
                        token=None)

    def api(self, method, path='', **kwargs):
        # NOTE: PATH_INFO is latin-1 decoded bytes (PEP 3333).
        return super().api(method, path.encode().decode('latin-1'),
                           **kwargs)

    def writes(self, since):
        return [r for r in self.nodes.requests[since:]
                if r[1] in ('PUT', 'POST', 'DELETE')]


@pytest.fixture
def cluster(tmp_path):
    return SyncCluster(tmp_path)


def _forged(method, path, realm='US', realm_key=REALM_KEY, key=SYNC_KEY,
            x_timestamp=WHEN):
    nonce = realms.new_nonce()
    sig = realms.get_sig(method, urllib.parse.quote('/v1/%s%s' % (
        ACCOUNT, path)), x_timestamp, nonce, realm_key, key)
    return {'X-Container-Sync-Auth': '%s %s %s' % (realm, nonce, sig),
            'X-Timestamp': x_timestamp}


# -- authenticated writes keep their X-Timestamp ------------------------------

def test_signed_put_and_delete_keep_x_timestamp(cluster):
    path = '/dest/caf\xe9 o'
    status, headers, _ = cluster.sync('PUT', path, cluster.signed(
        'PUT', path, WHEN), body=b'row')
    assert (status, headers['X-Timestamp']) == (201, WHEN)
    status, headers, body = cluster.api('GET', path)
    assert (status, headers['X-Timestamp'], body) == (200, WHEN, b'row')
    assert cluster.access[-2].split()[6] == 'container-sync:US'
    later = '1600000001.00000'
    status, headers, _ = cluster.sync('DELETE', path, cluster.signed(
        'DELETE', path, later))
    assert (status, headers['X-Timestamp']) == (204, later)
    assert cluster.api('GET', path)[0] == 404


def test_signed_with_second_realm_key(cluster):
    headers = _forged('PUT', '/dest/o', realm_key=REALM_KEY2)
    assert cluster.sync('PUT', '/dest/o', headers, body=b'x')[0] == 201


def test_signed_head_and_get_of_object(cluster):
    cluster.api('PUT', '/dest/o', body=b'abc')
    status, headers, body = cluster.sync('GET', '/dest/o',
                                         cluster.signed('GET', '/dest/o'))
    assert (status, body) == (200, b'abc')
    assert cluster.sync('HEAD', '/dest/o',
                        cluster.signed('HEAD', '/dest/o'))[0] == 200


def test_key_mode_from_allowed_address(tmp_path):
    cluster = SyncCluster(tmp_path, allowed=('10.0.0.1', '127.0.0.9'))
    headers = {'X-Container-Sync-Key': SYNC_KEY, 'X-Timestamp': WHEN}
    status, answer, _ = cluster.sync('PUT', '/dest/o', headers, body=b'x')
    assert (status, answer['X-Timestamp']) == (201, WHEN)
    assert cluster.access[-1].split()[6] == 'container-sync:key'


# -- refused: 401, nothing written --------------------------------------------

def _refusals(cluster):
    return [
        ('wrong container key', _forged('PUT', '/dest/o', key='other')),
        ('wrong realm key', _forged('PUT', '/dest/o', realm_key='k' * 32)),
        ('unknown realm', _forged('PUT', '/dest/o', realm='EU')),
        ('signed for another path', _forged('PUT', '/dest/other')),
        ('signed for another timestamp',
         dict(_forged('PUT', '/dest/o'), **{'X-Timestamp': '1.00000'})),
        ('stale nonce', {'X-Container-Sync-Auth': 'US 1000-%s %s' % (
            'a' * 32, 'b' * 40), 'X-Timestamp': WHEN}),
        ('not three words', {'X-Container-Sync-Auth': 'US abc'}),
        ('key mode from an address not allowed',
         {'X-Container-Sync-Key': SYNC_KEY, 'X-Timestamp': WHEN}),
        ('key mode, wrong key', {'X-Container-Sync-Key': 'nope'}),
    ]


@pytest.mark.parametrize('case', range(len(_refusals(None))))
def test_refused_401_nothing_written(cluster, caplog, case):
    name, headers = _refusals(cluster)[case]
    before, since = cluster.state(), len(cluster.nodes.requests)
    with caplog.at_level(logging.INFO, logger='coordsync.proxy.server'):
        status, _, body = cluster.sync('PUT', '/dest/o', headers, b'x')
    assert (status, body) == (401, REFUSED), name
    assert cluster.writes(since) == [] and cluster.state() == before
    logged = [r.getMessage() for r in caplog.records
              if 'refused' in r.getMessage()]
    assert len(logged) == 1, name
    assert SYNC_KEY not in logged[0] and REALM_KEY not in logged[0]


def test_replayed_nonce_refused(cluster):
    headers = cluster.signed('PUT', '/dest/o', WHEN)
    assert cluster.sync('PUT', '/dest/o', headers, b'x')[0] == 201
    cluster.api('DELETE', '/dest/o')
    before, since = cluster.state(), len(cluster.nodes.requests)
    status, _, body = cluster.sync('PUT', '/dest/o', headers, b'x')
    assert status == 401 and b'replayed' in body
    assert cluster.writes(since) == [] and cluster.state() == before


def test_too_many_nonces_503(cluster):
    cluster.app.sync_auth.nonces = realms.NonceCache(300, max_entries=1)
    headers = cluster.signed('PUT', '/dest/o', WHEN)
    assert cluster.sync('PUT', '/dest/o', headers, b'x')[0] == 201
    before = cluster.state()
    headers = cluster.signed('PUT', '/dest/o', '1600000001.00000')
    status, answer, _ = cluster.sync('PUT', '/dest/o', headers, b'y')
    assert (status, answer['Retry-After']) == (503, '10')
    assert cluster.state() == before


@pytest.mark.parametrize('container_headers', [None, {}])
def test_container_without_key_refuses(cluster, container_headers):
    if container_headers is not None:
        cluster.api('PUT', '/nokey', headers=container_headers)
    headers = _forged('PUT', '/nokey/o')
    before = cluster.state()
    assert cluster.sync('PUT', '/nokey/o', headers, b'x')[0] == 401
    assert cluster.state() == before


# -- X-Timestamp from anyone else: 400 ----------------------------------------

@pytest.mark.parametrize('method,path', [
    ('PUT', '/dest/o'), ('DELETE', '/dest/keep'), ('POST', '/dest/keep'),
    ('POST', '/dest'), ('PUT', '/other'), ('GET', '/dest/keep'),
])
def test_x_timestamp_on_token_request_400(cluster, method, path):
    cluster.api('PUT', '/dest/keep', body=b'k')
    before, since = cluster.state(), len(cluster.nodes.requests)
    status, _, body = cluster.api(method, path, body=b'x', headers={
        'X-Timestamp': WHEN})
    assert status == 400
    assert b'X-Timestamp is only accepted on container sync' in body
    assert cluster.writes(since) == [] and cluster.state() == before


def test_malformed_x_timestamp_on_sync_request_400(cluster):
    before = cluster.state()
    headers = cluster.signed('PUT', '/dest/o', 'yesterday')
    assert cluster.sync('PUT', '/dest/o', headers, b'x')[0] == 400
    assert cluster.state() == before


# -- what a sync request may not do: 403 --------------------------------------

@pytest.mark.parametrize('method,path,extra', [
    ('DELETE', '/dest', {}),
    ('PUT', '/dest', {}),
    ('GET', '/dest', {}),
    ('POST', '/dest', {}),
    ('POST', '/dest', {'X-Container-Sync-Point': SOURCE + ' 7',
                       'X-Container-Meta-A': 'b'}),
    ('POST', '/dest', {'X-Container-Sync-Point': SOURCE + ' 7',
                       'X-Container-Sync-To': ''}),
    ('POST', '/dest', {'X-Container-Sync-Point': SOURCE + ' 7',
                       'X-Remove-Container-Sync-Key': '1'}),
    ('POST', '/dest/keep', {}),
    ('GET', '', {}),
    ('HEAD', '', {}),
    ('POST', '', {}),
])
def test_sync_request_may_not(cluster, method, path, extra):
    cluster.api('PUT', '/dest/keep', body=b'k')
    before, since = cluster.state(), len(cluster.nodes.requests)
    headers = dict(cluster.signed(method, path), **extra)
    assert cluster.sync(method, path, headers)[0] == 403
    assert cluster.writes(since) == [] and cluster.state() == before


# -- sync points --------------------------------------------------------------

def test_sync_point_stored_and_shown_to_sync_requests_only(cluster):
    headers = dict(cluster.signed('POST', '/dest'), **{
        'X-Container-Sync-Point': SOURCE + ' 1600000000.00000 42'})
    assert cluster.sync('POST', '/dest', headers)[0] == 204
    stored = {k: v for db in cluster.nodes.containers.values()
              for k, v in db['meta'].items() if 'sysmeta' in k}
    assert stored == {'x-container-sysmeta-sync-point-' + SOURCE:
                      '1600000000.00000 42'}
    status, answer, _ = cluster.sync('HEAD', '/dest',
                                     cluster.signed('HEAD', '/dest'))
    assert status == 204
    assert answer['X-Container-Sync-Point-' + SOURCE] == \
        '1600000000.00000 42'
    assert 'X-Container-Sync-Key' not in answer
    for method in ('HEAD', 'GET'):
        _, answer, _ = cluster.api(method, '/dest')
        assert not [k for k in answer if 'sync-point' in k.lower()
                    or 'sysmeta' in k.lower()], answer


@pytest.mark.parametrize('value', [
    '', SOURCE, 'abc 1', 'ABCDEF0123 1', 'g' * 8 + ' 1', 'a' * 41 + ' 1',
    SOURCE + ' ' + 'v' * 201, SOURCE + ' a\x01b',
])
def test_bad_sync_point_400(cluster, value):
    before = cluster.state()
    headers = dict(cluster.signed('POST', '/dest'), **{
        'X-Container-Sync-Point': value})
    assert cluster.sync('POST', '/dest', headers)[0] == 400
    assert cluster.state() == before


def test_user_sysmeta_dropped(cluster):
    sysmeta = {'X-Container-Sysmeta-Sync-Point-' + SOURCE: 'forged'}
    assert cluster.api('PUT', '/c', headers=sysmeta)[0] == 201
    assert cluster.api('POST', '/dest', headers=sysmeta)[0] == 204
    assert cluster.api('POST', '', headers={
        'X-Account-Sysmeta-A': 'forged'})[0] == 204
    assert cluster.api('PUT', '/c/o', body=b'x', headers={
        'X-Object-Sysmeta-A': 'forged'})[0] == 201
    assert 'forged' not in cluster.state()


def test_stored_sysmeta_not_shown_to_users(cluster):
    for db in cluster.nodes.containers.values():
        db['meta']['x-container-sysmeta-other'] = 'hidden'
    for method in ('HEAD', 'GET'):
        _, answer, _ = cluster.api(method, '/dest')
        assert 'hidden' not in answer.values()


# -- X-Container-Sync-To ------------------------------------------------------

@pytest.mark.parametrize('value,status,reason', [
    ('//US/DFW1/AUTH_b/c2', 201, None),
    ('//us/dfw1/AUTH_b/c2', 201, None),
    ('http://127.0.0.1:8080/v1/AUTH_b/c2', 201, None),
    ('', 201, None),
    ('//EU/DFW1/AUTH_b/c2', 400, "unknown realm 'EU'"),
    ('//US/LON/AUTH_b/c2', 400, "unknown cluster 'LON' in realm 'US'"),
    ('http://evil.example/v1/AUTH_b/c2', 400,
     'host evil.example is not in allowed_sync_hosts'),
    ('http://127.0.0.1/v1/AUTH_b/..', 400, '".." segment'),
    ('somewhere', 400, 'X-Container-Sync-To must be //realm/cluster/'),
])
@pytest.mark.parametrize('method', ['PUT', 'POST'])
def test_sync_to_checked(cluster, method, value, status, reason):
    before = cluster.state()
    got, _, body = cluster.api(method, '/dest', headers={
        'X-Container-Sync-To': value})
    if status == 201:
        assert got == (202 if method == 'PUT' else 204)
        return
    assert got == status
    assert reason in body.decode()
    assert cluster.state() == before


# -- the node stores sysmeta --------------------------------------------------

def test_node_stores_and_returns_sysmeta(conf, manager):
    app = wsgi.NodeApp(conf)
    app.add_routes(container_server.ContainerRoutes(conf, manager)
                   .routes())
    path = direct_client.container_path('sda', 3, 'AUTH_a', 'c')
    assert node_call(app, 'PUT', path, {'X-Timestamp': ts()}).status == 201
    name = 'X-Container-Sysmeta-Sync-Point-' + SOURCE
    assert node_call(app, 'POST', path, {
        'X-Timestamp': ts(1), name: '5 7'}).status == 204
    reply = node_call(app, 'HEAD', path)
    assert {k.lower(): v for k, v in reply.headers.items()}[
        name.lower()] == '5 7'
    node_call(app, 'POST', path, {'X-Timestamp': ts(2), name: ''})
    reply = node_call(app, 'HEAD', path)
    assert name.lower() not in {k.lower() for k in reply.headers}
    reply = node_call(app, 'POST', path, {'X-Timestamp': ts(3),
                                          'X-Container-Sysmeta-': 'x'})
    assert reply.status == 400
