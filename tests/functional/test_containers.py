"""Containers on real node servers: object rows reach every container
replica, a missed update waits as an async pending until the object
updater delivers it, a corrupt pending is quarantined, and hostile
container and account requests change nothing."""

import json
import os
import urllib.request

import pytest

from coordsync.common import direct_client
from coordsync.common import ring as ring_mod
from coordsync.common import timestamp
from coordsync.obj import client as object_client
from coordsync.obj import updates
from tests.functional import harness
from tests.functional import nodes
from tests.unit import test_container_server as unit

ACCOUNT = 'AUTH_test'
CONTAINER = 'box'


@pytest.fixture(scope='module')
def cluster(zk_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('containers') / 'cluster'
    with harness.local_cluster(workdir, part_power=4,
                               backend=zk_server.url,
                               session_timeout=harness.SESSION_TIMEOUT) \
            as cluster:
        meta = cluster.meta
        cluster.container_ring = ring_mod.Ring(
            os.path.join(cluster.workdir, 'container.ring.json'),
            meta['hash_path_prefix'], meta['hash_path_suffix'])
        cluster.objects = object_client.ObjectClient(
            cluster.conf, cluster.ring, cluster.node_client,
            container_ring=cluster.container_ring)
        yield cluster


def container_replicas(cluster, container=CONTAINER):
    return cluster.container_ring.get_nodes(ACCOUNT, container)


def create_container(cluster, container=CONTAINER):
    part, nodes_ = container_replicas(cluster, container)
    when = timestamp.Timestamp.now().normal
    for node in nodes_:
        status, _, body = cluster.node_client.call(
            node, 'PUT', direct_client.container_path(
                node['device'], part, ACCOUNT, container),
            headers={'X-Timestamp': when})
        assert status == 201, body


def listings(cluster, container=CONTAINER):
    """``{node: [names]}`` of every container replica."""
    part, nodes_ = container_replicas(cluster, container)
    found = {}
    for node in nodes_:
        status, _, body = cluster.node_client.call(
            node, 'GET', direct_client.container_path(
                node['device'], part, ACCOUNT, container),
            query='format=json')
        assert status == 200, body
        found[node['node']] = [row['name'] for row in json.loads(body)]
    return found


def pendings(cluster):
    found = []
    for node in cluster.node_names:
        for root, _dirs, files in os.walk(os.path.join(
                cluster.workdir, node, 'devices')):
            if updates.ASYNC_DIR in root.split(os.sep) and \
                    'quarantined' not in root.split(os.sep):
                found.extend(os.path.join(root, f) for f in files
                             if not f.startswith('.'))
    return sorted(found)


def run_updaters(cluster):
    for node in cluster.node_names:
        result = nodes.run_module(
            'coordsync.cmd.updater', '--config-file',
            cluster.node_config(node), '--once', timeout=90)
        assert result.returncode == 0, result.stderr[-3000:]


def recon(cluster, node):
    path = os.path.join(cluster.workdir, node, 'state', 'recon',
                        'object-updater.json')
    with open(path) as fh:
        return json.load(fh)


def test_rows_reach_every_replica_and_pendings_fill_gaps(cluster):
    create_container(cluster)
    first = ['obj-%02d' % i for i in range(10)]
    for name in first:
        cluster.objects.put(ACCOUNT, CONTAINER, name, name.encode())
    assert set(map(tuple, listings(cluster).values())) == {tuple(first)}

    part, replicas = container_replicas(cluster)
    down = replicas[0]['node']
    with cluster.node_down(down):
        second = ['obj-%02d' % i for i in range(10, 20)]
        for name in second:
            # NOTE: every PUT succeeds: a quorum of object replicas
            # (handoffs for the node down) took it.
            cluster.objects.put(ACCOUNT, CONTAINER, name, name.encode())
        cluster.objects.delete(ACCOUNT, CONTAINER, 'obj-00')
        assert pendings(cluster), 'no async pending was written'
    lagging = listings(cluster)
    assert lagging[down] == first
    expected = sorted(set(first + second) - {'obj-00'})
    assert all(names == expected for node, names in lagging.items()
               if node != down)
    run_updaters(cluster)
    assert all(names == expected for names in listings(cluster).values())
    assert pendings(cluster) == []
    sent = sum(recon(cluster, node)['successes']
               for node in cluster.node_names)
    assert sent >= len(second) + 1
    # HEAD agrees with the rows.
    node = replicas[0]
    status, headers, _ = cluster.node_client.call(
        node, 'HEAD', direct_client.container_path(
            node['device'], part, ACCOUNT, CONTAINER))
    assert status == 204
    assert headers['x-container-object-count'] == str(len(expected))


def test_a_corrupt_pending_is_quarantined_and_the_sweep_goes_on(cluster):
    container = 'other'
    create_container(cluster, container)
    part, replicas = container_replicas(cluster, container)
    down = replicas[1]['node']
    with cluster.node_down(down):
        cluster.objects.put(ACCOUNT, container, 'good', b'x')
    good = pendings(cluster)
    assert good
    # A damaged pending beside a good one.
    victim = good[0]
    node = victim[len(cluster.workdir) + 1:].split(os.sep)[0]
    bad_hash = 'f' * 29 + '123'
    bad = os.path.join(os.path.dirname(os.path.dirname(victim)), '123',
                       '%s-%s' % (bad_hash, timestamp.Timestamp.now().normal))
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    with open(bad, 'wb') as fh:
        fh.write(b'{"version": 1, "op": "PUT", truncated')
    run_updaters(cluster)
    assert pendings(cluster) == []
    assert recon(cluster, node)['quarantined'] == 1
    quarantined = os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(bad))), 'quarantined', 'async_pending')
    assert os.listdir(quarantined) == [os.path.basename(bad)]
    assert all(names == ['good'] for names in
               listings(cluster, container).values())


def snapshot(cluster, node):
    found = []
    for root, _dirs, files in os.walk(os.path.join(cluster.workdir, node,
                                                   'devices')):
        found.extend(os.path.join(root, f) for f in files
                     if not f.endswith(('-wal', '-shm')))
    return sorted(found)


def test_hostile_requests_get_4xx_and_change_nothing(cluster):
    node = cluster.ring.devices_on_node('n1')[0]
    before = snapshot(cluster, 'n1')
    sent = 0
    for method, path, headers, query, status in unit.BAD:
        path = path.replace('/sda/', '/%s/' % node['device'])
        path = path.replace('/..', '/%2E%2E')
        got, _, body = cluster.node_client.call(node, method, path,
                                                headers=headers, query=query)
        assert got == status, (method, path, query, got, body)
        sent += 1
    # Huge headers: refused before any handler runs.
    path = direct_client.container_path(node['device'], 1, ACCOUNT, 'c')
    got, _, _ = cluster.node_client.call(node, 'PUT', path, headers={
        'X-Timestamp': timestamp.Timestamp.now().normal,
        'X-Container-Meta-Huge': 'v' * 20000})
    assert got == 400
    # Unsigned requests.
    for method, target in (('PUT', path), ('GET', path),
                           ('PUT', direct_client.account_path(
                               node['device'], 1, ACCOUNT))):
        req = urllib.request.Request(
            'http://%s:%s%s' % (node['ip'], node['port'], target),
            method=method, headers={
                'X-Timestamp': timestamp.Timestamp.now().normal})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
        sent += 1
    assert sent >= 50
    assert snapshot(cluster, 'n1') == before
