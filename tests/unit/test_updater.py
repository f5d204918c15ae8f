"""The object updater: sweeping async pendings of a device."""

import json
import os

import pytest
from oslo_config import cfg
from oslo_log import log as logging

from coordsync import conf as coordsync_conf
from coordsync.common import direct_client
from coordsync.common.timestamp import Timestamp
from coordsync.container import updater
from coordsync.obj import diskfile
from coordsync.obj import updates
from tests.unit import fakes
from tests.unit.test_worker import FakeCoordinator

LOG = logging.getLogger(__name__)
NOW = 1700000000.0
HASH = 'a' * 29 + 'abc'
OTHER = 'b' * 29 + 'def'


def ts(offset=0):
    return Timestamp(NOW + offset).normal


class FakeRing:
    """Three container replicas of every container."""

    nodes = [{'id': i, 'ip': '10.0.0.%d' % i, 'port': 6200,
              'device': 'c%d' % i} for i in range(3)]
    devices = nodes

    def get_nodes(self, account, container=None, obj=None):
        return 4, [dict(n) for n in self.nodes]

    def has_changed(self):
        return False


class Sender:
    def __init__(self, statuses=None):
        self.statuses = statuses or {}
        self.sent = []

    def __call__(self, node, op, path, headers):
        self.sent.append((node['id'], op, path))
        status = self.statuses.get(node['id'], 201)
        if isinstance(status, Exception):
            raise status
        return status


def write(dev, obj_hash=HASH, when=None, op='PUT', successes=(),
          obj='o'):
    headers = {'X-Timestamp': when or ts()}
    if op == 'PUT':
        headers.update({'X-Size': '1', 'X-Content-Type': 't',
                        'X-Etag': 'e'})
    return updates.write_pending(dev, obj_hash, op, 'a', 'c', obj, headers,
                                 successes)


def sweep(dev, send, **kw):
    return updater.DeviceSweep(str(dev), FakeRing(), send, LOG,
                               clock=lambda: NOW + 100, **kw)


def left(dev):
    found = []
    for root, _dirs, files in os.walk(os.path.join(dev, 'async_pending')):
        found.extend(os.path.join(root, f) for f in files)
    return sorted(found)


def test_a_pending_sent_everywhere_is_unlinked(tmp_path):
    dev = str(tmp_path)
    write(dev, successes=[1])
    send = Sender()
    stats = sweep(dev, send).run()
    assert [s[0] for s in send.sent] == [0, 2]
    assert send.sent[0][1:] == ('PUT', direct_client.container_row_path(
        'c0', 4, 'a', 'c', 'o'))
    assert left(dev) == []
    assert (stats.pendings, stats.successes, stats.unlinked) == (1, 2, 1)


def test_successes_are_recorded_and_only_the_rest_retried(tmp_path):
    dev = str(tmp_path)
    path = write(dev, op='DELETE')
    send = Sender({2: direct_client.NodeError('down'), 1: 404})
    stats = sweep(dev, send).run()
    assert stats.failures == 2 and stats.left == 1
    assert stats.oldest_age == pytest.approx(100, abs=1)
    assert updates.read_pending(path)['successes'] == [0]
    send = Sender({2: 503})
    sweep(dev, send).run()
    assert [s[0] for s in send.sent] == [1, 2]
    assert updates.read_pending(path)['successes'] == [0, 1]
    send = Sender()
    stats = sweep(dev, send).run()
    assert [s[0] for s in send.sent] == [2]
    assert left(dev) == [] and stats.unlinked == 1


def test_only_the_newest_pending_per_object_is_kept(tmp_path):
    dev = str(tmp_path)
    write(dev, when=ts(1))
    newest = write(dev, when=ts(3))
    write(dev, when=ts(2))
    write(dev, obj_hash=OTHER)
    send = Sender({0: 500})
    stats = sweep(dev, send).run()
    assert stats.superseded == 2 and stats.pendings == 2
    assert newest in left(dev) and len(left(dev)) == 2


@pytest.mark.parametrize('content', [
    b'not json', b'{"version": 1}', json.dumps({
        'version': 1, 'op': 'PUT', 'account': 'a', 'container': 'c',
        'obj': 'o', 'headers': {'X-Timestamp': ts(9), 'X-Size': '1',
                                'X-Content-Type': 't', 'X-Etag': 'e'},
        'successes': []}).encode(), b'\x80' * 10, b'x' * 70000])
def test_a_corrupt_pending_is_quarantined_and_the_sweep_goes_on(
        tmp_path, content):
    dev = str(tmp_path)
    good = write(dev, obj_hash=OTHER)
    bad = os.path.join(dev, 'async_pending', HASH[-3:], '%s-%s' % (HASH,
                                                                   ts()))
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    with open(bad, 'wb') as fh:
        fh.write(content)
    send = Sender()
    stats = sweep(dev, send).run()
    assert stats.quarantined == 1 and stats.unlinked == 1
    assert left(dev) == []
    assert os.listdir(os.path.join(dev, 'quarantined', 'async_pending')) \
        == [os.path.basename(bad)]
    assert not os.path.exists(good)


def test_stray_names_are_quarantined_and_temp_files_left_alone(tmp_path):
    dev = str(tmp_path)
    os.makedirs(os.path.join(dev, 'async_pending', 'abc'))
    with open(os.path.join(dev, 'async_pending', 'abc', 'junk'), 'w'):
        pass
    tmp = os.path.join(dev, 'async_pending', 'abc', '.x.tmp')
    with open(tmp, 'w'):
        pass
    stats = sweep(dev, Sender()).run()
    assert stats.quarantined == 1
    assert os.path.exists(tmp)


def test_no_async_dir_is_nothing_to_do(tmp_path):
    stats = sweep(str(tmp_path), Sender()).run()
    assert stats.pendings == 0


# -- the worker ---------------------------------------------------------------

@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('cluster_secret', 's')
    conf.set_override('node_name', 'n1')
    conf.set_override('devices', str(tmp_path / 'devices'))
    conf.set_override('state_path', str(tmp_path / 'state'))
    conf.set_override('recon_cache_path', str(tmp_path / 'recon'),
                      'object-updater')
    return conf


class Coordinator(FakeCoordinator):
    role = 'object-updater'


class NodeClient:
    def __init__(self):
        self.calls = []

    def call(self, node, method, path, headers=None):
        self.calls.append((node['id'], method, path))
        return 201, {}, b''


@pytest.mark.parametrize('healthy', [True, False])
def test_the_worker_sweeps_its_own_devices(conf, healthy):
    os.makedirs(os.path.join(conf.devices, 'd1'))
    os.makedirs(os.path.join(conf.devices, 'd2'))
    write(os.path.join(conf.devices, 'd1'))
    write(os.path.join(conf.devices, 'd2'), obj_hash=OTHER, op='DELETE')
    client = NodeClient()
    worker = updater.ObjectUpdater(
        conf, Coordinator(healthy=healthy), ring=fakes.DeviceRing(),
        container_ring=FakeRing(),
        manager=diskfile.DiskFileManager(conf.devices), node_client=client)
    jobs = worker.collect_jobs()
    assert [(j.device, j.key) for j in jobs] == [
        ('d1', 'coordsync/update/n1/d1'), ('d2', 'coordsync/update/n1/d2')]
    summary = worker.run_once()
    assert summary['succeeded'] == 2 and summary['errors'] == 0
    assert summary['unlinked'] == 2 and summary['pendings'] == 2
    assert len(client.calls) == 6
    assert 'oldest' in worker.stats_line()
    with open(os.path.join(conf['object-updater'].recon_cache_path,
                           'object-updater.json')) as fh:
        assert json.load(fh)['unlinked'] == 2
