"""The container replicator between real node processes.

A 3-node local cluster on the test run's ZooKeeper; container databases
are made straight on the nodes' disks with the brokers, then
``coordsync-container-replicator --once`` runs on each node in turn.
"""

import concurrent.futures
import json
import os
import time

import pytest

from coordsync.common import ring as ring_mod
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.container import replication
from tests.functional import harness
from tests.functional import nodes

ACCOUNT = 'AUTH_test'


class Containers:
    """Container DBs of a local cluster, read and written on disk."""

    def __init__(self, cluster):
        self.cluster = cluster
        meta = cluster.meta
        self.prefix = meta['hash_path_prefix']
        self.suffix = meta['hash_path_suffix']
        self.ring = ring_mod.Ring(
            os.path.join(cluster.workdir, 'container.ring.json'),
            self.prefix, self.suffix)

    def replicas(self, container):
        """``[(node, device path, partition)]`` of a container."""
        part, devs = self.ring.get_nodes(ACCOUNT, container)
        return [(d['node'], os.path.join(self.cluster.workdir, d['node'],
                                         'devices', d['device']), part)
                for d in devs]

    def broker(self, container, node):
        for name, dev_path, part in self.replicas(container):
            if name == node:
                return backend.ContainerBroker(
                    backend.container_db_path(dev_path, part, ACCOUNT,
                                              container, self.prefix,
                                              self.suffix),
                    account=ACCOUNT, container=container)
        raise AssertionError('%s holds no replica of %s' % (node,
                                                             container))

    def nodes_of(self, container):
        return [name for name, _path, _part in self.replicas(container)]

    def rows(self, container, node):
        broker = self.broker(container, node)
        if not broker.exists():
            return None
        try:
            return sorted((r['name'], r['created_at'], r['deleted'])
                          for r in broker.get_items_since(-1, 10 ** 6))
        finally:
            broker.close()

    def all_rows(self, container):
        return [self.rows(container, node)
                for node in self.nodes_of(container)]


def run_replicators(cluster):
    """One ``--once --wait-for-peers`` pass on every node at once (so
    they divide the partitions); their exit codes."""
    def one(node):
        return nodes.run_module(
            'coordsync.cmd.container_replicator', '--config-file',
            cluster.node_config(node), '--once', '--wait-for-peers',
            check=False, timeout=120).returncode
    with concurrent.futures.ThreadPoolExecutor(len(cluster.node_names)) \
            as pool:
        return list(pool.map(one, cluster.node_names))


def db_sync_requests(cluster, since):
    return [a for a in harness.access_lines(cluster)
            if a.path.startswith('/db-sync/') and a.start >= since]


@pytest.fixture(scope='module')
def cluster(zk_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('dbcluster') / 'cluster'
    with harness.local_cluster(workdir, part_power=3, backend=zk_server.url,
                               session_timeout=harness.SESSION_TIMEOUT) \
            as cluster:
        yield cluster


def test_replicas_level_copied_rebuilt_and_quiet(cluster):
    dbs = Containers(cluster)
    now = time.time()
    names = ['c%d' % i for i in range(6)]
    # Diverged: each replica has some rows the others lack; one replica
    # of c0 has no DB at all.
    expected = {}
    for container in names:
        holders = dbs.nodes_of(container)
        made = holders[1:] if container == 'c0' else holders
        for node in made:
            dbs.broker(container, node).initialize(Timestamp(now).normal)
        rows = []
        for i in range(30):
            node = made[i % len(made)]
            when = Timestamp(now + i).normal
            dbs.broker(container, node).put_object(
                'obj-%03d' % i, when, i, 'text/plain', 'etag%d' % i)
            rows.append(('obj-%03d' % i, when, 0))
        expected[container] = sorted(rows)

    # 1. One pass on each node: every replica has every row.
    assert run_replicators(cluster) == [0, 0, 0]
    for container in names:
        assert dbs.all_rows(container) == [expected[container]] * 3, \
            container

    # 2. A lost DB file is recreated from a peer in one pass.
    lost = dbs.broker('c1', dbs.nodes_of('c1')[0])
    lost.close()
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(lost.db_file + suffix):
            os.unlink(lost.db_file + suffix)
    # 3. A corrupt one is quarantined, counted and rebuilt.
    bad_node = dbs.nodes_of('c2')[1]
    bad = dbs.broker('c2', bad_node)
    bad.close()
    with open(bad.db_file, 'r+b') as fp:
        fp.write(b'\xff' * 4096)
    for suffix in ('-wal', '-shm'):
        if os.path.exists(bad.db_file + suffix):
            os.unlink(bad.db_file + suffix)
    assert run_replicators(cluster) == [0, 0, 0]
    assert dbs.all_rows('c1') == [expected['c1']] * 3
    assert dbs.all_rows('c2') == [expected['c2']] * 3
    quarantined = []
    for node in cluster.node_names:
        for dev in os.listdir(os.path.join(cluster.workdir, node,
                                           'devices')):
            qdir = os.path.join(cluster.workdir, node, 'devices', dev,
                                'quarantined', 'containers')
            if os.path.isdir(qdir):
                quarantined.extend(os.listdir(qdir))
    assert quarantined == [bad.db_dir.rsplit('/', 1)[1]]
    total = sum(_recon(cluster, node).get('quarantined', 0)
                for node in cluster.node_names)
    assert total == 1

    # 4. No change: one request per peer replica per partition.
    since = time.time()
    assert run_replicators(cluster) == [0, 0, 0]
    requests = db_sync_requests(cluster, since)
    ring = dbs.ring
    expected_count = ring.partition_count * (ring.replicas - 1)
    assert len(requests) == expected_count
    assert all(a.method == 'POST' and a.status == 200 for a in requests)
    parts = {a.path.split('/')[4] for a in requests}
    assert len(parts) == ring.partition_count
    rows = [a for a in harness.access_lines(cluster)
            if a.start >= since and a.path.startswith('/account-rows/')]
    assert rows == []


def _recon(cluster, node):
    path = os.path.join(cluster.node_conf(node)[
        'container-replicator'].recon_cache_path,
        'container-replicator.json')
    with open(path) as fh:
        return json.load(fh)


def test_lock_names(cluster):
    assert replication.lock_name('containers', 5) == \
        'coordsync/replicate-container/5'
