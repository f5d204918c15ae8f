"""Repairs behind the Swift API, checked on disk.

One 3-node local cluster on the test run's ZooKeeper (no background
workers: the tests run ``coordsync-object-updater --once`` and
``coordsync-container-replicator --once --wait-for-peers`` themselves),
written to through ``coordsync-proxy`` with python-swiftclient's
``Connection``. What the tests check is read straight from the nodes'
disks: every container replica's SQLite database with
:class:`~coordsync.container.backend.ContainerBroker`, and the objects'
own files (their metadata names them), never through the servers.

* Objects uploaded with one container replica's node down: every upload
  succeeds; once the node is back, one updater sweep and one container
  replicator pass on every node make every replica's listing equal the
  objects on disk and the API's listing.
* A container database replica deleted, another container's replica
  corrupted: one container replicator pass recreates the first,
  quarantines (under ``<dev>/quarantined/containers/``), counts (recon)
  and rebuilds the second.
"""

import collections
import concurrent.futures
import hashlib
import json
import os

import pytest

from coordsync import exceptions
from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.container import backend
from coordsync.obj import updates
from tests.functional import harness
from tests.functional import nodes
from tests.functional.test_api import API

UPLOADS = 40
# A --once run: joining the group, waiting for the peers (at most a
# session timeout), one pass, leaving; generous for a loaded 2-core box.
RUN_TIMEOUT = 180


@pytest.fixture(scope='module')
def cluster(zk_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('apirepair') / 'cluster'
    with harness.local_cluster(workdir, part_power=4, backend=zk_server.url,
                               session_timeout=harness.SESSION_TIMEOUT) \
            as cluster:
        yield cluster


@pytest.fixture(scope='module')
def api(cluster):
    return API(cluster, local_cluster_cmd.proxy_auth_url(cluster.meta))


# -- what is on disk ----------------------------------------------------------

class Replicas:
    """The container database replicas of the API's account, on disk."""

    def __init__(self, api):
        self.cluster = api.cluster
        self.account = api.account
        self.ring = api.container_ring
        self.prefix = self.cluster.meta['hash_path_prefix']
        self.suffix = self.cluster.meta['hash_path_suffix']

    def dev_path(self, node, device):
        return os.path.join(self.cluster.workdir, node, 'devices', device)

    def places(self, container):
        """``[(node, device, db file)]`` of every primary replica."""
        part, devs = self.ring.get_nodes(self.account, container)
        return [(d['node'], d['device'], backend.container_db_path(
            self.dev_path(d['node'], d['device']), part, self.account,
            container, self.prefix, self.suffix)) for d in devs]

    def db_file(self, container, node):
        for name, _device, path in self.places(container):
            if name == node:
                return path
        raise AssertionError('%s holds no replica of %s' % (node, container))

    def listing(self, container, node):
        """``{name: (size, etag)}`` of the live rows of ``node``'s
        replica, read with a broker of this process; None when the
        replica has no database file."""
        path = self.db_file(container, node)
        if not os.path.exists(path):
            return None
        broker = backend.ContainerBroker(path, account=self.account,
                                         container=container)
        try:
            rows = broker.list_objects_iter(10000, '', '', None, '')
        finally:
            broker.close()
        return {r['name']: (r['size'], r['etag']) for r in rows}

    def listings(self, container):
        return {node: self.listing(container, node)
                for node, _device, _path in self.places(container)}

    def strays(self, container):
        """DB files of ``container`` on devices that are not its
        primaries (handoffs not pushed home and removed yet)."""
        part, devs = self.ring.get_nodes(self.account, container)
        primaries = {(d['node'], d['device']) for d in devs}
        found = []
        for node, device in self.cluster.devices():
            if (node, device) in primaries:
                continue
            path = backend.container_db_path(
                self.dev_path(node, device), part, self.account, container,
                self.prefix, self.suffix)
            if os.path.exists(path):
                found.append(path)
        return found

    def quarantined(self):
        """``[(node, device, entry)]`` under every
        ``<dev>/quarantined/containers/``."""
        found = []
        for node, device in self.cluster.devices():
            qdir = os.path.join(self.dev_path(node, device),
                                backend.QUARANTINE_DIR,
                                backend.CONTAINER_DATADIR)
            if os.path.isdir(qdir):
                found.extend((node, device, entry)
                             for entry in sorted(os.listdir(qdir)))
        return found


def objects_on_disk(cluster, account, container):
    """``{object: {(node, device)}}``: every object of ``container``
    whose newest file on a device is a ``.data``, found by walking every
    device's object directories and reading each object's own metadata
    (its name), so an object no one expects shows up too."""
    prefix = '/%s/%s/' % (account, container)
    found = collections.defaultdict(set)
    for node, device in cluster.devices():
        disk = cluster.disk(node)
        objects_dir = os.path.join(cluster.workdir, node, 'devices', device,
                                   'objects')
        parts = os.listdir(objects_dir) if os.path.isdir(objects_dir) \
            else []
        for part in parts:
            if not part.isdigit():
                continue
            part_dir = os.path.join(objects_dir, part)
            for suffix in os.listdir(part_dir):
                suffix_dir = os.path.join(part_dir, suffix)
                if not os.path.isdir(suffix_dir):
                    continue
                for obj_hash in os.listdir(suffix_dir):
                    try:
                        metadata = disk.diskfile_by_hash(
                            device, int(part), obj_hash).read_metadata()
                    except (exceptions.DiskFileNotFound, ValueError):
                        continue
                    if metadata['name'].startswith(prefix):
                        found[metadata['name'][len(prefix):]].add(
                            (node, device))
    return dict(found)


def pendings(cluster):
    """Async pending files left on every device (quarantined ones not
    counted)."""
    found = []
    for node, device in cluster.devices():
        top = os.path.join(cluster.workdir, node, 'devices', device,
                           updates.ASYNC_DIR)
        for root, _dirs, files in os.walk(top):
            found.extend(os.path.join(root, f) for f in files
                         if not f.startswith('.'))
    return sorted(found)


# -- running the daemons ------------------------------------------------------

def run_updaters(cluster):
    """One ``coordsync-object-updater --once`` per node, one after the
    other (each sweeps only its own devices)."""
    for node in cluster.node_names:
        result = nodes.run_module(
            'coordsync.cmd.updater', '--config-file',
            cluster.node_config(node), '--once', check=False,
            timeout=RUN_TIMEOUT)
        assert result.returncode == 0, '%s: exit %d\n%s' % (
            node, result.returncode, result.stderr[-3000:])


def run_container_replicators(cluster):
    """One ``--once --wait-for-peers`` pass on every node at once (so
    they divide the partitions); ``{node: (exit code, stderr)}``."""
    def one(node):
        result = nodes.run_module(
            'coordsync.cmd.container_replicator', '--config-file',
            cluster.node_config(node), '--once', '--wait-for-peers',
            check=False, timeout=RUN_TIMEOUT)
        return result.returncode, result.stderr
    with concurrent.futures.ThreadPoolExecutor(len(cluster.node_names)) \
            as pool:
        return dict(zip(cluster.node_names,
                        pool.map(one, cluster.node_names), strict=True))


def assert_passes_ok(results):
    failed = {node: err[-3000:] for node, (code, err) in results.items()
              if code != 0}
    assert not failed, failed


def replicator_recon(cluster, node):
    path = os.path.join(cluster.node_conf(node)[
        'container-replicator'].recon_cache_path,
        'container-replicator.json')
    with open(path) as fh:
        return json.load(fh)


def upload(conn, container, count, tag):
    """``count`` objects through the API, each checked; ``{name: (size,
    etag)}``."""
    uploaded = {}
    for i in range(count):
        name = '%s/obj-%03d' % (tag, i)
        body = os.urandom(100 + 37 * i)
        etag = conn.put_object(container, name, body)
        assert etag == hashlib.md5(body).hexdigest(), name
        uploaded[name] = (len(body), etag)
    return uploaded


def api_listing(api, container):
    _, rows = api.conn.get_container(container, full_listing=True)
    return {r['name']: (r['bytes'], r['hash']) for r in rows}


# -- the tests --------------------------------------------------------------

def test_uploads_with_a_container_replica_down_level_after_repair(api):
    cluster = api.cluster
    dbs = Replicas(api)
    # Every container has a replica on every node (3 nodes, 3 replicas):
    # the node down holds one of each.
    kept, late = 'kept', 'late'
    api.conn.put_container(kept)
    down = dbs.places(kept)[0][0]
    assert down in {n for n, _d, _p in dbs.places(late)}
    uploaded = {}
    with cluster.node_down(down):
        # A container made while the node is down: no database there.
        api.conn.put_container(late)
        for container in (kept, late):
            uploaded[container] = upload(api.conn, container, UPLOADS,
                                         container)
        assert pendings(cluster), 'no async pending was written'

    # Back, and behind: nothing repaired it yet.
    assert dbs.listing(kept, down) == {}
    assert dbs.listing(late, down) is None
    for container in (kept, late):
        for node, listed in dbs.listings(container).items():
            # NOTE: a live replica too may have missed an update slower
            # than the object server's wait (a pending on a loaded box).
            if node != down:
                assert listed is not None, (container, node)
                assert set(listed) <= set(uploaded[container]), node

    run_updaters(cluster)
    # The updater alone levels the container whose database the node
    # kept; the other one's updates wait (404) for its database.
    assert dbs.listing(kept, down) == uploaded[kept]
    assert_passes_ok(run_container_replicators(cluster))
    figures = {node: replicator_recon(cluster, node)
               for node in cluster.node_names}
    assert sum(f['dbs_pushed'] + f['dbs_fetched']
               for f in figures.values()) >= 1, figures

    for container in (kept, late):
        on_disk = objects_on_disk(cluster, api.account, container)
        # Every upload is on disk, on a quorum of nodes (a handoff
        # stands in for the node that was down); nothing else is.
        assert set(on_disk) == set(uploaded[container]), container
        thin = {name: sorted(where) for name, where in on_disk.items()
                if len({node for node, _dev in where}) < 2}
        assert not thin, thin
        # The same, name by name, through the harness.
        for name in uploaded[container]:
            files = cluster.files_of(container, name, api.account)
            newest = {where: names[-1] for where, names in files.items()}
            assert newest and all(f.endswith('.data')
                                  for f in newest.values()), (name, files)
        listings = dbs.listings(container)
        for node, listed in listings.items():
            assert listed is not None, (container, node)
            assert set(listed) == set(on_disk), (container, node)
            assert listed == uploaded[container], (container, node)
        assert api_listing(api, container) == uploaded[container]
        assert dbs.strays(container) == []

    # The pendings held back for the missing database go with the next
    # sweep (the row is there already; sending it again is harmless).
    run_updaters(cluster)
    assert pendings(cluster) == []
    assert dbs.listings(late) == {
        node: uploaded[late] for node in cluster.node_names}


def test_lost_and_corrupt_db_replicas_rebuilt_in_one_pass(api):
    cluster = api.cluster
    dbs = Replicas(api)
    lost_c, bad_c = 'lost-db', 'corrupt-db'
    uploaded = {}
    for container in (lost_c, bad_c):
        api.conn.put_container(container)
        uploaded[container] = upload(api.conn, container, 12, container)
    for container in (lost_c, bad_c):
        if any(listed != uploaded[container]
               for listed in dbs.listings(container).values()):
            # NOTE: a container update slower than the object server's
            # wait became a pending: deliver it first.
            run_updaters(cluster)
        assert dbs.listings(container) == {
            node: uploaded[container] for node in cluster.node_names}
    before = dbs.quarantined()

    # One replica of lost-db removed (its side files too); one replica,
    # on another node, of corrupt-db overwritten at its header.
    lost_node = dbs.places(lost_c)[0][0]
    lost = dbs.db_file(lost_c, lost_node)
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(lost + suffix):
            os.unlink(lost + suffix)
    bad_node, bad_device, bad = [place for place in dbs.places(bad_c)
                                 if place[0] != lost_node][0]
    with open(bad, 'r+b') as fh:
        fh.write(b'\xff' * 4096)
    for suffix in ('-wal', '-shm'):
        if os.path.exists(bad + suffix):
            os.unlink(bad + suffix)

    assert_passes_ok(run_container_replicators(cluster))

    assert dbs.listings(lost_c) == {
        node: uploaded[lost_c] for node in cluster.node_names}
    assert dbs.listings(bad_c) == {
        node: uploaded[bad_c] for node in cluster.node_names}
    new = [q for q in dbs.quarantined() if q not in before]
    bad_hash = os.path.basename(os.path.dirname(bad))
    assert [(n, d) for n, d, _e in new] == [(bad_node, bad_device)], new
    assert new[0][2].startswith(bad_hash), new
    qdir = os.path.join(dbs.dev_path(bad_node, bad_device),
                        backend.QUARANTINE_DIR, backend.CONTAINER_DATADIR,
                        new[0][2])
    assert os.path.basename(bad) in os.listdir(qdir)
    counted = {node: replicator_recon(cluster, node).get('quarantined')
               for node in cluster.node_names}
    assert sum(counted.values()) == 1, counted
    for container in (lost_c, bad_c):
        assert api_listing(api, container) == uploaded[container]
        assert dbs.strays(container) == []
