"""Storage policies in the object layer: each policy's objects in their
own directory, served by their own routes, replicated under their own
locks, their container rows and async pendings naming the policy.

The cluster config declares two policies, ``gold`` (0, the default) and
``silver`` (1); nothing here may change how policy 0 is laid out.
"""

import json
import os

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.cmd import client as client_cmd
from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import worker
from coordsync.common.ring import builder
from coordsync.common.timestamp import Timestamp
from coordsync.container import updater
from coordsync.obj import client as object_client
from coordsync.obj import diskfile
from coordsync.obj import repair
from coordsync.obj import replicator
from coordsync.obj import server
from coordsync.obj import updates
from tests.unit import test_repair
from tests.unit import test_replicator
from tests.unit import test_server as server_tests
from tests.unit import test_updater
from tests.unit.node_fixtures import SECRET
from tests.unit.test_replicator import FakeCoordinator
from tests.unit.test_server import call
from tests.unit.test_server import ts
from tests.unit.test_updates import FakeClient

POLICIES = """
[storage-policy:0]
name = gold
default = true

[storage-policy:1]
name = silver
"""
OBJ0 = '/objects/sda/7/AUTH_a/c/o'
OBJ1 = '/objects-1/sda/7/AUTH_a/c/o'


def policy_conf(tmp_path, text=POLICIES):
    """A node config declaring the policies of ``text``."""
    path = tmp_path / 'coordsync.conf'
    path.write_text(text)
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf(['--config-file', str(path)], default_config_files=[])
    storage_policy.register_opts(conf)
    conf.set_override('cluster_secret', SECRET)
    conf.set_override('devices', str(tmp_path / 'devices'))
    conf.set_override('state_path', str(tmp_path / 'state'))
    conf.set_override('hash_path_prefix', 'pre')
    conf.set_override('hash_path_suffix', 'suf')
    conf.set_override('ring_file', str(tmp_path / 'object.ring.json'))
    conf.set_override('node_name', 'n1')
    return conf


@pytest.fixture
def pconf(tmp_path):
    conf = policy_conf(tmp_path)
    os.makedirs(os.path.join(conf.devices, 'sda'))
    return conf


@pytest.fixture
def pmanager(pconf):
    return diskfile.DiskFileManager(pconf.devices, hash_prefix='pre',
                                    hash_suffix='suf')


@pytest.fixture
def app(pconf, pmanager):
    return server.NodeServer(pconf, pmanager)


def tree(root):
    """Every file under ``root``, relative to it."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(os.path.relpath(os.path.join(dirpath, f), root)
                     for f in files)
    return sorted(found)


def object_files(devices, datadir):
    return [f for f in tree(os.path.join(devices, 'sda', datadir))
            if f.endswith(('.data', '.ts'))]


# -- the disk layout ----------------------------------------------------------

def test_each_policy_has_its_own_directories(pmanager):
    assert pmanager.policy == 0
    assert (pmanager.datadir, pmanager.quarantine_dir,
            pmanager.async_dir) == ('objects', 'quarantined/objects',
                                    'async_pending')
    silver = pmanager.for_policy(1)
    assert silver.policy == 1
    assert (silver.datadir, silver.quarantine_dir, silver.async_dir) == (
        'objects-1', 'quarantined/objects-1', 'async_pending-1')


def test_for_policy_is_one_manager_per_policy_with_the_same_settings(
        tmp_path):
    def clock():
        return 5.0
    manager = diskfile.DiskFileManager(
        str(tmp_path), mount_check=True, reclaim_age=60, hash_prefix='p',
        hash_suffix='s', clock=clock)
    silver = manager.for_policy(1)
    assert silver is manager.for_policy(1)
    assert silver.for_policy(0) is manager
    assert manager.for_policy(0) is manager
    assert (silver.devices_path, silver.mount_check, silver.reclaim_age,
            silver.hash_prefix, silver.hash_suffix, silver.clock,
            silver.logger) == (str(tmp_path), True, 60, 'p', 's', clock,
                               manager.logger)


def test_from_conf_takes_the_policy(pconf):
    manager = diskfile.DiskFileManager.from_conf(pconf, policy=1)
    assert (manager.policy, manager.datadir) == (1, 'objects-1')
    assert diskfile.DiskFileManager.from_conf(pconf).datadir == 'objects'


@pytest.mark.parametrize('bad', [-1, '1', 1.0, True, None])
def test_a_bad_policy_index_is_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        diskfile.DiskFileManager(str(tmp_path), policy=bad)


def test_one_name_in_two_policies_is_two_objects(pconf, pmanager):
    gold, silver = pmanager, pmanager.for_policy(1)
    gold.diskfile('sda', 7, 'AUTH_a', 'c', 'o').write(
        [b'gold'], {'X-Timestamp': ts(1)})
    df = silver.diskfile('sda', 7, 'AUTH_a', 'c', 'o')
    df.write([b'silver'], {'X-Timestamp': ts(0)})
    # NOTE: an older write in policy 1 is no conflict with policy 0's.
    assert df.hash_dir.startswith(os.path.join(pconf.devices, 'sda',
                                               'objects-1', '7') + os.sep)
    for manager, body in ((gold, b'gold'), (silver, b'silver')):
        with manager.diskfile('sda', 7, 'AUTH_a', 'c', 'o').reader() as r:
            assert b''.join(r) == body
        assert manager.partitions('sda') == [7]
        assert list(manager.get_hashes('sda', 7)) == [df.suffix]
    assert gold.get_hashes('sda', 7) != silver.get_hashes('sda', 7)
    assert silver.delete_partition('sda', 7)
    assert silver.partitions('sda') == []
    assert gold.partitions('sda') == [7]
    assert len(object_files(pconf.devices, 'objects')) == 1


def test_a_corrupt_object_of_policy_1_is_quarantined_apart(pconf,
                                                          pmanager):
    silver = pmanager.for_policy(1)
    df = silver.diskfile('sda', 7, 'AUTH_a', 'c', 'o')
    df.write([b'payload'], {'X-Timestamp': ts()})
    path = os.path.join(df.hash_dir, ts() + '.data')
    open(path, 'wb').close()
    with pytest.raises(exceptions.DiskFileCorrupt):
        df.read_metadata()
    quarantined = os.path.join(pconf.devices, 'sda', 'quarantined')
    assert os.listdir(quarantined) == ['objects-1']
    assert tree(os.path.join(quarantined, 'objects-1')) == [
        os.path.join(df.obj_hash, ts() + '.data')]
    assert (silver.quarantine_count, pmanager.quarantine_count) == (1, 0)


# -- the node server's routes -------------------------------------------------

def test_a_write_to_objects_1_lands_in_objects_1(app, pconf):
    reply = server_tests.put(app, OBJ1, b'silver')
    assert reply.status == 201
    assert object_files(pconf.devices, 'objects-1') != []
    assert object_files(pconf.devices, 'objects') == []
    assert call(app, 'GET', OBJ0).status == 404
    reply = call(app, 'GET', OBJ1)
    assert (reply.status, reply.body) == (200, b'silver')
    assert call(app, 'HEAD', OBJ1).headers['X-Timestamp'] == ts()
    # Each policy judges newest-wins among its own versions.
    assert server_tests.put(app, OBJ0, b'gold').status == 201
    assert server_tests.put(app, OBJ1, b'again').status == 409
    assert server_tests.delete(app, OBJ1, when=ts(1)).status == 204
    assert call(app, 'GET', OBJ1).status == 404
    assert call(app, 'GET', OBJ0).body == b'gold'


@pytest.mark.parametrize('method, path', [
    ('PUT', '/objects-2/sda/7/AUTH_a/c/o'),
    ('GET', '/objects-2/sda/7/AUTH_a/c/o'),
    ('REPLICATE', '/objects-2/sda/7'),
    ('GET', '/object-suffixes-2/sda/7/abc'),
    ('PUT', '/object-sync-2/sda/7'),
    ('PUT', '/objects-01/sda/7/AUTH_a/c/o'),
    ('PUT', '/objects-x/sda/7/AUTH_a/c/o')])
def test_a_policy_the_node_does_not_know_finds_no_route(app, pconf, method,
                                                        path):
    reply = call(app, method, path, {'X-Timestamp': ts(),
                                     'Content-Length': '2'}, b'hi')
    assert reply.status == 404
    assert reply.body.startswith(b'no such path: /obj')
    assert tree(os.path.join(pconf.devices, 'sda')) == []


def test_without_policy_sections_only_policy_0_is_served(conf, manager):
    app = server.NodeServer(conf, manager)
    assert server_tests.put(app, OBJ1).status == 404
    assert server_tests.put(app, OBJ0).status == 201
    assert manager.partitions('sda') == [7]


def test_replicate_and_listing_answer_for_their_policy(app, pmanager):
    assert server_tests.put(app, OBJ1, b'silver').status == 201
    obj_hash = hashing.hash_path('AUTH_a', 'c', 'o', prefix='pre',
                                 suffix='suf')
    reply = call(app, 'REPLICATE', '/objects-1/sda/7')
    assert list(json.loads(reply.body)) == [obj_hash[-3:]]
    assert json.loads(call(app, 'REPLICATE', '/objects/sda/7').body) == {}
    listing = json.loads(call(app, 'GET', direct_client.suffix_path(
        'sda', 7, obj_hash[-3:], policy=1)).body)
    assert listing == {obj_hash: {'timestamp': ts(), 'deleted': False}}
    assert json.loads(call(app, 'GET', direct_client.suffix_path(
        'sda', 7, obj_hash[-3:])).body) == {}


def fenced(app, path, item, token, method='REPLICATE'):
    return call(app, method, path, fencing.Fence(item, token).headers())


def test_a_policy_1_fence_is_checked_against_its_own_item(app):
    item1 = 'coordsync/replicate/1/7'
    assert fenced(app, '/objects-1/sda/7', item1, 5).status == 200
    assert app.token_store.admitted_at(item1) is not None
    assert app.token_store.admitted_at('coordsync/replicate/0/7') is None
    reply = fenced(app, '/objects-1/sda/7', item1, 4)
    assert reply.status == 409
    assert reply.headers[fencing.FENCED_HEADER] == 'true'
    # Policy 0's partition 7 is another item: its tokens start afresh.
    assert fenced(app, '/objects/sda/7', 'coordsync/replicate/0/7',
                  1).status == 200


@pytest.mark.parametrize('path, item', [
    ('/objects-1/sda/7', 'coordsync/replicate/0/7'),
    ('/objects/sda/7', 'coordsync/replicate/1/7'),
    ('/objects-1/sda/7', 'coordsync/replicate/1/8')])
def test_a_fence_naming_another_policy_or_partition_is_400(app, path, item):
    reply = fenced(app, path, item, 5)
    assert reply.status == 400
    assert b'does not match partition 7' in reply.body
    assert app.token_store.admitted_at(item) is None


def test_static_pushes_wait_for_the_lease_of_their_own_policy(app):
    assert fenced(app, '/objects-1/sda/7', 'coordsync/replicate/1/7',
                  5).status == 200
    reply = server_tests.push(app, path=OBJ1)
    assert reply.status == 409
    assert reply.body.startswith(b'fenced: coordsync/replicate/1/7 had a ')
    assert call(app, 'GET', OBJ1).status == 404
    # Policy 0's partition 7 has no holder: its static push goes in.
    assert server_tests.push(app, path=OBJ0).status == 201


def test_a_sync_push_to_policy_1_stores_there(app, pconf):
    path = direct_client.sync_path('sda', 7, policy=1)
    reply, _env, _body = server_tests.push_stream(
        app, [server_tests.entry('o', b'hello')], path=path)
    assert server_tests.results(reply)['results'] == {'/AUTH_a/c/o': 201}
    assert len(object_files(pconf.devices, 'objects-1')) == 1
    assert object_files(pconf.devices, 'objects') == []


def test_sync_slots_are_counted_across_policies(app, pconf):
    routes0 = server_tests.routes_of(app)
    route1, _parts = app.router.match(
        'PUT', direct_client.sync_path('sda', 7, policy=1))
    routes1 = route1.handler.__self__
    assert (routes0.policy, routes1.policy) == (0, 1)
    routes0.incoming = routes0.max_incoming
    assert routes1.incoming == routes1.max_incoming
    reply, _env, _body = server_tests.push_stream(
        app, [server_tests.entry('o', b'hello')],
        path=direct_client.sync_path('sda', 7, policy=1))
    assert reply.status == 503
    assert object_files(pconf.devices, 'objects-1') == []


@pytest.fixture
def sent(app):
    """The app's container updates go to a fake client, c1 down."""
    fake = FakeClient({'c1': direct_client.NodeError('down')})
    app.container_updates.client = fake
    app.container_updates.ring = ContainerRing()
    return fake


class ContainerRing:
    devices = [{'id': i, 'ip': '10.0.0.%d' % i, 'port': 6200,
                'device': 'c%d' % i} for i in range(3)]

    def has_changed(self):
        return False


def test_container_rows_name_the_policy_and_pendings_go_to_its_dir(
        app, pconf, sent):
    targets = updates.target_headers(9, ContainerRing.devices)
    reply = call(app, 'PUT', OBJ1, {'X-Timestamp': ts(),
                                    'Content-Length': '2', **targets},
                 b'hi')
    assert reply.status == 201
    assert {c[3]['X-Backend-Storage-Policy-Index'] for c in sent.calls} \
        == {'1'}
    obj_hash = hashing.hash_path('AUTH_a', 'c', 'o', prefix='pre',
                                 suffix='suf')
    assert tree(os.path.join(pconf.devices, 'sda', 'async_pending-1')) == [
        os.path.join(obj_hash[-3:], '%s-%s' % (obj_hash, ts()))]
    assert not os.path.exists(os.path.join(pconf.devices, 'sda',
                                           'async_pending'))
    (pending,) = tree(os.path.join(pconf.devices, 'sda',
                                   'async_pending-1'))
    data = updates.read_pending(os.path.join(
        pconf.devices, 'sda', 'async_pending-1', pending))
    assert data['headers']['X-Backend-Storage-Policy-Index'] == '1'
    assert data['successes'] == [0, 2]
    call(app, 'DELETE', OBJ0, {'X-Timestamp': ts(1), **targets})
    assert sent.calls[-1][3] == {'X-Timestamp': ts(1),
                                 'X-Backend-Storage-Policy-Index': '0'}
    assert len(tree(os.path.join(pconf.devices, 'sda',
                                 'async_pending'))) == 1


# -- the object updater -------------------------------------------------------

class HeaderSender(test_updater.Sender):
    """Records the headers each row is sent with too."""

    def __init__(self):
        super().__init__()
        self.headers = []

    def __call__(self, node, op, path, headers):
        self.headers.append((node['id'], op, dict(headers)))
        return super().__call__(node, op, path, headers)


def test_async_dir_names():
    assert updates.policy_of_async_dir('async_pending') == 0
    assert updates.policy_of_async_dir('async_pending-1') == 1
    assert updates.policy_of_async_dir('async_pending-12') == 12
    for name in ('async_pending-0', 'async_pending-01', 'async_pending-',
                 'async_pending-x', 'objects-1', 'async_pendings'):
        assert updates.policy_of_async_dir(name) is None


def test_the_updater_sends_each_pending_with_its_directorys_policy(
        tmp_path):
    dev = str(tmp_path)
    headers = {'X-Timestamp': test_updater.ts(), 'X-Size': '1',
               'X-Content-Type': 't', 'X-Etag': 'e',
               'X-Backend-Storage-Policy-Index': '0'}
    updates.write_pending(dev, test_updater.HASH, 'PUT', 'a', 'c', 'o',
                          headers)
    # NOTE: same object in policy 1 (a misplaced copy): its own row.
    updates.write_pending(dev, test_updater.HASH, 'PUT', 'a', 'c', 'o',
                          dict(headers), policy=1)
    updates.write_pending(dev, test_updater.OTHER, 'DELETE', 'a', 'c', 'p',
                          {'X-Timestamp': test_updater.ts()}, policy=1)
    send = HeaderSender()
    stats = test_updater.sweep(dev, send).run()
    assert (stats.pendings, stats.unlinked, stats.superseded) == (3, 3, 0)
    sent = sorted((op, h['X-Backend-Storage-Policy-Index'])
                  for _id, op, h in send.headers)
    assert sent == [('DELETE', '1')] * 3 + [('PUT', '0')] * 3 + [
        ('PUT', '1')] * 3
    assert tree(dev) == []


def test_a_bad_pending_of_policy_1_is_quarantined_beside_policy_1(
        tmp_path):
    dev = str(tmp_path)
    bad = os.path.join(dev, 'async_pending-1', test_updater.HASH[-3:],
                       '%s-%s' % (test_updater.HASH, test_updater.ts()))
    os.makedirs(os.path.dirname(bad))
    with open(bad, 'wb') as fh:
        fh.write(b'not json')
    stats = test_updater.sweep(dev, test_updater.Sender()).run()
    assert stats.quarantined == 1
    assert tree(os.path.join(dev, 'quarantined')) == [
        os.path.join('async_pending-1', os.path.basename(bad))]


def make_ring(path, nodes_devices, part_power=4, replicas=3):
    ring = builder.RingBuilder(part_power, replicas)
    for zone, (node, device) in enumerate(nodes_devices, start=1):
        ring.add_device(node, '127.0.0.%d' % zone, 6200, device, 1.0,
                        zone=zone)
    ring.rebalance()
    ring.save(str(path))
    return ring_mod.Ring(str(path), 'pre', 'suf')


def test_the_updater_sweeps_devices_of_every_policys_ring(pconf, tmp_path):
    make_ring(pconf.ring_file, [('n1', 'd1'), ('n2', 'd1'), ('n3', 'd1')])
    make_ring(tmp_path / 'object-1.ring.json',
              [('n1', 'd2'), ('n2', 'd2'), ('n3', 'd2')])
    for name in ('d1', 'd2'):
        os.makedirs(os.path.join(pconf.devices, name))
    pconf.set_override('recon_cache_path', str(tmp_path / 'recon'),
                       'object-updater')
    worker_ = updater.ObjectUpdater(
        pconf, test_updater.Coordinator(), container_ring=test_updater.
        FakeRing(), manager=diskfile.DiskFileManager(pconf.devices),
        node_client=test_updater.NodeClient())
    assert sorted(worker_.rings) == [0, 1]
    assert [j.device for j in worker_.collect_jobs()] == ['d1', 'd2']
    assert worker_.local_devices() == ['d1', 'd2']


# -- the replicator -----------------------------------------------------------

@pytest.fixture
def two_rings(pconf, tmp_path):
    """Policy 0 over d1 of n1..n4, policy 1 over d2 of n1..n4 (another
    partition count)."""
    ring0 = make_ring(pconf.ring_file, [(n, 'd1') for n in
                                        ('n1', 'n2', 'n3', 'n4')])
    ring1 = make_ring(tmp_path / 'object-1.ring.json',
                      [(n, 'd2') for n in ('n1', 'n2', 'n3', 'n4')],
                      part_power=3)
    for name in ('d1', 'd2'):
        os.makedirs(os.path.join(pconf.devices, name))
    return ring0, ring1


def make_replicator(conf, **kwargs):
    return replicator.ObjectReplicator(
        conf, FakeCoordinator(), manager=diskfile.DiskFileManager(
            conf.devices), **kwargs)


def test_jobs_of_every_policy_have_their_own_locks(pconf, two_rings):
    ring0, ring1 = two_rings
    worker_ = make_replicator(pconf)
    assert sorted(worker_.rings) == [0, 1]
    assert worker_.ring.path == ring0.path
    handoff1 = next(p for p in range(8)
                    if p not in ring1.partitions_for_device(0))
    os.makedirs(os.path.join(pconf.devices, 'd2', 'objects-1',
                             str(handoff1)))
    jobs = worker_.collect_jobs()
    by_policy = {0: [], 1: []}
    for job in jobs:
        by_policy[job.policy].append(job)
    assert {j.partition for j in by_policy[0]} == set(
        ring0.partitions_for_device(0))
    assert {(j.partition, j.device) for j in by_policy[1]
            if not j.handoff} == {
        (p, 'd2') for p in ring1.partitions_for_device(0)}
    assert [(j.partition, j.device) for j in by_policy[1] if j.handoff] \
        == [(handoff1, 'd2')]
    for job in by_policy[1]:
        assert job.key == 'coordsync/replicate/1/%d' % job.partition
        assert job.item_id == '1/%d' % job.partition
        assert job.eligible == {d['node'] for d in ring1.get_part_nodes(
            job.partition)}
    for job in by_policy[0]:
        assert job.key == 'coordsync/replicate/0/%d' % job.partition
        assert job.item_id == job.partition
    assert len({j.key for j in jobs}) == len(jobs)
    assert worker_.local_devices() == ['d1', 'd2']
    assert worker_.expected_nodes() == {'n1', 'n2', 'n3', 'n4'}
    only = worker_.collect_jobs(devices={'d2'}, partitions={handoff1})
    assert [(j.policy, j.partition, j.handoff) for j in only] == [
        (1, handoff1, True)]


def test_a_policy_0_handoff_dir_is_not_a_policy_1_job(pconf, two_rings):
    ring0, _ring1 = two_rings
    worker_ = make_replicator(pconf)
    handoff0 = next(p for p in range(16)
                    if p not in ring0.partitions_for_device(0))
    os.makedirs(os.path.join(pconf.devices, 'd1', 'objects',
                             str(handoff0)))
    handoffs = [(j.policy, j.partition, j.device)
                for j in worker_.collect_jobs() if j.handoff]
    assert handoffs == [(0, handoff0, 'd1')]


def test_a_missing_policy_ring_stops_the_replicator(pconf, two_rings,
                                                    tmp_path):
    os.unlink(tmp_path / 'object-1.ring.json')
    with pytest.raises(storage_policy.PolicyError) as caught:
        make_replicator(pconf)
    assert 'storage-policy:1' in str(caught.value)


def test_a_changed_ring_of_any_policy_stops_the_pass(pconf, two_rings):
    worker_ = make_replicator(pconf)
    assert worker_.abort_reason() is None
    worker_.rings[1].has_changed = lambda: True
    assert worker_.abort_reason() == 'ring of policy 1 changed'


def test_without_policy_sections_jobs_are_policy_0_as_before(tmp_path):
    worker_ = test_replicator.make_replicator(tmp_path)
    assert list(worker_.rings) == [0]
    assert {j.policy for j in worker_.collect_jobs()} == {0}


# -- repairing a partition of policy 1 ----------------------------------------

NAMES = test_repair.NAMES


class PolicyCluster:
    """Three in-process nodes serving both policies (see test_repair)."""

    def __init__(self, tmp_path, conf):
        self.managers, self.nodes, apps = {}, {}, {}
        self.stores = {}
        for index, name in enumerate(NAMES):
            os.makedirs(tmp_path / name / 'sda')
            manager = diskfile.DiskFileManager(
                str(tmp_path / name), hash_prefix='pre', hash_suffix='suf')
            self.managers[name] = manager
            self.stores[name] = fencing.TokenStore(
                str(tmp_path / name / 'fencing.db'))
            apps[name] = server.NodeServer(conf, manager,
                                           token_store=self.stores[name])
            self.nodes[name] = {'id': index, 'node': name,
                                'ip': '127.0.0.%d' % (index + 1),
                                'port': 6200, 'device': 'sda'}
        self.client = test_repair.InProcessClient(conf, apps)

    def put(self, node, obj, when, policy, body=None):
        self.managers[node].for_policy(policy).diskfile(
            'sda', 7, 'AUTH_a', 'c', obj).write(
                [body or obj.encode()], {'X-Timestamp': when})

    def files(self, node, policy):
        return tree(os.path.join(self.managers[node].devices_path, 'sda',
                                 storage_policy.datadir(policy), '7'))


def tokened(item):
    return worker.Grant(item, token=7, coordinator=test_repair.Owner())


def test_a_policy_1_repair_talks_to_policy_1_routes_only(tmp_path, pconf):
    cluster = PolicyCluster(tmp_path, pconf)
    cluster.put('n1', 'a', ts(1), 1)
    cluster.put('n2', 'b', ts(1), 1)
    cluster.put('n3', 'a', ts(2), 1, b'newer')
    cluster.put('n2', 'gold-only', ts(1), 0)
    item = replicator.lock_name(7, 1)
    job = repair.PartitionRepair(
        cluster.managers['n1'], cluster.client, 'sda', 7,
        [cluster.nodes['n2'], cluster.nodes['n3']], grant=tokened(item),
        policy=1)
    assert job.manager is cluster.managers['n1'].for_policy(1)
    assert job.repair()
    assert job.stats.errors == 0
    objects = [f for f in cluster.files('n1', 1)
               if f.endswith('.data')]
    assert len(objects) == 2
    for name in NAMES:
        assert [f for f in cluster.files(name, 1)
                if f.endswith('.data')] == objects
    for name in ('n2', 'n3'):
        assert cluster.stores[name].admitted_at(item) is not None
        assert cluster.stores[name].admitted_at(
            replicator.lock_name(7)) is None
    with cluster.managers['n1'].for_policy(1).diskfile(
            'sda', 7, 'AUTH_a', 'c', 'a').reader() as reader:
        assert b''.join(reader) == b'newer'
    # Policy 0's partition 7 was not looked at: n2's object stays alone.
    assert cluster.files('n1', 0) == []
    assert [f for f in cluster.files('n2', 0) if f.endswith('.data')]
    prefixes = {path.split('/')[1] for _n, _m, path in
                cluster.client.requests}
    assert prefixes <= {'objects-1', 'object-suffixes-1', 'object-sync-1'}
    assert 'object-sync-1' in prefixes


def test_a_policy_1_handoff_is_pushed_home_and_deleted_alone(tmp_path,
                                                             pconf):
    cluster = PolicyCluster(tmp_path, pconf)
    cluster.put('n1', 'a', ts(1), 1)
    cluster.put('n1', 'a', ts(1), 0)
    job = repair.PartitionRepair(
        cluster.managers['n1'], cluster.client, 'sda', 7,
        [cluster.nodes['n2'], cluster.nodes['n3']],
        grant=tokened(replicator.lock_name(7, 1)), policy=1)
    assert job.push_handoff(needed=2)
    assert cluster.managers['n1'].for_policy(1).partitions('sda') == []
    assert cluster.managers['n1'].partitions('sda') == [7]
    for name in ('n2', 'n3'):
        assert cluster.managers[name].for_policy(1).partitions('sda') == [7]
        assert cluster.managers[name].partitions('sda') == []


def test_the_replicator_works_a_policy_1_job_with_its_manager(tmp_path,
                                                              pconf):
    cluster = PolicyCluster(tmp_path, pconf)
    cluster.put('n2', 'a', ts(1), 1)
    ring = make_ring(tmp_path / 'ring0.json', [('n1', 'sda')],
                     replicas=1)
    worker_ = replicator.ObjectReplicator(
        pconf, FakeCoordinator(), manager=cluster.managers[
            'n1'], node_client=cluster.client, rings={0: ring, 1: ring})
    worker_.stats = worker.PassStats(figures=worker_.new_figures())
    job = replicator.Job('sda', 7, [cluster.nodes['n2']],
                         frozenset(NAMES), policy=1)
    assert worker_.work(job, tokened(job.key)) is True
    assert cluster.managers['n1'].for_policy(1).partitions('sda') == [7]
    assert cluster.managers['n1'].partitions('sda') == []
    assert worker_.stats.figures.objects_pulled == 1


# -- the quorum object client -------------------------------------------------

class RecordingNodes:
    """A NodeClient stand-in: every node answers ``status``."""

    def __init__(self, status=201):
        self.status = status
        self.calls = []

    def call(self, node, method, path, headers=None, body=None, **kw):
        self.calls.append((method, path, dict(headers or {})))
        status = self.status(node) if callable(self.status) \
            else self.status
        return status, {}, b'refused'


@pytest.fixture
def ring3(tmp_path):
    return make_ring(tmp_path / 'r.json', [(n, 'd1') for n in
                                           ('n1', 'n2', 'n3')])


def test_the_object_client_uses_its_policys_routes(ring3):
    nodes = RecordingNodes()
    objects = object_client.ObjectClient(None, ring3, nodes, policy=1)
    when = Timestamp(ts(-5))
    assert objects.put('AUTH_a', 'c', 'o', b'x', when=when, metadata={
        'X-Object-Meta-Color': 'red', 'x-timestamp': ts(99),
        'Content-Type': 'text/x'}) == when
    assert len(nodes.calls) == 3
    for method, path, headers in nodes.calls:
        assert method == 'PUT'
        assert path.startswith('/objects-1/d1/')
        assert headers['X-Timestamp'] == when.normal
        assert 'x-timestamp' not in headers
        assert headers['X-Object-Meta-Color'] == 'red'
        assert headers['Content-Type'] == 'text/x'
    nodes.status = 204
    objects.delete('AUTH_a', 'c', 'o', when=Timestamp(ts(-4)))
    assert all(p.startswith('/objects-1/') for _m, p, _h in nodes.calls)
    plain = object_client.ObjectClient(None, ring3, RecordingNodes())
    plain.put('AUTH_a', 'c', 'o', b'x')
    assert all(p.startswith('/objects/d1/')
               for _m, p, _h in plain.nodes.calls)


@pytest.mark.parametrize('method', ['put', 'delete'])
def test_a_write_older_than_the_nodes_tells_its_409s(ring3, method):
    nodes = RecordingNodes(409)
    objects = object_client.ObjectClient(None, ring3, nodes, policy=1)
    args = ('AUTH_a', 'c', 'o', b'x') if method == 'put' else (
        'AUTH_a', 'c', 'o')
    with pytest.raises(object_client.QuorumError) as caught:
        getattr(objects, method)(*args, when=Timestamp(ts()))
    assert caught.value.statuses == [409, 409, 409]
    assert caught.value.conflicts == 3
    assert '(policy 1)' in str(caught.value)


def test_failures_are_not_conflicts(ring3):
    nodes = RecordingNodes(lambda node: 409 if node['node'] == 'n1'
                           else 503)
    objects = object_client.ObjectClient(None, ring3, nodes)
    with pytest.raises(object_client.QuorumError) as caught:
        objects.put('AUTH_a', 'c', 'o', b'x')
    assert caught.value.conflicts == 1
    assert 503 in caught.value.statuses
    nodes.status = lambda node: 409 if node['node'] == 'n1' else 201
    assert objects.put('AUTH_a', 'c', 'o', b'x')


# -- coordsync-client --policy ------------------------------------------------

@pytest.mark.parametrize('wanted, index', [
    (None, 0), ('gold', 0), ('SILVER', 1), ('1', 1), ('0', 0)])
def test_the_client_chooses_a_policy_by_name_or_index(pconf, wanted, index):
    assert client_cmd.choose_policy(pconf, wanted).index == index


@pytest.mark.parametrize('wanted', ['bronze', '2', '-1', ''])
def test_the_client_refuses_an_unknown_policy(pconf, wanted):
    with pytest.raises(exceptions.ConfigError) as caught:
        client_cmd.choose_policy(pconf, wanted)
    assert 'unknown storage policy' in str(caught.value)
    assert '\n' not in str(caught.value)
