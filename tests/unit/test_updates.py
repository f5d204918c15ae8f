"""Object -> container updates: headers, sends, async pendings."""

import json
import os

import pytest

from coordsync.common import direct_client
from coordsync.common import hashing
from coordsync.common.timestamp import Timestamp
from coordsync.obj import diskfile
from coordsync.obj import updates
from tests.unit.test_server import call
from tests.unit.test_server import ts

OBJ = '/objects/sda/7/AUTH_a/c/o'




class FakeClient:
    def __init__(self, statuses):
        self.statuses = statuses
        self.calls = []

    def call(self, node, method, path, headers=None, **kwargs):
        self.calls.append((node['device'], method, path, dict(headers)))
        status = self.statuses.get(node['device'], 201)
        if isinstance(status, Exception):
            raise status
        return status, {}, b''


class FakeRing:
    devices = [{'id': i, 'ip': '10.0.0.%d' % i, 'port': 6200,
                'device': 'c%d' % i} for i in range(3)]

    def has_changed(self):
        return False


def headers(hosts=3):
    nodes = FakeRing.devices[:hosts]
    return updates.target_headers(9, nodes)


def test_targets_round_trip():
    part, nodes = updates.container_targets(headers().get)
    assert part == 9
    assert nodes == [{'ip': d['ip'], 'port': 6200, 'device': d['device']}
                     for d in FakeRing.devices]
    assert updates.container_targets({}.get) is None
    ipv6 = updates.target_headers(1, [{'ip': '::1', 'port': 5,
                                       'device': 'd'}])
    assert updates.container_targets(ipv6.get)[1][0]['ip'] == '::1'


@pytest.mark.parametrize('bad', [
    {'X-Container-Partition': '1'},
    {'X-Container-Partition': 'x', 'X-Container-Host': 'a:1',
     'X-Container-Device': 'd'},
    {'X-Container-Partition': '1', 'X-Container-Host': 'a:1,b:2',
     'X-Container-Device': 'd'},
    {'X-Container-Partition': '1', 'X-Container-Host': 'a',
     'X-Container-Device': 'd'},
    {'X-Container-Partition': '1', 'X-Container-Host': 'a:99999',
     'X-Container-Device': 'd'},
    {'X-Container-Partition': '1', 'X-Container-Host': 'a:1',
     'X-Container-Device': '..'},
])
def test_bad_targets(bad):
    with pytest.raises(ValueError):
        updates.container_targets(bad.get)


@pytest.fixture
def sent(conf, manager, monkeypatch):
    """An app whose container updates go to a FakeClient."""
    from coordsync.obj import server
    app = server.NodeServer(conf, manager)
    fake = FakeClient({})
    app.container_updates.client = fake
    app.container_updates.ring = FakeRing()
    return app, fake


def pendings(conf):
    found = []
    for root, _dirs, files in os.walk(conf.devices):
        if updates.ASYNC_DIR in root:
            found.extend(os.path.join(root, f) for f in files)
    return found


def test_put_and_delete_send_rows(sent, conf):
    app, fake = sent
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(), 'Content-Length':
                                   '5', 'Content-Type': 'text/x',
                                   **headers()}, b'hello')
    assert reply.status == 201
    assert [c[:3] for c in fake.calls] == [
        ('c%d' % i, 'PUT', direct_client.container_row_path(
            'c%d' % i, 9, 'AUTH_a', 'c', 'o')) for i in range(3)]
    assert fake.calls[0][3] == {
        'X-Timestamp': ts(), 'X-Size': '5', 'X-Content-Type': 'text/x',
        'X-Etag': '5d41402abc4b2a76b9719d911017c592',
        'X-Backend-Storage-Policy-Index': '0'}
    reply = call(app, 'DELETE', OBJ, {'X-Timestamp': ts(1), **headers(1)})
    assert reply.status == 204
    assert fake.calls[-1][1:] == ('DELETE', direct_client.container_row_path(
        'c0', 9, 'AUTH_a', 'c', 'o'), {
        'X-Timestamp': ts(1), 'X-Backend-Storage-Policy-Index': '0'})
    assert pendings(conf) == []


def test_a_failed_update_is_saved_and_the_put_succeeds(
        sent, conf):
    app, fake = sent
    fake.statuses = {'c1': direct_client.NodeError('down'), 'c2': 404}
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(), 'Content-Length':
                                   '2', **headers()}, b'hi')
    assert reply.status == 201
    (path,) = pendings(conf)
    obj_hash = hashing.hash_path('AUTH_a', 'c', 'o', prefix='pre',
                                 suffix='suf')
    assert path == os.path.join(conf.devices, 'sda', 'async_pending',
                                obj_hash[-3:], '%s-%s' % (obj_hash, ts()))
    with open(path) as fh:
        data = json.load(fh)
    assert data == {'version': 1, 'op': 'PUT', 'account': 'AUTH_a',
                    'container': 'c', 'obj': 'o',
                    'headers': fake.calls[0][3], 'successes': [0]}
    assert updates.read_pending(path) == data


def test_bad_target_headers_are_400_before_writing(sent, conf):
    app, fake = sent
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(), 'Content-Length':
                                   '2', 'X-Container-Partition': 'x',
                                   'X-Container-Host': 'a:1',
                                   'X-Container-Device': 'd'}, b'hi')
    assert reply.status == 400
    assert fake.calls == []
    assert diskfile.DiskFileManager(conf.devices).partitions('sda') == []


def test_slow_replicas_become_pendings(manager):
    from coordsync import concurrency

    class Slow(FakeClient):
        def call(self, node, *args, **kwargs):
            if node['device'] == 'c2':
                concurrency.sleep(5)
            return super().call(node, *args, **kwargs)
    ups = updates.ContainerUpdates(manager, Slow({}), timeout=0.2,
                                   container_ring=FakeRing())
    path = ups.update('PUT', 'sda', 'a', 'c', 'o', updates.row_headers(
        'PUT', Timestamp(ts()), {'Content-Length': '1', 'ETag': 'e'}),
        updates.container_targets(headers().get))
    assert updates.read_pending(path)['successes'] == [0, 1]


@pytest.mark.parametrize('data', [
    [], {'version': 2}, {'version': 1, 'op': 'GET'},
    {'version': 1, 'op': 'PUT', 'account': 'a', 'container': '..',
     'obj': 'o', 'headers': {'X-Timestamp': ts()}, 'successes': []},
    {'version': 1, 'op': 'DELETE', 'account': 'a', 'container': 'c',
     'obj': 'o', 'headers': {'X-Timestamp': 'x'}, 'successes': []},
    {'version': 1, 'op': 'DELETE', 'account': 'a', 'container': 'c',
     'obj': 'o', 'headers': {'X-Timestamp': ts(), 'X-Evil': '1'},
     'successes': []},
    {'version': 1, 'op': 'PUT', 'account': 'a', 'container': 'c',
     'obj': 'o', 'headers': {'X-Timestamp': ts()}, 'successes': []},
    {'version': 1, 'op': 'DELETE', 'account': 'a', 'container': 'c',
     'obj': 'o', 'headers': {'X-Timestamp': ts()}, 'successes': ['x']},
])
def test_malformed_pendings_are_refused(data):
    with pytest.raises(updates.BadPending):
        updates.check_pending(data)
