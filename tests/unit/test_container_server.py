"""Container and account routes, called in-process with signed
environs (real SQLite databases under a temporary device)."""

import json
import os
import urllib.parse

import pytest

from coordsync.common import direct_client as client
from coordsync.common import storage_policy
from coordsync.common import wsgi
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.container import server
from coordsync.obj import diskfile
from coordsync.reconciler import queue
from tests.unit.test_server import NOW
from tests.unit.test_server import call
from tests.unit.test_server import environ
from tests.unit.test_server import run_app

CONT = client.container_path('sda', 3, 'AUTH_a', 'c')
ACCT = client.account_path('sda', 5, 'AUTH_a')




def ts(offset=0):
    return Timestamp(NOW + offset).normal


class FakeRing:
    def __init__(self, nodes):
        self.nodes = nodes

    def get_nodes(self, account, container=None, obj=None):
        return 5, self.nodes

    def has_changed(self):
        return False


class FakeClient:
    """Records calls; answers ``status`` (or raises it if an exception)."""

    def __init__(self, status=201):
        self.status = status
        self.calls = []

    def call(self, node, method, path, headers=None, **kwargs):
        self.calls.append((node['device'], method, path, dict(headers)))
        if isinstance(self.status, Exception):
            raise self.status
        return self.status, {}, b''


@pytest.fixture
def accounts_client():
    return FakeClient()


@pytest.fixture
def app(conf, manager, accounts_client):
    app = wsgi.NodeApp(conf)
    ring = FakeRing([{'id': i, 'ip': '127.0.0.1', 'port': 1, 'device':
                      'ad%d' % i} for i in range(3)])
    app.add_routes(server.ContainerRoutes(
        conf, manager, node_client=accounts_client,
        account_ring=ring).routes())
    app.add_routes(server.AccountRoutes(conf, manager).routes())
    return app


def put_container(app, path=CONT, when=None, **headers):
    return call(app, 'PUT', path, {'X-Timestamp': when or ts(), **headers})


def put_row(app, name, when=None, size=3, path=CONT, **headers):
    base = path.replace(client.CONTAINERS, client.CONTAINER_ROWS, 1)
    return call(app, 'PUT', '%s/%s' % (base, urllib.parse.quote(name)), {
        'X-Timestamp': when or ts(), 'X-Size': str(size),
        'X-Content-Type': 'text/plain', 'X-Etag': 'e' * 32, **headers})


def delete_row(app, name, when, path=CONT):
    base = path.replace(client.CONTAINERS, client.CONTAINER_ROWS, 1)
    return call(app, 'DELETE', '%s/%s' % (base, urllib.parse.quote(name)),
                {'X-Timestamp': when})


def listing(app, path=CONT, **query):
    reply = call(app, 'GET', path, query=urllib.parse.urlencode(
        dict(query, format='json')))
    assert reply.status == 200, reply
    return [row.get('name', row.get('subdir'))
            for row in json.loads(reply.body)]


def disk_files(conf):
    found = []
    for root, _dirs, files in os.walk(conf.devices):
        found.extend(os.path.join(root, f) for f in files)
    return sorted(found)


# -- containers ---------------------------------------------------------------

def test_put_head_post_delete_a_container(app, accounts_client):
    reply = put_container(app, **{'X-Container-Meta-Color': 'blue',
                                  'X-Container-Read': '.r:*'})
    assert reply.status == 201, reply
    assert put_container(app, when=ts(1)).status == 202
    head = call(app, 'HEAD', CONT)
    assert head.status == 204
    assert head.headers['X-Container-Meta-Color'] == 'blue'
    assert head.headers['X-Container-Read'] == '.r:*'
    assert head.headers['X-Container-Object-Count'] == '0'
    assert head.headers['X-PUT-Timestamp'] == ts(1)
    assert head.headers['X-Backend-Storage-Policy-Index'] == '0'
    post = call(app, 'POST', CONT, {'X-Timestamp': ts(2),
                                    'X-Remove-Container-Meta-Color': 'x',
                                    'X-Container-Meta-Size': 'big'})
    assert post.status == 204
    head = call(app, 'HEAD', CONT)
    assert 'X-Container-Meta-Color' not in head.headers
    assert head.headers['X-Container-Meta-Size'] == 'big'
    # The account replicas got the container's row each time.
    puts = [c for c in accounts_client.calls if c[1] == 'PUT']
    assert len(puts) == 6
    assert puts[0][2] == client.account_row_path('ad0', 5, 'AUTH_a', 'c')
    assert puts[-1][3]['X-Put-Timestamp'] == ts(1)
    assert call(app, 'DELETE', CONT, {'X-Timestamp': ts(3)}).status == 204
    assert call(app, 'HEAD', CONT).status == 404
    assert call(app, 'GET', CONT).status == 404
    assert call(app, 'DELETE', CONT, {'X-Timestamp': ts(4)}).status == 404
    assert accounts_client.calls[-1][3]['X-Delete-Timestamp'] == ts(3)
    # A stale PUT (older than the delete) cannot bring it back...
    assert put_container(app, when=ts(2)).status == 409
    # ...a newer one does.
    assert put_container(app, when=ts(5)).status == 201
    assert call(app, 'HEAD', CONT).status == 204


def test_account_update_failures_are_not_fatal(app, accounts_client):
    accounts_client.status = client.NodeError('refused')
    assert put_container(app).status == 201
    accounts_client.status = 503
    assert put_container(app, when=ts(1)).status == 202


def test_reported_only_when_every_account_replica_took_it(
        app, conf, accounts_client):
    assert put_container(app).status == 201
    path = backend.container_db_path(
        os.path.join(conf.devices, 'sda'), 3, 'AUTH_a', 'c', 'pre', 'suf')
    info = backend.ContainerBroker(path).get_info()
    assert info['reported_put_timestamp'] == ts()
    accounts_client.status = 500
    assert put_container(app, when=ts(1)).status == 202
    info = backend.ContainerBroker(path).get_info()
    assert info['reported_put_timestamp'] == ts()


def test_object_rows_and_listings(app):
    assert put_container(app).status == 201
    names = ['a', 'b/1', 'b/2', 'c', 'd/x/y', 'e']
    for i, name in enumerate(names):
        assert put_row(app, name, when=ts(i), size=i).status == 201
    assert delete_row(app, 'e', ts(100)).status == 204
    # An older PUT of a deleted object does not bring it back.
    assert put_row(app, 'e', when=ts(50)).status == 201
    assert listing(app) == names[:-1]
    assert listing(app, prefix='b/') == ['b/1', 'b/2']
    assert listing(app, delimiter='/') == ['a', 'b/', 'c', 'd/']
    assert listing(app, prefix='d/', delimiter='/') == ['d/x/']
    assert listing(app, marker='b/1') == ['b/2', 'c', 'd/x/y']
    assert listing(app, end_marker='c') == ['a', 'b/1', 'b/2']
    assert listing(app, limit='2') == ['a', 'b/1']
    assert listing(app, reverse='true') == names[-2::-1]
    assert listing(app, limit='0') == []
    reply = call(app, 'GET', CONT, query='format=json&prefix=a')
    assert json.loads(reply.body) == [{
        'name': 'a', 'hash': 'e' * 32, 'bytes': 0,
        'content_type': 'text/plain',
        'last_modified': server.isoformat(ts(0))}]
    assert reply.headers['X-Container-Object-Count'] == '5'
    assert reply.headers['X-Container-Bytes-Used'] == str(1 + 2 + 3 + 4)
    plain = call(app, 'GET', CONT, query='delimiter=/')
    assert plain.status == 200
    assert plain.body == b'a\nb/\nc\nd/\n'
    assert plain.headers['Content-Type'].startswith('text/plain')
    empty = call(app, 'GET', CONT, query='prefix=zzz')
    assert empty.status == 204 and empty.body == b''
    assert call(app, 'GET', CONT, query='prefix=zzz&format=json'
                ).body == b'[]'
    # Not empty: no DELETE.
    assert call(app, 'DELETE', CONT, {'X-Timestamp': ts(200)}).status == 409


def test_isoformat_is_swifts():
    assert server.isoformat('1700000000.00000') == \
        '2023-11-14T22:13:20.000000'
    assert server.isoformat('1700000000.12345') == \
        '2023-11-14T22:13:20.123450'


def test_rows_into_a_missing_container_are_404(app, conf):
    assert put_row(app, 'o').status == 404
    assert delete_row(app, 'o', ts()).status == 404
    assert disk_files(conf) == []


def test_unknown_device_is_507(app):
    path = client.container_path('nope', 3, 'AUTH_a', 'c')
    assert put_container(app, path).status == 507
    assert call(app, 'GET', client.account_path('nope', 1, 'a')
                ).status == 507


def test_a_corrupt_database_is_quarantined_and_404(app, conf):
    assert put_container(app).status == 201
    path = backend.container_db_path(
        os.path.join(conf.devices, 'sda'), 3, 'AUTH_a', 'c', 'pre', 'suf')
    backend.ContainerBroker(path).close()
    for side in ('-wal', '-shm'):
        if os.path.exists(path + side):
            os.unlink(path + side)
    with open(path, 'wb') as fh:
        fh.write(b'this is not a database' * 100)
    # NOTE: the route's cached broker may hold a connection: a fresh app.
    fresh = wsgi.NodeApp(conf)
    routes = server.ContainerRoutes(conf, app_manager(conf),
                                    node_client=FakeClient(),
                                    account_ring=FakeRing([]))
    fresh.add_routes(routes.routes())
    assert call(fresh, 'HEAD', CONT).status == 404
    assert routes.quarantined == 1
    assert not os.path.exists(path)
    assert os.listdir(os.path.join(conf.devices, 'sda', 'quarantined',
                                   'containers'))


def app_manager(conf):
    return diskfile.DiskFileManager(conf.devices, hash_prefix='pre',
                                    hash_suffix='suf')


# -- accounts -----------------------------------------------------------------

def test_account_rows_autocreate_and_list(app):
    row = client.account_row_path('sda', 5, 'AUTH_a', 'c1')
    headers = {'X-Put-Timestamp': ts(), 'X-Delete-Timestamp': '0',
               'X-Object-Count': '3', 'X-Bytes-Used': '30',
               'X-Backend-Storage-Policy-Index': '0', 'X-Timestamp': ts()}
    assert call(app, 'PUT', row, headers).status == 201
    row2 = client.account_row_path('sda', 5, 'AUTH_a', 'c2')
    assert call(app, 'PUT', row2, dict(headers, **{
        'X-Object-Count': '1', 'X-Bytes-Used': '5'})).status == 201
    head = call(app, 'HEAD', ACCT)
    assert head.status == 204
    assert head.headers['X-Account-Container-Count'] == '2'
    assert head.headers['X-Account-Object-Count'] == '4'
    assert head.headers['X-Account-Bytes-Used'] == '35'
    reply = call(app, 'GET', ACCT, query='format=json')
    assert json.loads(reply.body) == [
        {'name': 'c1', 'count': 3, 'bytes': 30,
         'last_modified': server.isoformat(ts())},
        {'name': 'c2', 'count': 1, 'bytes': 5,
         'last_modified': server.isoformat(ts())}]
    assert call(app, 'GET', ACCT).body == b'c1\nc2\n'
    # The container deleted: gone from the listing.
    assert call(app, 'PUT', row, dict(headers, **{
        'X-Delete-Timestamp': ts(1), 'X-Object-Count': '0',
        'X-Bytes-Used': '0', 'X-Timestamp': ts(1)})).status == 201
    assert call(app, 'GET', ACCT).body == b'c2\n'


def test_account_put_post_delete(app):
    assert call(app, 'PUT', ACCT, {'X-Timestamp': ts(),
                                   'X-Account-Meta-A': '1'}).status == 201
    assert call(app, 'PUT', ACCT, {'X-Timestamp': ts(1)}).status == 202
    assert call(app, 'POST', ACCT, {'X-Timestamp': ts(2),
                                    'X-Account-Meta-B': '2'}).status == 204
    head = call(app, 'HEAD', ACCT)
    assert head.headers['X-Account-Meta-A'] == '1'
    assert head.headers['X-Account-Meta-B'] == '2'
    empty = call(app, 'GET', ACCT)
    assert empty.status == 204
    assert call(app, 'DELETE', ACCT, {'X-Timestamp': ts(3)}).status == 204
    assert call(app, 'HEAD', ACCT).status == 404
    assert call(app, 'PUT', ACCT, {'X-Timestamp': ts(4)}).status == 409
    assert call(app, 'DELETE', ACCT, {'X-Timestamp': ts(5)}).status == 404


# -- hostile requests ---------------------------------------------------------

ROW = client.CONTAINER_ROWS + '/sda/3/AUTH_a/c/o'
AROW = client.ACCOUNT_ROWS + '/sda/5/AUTH_a/c'
GOOD_AROW = {'X-Put-Timestamp': ts(), 'X-Delete-Timestamp': '0',
             'X-Object-Count': '0', 'X-Bytes-Used': '0'}
GOOD_ROW = {'X-Timestamp': ts(), 'X-Size': '1', 'X-Content-Type': 't',
            'X-Etag': 'e'}
BAD = [
    # (method, path, headers, query, status)
    ('PUT', '/containers/sda/3/AUTH_a', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/AUTH_a/c/x', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/AUTH_a/..', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/../c', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/../3/a/c', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/x/a/c', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/-1/a/c', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/99999999999/a/c', {'X-Timestamp': ts()}, '',
     400),
    ('PUT', '/containers/sda/3/a/c%00', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/a/c%0A', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/a/' + 'c' * 257, {'X-Timestamp': ts()}, '',
     400),
    ('PUT', '/containers/sda/3/' + 'a' * 257 + '/c', {'X-Timestamp': ts()},
     '', 400),
    ('PUT', '/containers/sda/3/a/%FF', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/containers/sda/3/a/c%2Fd', {'X-Timestamp': ts()}, '', 400),
    ('PUT', CONT, {}, '', 400),
    ('PUT', CONT, {'X-Timestamp': 'yesterday'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': '-1'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': 'nan'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': '1' * 40}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Backend-Storage-Policy-Index': 'x'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Backend-Storage-Policy-Index': '-1'}, '', 400),
    # The node knows policy 0 only.
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Backend-Storage-Policy-Index': '1'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Backend-Storage-Policy-Default': '1'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Backend-Storage-Policy-Default': 'gold'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Container-Meta-Big': 'v' * 257}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Container-Meta-' + 'n' * 129: 'v'}, '', 400),
    ('PUT', CONT, {'X-Timestamp': ts(),
                   'X-Container-Meta-Ctl': 'a\x01b'}, '', 400),
    ('PUT', CONT, dict({'X-Timestamp': ts()}, **{
        'X-Container-Meta-K%d' % i: 'v' for i in range(91)}), '', 400),
    ('PUT', CONT, dict({'X-Timestamp': ts()}, **{
        'X-Container-Meta-K%d' % i: 'v' * 250 for i in range(20)}), '',
     400),
    ('POST', CONT, {}, '', 400),
    ('POST', CONT, {'X-Timestamp': 'x'}, '', 400),
    ('DELETE', CONT, {}, '', 400),
    ('DELETE', CONT, {'X-Timestamp': '1e400'}, '', 400),
    ('GET', CONT, {}, 'limit=abc', 400),
    ('GET', CONT, {}, 'limit=-1', 400),
    ('GET', CONT, {}, 'limit=10001', 412),
    ('GET', CONT, {}, 'limit=99999999999999999999', 400),
    ('GET', CONT, {}, 'format=xml2', 400),
    ('GET', CONT, {}, 'delimiter=ab', 412),
    ('GET', CONT, {}, 'prefix=%FF', 400),
    ('GET', CONT, {}, 'marker=a%00', 400),
    ('GET', CONT, {}, 'marker=' + 'm' * 1025, 400),
    ('GET', CONT, {}, 'prefix=a&prefix=b', 400),
    ('GET', CONT, {}, 'reverse=maybe', 400),
    ('PUT', ROW, {}, '', 400),
    ('PUT', ROW, dict(GOOD_ROW, **{'X-Size': '-1'}), '', 400),
    ('PUT', ROW, dict(GOOD_ROW, **{'X-Size': 'big'}), '', 400),
    ('PUT', ROW, {k: v for k, v in GOOD_ROW.items() if k != 'X-Etag'}, '',
     400),
    ('PUT', ROW, {k: v for k, v in GOOD_ROW.items()
                  if k != 'X-Content-Type'}, '', 400),
    ('PUT', ROW, dict(GOOD_ROW, **{'X-Content-Type': 't' * 300}), '', 400),
    ('PUT', ROW, dict(GOOD_ROW, **{'X-Timestamp': 'now'}), '', 400),
    ('PUT', client.CONTAINER_ROWS + '/sda/3/AUTH_a/c/a/../b', GOOD_ROW, '',
     400),
    ('PUT', client.CONTAINER_ROWS + '/sda/3/AUTH_a/c', GOOD_ROW, '', 400),
    ('PUT', client.CONTAINER_ROWS + '/sda/3/AUTH_a/c/' + 'o' * 1025,
     GOOD_ROW, '', 400),
    ('DELETE', ROW, {}, '', 400),
    ('PUT', ACCT, {}, '', 400),
    ('PUT', '/accounts/sda/5', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/accounts/sda/5/a/b', {'X-Timestamp': ts()}, '', 400),
    ('PUT', '/accounts/sda/5/..', {'X-Timestamp': ts()}, '', 400),
    ('PUT', ACCT, {'X-Timestamp': ts(),
                   'X-Account-Meta-X': 'v' * 300}, '', 400),
    ('GET', ACCT, {}, 'limit=x', 400),
    ('GET', ACCT, {}, 'limit=20000', 412),
    ('PUT', AROW, {}, '', 400),
    ('PUT', AROW, dict(GOOD_AROW, **{'X-Object-Count': '-3'}), '', 400),
    ('PUT', AROW, dict(GOOD_AROW, **{'X-Put-Timestamp': 'x'}), '', 400),
    ('PUT', AROW, {k: v for k, v in GOOD_AROW.items()
                   if k != 'X-Bytes-Used'}, '', 400),
    ('PUT', AROW + '/extra', GOOD_AROW, '', 400),
    ('PATCH', CONT, {}, '', 405),
    ('GET', '/account-rows/sda/5/a/c', {}, '', 405),
]


@pytest.mark.parametrize('method,path,headers,query,status', BAD)
def test_bad_requests_get_4xx_and_change_nothing(app, conf, method, path,
                                                 headers, query,
                                                 status):
    before = disk_files(conf)
    reply = run_app(app, environ(method, path, headers, query=query))
    assert reply.status == status, reply
    assert reply.body.count(b'\n') == 1
    assert disk_files(conf) == before


@pytest.mark.parametrize('path', [CONT, ACCT, ROW, AROW])
def test_unsigned_and_badly_signed_requests_are_401(app, conf,
                                                    path):
    headers = {'X-Timestamp': ts(), **GOOD_ROW, **GOOD_AROW}
    assert run_app(app, environ('PUT', path, headers, signed=False)
                   ).status == 401
    assert run_app(app, environ('PUT', path, headers, secret='wrong')
                   ).status == 401
    assert disk_files(conf) == []


def test_bad_requests_are_more_than_fifty():
    assert len(BAD) >= 50


# -- storage policies ---------------------------------------------------------

def two_policies():
    return storage_policy.StoragePolicies([
        storage_policy.StoragePolicy(0, 'gold', 'o0', is_default=True),
        storage_policy.StoragePolicy(1, 'silver', 'o1')])


@pytest.fixture
def papp(conf, manager, accounts_client):
    """The node app with two policies, gold (0, default) and silver."""
    app = wsgi.NodeApp(conf)
    ring = FakeRing([{'id': i, 'ip': '127.0.0.1', 'port': 1, 'device':
                      'ad%d' % i} for i in range(3)])
    app.add_routes(server.ContainerRoutes(
        conf, manager, node_client=accounts_client, account_ring=ring,
        policies=two_policies()).routes())
    app.add_routes(server.AccountRoutes(conf, manager).routes())
    return app


def broker_of(conf, part=3, account='AUTH_a', container='c'):
    return backend.ContainerBroker(backend.container_db_path(
        os.path.join(conf.devices, 'sda'), part, account, container, 'pre',
        'suf'))


def state_of(reply):
    """What :func:`queue.winning_policy` needs, from a HEAD's headers."""
    headers = reply.headers
    return {'storage_policy_index':
            int(headers['X-Backend-Storage-Policy-Index']),
            'put_timestamp': headers['X-Backend-Put-Timestamp'],
            'delete_timestamp': headers['X-Backend-Delete-Timestamp'],
            'status_changed_at': headers['X-Backend-Status-Changed-At'],
            'deleted': headers['X-Backend-Deleted'] == 'true'}


def test_a_new_container_takes_the_index_else_the_default(papp, conf):
    assert put_container(papp, **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert call(papp, 'HEAD', CONT).headers[
        'X-Backend-Storage-Policy-Index'] == '1'
    other = client.container_path('sda', 3, 'AUTH_a', 'd')
    assert put_container(papp, other, **{
        'X-Backend-Storage-Policy-Default': '1'}).status == 201
    assert call(papp, 'HEAD', other).headers[
        'X-Backend-Storage-Policy-Index'] == '1'
    third = client.container_path('sda', 3, 'AUTH_a', 'e')
    assert put_container(papp, third).status == 201
    assert call(papp, 'HEAD', third).headers[
        'X-Backend-Storage-Policy-Index'] == '0'


def test_a_live_container_keeps_its_policy(papp, conf):
    assert put_container(papp, **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    before = broker_of(conf).get_info()
    reply = put_container(papp, when=ts(1), **{
        'X-Backend-Storage-Policy-Index': '0',
        'X-Container-Meta-A': 'b'})
    assert reply.status == 409
    assert reply.headers['X-Backend-Storage-Policy-Index'] == '1'
    assert reply.body.count(b'\n') == 1
    # Nothing changed: policy, put timestamp, metadata.
    assert broker_of(conf).get_info() == before
    assert 'X-Container-Meta-A' not in call(papp, 'HEAD', CONT).headers
    # The default, the same index, or none: 202, policy kept.
    for n, extra in enumerate(({'X-Backend-Storage-Policy-Default': '0'},
                               {'X-Backend-Storage-Policy-Index': '1'},
                               {})):
        assert put_container(papp, when=ts(2 + n), **extra).status == 202
    head = call(papp, 'HEAD', CONT)
    assert head.headers['X-Backend-Storage-Policy-Index'] == '1'
    assert head.headers['X-Backend-Put-Timestamp'] == ts(4)


def test_a_recreated_container_takes_the_new_policy(papp, conf):
    assert put_container(papp, **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert call(papp, 'DELETE', CONT, {'X-Timestamp': ts(1)}).status == 204
    gone = call(papp, 'HEAD', CONT)
    assert gone.status == 404
    assert state_of(gone) == {
        'storage_policy_index': 1, 'put_timestamp': ts(),
        'delete_timestamp': ts(1), 'status_changed_at': ts(1),
        'deleted': True}
    assert call(papp, 'GET', CONT).headers['X-Backend-Deleted'] == 'true'
    assert put_container(papp, when=ts(2), **{
        'X-Backend-Storage-Policy-Default': '0'}).status == 201
    head = call(papp, 'HEAD', CONT)
    assert head.status == 204
    assert state_of(head) == {
        'storage_policy_index': 0, 'put_timestamp': ts(2),
        'delete_timestamp': ts(1), 'status_changed_at': ts(2),
        'deleted': False}
    assert call(papp, 'GET', CONT).headers['X-Backend-Deleted'] == 'false'
    # Deleted again and recreated with a named policy.
    assert call(papp, 'DELETE', CONT, {'X-Timestamp': ts(3)}).status == 204
    assert put_container(papp, when=ts(4), **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert state_of(call(papp, 'HEAD', CONT))['storage_policy_index'] == 1


def test_a_stale_put_of_a_deleted_container_changes_nothing(papp, conf):
    assert put_container(papp).status == 201
    assert call(papp, 'DELETE', CONT, {'X-Timestamp': ts(5)}).status == 204
    before = broker_of(conf).get_info()
    assert put_container(papp, when=ts(3), **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 409
    assert broker_of(conf).get_info() == before


def test_replica_states_decide_the_policy(papp):
    """The reconciler reads every replica's HEAD (a 404 of a deleted one
    included) and ranks them with winning_policy: here the replica that
    missed the delete (gold) loses to the recreated one (silver)."""
    stale = client.container_path('sda', 4, 'AUTH_a', 'c')
    assert put_container(papp, stale, when=ts()).status == 201
    assert put_container(papp, when=ts()).status == 201
    assert call(papp, 'DELETE', CONT, {'X-Timestamp': ts(1)}).status == 204
    gone = call(papp, 'HEAD', CONT)
    recreated = put_container(papp, when=ts(2), **{
        'X-Backend-Storage-Policy-Index': '1'})
    assert recreated.status == 201
    states = [state_of(call(papp, 'HEAD', stale)),
              state_of(call(papp, 'HEAD', CONT))]
    assert queue.winning_policy(states)['storage_policy_index'] == 1
    assert queue.winning_policy(states[::-1])['storage_policy_index'] == 1
    # Before the recreate, the replica that missed the delete wins over
    # the deleted one (the container is live somewhere).
    assert queue.winning_policy([state_of(gone), states[0]]) == states[0]


@pytest.mark.parametrize('header', ['X-Backend-Storage-Policy-Index',
                                    'X-Backend-Storage-Policy-Default'])
def test_a_policy_unknown_to_the_node_is_400(papp, conf, header):
    reply = put_container(papp, **{header: '2'})
    assert reply.status == 400
    assert reply.body.count(b'\n') == 1
    assert disk_files(conf) == []


def test_rows_of_a_policy_are_listed_by_a_container_of_it(papp, conf):
    assert put_container(papp, **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert put_row(papp, 'mine', **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert put_row(papp, 'misplaced').status == 201
    assert listing(papp) == ['mine']
    head = call(papp, 'HEAD', CONT)
    assert head.headers['X-Container-Object-Count'] == '1'


# -- auto-create --------------------------------------------------------------

QUEUE = client.container_path('sda', 3, queue.MISPLACED_ACCOUNT,
                              '1700000000')


def test_rows_autocreate_the_containers_of_dot_accounts(papp, conf,
                                                        accounts_client):
    name = '1:/AUTH_a/c/o'
    assert put_row(papp, name, when=ts(7), path=QUEUE).status == 201
    head = call(papp, 'HEAD', QUEUE)
    assert head.status == 204
    assert head.headers['X-Backend-Put-Timestamp'] == ts(7)
    assert head.headers['X-Backend-Storage-Policy-Index'] == '0'
    assert listing(papp, QUEUE) == [name]
    # Reported to the account, so the reconciler finds the queue.
    reports = [c for c in accounts_client.calls if c[1] == 'PUT']
    assert len(reports) == 3
    assert reports[0][2] == client.account_row_path(
        'ad0', 5, queue.MISPLACED_ACCOUNT, '1700000000')
    # Once it exists, rows are merged as anywhere (no new report).
    assert put_row(papp, name + '2', when=ts(8), path=QUEUE).status == 201
    assert delete_row(papp, name, ts(9), path=QUEUE).status == 204
    assert listing(papp, QUEUE) == [name + '2']
    assert len([c for c in accounts_client.calls if c[1] == 'PUT']) == 3


def test_a_row_delete_autocreates_too(papp):
    path = client.container_path('sda', 3, '.other', 'q')
    assert delete_row(papp, 'o', ts(3), path=path).status == 204
    head = call(papp, 'HEAD', path)
    assert head.status == 204
    assert head.headers['X-Container-Object-Count'] == '0'
    assert head.headers['X-Backend-Put-Timestamp'] == ts(3)


def test_a_row_autocreates_with_its_policy(papp):
    assert put_row(papp, 'o', path=QUEUE, **{
        'X-Backend-Storage-Policy-Index': '1'}).status == 201
    assert call(papp, 'HEAD', QUEUE).headers[
        'X-Backend-Storage-Policy-Index'] == '1'
    assert listing(papp, QUEUE) == ['o']


def test_rows_do_not_autocreate_other_accounts(papp, conf):
    assert put_row(papp, 'o').status == 404
    assert delete_row(papp, 'o', ts()).status == 404
    assert disk_files(conf) == []


# -- per-policy account figures -----------------------------------------------

def test_account_figures_per_policy(app):
    for name, policy, count in (('c1', '0', '3'), ('c2', '1', '2'),
                                ('c3', '1', '4')):
        row = client.account_row_path('sda', 5, 'AUTH_a', name)
        assert call(app, 'PUT', row, {
            'X-Put-Timestamp': ts(), 'X-Delete-Timestamp': '0',
            'X-Object-Count': count, 'X-Bytes-Used': count + '0',
            'X-Backend-Storage-Policy-Index': policy,
            'X-Timestamp': ts()}).status == 201
    for method in ('HEAD', 'GET'):
        headers = call(app, method, ACCT).headers
        assert {k: v for k, v in headers.items()
                if k.startswith('X-Backend-Storage-Policy-')} == {
            'X-Backend-Storage-Policy-0-Container-Count': '1',
            'X-Backend-Storage-Policy-0-Object-Count': '3',
            'X-Backend-Storage-Policy-0-Bytes-Used': '30',
            'X-Backend-Storage-Policy-1-Container-Count': '2',
            'X-Backend-Storage-Policy-1-Object-Count': '6',
            'X-Backend-Storage-Policy-1-Bytes-Used': '60'}
