"""Container (and account) database replication against three node
apps served in-process.

Each "node" is a :class:`~coordsync.common.wsgi.NodeApp` with the
``/db-sync`` routes over its own devices directory and fencing token
store; the replicator's requests go through
:class:`tests.unit.test_repair.InProcessClient` (a real NodeClient whose
transport calls the WSGI app), so paths, signatures, fences and bodies
are the product's.
"""

import json
import os
import time

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import hashing
from coordsync.common import signing
from coordsync.common import worker
from coordsync.common import wsgi
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.container import replication
from coordsync.container import replicator
from coordsync.obj import diskfile
from tests.unit.test_repair import InProcessClient

SECRET = 'db-secret'
PART = 3
DEVICE = 'sda'
NAMES = ('n1', 'n2', 'n3')
PREFIX, SUFFIX = 'pre', 'suf'
ACCOUNT = 'AUTH_a'
NOW = float(int(time.time()))
ITEM = 'coordsync/replicate-container/%d' % PART


def ts(offset):
    return Timestamp(NOW + offset).normal


class Owner:
    def __init__(self, owner=True):
        self.owner = owner

    def is_still_owner(self, item):
        return self.owner


class FakeRing:
    """Partition PART on DEVICE of n1, n2, n3 (or the given primaries)."""

    partition_count = 8

    def __init__(self, nodes, primaries=NAMES):
        self.nodes = nodes
        self.primaries = primaries
        self.devices = [nodes[n] for n in NAMES]

    def has_changed(self):
        return False

    def devices_on_node(self, node):
        return [dict(self.nodes[node])]

    def partitions_for_device(self, dev_id):
        return [PART] if NAMES[dev_id] in self.primaries else []

    def get_part_nodes(self, part):
        return [dict(self.nodes[n]) for n in self.primaries]


class Cluster:
    def __init__(self, tmp_path):
        conf = cfg.ConfigOpts()
        coordsync_conf.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('cluster_secret', SECRET)
        conf.set_override('hash_path_prefix', PREFIX)
        conf.set_override('hash_path_suffix', SUFFIX)
        self.conf = conf
        self.tmp_path = tmp_path
        self.managers, self.nodes, self.apps = {}, {}, {}
        self.routes, self.stores = {}, {}
        for index, name in enumerate(NAMES):
            devices = tmp_path / name
            os.makedirs(devices / DEVICE)
            self.managers[name] = diskfile.DiskFileManager(
                str(devices), hash_prefix=PREFIX, hash_suffix=SUFFIX)
            self.stores[name] = fencing.TokenStore(
                str(tmp_path / name / 'fencing.db'))
            app = wsgi.NodeApp(conf, token_store=self.stores[name])
            self.routes[name] = replication.DbSyncRoutes(
                self.managers[name], hash_prefix=PREFIX,
                hash_suffix=SUFFIX)
            app.add_routes(self.routes[name].routes())
            self.apps[name] = app
            self.nodes[name] = {'id': index, 'node': name,
                                'ip': '127.0.0.%d' % (index + 1),
                                'port': 6200, 'device': DEVICE}
        self.client = InProcessClient(conf, self.apps)
        self.reports = []

    def dev_path(self, node):
        return os.path.join(self.managers[node].devices_path, DEVICE)

    def broker(self, node, container='c', account=ACCOUNT):
        return backend.ContainerBroker(
            backend.container_db_path(self.dev_path(node), PART, account,
                                      container, PREFIX, SUFFIX),
            account=account, container=container)

    def create(self, nodes, container='c', put=None):
        for node in nodes:
            self.broker(node, container).initialize(put or ts(0))

    def put(self, nodes, name, when, size=1, container='c'):
        for node in nodes:
            self.broker(node, container).put_object(
                name, when, size, 'text/plain', 'etag-%s' % name)

    def delete(self, nodes, name, when, container='c'):
        for node in nodes:
            self.broker(node, container).delete_object(name, when)

    def rows(self, node, container='c'):
        broker = self.broker(node, container)
        if not broker.exists():
            return None
        return sorted((r['name'], r['created_at'], r['deleted'])
                      for r in broker.get_items_since(-1, 100000))

    def reporter(self, account, container, info, on_error=None):
        self.reports.append((account, container, info['object_count'],
                             info['bytes_used']))
        return True

    def replicator(self, node='n1', primaries=NAMES, **overrides):
        for key, value in overrides.items():
            self.conf.set_override(key, value, 'container-replicator')
        rep = replicator.ContainerReplicator(
            self.conf, Owner(), ring=FakeRing(self.nodes, primaries),
            manager=self.managers[node], node_client=self.client,
            reporter=self.reporter)
        rep.conf.set_override('node_name', node)
        rep.coordinator.member_id = node
        rep.stats = worker.PassStats(figures=rep.new_figures())
        return rep

    def run(self, node='n1', token=10, primaries=NAMES, owner=None,
            **overrides):
        """One partition job as ``node``; (succeeded, figures)."""
        rep = self.replicator(node, primaries, **overrides)
        (job,) = [j for j in rep.collect_jobs() if j.partition == PART]
        grant = worker.Grant(
            ITEM, token=token, coordinator=owner or Owner(),
            token_store=self.stores[node]) if token else worker.Grant(ITEM)
        ok = rep.work(job, grant)
        return ok, rep.stats.figures

    def db_sync(self):
        return [r for r in self.client.requests
                if r[2].startswith(direct_client.DB_SYNC)]


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def assert_level(cluster, container='c'):
    rows = [cluster.rows(node, container) for node in NAMES]
    assert rows[0] is not None
    assert rows[0] == rows[1] == rows[2]
    states = [replication.read_state(cluster.broker(node, container))
              for node in NAMES]
    assert len({s['digest'] for s in states}) == 1
    return rows[0]


# -- levelling ---------------------------------------------------------------

def test_diverged_replicas_end_identical_and_a_missing_one_is_copied(
        cluster):
    cluster.create(['n1', 'n2'])
    cluster.put(['n1'], 'a', ts(1))
    cluster.put(['n1', 'n2'], 'b', ts(1))
    cluster.put(['n2'], 'b', ts(2), size=5)
    cluster.put(['n2'], 'c', ts(1))
    cluster.delete(['n1'], 'c', ts(3))
    cluster.broker('n2').update_metadata({'X-Container-Meta-K':
                                          ('v', ts(4))})
    ok, figures = cluster.run()
    assert ok
    rows = assert_level(cluster)
    assert rows == [('a', ts(1), 0), ('b', ts(2), 0), ('c', ts(3), 1)]
    assert figures.dbs_pushed == 1  # n3 had none
    assert figures.rows_pulled > 0 and figures.rows_pushed > 0
    for node in NAMES:
        info = cluster.broker(node).get_info()
        assert (info['object_count'], info['bytes_used']) == (2, 6)
        assert cluster.broker(node).live_metadata == {
            'X-Container-Meta-K': ('v', ts(4))}
    # The copy has an id of its own, naming its device.
    ids = {cluster.broker(n).get_info()['id'] for n in NAMES}
    assert len(ids) == 3
    # Reported to the account once, with the levelled stats.
    assert cluster.reports == [(ACCOUNT, 'c', 2, 6)]


def test_no_change_pass_costs_one_request_per_peer(cluster):
    for container in ('c', 'd', 'e'):
        cluster.create(NAMES, container)
        cluster.put(NAMES, 'x', ts(1), container=container)
    assert cluster.run()[0]
    cluster.client.requests.clear()
    ok, figures = cluster.run(token=11)
    assert ok
    assert [(r[0], r[1]) for r in cluster.client.requests] == [
        ('n2', 'POST'), ('n3', 'POST')]
    assert figures.dbs_in_sync == 3 and figures.rows_pushed == 0
    # Reports were made on the first pass only.
    assert len(cluster.reports) == 3


def test_rows_go_in_batches(cluster):
    cluster.create(NAMES)
    for i in range(7):
        cluster.put(['n1'], 'o%d' % i, ts(i))
    cluster.put(['n3'], 'z', ts(1))
    ok, figures = cluster.run(per_diff=2)
    assert ok
    assert len(assert_level(cluster)) == 8
    merges = [r for r in cluster.db_sync() if r[0] == 'n2'
              and r[1] == 'POST' and r[2].endswith(
                  cluster.broker('n2').db_dir.rsplit('/', 1)[1])]
    assert len(merges) >= 4  # 8 rows, 2 per request


def test_a_second_pass_sends_only_new_rows(cluster):
    cluster.create(NAMES)
    for i in range(5):
        cluster.put(['n1'], 'o%d' % i, ts(i))
    assert cluster.run()[0]
    cluster.put(['n1'], 'new', ts(9))
    ok, figures = cluster.run(token=11)
    assert ok
    assert figures.rows_pushed == 2  # the new row to each peer
    assert len(assert_level(cluster)) == 6


def test_a_local_corrupt_db_is_quarantined_counted_and_rebuilt(cluster):
    cluster.create(NAMES)
    cluster.put(NAMES, 'a', ts(1))
    path = cluster.broker('n1').db_file
    cluster.broker('n1').close()
    with open(path, 'r+b') as fp:
        fp.write(b'garbage' * 200)
    for suffix in ('-wal', '-shm'):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    ok, figures = cluster.run()
    assert figures.quarantined == 1
    assert figures.dbs_fetched == 1
    assert ok
    assert assert_level(cluster) == [('a', ts(1), 0)]
    quarantined = os.path.join(cluster.dev_path('n1'), 'quarantined',
                               'containers')
    assert os.listdir(quarantined)


def test_a_peer_corrupt_db_is_quarantined_there_and_pushed_again(cluster):
    cluster.create(NAMES)
    cluster.put(NAMES, 'a', ts(1))
    path = cluster.broker('n3').db_file
    with open(path, 'wb') as fp:
        fp.write(b'not a database at all' * 100)
    ok, figures = cluster.run()
    assert figures.quarantined == 1
    assert figures.dbs_pushed == 1
    assert ok
    assert assert_level(cluster) == [('a', ts(1), 0)]


def test_a_db_only_a_peer_has_is_copied_here_and_everywhere(cluster):
    cluster.create(['n3'])
    cluster.put(['n3'], 'a', ts(1))
    ok, figures = cluster.run()
    assert ok
    assert figures.dbs_fetched == 1 and figures.dbs_pushed == 1
    assert assert_level(cluster) == [('a', ts(1), 0)]


def test_a_handoff_is_pushed_home_then_removed(cluster):
    cluster.create(['n1'])
    cluster.put(['n1'], 'a', ts(1))
    cluster.create(['n2'])
    cluster.put(['n2'], 'b', ts(1))
    ok, figures = cluster.run(primaries=('n2', 'n3'))
    assert ok
    assert figures.handoffs_removed == 1
    assert cluster.rows('n1') is None
    assert cluster.rows('n2') == [('a', ts(1), 0), ('b', ts(1), 0)]
    assert cluster.rows('n3') == [('a', ts(1), 0)]
    # Pushed only: nothing was pulled to the handoff.
    assert figures.rows_pulled == 0
    # Nothing left of it: the partition is no handoff any more.
    assert not os.path.exists(os.path.join(
        cluster.dev_path('n1'), backend.CONTAINER_DATADIR, str(PART)))


def test_a_long_deleted_db_is_reclaimed_everywhere(cluster):
    old = Timestamp(NOW - 30 * 86400).normal
    cluster.create(NAMES, put=Timestamp(NOW - 40 * 86400).normal)
    for node in NAMES:
        cluster.broker(node).delete_db(old)
    cluster.create(NAMES, container='live')
    ok, figures = cluster.run()
    assert ok
    assert figures.dbs_reclaimed == 1
    assert all(cluster.rows(node) is None for node in NAMES)
    assert all(cluster.rows(node, 'live') == [] for node in NAMES)


def test_old_tombstone_rows_are_reclaimed_on_every_replica(cluster):
    cluster.create(NAMES)
    cluster.delete(NAMES, 'gone', Timestamp(NOW - 30 * 86400).normal)
    cluster.put(NAMES, 'kept', Timestamp.now().normal)
    ok, _figures = cluster.run()
    assert ok
    rows = assert_level(cluster)
    assert [r[0] for r in rows] == ['kept']


def test_a_static_pass_only_pushes(cluster):
    cluster.create(NAMES)
    cluster.put(['n1'], 'mine', ts(1))
    cluster.put(['n2'], 'theirs', ts(1))
    ok, figures = cluster.run(token=None)
    assert ok
    assert figures.rows_pulled == 0
    assert [r[0] for r in cluster.rows('n1')] == ['mine']
    assert [r[0] for r in cluster.rows('n2')] == ['mine', 'theirs']
    # Static writes say they are replication pushes.
    merges = [r for r in cluster.db_sync() if r[1] == 'POST'
              and r[2].count('/') == 5]
    assert merges


def test_a_newer_holder_fences_the_job_and_nothing_is_written(cluster):
    cluster.create(NAMES)
    cluster.put(['n1'], 'a', ts(1))
    cluster.stores['n2'].admit(ITEM, 50)
    rep = cluster.replicator()
    (job,) = rep.collect_jobs()
    grant = worker.Grant(ITEM, token=10, coordinator=Owner(),
                         token_store=cluster.stores['n1'])
    with pytest.raises(worker.LockLost):
        rep.work(job, grant)
    assert cluster.rows('n2') == []


def test_lost_lock_stops_before_writing(cluster):
    cluster.create(NAMES)
    cluster.put(['n1'], 'a', ts(1))
    owner = Owner(owner=False)
    with pytest.raises(worker.LockLost):
        cluster.run(owner=owner)
    assert cluster.rows('n2') == []


def test_a_dead_peer_fails_the_item_and_the_rest_is_levelled(cluster):
    cluster.create(['n1', 'n2'])
    cluster.put(['n1'], 'a', ts(1))
    cluster.client.down.add('n3')
    ok, figures = cluster.run()
    assert not ok and figures.errors == 1
    assert cluster.rows('n2') == [('a', ts(1), 0)]
    cluster.client.down.clear()
    ok, figures = cluster.run(token=11)
    assert ok and figures.dbs_pushed == 1
    assert_level(cluster)


def test_account_dbs_replicate_the_same_way(cluster):
    def account_broker(node):
        return backend.AccountBroker(backend.account_db_path(
            cluster.dev_path(node), PART, ACCOUNT, PREFIX, SUFFIX),
            account=ACCOUNT)
    account_broker('n1').initialize(ts(0))
    account_broker('n1').put_container('c', ts(1), ts(0), 3, 30)
    account_broker('n2').initialize(ts(0))
    account_broker('n2').put_container('d', ts(2), ts(0), 1, 1)
    rep = replicator.AccountReplicator(
        cluster.conf, Owner(), ring=FakeRing(cluster.nodes),
        manager=cluster.managers['n1'], node_client=cluster.client)
    rep.conf.set_override('node_name', 'n1')
    rep.stats = worker.PassStats(figures=rep.new_figures())
    (job,) = rep.collect_jobs()
    assert job.key == 'coordsync/replicate-account/%d' % PART
    grant = worker.Grant(job.key, token=10, coordinator=Owner(),
                         token_store=cluster.stores['n1'])
    assert rep.work(job, grant)
    for node in NAMES:
        info = account_broker(node).get_info()
        assert (info['container_count'], info['object_count']) == (2, 4)


# -- the routes --------------------------------------------------------------

def call(cluster, method, path, body=None, headers=None, fence=None,
         node='n1'):
    resp = cluster.client.request(cluster.nodes[node], method, path,
                                  body=body, headers=headers, fence=fence)
    return resp.status, resp.read()


def db_path_of(container='c'):
    name_hash = hashing.hash_path(ACCOUNT, container, prefix=PREFIX,
                                  suffix=SUFFIX)
    return name_hash, direct_client.db_sync_path('containers', DEVICE, PART,
                                                 name_hash)


@pytest.mark.parametrize('path', [
    '/db-sync/objects/sda/3',
    '/db-sync/containers/sda',
    '/db-sync/containers/sda/x',
    '/db-sync/containers/sda/3/not-a-hash',
    '/db-sync/containers/sda/3/' + 'a' * 32 + '/more',
    '/db-sync/containers/../3',
    '/db-sync/containers/sda/99999999999',
])
def test_bad_paths_get_400(cluster, path):
    status, _body = call(cluster, 'POST', path, body=b'{"op": "states"}')
    assert status == 400


def test_bad_bodies_and_ops(cluster):
    cluster.create(['n1'])
    name_hash, path = db_path_of()
    part_path = direct_client.db_sync_path('containers', DEVICE, PART)
    assert call(cluster, 'POST', part_path, b'[1]')[0] == 400
    assert call(cluster, 'POST', part_path, b'{"op": "nope"}')[0] == 400
    assert call(cluster, 'POST', part_path, b'not json')[0] == 400
    assert call(cluster, 'PUT', part_path, b'x')[0] == 405
    assert call(cluster, 'POST', part_path, b'{"op": "states"}',
                headers={'ETag': 'f' * 32})[0] == 422
    assert call(cluster, 'POST', path, json.dumps(
        {'op': 'rows', 'since': 'x', 'limit': 1}).encode())[0] == 400
    assert call(cluster, 'POST', path, json.dumps(
        {'op': 'merge', 'source': 'x', 'items': [{'name': 'a'}]}
    ).encode())[0] == 400
    assert call(cluster, 'POST', path, json.dumps(
        {'op': 'merge', 'items': []}).encode())[0] == 400
    assert call(cluster, 'DELETE', path)[0] == 400
    assert call(cluster, 'DELETE', path, headers={
        replication.RECLAIM_HEADER: 'yesterday'})[0] == 400
    # A live DB is not reclaimable: kept.
    assert call(cluster, 'DELETE', path, headers={
        replication.RECLAIM_HEADER: ts(100)})[0] == 409
    assert cluster.rows('n1') == []
    # Unknown device.
    status, _ = call(cluster, 'POST', direct_client.db_sync_path(
        'containers', 'nodev', PART), b'{"op": "states"}')
    assert status == 507


def test_a_whole_db_is_put_only_where_none_exists(cluster, tmp_path):
    cluster.create(['n1', 'n2'])
    cluster.put(['n1'], 'a', ts(1))
    name_hash, path = db_path_of()
    copy, md5, size = replication.snapshot(cluster.broker('n1'),
                                           cluster.dev_path('n1'))
    with open(copy, 'rb') as fp:
        data = fp.read()
    # n2 has one: 409, its DB untouched.
    assert call(cluster, 'PUT', path, data, node='n2')[0] == 409
    assert cluster.rows('n2') == []
    # A body altered after signing.
    headers = cluster.client.signed_headers('PUT', path, body=data)
    headers['ETag'] = '0' * 32
    # A DB placed under another name's hash.
    other_hash, other_path = db_path_of('other')
    assert call(cluster, 'PUT', other_path, data, node='n3')[0] == 400
    assert not os.path.exists(os.path.dirname(
        cluster.broker('n3', 'other').db_file))
    # Garbage.
    assert call(cluster, 'PUT', path, b'x' * 4096, node='n3')[0] == 400
    assert call(cluster, 'PUT', path, data, node='n3')[0] == 201
    assert cluster.rows('n3') == [('a', ts(1), 0)]
    os.unlink(copy)
    tmp = os.path.join(cluster.dev_path('n3'), 'tmp')
    assert os.listdir(tmp) == []


def test_a_fence_must_name_the_partitions_item(cluster):
    part_path = direct_client.db_sync_path('containers', DEVICE, PART)
    wrong = fencing.Fence('coordsync/replicate-container/%d' % (PART + 1),
                          5)
    assert call(cluster, 'POST', part_path, b'{"op": "states"}',
                fence=wrong)[0] == 400
    other_kind = fencing.Fence('coordsync/replicate-account/%d' % PART, 5)
    assert call(cluster, 'POST', part_path, b'{"op": "states"}',
                fence=other_kind)[0] == 400
    right = fencing.Fence(ITEM, 5)
    assert call(cluster, 'POST', part_path, b'{"op": "states"}',
                fence=right)[0] == 200
    older = fencing.Fence(ITEM, 4)
    resp = cluster.client.request(cluster.nodes['n1'], 'POST', part_path,
                                  body=b'{"op": "states"}', fence=older)
    assert resp.status == 409 and direct_client.is_fenced(resp)


def test_static_writes_wait_for_a_holders_lease(cluster):
    cluster.create(['n2'])
    part_path = direct_client.db_sync_path('containers', DEVICE, PART)
    call(cluster, 'POST', part_path, b'{"op": "states"}',
         fence=fencing.Fence(ITEM, 5), node='n2')
    name_hash, path = db_path_of()
    resp = cluster.client.request(
        cluster.nodes['n2'], 'POST', path, body=json.dumps(
            {'op': 'merge', 'source': 'x', 'items': []}).encode(),
        replication=True)
    assert resp.status == 409 and direct_client.is_fenced(resp)


def test_unsigned_requests_are_refused(cluster):
    part_path = direct_client.db_sync_path('containers', DEVICE, PART)
    headers = cluster.client.signed_headers('POST', part_path,
                                            body=b'{"op": "states"}')
    headers[signing.SIGNATURE_HEADER] = '0' * 64
    resp = cluster.client._send(cluster.nodes['n1'], 'POST', part_path, '',
                                headers, b'{"op": "states"}')
    assert resp.status == 401
