import pytest

from tests.functional import harness
from tests.functional import zookeeper


@pytest.fixture(scope='session')
def zk_server(tmp_path_factory):
    server = zookeeper.ZooKeeperServer(str(tmp_path_factory.mktemp('zk')))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=['zookeeper', 'file'])
def cluster(request, tmp_path):
    """A :class:`harness.Group` on ZooKeeper, then on the file backend."""
    if request.param == 'zookeeper':
        url = request.getfixturevalue('zk_server').url
    else:
        url = 'file://%s' % (tmp_path / 'coordination')
    group = harness.Group(tmp_path, url)
    yield group
    group.close()


@pytest.fixture
def zk_cluster(zk_server, tmp_path):
    group = harness.Group(tmp_path, zk_server.url)
    yield group
    group.close()


@pytest.fixture(scope='module')
def zk_local_cluster(zk_server, tmp_path_factory):
    """A :class:`harness.LocalCluster` of 3 nodes on the test run's
    ZooKeeper with short sessions, one per test module."""
    workdir = tmp_path_factory.mktemp('cluster') / 'cluster'
    with harness.local_cluster(workdir, part_power=5, backend=zk_server.url,
                               session_timeout=harness.SESSION_TIMEOUT) \
            as cluster:
        yield cluster


@pytest.fixture(scope='module')
def zk_policy_cluster(zk_server, tmp_path_factory):
    """A :class:`harness.LocalCluster` like ``zk_local_cluster`` with two
    storage policies (0 ``gold``, the default, and 1 ``silver``), one per
    test module. Its proxy reads a container's policy afresh for every
    object request (``recheck_container_existence = 0``), so a test sees
    at once which replica answered first."""
    workdir = tmp_path_factory.mktemp('policy-cluster') / 'cluster'
    with harness.local_cluster(
            workdir, part_power=4, backend=zk_server.url,
            session_timeout=harness.SESSION_TIMEOUT, policies=2,
            settings={'proxy.recheck_container_existence': 0}) as cluster:
        yield cluster


@pytest.fixture
def own_zk(tmp_path):
    """A ZooKeeper of this test's own, free to be stopped and restarted."""
    server = zookeeper.ZooKeeperServer(str(tmp_path / 'zk'))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def replicators(tmp_path):
    """``make(cluster, **options)``: a :class:`harness.Replicators` on a
    local cluster; every process is stopped afterwards."""
    made = []

    def make(cluster, **options):
        made.append(harness.Replicators(cluster, tmp_path, **options))
        return made[-1]
    yield make
    for group in made:
        group.stop()


@pytest.fixture
def workers(tmp_path):
    """``make(kind, cluster, **options)``: a :class:`harness.Workers` of
    ``kind`` (e.g. :class:`harness.Reconcilers`) on a local cluster;
    every process is stopped afterwards."""
    made = []

    def make(kind, cluster, **options):
        made.append(kind(cluster, tmp_path / ('%s-%d' % (kind.worker,
                                                         len(made))),
                         **options))
        return made[-1]
    yield make
    for group in made:
        group.stop()
