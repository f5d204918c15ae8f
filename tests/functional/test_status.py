"""coordsync-status against real backends and a running cluster.

The command runs as a subprocess (``python -m coordsync.cmd.status``),
as an operator or a monitoring check runs it: an empty or not yet
created group, an unreachable ZooKeeper, a bad config, then a running
3-node cluster on ZooKeeper whose object replicators finished a pass
(the JSON report is validated against its schema) and ``--who`` on a
lock a real process holds.
"""

import json
import os
import time
import uuid

import pytest

from coordsync.common import division
from coordsync.common import status
from tests.functional import harness
from tests.functional import nodes
from tests.functional import zookeeper

try:
    import jsonschema
except ImportError:  # pragma: no cover - jsonschema is in the test env
    jsonschema = None

# Bounds of the waits (not speeds): a pass of 8 partitions on 3 nodes.
PASS_WAIT = 60


def status_run(config, *args, timeout=60):
    """``(exit code, stdout, stderr lines)`` of coordsync-status."""
    code, out, err = nodes.run_status(config, *args, timeout=timeout)
    return code, out, err.splitlines()


def write_conf(tmp_path, name, backend_url, group=None, **coordination):
    coordination.update(backend_url=backend_url,
                        group=group or 'test-%s' % uuid.uuid4().hex[:8])
    return nodes.write_config(str(tmp_path / name), {
        'DEFAULT': {'state_path': str(tmp_path / 'state')},
        'coordination': coordination})


def validate(report):
    schema = status.load_schema()
    if jsonschema is None:
        pytest.skip('jsonschema not installed')
    jsonschema.Draft202012Validator(schema).validate(report)


def test_empty_group_says_no_members_on_zookeeper_and_embedded(
        zk_server, tmp_path):
    for backend in (zk_server.url, 'file://%s' % (tmp_path / 'coord')):
        config = write_conf(tmp_path, 'empty.conf', backend)
        code, out, err = status_run(config)
        assert (code, err) == (0, []), (backend, out, err)
        assert out.splitlines()[-1].endswith(': healthy, no members')
        code, out, err = status_run(config, '-f', 'json', '--expect', '1')
        report = json.loads(out)
        assert (code, err) == (1, []), (backend, out, err)
        assert (report['state'], report['members']) == ('degraded', [])
        assert 'unreachable' not in out
        validate(report)


def test_unreachable_backend_is_one_line_and_bad_config_exits_3(tmp_path):
    port = zookeeper.free_port()
    config = write_conf(
        tmp_path, 'dead.conf',
        'zookeeper://ops:s3cret@127.0.0.1:%d/?password=s3cret' % port)
    code, out, err = status_run(config, '--timeout', '2')
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith('coordsync-status: error: ')
    assert '127.0.0.1:%d' % port in err[0]
    assert 's3cret' not in err[0]
    assert out == ''
    code, out, err = status_run(config, '--timeout', '2', '-f', 'json')
    assert (code, len(err)) == (2, 1), err
    assert json.loads(out)['state'] == 'unreachable'

    bad = write_conf(tmp_path, 'bad.conf', 'file://%s' % tmp_path,
                     heartbeat='x')
    code, out, err = status_run(bad)
    assert code == 3
    assert err == [err[0]] and err[0].startswith(
        'coordsync-status: error: [coordination] heartbeat')
    code, out, err = status_run(config, '--no-such-flag')
    assert code == 3
    assert 'unrecognized arguments: --no-such-flag' in err[-1]


@pytest.fixture(scope='module')
def running_cluster(zk_server, tmp_path_factory):
    """3 nodes on ZooKeeper, each server running the object replicator
    with a 1 s pause between passes."""
    workdir = tmp_path_factory.mktemp('status-cluster') / 'cluster'
    with harness.local_cluster(
            workdir, part_power=3, backend=zk_server.url,
            session_timeout=harness.SESSION_TIMEOUT,
            settings={'server.workers': harness.WORKER,
                      'replicator.run_pause': 1,
                      'coordination.progress_interval': 1}) as cluster:
        yield cluster


def passed_everywhere(cluster):
    code, out, _err = status_run(cluster.config, '-f', 'json')
    report = json.loads(out)
    rows = [w for m in report['members'] for w in m['workers']
            if w['worker'] == harness.WORKER]
    if len(rows) == 3 and all(w['last_pass_age'] is not None
                              for w in rows):
        return report
    return None


def test_running_cluster_report_follows_the_schema(running_cluster):
    nodes.wait_for(lambda: passed_everywhere(running_cluster), PASS_WAIT,
                   interval=0.5, message='a pass on every node')
    report = passed_everywhere(running_cluster)
    validate(report)
    assert report['state'] == 'healthy', report['problems']
    summary = report['summary'][harness.WORKER]
    assert (summary['members'], summary['passed'], summary['failures']) \
        == (3, 3, 0)
    assert summary['nodes'] == ['n1', 'n2', 'n3']
    assert summary['slowest_node'] in summary['nodes']
    assert summary['oldest_pass_age'] >= summary['newest_pass_age']
    for member in report['members']:
        (worker,) = member['workers']
        assert worker['mode'] == 'coordinated'
        assert worker['last_pass_duration'] >= 0
    assert report['backlog'][harness.WORKER]['items'] >= 0

    code, out, err = status_run(running_cluster.config)
    lines = out.splitlines()
    assert (code, err) == (0, []), out
    assert lines[0].split()[:3] == ['MEMBER', 'NODE', 'HOST']
    assert [line for line in lines if line.startswith(
        '  %s: 3 member(s); last pass oldest ' % harness.WORKER)]
    assert lines[-1] == 'group %s: healthy, 3 member(s)' % (
        running_cluster.conf.coordination.group)
    code, out, _ = status_run(running_cluster.config, '-c', 'node,worker')
    assert out.splitlines()[0].split() == ['NODE', 'WORKER']


def test_who_names_owner_and_the_holder_of_a_held_lock(running_cluster,
                                                       tmp_path):
    item = 'coordsync/replicate/0/5'
    conf = running_cluster.conf
    config = nodes.write_config(str(tmp_path / 'holder.conf'), {
        'DEFAULT': {'node_name': 'holder',
                    'state_path': str(tmp_path / 'holder')},
        'coordination': dict(harness.COORDINATION,
                             backend_url=conf.coordination.backend_url,
                             group=conf.coordination.group)})
    os.makedirs(str(tmp_path / 'holder'), exist_ok=True)
    holder = nodes.Process('holder', nodes.script_argv(
        'lock_worker.py', '--config-file', config, '--mode', 'hold',
        '--lock', item), str(tmp_path / 'holder.log'))
    try:
        started = time.monotonic()
        holder.wait_log('LOCKED %s' % item, timeout=PASS_WAIT)
        code, out, err = status_run(running_cluster.config, '--who',
                                    'object-replicator:0/5', '-f', 'json')
        elapsed = time.monotonic() - started
        assert (code, err) == (0, []), (out, err)
        report = json.loads(out)
        assert report['item'] == item
        assert report['holder'].startswith('holder@')
        assert 0 <= report['held_for'] <= elapsed + 1.0
        replicas = sorted({d['node'] for d in
                           running_cluster.ring.get_part_nodes(5)})
        assert report['eligible'] == replicas
        assert report['live'] == replicas
        # NOTE: the owner each replicator's own plan would choose.
        assert [report['owner']] == [
            node for node in replicas if division.Division(
                node, replicas).category(item, replicas) is not None]
        code, out, err = status_run(running_cluster.config, '--who', '5')
        assert code == 0
        assert [line for line in out.splitlines() if line.startswith(
            '  lock: held by %s for ' % report['holder'])], out
    finally:
        holder.stop()
