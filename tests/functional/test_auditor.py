"""The object auditor on a real cluster: silent damage on one node's disk
is found by one audit and repaired by the next replication pass.

A 3-node local cluster on the test run's ZooKeeper. Objects go in
through the quorum client; then, behind the node's back, one replica's
body gets a flipped byte, another is truncated, a third file is deleted
(leaving the suffix hashes cache stale), and a container database
replica is damaged where only a full check reads. Neither replicator
could tell: the suffix hashes and database states still agree. After
``coordsync-object-auditor --once`` on that node and one pass of each
replicator, every replica read straight off the disks is whole again
and the bad files are under ``quarantined/``.
"""

import concurrent.futures
import os

import pytest

from coordsync.common import hashing
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from tests.functional import harness

NODE = 'n1'
ROWS = 400


class Auditors(harness.Workers):
    """The ``coordsync-object-auditor`` processes of one test."""

    module = 'coordsync.cmd.auditor'
    group = 'object-auditor'
    worker = 'object-auditor'


@pytest.fixture(scope='module')
def cluster(zk_local_cluster):
    return zk_local_cluster


def object_path(cluster, node, container, name, file_name):
    part, obj_hash = cluster.locate(container, name)
    device = cluster.primaries(part)[node]
    return os.path.join(cluster.hash_dir(node, device, part, obj_hash),
                        file_name)


def quarantined(path):
    """Where the store moves an object file: ``<dev>/objects/<part>/
    <suffix>/<hash>/<file>`` -> ``<dev>/quarantined/objects/<hash>/
    <file>``."""
    hash_dir = os.path.dirname(path)
    dev_path = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(hash_dir))))
    return os.path.join(dev_path, 'quarantined', 'objects',
                        os.path.basename(hash_dir), os.path.basename(path))


def suffix_hashes(cluster, container, name):
    """``{node: cached hash}`` of the object's suffix on each primary:
    what a replication pass compares."""
    part, obj_hash = cluster.locate(container, name)
    suffix = hashing.suffix_of(obj_hash)
    return {node: cluster.disk(node).get_hashes(device, part).get(suffix)
            for node, device in cluster.primaries(part).items()}


def db_brokers(cluster, container):
    """``{node: ContainerBroker}`` of the container's replicas."""
    part, primaries = cluster.container_replicas(container)
    meta = cluster.meta
    return {d['node']: backend.ContainerBroker(
        backend.container_db_path(
            os.path.join(cluster.workdir, d['node'], 'devices',
                         d['device']), part, harness.ACCOUNT, container,
            meta['hash_path_prefix'], meta['hash_path_suffix']),
        account=harness.ACCOUNT, container=container)
        for d in primaries}


def make_level_container(cluster, container):
    """The same rows on every replica, written straight to the disks."""
    rows = [{'name': 'row-%04d-%s' % (i, 'x' * 100),
             'created_at': Timestamp(1700000001 + i).normal, 'size': i,
             'content_type': 'text/plain', 'etag': '%032x' % i,
             'deleted': 0, 'storage_policy_index': 0}
            for i in range(ROWS)]
    for broker in db_brokers(cluster, container).values():
        broker.initialize(Timestamp(1700000000).normal)
        broker.merge_items(rows)
        broker.close()


def db_state(broker):
    try:
        info = broker.get_info()
        return info['object_count'], info['hash']
    finally:
        broker.close()


def read_back(cluster, container, name):
    """``{node: body}`` read off each primary's disk through the store
    (the ETag is checked at the end of each read)."""
    part, _obj_hash = cluster.locate(container, name)
    found = {}
    for node, device in cluster.primaries(part).items():
        df = cluster.disk(node).diskfile(device, part, harness.ACCOUNT,
                                         container, name)
        found[node] = b''.join(df.reader())
    return found


def flip_last_byte(path):
    with open(path, 'r+b') as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0x01]))


def test_damage_on_one_node_is_quarantined_and_replication_restores_it(
        cluster, workers, replicators):
    container = 'audited'
    bodies = {name: ('%s ' % name).encode() * 2000
              for name in ('flipped', 'truncated', 'lost', 'intact')}
    expected = {name: cluster.put(container, name, body) + '.data'
                for name, body in bodies.items()}
    cluster.assert_level(container, expected)
    db_container = 'audited-db'
    make_level_container(cluster, db_container)
    good_db = db_state(db_brokers(cluster, db_container)['n2'])
    assert good_db[0] == ROWS

    paths = {name: object_path(cluster, NODE, container, name,
                               expected[name]) for name in bodies}
    # The suffix hashes cache of every replica, as a replication pass
    # leaves it; then the damage, behind the store's back.
    before = {name: suffix_hashes(cluster, container, name)
              for name in bodies}
    with open(paths['flipped'], 'rb') as fh:
        flipped_bytes = fh.read()
    flip_last_byte(paths['flipped'])
    with open(paths['truncated'], 'r+b') as fh:
        fh.truncate(os.path.getsize(paths['truncated']) - 100)
    os.unlink(paths['lost'])
    damaged_db = db_brokers(cluster, db_container)[NODE].db_file
    with open(damaged_db, 'r+b') as fh:
        fh.seek(4096 * 5)
        fh.write(b'\xff' * 4096)
    # Replication alone would not notice: every replica's cached suffix
    # hashes still agree, and so do the database states.
    for name in bodies:
        after = suffix_hashes(cluster, container, name)
        assert after == before[name] and len(set(after.values())) == 1
    assert db_state(db_brokers(cluster, db_container)[NODE]) == good_db

    auditors = workers(Auditors, cluster, files_per_second=0,
                       bytes_per_second=0)
    auditors.run_once({NODE: NODE}, wait_for_peers=False)

    recon = auditors.recon(NODE)
    assert recon['quarantined'] == 2, recon
    assert recon['stale_suffixes'] >= 1, recon
    assert recon['dbs_quarantined'] == 1, recon
    assert recon['errors'] == 0 and recon['failed'] == 0, recon
    for name in ('flipped', 'truncated'):
        assert os.path.exists(quarantined(paths[name])), name
        assert not os.path.exists(paths[name]), name
    with open(quarantined(paths['flipped']), 'rb') as fh:
        damaged = fh.read()
    # Moved as it was: the damaged bytes, not a repaired copy.
    assert len(damaged) == len(flipped_bytes) and damaged != flipped_bytes
    assert not os.path.exists(damaged_db)
    assert os.path.exists(os.path.join(
        damaged_db.split('/containers/')[0], 'quarantined', 'containers',
        os.path.basename(os.path.dirname(damaged_db)),
        os.path.basename(damaged_db)))

    # One pass of each replicator, on every node at once.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = [pool.submit(replicators(cluster).run_once),
                pool.submit(workers(harness.ContainerReplicators,
                                    cluster).run_once)]
        for future in done:
            future.result()

    cluster.assert_level(container, expected)
    for name, body in bodies.items():
        assert read_back(cluster, container, name) == {
            node: body for node in cluster.node_names}, name
    for node, broker in db_brokers(cluster, db_container).items():
        assert db_state(broker) == good_db, node

    # The repaired node now audits clean.
    again = workers(Auditors, cluster, files_per_second=0,
                    bytes_per_second=0)
    again.run_once({NODE: NODE}, wait_for_peers=False)
    recon = again.recon(NODE)
    assert (recon['quarantined'], recon['stale_suffixes'],
            recon['dbs_quarantined']) == (0, 0, 0), recon
    assert recon['files_checked'] >= len(bodies), recon
