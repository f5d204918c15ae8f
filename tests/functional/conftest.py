import os
import uuid

import pytest

from tests.functional import nodes
from tests.functional import zookeeper

SESSION_TIMEOUT = 3


@pytest.fixture(scope='session')
def zk_server(tmp_path_factory):
    server = zookeeper.ZooKeeperServer(str(tmp_path_factory.mktemp('zk')))
    server.start()
    yield server
    server.stop()


class Cluster:
    """Node processes sharing one backend and one (test-unique) group."""

    def __init__(self, workdir, backend_url):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.backend_url = backend_url
        self.group = 'test-%s' % uuid.uuid4().hex[:8]
        self.processes = []
        self.status_config = self.config('status')

    def config(self, node_name, **extra):
        path = os.path.join(self.workdir, '%s.conf' % node_name)
        node_dir = os.path.join(self.workdir, node_name)
        os.makedirs(os.path.join(node_dir, 'devices'), exist_ok=True)
        default = {'node_name': node_name,
                   'state_path': node_dir,
                   'devices': os.path.join(node_dir, 'devices'),
                   'bind_ip': '127.0.0.1',
                   'bind_port': zookeeper.free_port(),
                   'cluster_secret': 'test-secret',
                   'use_stderr': 'true'}
        coordination = {
            'backend_url': self.backend_url,
            'group': self.group,
            'heartbeat': 0.2,
            'session_timeout': SESSION_TIMEOUT,
            'initial_reconnect_backoff': 0.1,
            'max_reconnect_backoff': 1.0,
            'progress_interval': 1.0,
        }
        coordination.update(extra.pop('coordination', {}))
        default.update(extra)
        return nodes.write_config(path, {'DEFAULT': default,
                                         'coordination': coordination})

    def spawn(self, name, argv):
        proc = nodes.Process(name, argv,
                             os.path.join(self.workdir, '%s.log' % name))
        self.processes.append(proc)
        return proc

    def start_node(self, name, wait=True, **extra):
        config = self.config(name, **extra)
        proc = self.spawn(name, nodes.module_argv(
            'coordsync.cmd.server', '--config-file', config))
        if wait:
            proc.wait_log('Joined coordination group')
        return proc

    def start_lock_worker(self, name, *args):
        config = self.config(name)
        return self.spawn(name, nodes.script_argv(
            'lock_worker.py', '--config-file', config, *args))

    def members(self):
        return nodes.member_nodes(self.status_config)

    def close(self):
        for proc in self.processes:
            proc.stop(timeout=5)


def _cluster(tmp_path, url):
    cluster = Cluster(str(tmp_path), url)
    return cluster


@pytest.fixture(params=['zookeeper', 'file'])
def cluster(request, tmp_path):
    if request.param == 'zookeeper':
        url = request.getfixturevalue('zk_server').url
    else:
        url = 'file://%s' % (tmp_path / 'coordination')
    cluster = _cluster(tmp_path, url)
    yield cluster
    cluster.close()


@pytest.fixture
def zk_cluster(zk_server, tmp_path):
    cluster = _cluster(tmp_path, zk_server.url)
    yield cluster
    cluster.close()


@pytest.fixture
def own_zk(tmp_path):
    """A ZooKeeper of this test's own, free to be stopped and restarted."""
    server = zookeeper.ZooKeeperServer(str(tmp_path / 'zk'))
    server.start()
    yield server
    server.stop()
