"""Recon, /metrics and /healthcheck on real processes (issue 12).

One 3-node local cluster on the test run's ZooKeeper serves the module.
Its servers run the object replicator and the object updater inside
``coordsync-server`` (``[server] workers``) with an hour's pause, so each
node ends exactly one pass of each early on, and the figures of that
pass must agree wherever they are read: the stats line the daemon logs,
the node's ``/recon/<worker>``, its ``/metrics`` (parsed with
Prometheus's own text parser) and ``coordsync-recon``'s cluster view.
"""

import json
import os
import re
import urllib.error
import urllib.request

import pytest

from coordsync.common import metrics
from tests.functional import harness
from tests.functional import nodes

# Bounds, not timing goals: generous for a loaded 2-core machine.
BOUND = 90.0
STATS = {
    'object-replicator': re.compile(
        r'object-replicator: (\d+)/(\d+) \([\d.]+%\) partitions '
        r'replicated in .*?; \d+ skipped \(locked elsewhere\), (\d+) '
        r'fenced, (\d+) failed'),
    'object-updater': re.compile(
        r'object-updater: (\d+)/(\d+) \([\d.]+%\) devices swept in .*?; '
        r'\d+ skipped \(locked elsewhere\), (\d+) fenced, (\d+) failed'),
}


@pytest.fixture(scope='module')
def cluster(zk_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('recon-cluster') / 'cluster'
    with harness.local_cluster(
            workdir, part_power=4, backend=zk_server.url,
            session_timeout=harness.SESSION_TIMEOUT,
            settings={'server.workers': 'object-replicator,object-updater',
                      'replicator.run_pause': 3600,
                      'object-updater.run_pause': 3600}) as cluster:
        yield cluster


def endpoint(cluster, node):
    ip, port = cluster.address(node)
    return {'ip': ip, 'port': port, 'device': ''}


def get_recon(cluster, node, kind):
    status, _headers, body = cluster.node_client.call(
        endpoint(cluster, node), 'GET', '/recon/%s' % kind)
    return status, body


def http_get(cluster, node, path):
    """``(status, body)`` of an unsigned GET."""
    ip, port = cluster.address(node)
    try:
        with urllib.request.urlopen('http://%s:%d%s' % (ip, port, path),
                                    timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stats_line(cluster, node, worker):
    """``(done, total, fenced, failed)`` of the last stats line
    ``worker`` logged on ``node``, None before any."""
    found = STATS[worker].findall(cluster.node_log(node))
    return tuple(int(v) for v in found[-1]) if found else None


def metric_samples(body):
    return metrics.parse(body.decode('utf-8'))


def sample(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def wait_for_passes(cluster):
    """Every node's recon of both workers, once each ended its pass."""
    recons = {}

    def ended():
        for node in cluster.node_names:
            for worker in STATS:
                if (node, worker) in recons:
                    continue
                status, body = get_recon(cluster, node, worker)
                if status == 200:
                    recons[(node, worker)] = json.loads(body)
        return len(recons) == len(cluster.node_names) * len(STATS)
    nodes.wait_for(ended, BOUND, interval=0.5,
                   message='a pass of each worker on every node')
    return recons


@pytest.fixture(scope='module')
def recons(cluster):
    return wait_for_passes(cluster)


def test_recon_and_metrics_agree_with_the_stats_lines(cluster, recons):
    for node in cluster.node_names:
        status, body = http_get(cluster, node, '/metrics')
        assert status == 200
        found = metric_samples(body)
        for worker in STATS:
            recon = recons[(node, worker)]
            done, total, fenced, failed = stats_line(cluster, node, worker)
            assert (recon['done'], recon['total'], recon['fenced'],
                    recon['errors']) == (done, total, fenced, failed), (
                node, worker)
            assert recon['pass'] == 1
            assert sample(found, 'coordsync_passes_total', worker=worker,
                          mode=recon['mode']) == 1.0
            for outcome in ('succeeded', 'failed', 'fenced'):
                assert sample(found, 'coordsync_items_total',
                              worker=worker, outcome=outcome) == \
                    recon[outcome], (node, worker, outcome)
            assert sample(found, 'coordsync_last_pass_end_timestamp_seconds',
                          worker=worker) == pytest.approx(
                recon['started_at'] + recon['duration'], abs=0.01)
        # Every node replicates some partitions of the 16 (3 replicas).
        assert recons[(node, 'object-replicator')]['total'] > 0
        assert recons[(node, 'object-updater')]['total'] == 2
        # The signed recon requests above were counted by route.
        assert sample(found, 'coordsync_http_requests_total',
                      route='/recon', method='GET', status='200') >= 2


def test_node_facts(cluster, recons):
    status, body = get_recon(cluster, 'n2', 'server')
    assert status == 200 and json.loads(body)['node'] == 'n2'
    status, body = get_recon(cluster, 'n2', 'disk')
    disks = json.loads(body)['devices']
    assert [d['device'] for d in disks] == ['d1', 'd2']
    assert all(d['usable'] and d['size'] > 0 for d in disks)
    status, body = get_recon(cluster, 'n2', 'async')
    assert json.loads(body)['async_pending'] == 0
    # Unsigned, or a kind no node has: refused, with one line.
    assert http_get(cluster, 'n2', '/recon/server')[0] == 401
    status, body = get_recon(cluster, 'n2', 'reconciler')
    assert status == 404 and body.count(b'\n') == 1


def run_recon(cluster, *args):
    return nodes.run_module('coordsync.cmd.recon', '--config-file',
                            cluster.config, '--timeout', '5', *args,
                            check=False)


def test_coordsync_recon_all(cluster, recons):
    done = run_recon(cluster, '--all', '-f', 'json')
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report['hosts']['answered'] == report['hosts']['total'] == 3
    assert report['md5']['matched'] == 3 and report['md5']['errors'] == 0
    replication = report['replication']['object-replicator']
    assert replication['reported'] == 3
    for label, row in replication['nodes'].items():
        node = label.split(' ')[0]
        assert (row['done'], row['total']) == (
            recons[(node, 'object-replicator')]['done'],
            recons[(node, 'object-replicator')]['total'])
    assert report['replication']['container-replicator']['reported'] == 0
    assert all(row['sweeps'] == 1
               for row in report['updater']['nodes'].values())
    assert len(report['disk']['devices']) == 6
    assert report['problems'] == []


def test_health_drain_file(cluster):
    drain = os.path.join(cluster.workdir, 'n1', 'state', 'drain')
    assert http_get(cluster, 'n1', '/healthcheck') == (200, b'OK\n')
    with open(drain, 'w'):
        pass
    try:
        status, body = http_get(cluster, 'n1', '/healthcheck')
        assert status == 503
        assert drain.encode() in body
        # Draining leaves the node serving everything else.
        assert get_recon(cluster, 'n1', 'server')[0] == 200
    finally:
        os.unlink(drain)
    assert http_get(cluster, 'n1', '/healthcheck') == (200, b'OK\n')


# NOTE: last: it leaves n3 stopped (the module's cluster goes down next).
def test_coordsync_recon_md5_names_a_stopped_node(cluster, recons):
    done = run_recon(cluster, '--md5')
    assert done.returncode == 0, done.stdout + done.stderr
    assert '3/3 hosts answered' in done.stdout
    assert '[ring md5] 3/3 hosts matched, 0 error(s)' in done.stdout
    cluster.stop('n3')
    done = run_recon(cluster, '--md5')
    assert done.returncode == 1, done.stdout + done.stderr
    assert '2/3 hosts answered' in done.stdout
    assert '[ring md5] 2/2 hosts matched, 0 error(s)' in done.stdout
    ip, port = cluster.address('n3')
    assert 'not answering: n3 (%s:%d)' % (ip, port) in done.stdout
