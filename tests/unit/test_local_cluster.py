"""coordsync-local-cluster without starting nodes: layout and --set."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.cmd import local_cluster
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy


def up_args(workdir, *extra):
    return local_cluster.parse_args(['--workdir', str(workdir), 'up',
                                     '--nodes', '2', '--replicas', '2',
                                     '--part-power', '2', *extra])


def node_conf(workdir, name):
    return service.prepare_service(
        ['--config-file', local_cluster.node_config_path(str(workdir), name)],
        prog='test', default_config_files=[])


SETS = ['--set', 'replicator.concurrency=2', '--set',
        'server.fence_lease = 5', '--set', 'DEFAULT.debug=true',
        '--set', 'server.workers=']


def test_settings_land_in_every_node_config(tmp_path):
    args = up_args(tmp_path, *SETS)
    local_cluster.create(str(tmp_path), args,
                         local_cluster.parse_settings(args.set))
    for name in ('n1', 'n2'):
        conf = node_conf(tmp_path, name)
        assert conf.replicator.concurrency == 2
        assert conf.server.fence_lease == 5.0
        assert conf.debug is True
        assert conf.server.workers == []
        # What the cluster sets itself is still there.
        assert conf.node_name == name
        assert conf.coordination.heartbeat == 1.0


def test_up_again_with_set_adds_to_the_settings(tmp_path):
    args = up_args(tmp_path, '--set', 'replicator.concurrency=2')
    local_cluster.create(str(tmp_path), args,
                         local_cluster.parse_settings(args.set))
    meta = local_cluster.load(str(tmp_path))
    local_cluster.apply_settings(str(tmp_path), meta,
                                 local_cluster.parse_settings(
                                     ['replicator.concurrency=3',
                                      'server.fence_lease=0']))
    assert local_cluster.load(str(tmp_path))['settings'] == {
        'replicator.concurrency': '3', 'server.fence_lease': '0'}
    conf = node_conf(tmp_path, 'n2')
    assert (conf.replicator.concurrency, conf.server.fence_lease) == (3, 0)


@pytest.mark.parametrize('text, message', [
    ('concurrency=2', 'expected GROUP.OPTION=VALUE'),
    ('replicator.concurrency', 'expected GROUP.OPTION=VALUE'),
    ('.concurrency=2', 'expected GROUP.OPTION=VALUE'),
    ('replicator.=2', 'expected GROUP.OPTION=VALUE'),
    ('nope.concurrency=2', 'no option group [nope]'),
    ('replicator.nope=2', 'no option nope in [replicator]'),
    ('DEFAULT.nope=2', 'no option nope in [DEFAULT]'),
    ('replicator.concurrency=many', 'bad value'),
    ('server.fence_lease=-1', 'bad value'),
    ('DEFAULT.node_name=a\nb', 'a value is one line'),
])
def test_bad_settings_are_refused(text, message):
    with pytest.raises(exceptions.ConfigError) as err:
        local_cluster.parse_settings([text])
    assert message in str(err.value)
    assert '\n' not in str(err.value)


def test_bad_setting_exits_2_and_starts_nothing(tmp_path, capsys,
                                                 monkeypatch):
    def no_start(*args):
        raise AssertionError('nothing may start')
    monkeypatch.setattr(local_cluster, 'start_node', no_start)
    workdir = tmp_path / 'cluster'
    code = local_cluster.main(['--workdir', str(workdir), 'up', '--set',
                               'replicator.concurrency=2', '--set',
                               'replicator.concurency=2'])
    assert code == 2
    err = capsys.readouterr().err
    assert err == ('coordsync-local-cluster: error: --set '
                   'replicator.concurency=2: no option concurency in '
                   '[replicator]\n')
    assert not os.path.exists(workdir)


def test_proxy_config_has_rings_and_test_user(tmp_path):
    args = up_args(tmp_path, '--set', 'proxy.token_ttl=60')
    meta = local_cluster.create(str(tmp_path), args,
                                local_cluster.parse_settings(args.set))
    local_cluster._write_proxy_config(str(tmp_path), meta)
    conf = service.prepare_service(
        ['--config-file', local_cluster.proxy_config_path(str(tmp_path))],
        prog='test', default_config_files=[])
    assert conf.proxy.bind_port == meta['base_port'] + 2
    assert conf.proxy.users == ['test:tester testing .admin']
    assert conf.proxy.token_ttl == 60
    assert conf.cluster_secret == meta['cluster_secret']
    assert conf.container_ring_file.endswith('container.ring.json')
    assert local_cluster.proxy_auth_url(meta) == (
        'http://127.0.0.1:%d/auth/v1.0' % (meta['base_port'] + 2))


def test_nodes_run_every_background_worker(tmp_path):
    args = up_args(tmp_path, '--replicate-every', '3')
    local_cluster.create(str(tmp_path), args)
    conf = node_conf(tmp_path, 'n1')
    assert sorted(conf.server.workers) == sorted(daemons.WORKER_CLASSES)
    assert 'reconciler' in conf.server.workers
    for group in ('replicator', 'object-updater', 'container-replicator',
                  'account-replicator', 'container-sync', 'reconciler'):
        assert conf[group].run_pause == 3.0


def test_replicate_every_0_runs_no_worker(tmp_path):
    args = up_args(tmp_path / 'quiet', '--replicate-every', '0')
    local_cluster.create(str(tmp_path / 'quiet'), args)
    assert node_conf(tmp_path / 'quiet', 'n2').server.workers == []


# -- storage policies -----------------------------------------------------

def policies_of(conf):
    found = storage_policy.from_conf(conf)
    found.check_rings()
    return [(p.index, p.name, p.is_default, os.path.basename(p.ring_file))
            for p in found]


def test_two_policies_by_default_in_every_config(tmp_path):
    args = up_args(tmp_path)
    meta = local_cluster.create(str(tmp_path), args)
    assert meta['policies'] == 2
    local_cluster._write_proxy_config(str(tmp_path), meta)
    expected = [(0, 'gold', True, 'object.ring.json'),
                (1, 'silver', False, 'object-1.ring.json')]
    for path in (local_cluster.node_config_path(str(tmp_path), 'n1'),
                 local_cluster.node_config_path(str(tmp_path), 'n2'),
                 local_cluster.proxy_config_path(str(tmp_path))):
        conf = service.prepare_service(['--config-file', path], prog='test',
                                       default_config_files=[])
        assert policies_of(conf) == expected, path
        assert os.path.dirname(storage_policy.from_conf(conf).get_by_index(
            1).ring_file) == str(tmp_path)


def load_ring(workdir, meta, index):
    return ring_mod.Ring(
        os.path.join(str(workdir), local_cluster.policy_ring_name(index)),
        meta['hash_path_prefix'], meta['hash_path_suffix'])


def test_policy_rings_share_devices_but_place_apart(tmp_path):
    args = local_cluster.parse_args(['--workdir', str(tmp_path), 'up',
                                     '--policies', '3'])
    meta = local_cluster.create(str(tmp_path), args)
    rings = [load_ring(tmp_path, meta, i) for i in range(3)]
    devices = [sorted((d['node'], d['device']) for d in ring.devices)
               for ring in rings]
    assert devices[0] == devices[1] == devices[2]
    parts = range(2 ** meta['part_power'])

    def placement(ring):
        return [sorted((d['node'], d['device'])
                       for d in ring.get_part_nodes(p)) for p in parts]
    placements = [placement(ring) for ring in rings]
    assert placements[0] != placements[1]
    assert placements[1] != placements[2]
    assert placements[0] != placements[2]
    conf = node_conf(tmp_path, 'n3')
    assert [p[1] for p in policies_of(conf)] == ['gold', 'silver', 'bronze']


def test_one_policy(tmp_path):
    args = up_args(tmp_path, '--policies', '1')
    local_cluster.create(str(tmp_path), args)
    assert policies_of(node_conf(tmp_path, 'n1')) == [
        (0, 'gold', True, 'object.ring.json')]
    assert not os.path.exists(tmp_path / 'object-1.ring.json')


def test_up_again_may_add_policies_not_remove_them(tmp_path):
    local_cluster.create(str(tmp_path), up_args(tmp_path))
    meta = local_cluster.load(str(tmp_path))
    local_cluster.add_policies(str(tmp_path), meta, None)
    local_cluster.add_policies(str(tmp_path), meta, 2)
    assert not os.path.exists(tmp_path / 'object-2.ring.json')
    ring_1 = (tmp_path / 'object-1.ring.json').read_bytes()
    local_cluster.add_policies(str(tmp_path), meta, 3)
    assert local_cluster.load(str(tmp_path))['policies'] == 3
    assert (tmp_path / 'object-1.ring.json').read_bytes() == ring_1
    assert [p[1] for p in policies_of(node_conf(tmp_path, 'n2'))] == [
        'gold', 'silver', 'bronze']
    with pytest.raises(exceptions.ConfigError) as err:
        local_cluster.add_policies(str(tmp_path), meta, 2)
    assert 'cannot be removed' in str(err.value)
    assert local_cluster.load(str(tmp_path))['policies'] == 3


def test_a_cluster_made_before_policies_keeps_policy_0_only(tmp_path):
    local_cluster.create(str(tmp_path), up_args(tmp_path, '--policies',
                                                 '1'))
    meta_path = tmp_path / local_cluster.META
    meta = json.loads(meta_path.read_text())
    del meta['policies']
    meta_path.write_text(json.dumps(meta))
    meta = local_cluster.load(str(tmp_path))
    assert local_cluster.policy_count(meta) == 1
    local_cluster._write_config(str(tmp_path), meta, 'n1')
    assert [p[0] for p in policies_of(node_conf(tmp_path, 'n1'))] == [0]


def fake_object(workdir, meta, node, device, policy, part, obj_hash, name):
    hash_dir = os.path.join(str(workdir), node, 'devices', device,
                            storage_policy.datadir(policy), str(part),
                            hashing.suffix_of(obj_hash), obj_hash)
    os.makedirs(hash_dir, exist_ok=True)
    open(os.path.join(hash_dir, name), 'w').close()


def test_census_counts_every_policy(tmp_path, capsys):
    args = up_args(tmp_path)
    meta = local_cluster.create(str(tmp_path), args)
    capsys.readouterr()
    gold, silver = (load_ring(tmp_path, meta, i) for i in (0, 1))
    obj_hash = hashing.hash_path('a', 'c', 'o',
                                 prefix=meta['hash_path_prefix'],
                                 suffix=meta['hash_path_suffix'])
    # Level in silver: its newest file on both of silver's primaries.
    part = silver.get_part('a', 'c', 'o')
    for dev in silver.get_part_nodes(part):
        fake_object(tmp_path, meta, dev['node'], dev['device'], 1, part,
                    obj_hash, '0000000001.00000.data')
    # In gold: on one primary only, and one copy on a handoff.
    part = gold.get_part('a', 'c', 'o')
    primary = gold.get_part_nodes(part)[0]
    handoff = next(gold.get_more_nodes(part))
    for dev in (primary, handoff):
        fake_object(tmp_path, meta, dev['node'], dev['device'], 0, part,
                    obj_hash, '0000000002.00000.ts')
    # Not a policy directory: left out.
    os.makedirs(tmp_path / 'n1' / 'devices' / 'd1' / 'objects.lost' / '1'
                / 'abc' / obj_hash)
    result = local_cluster.census(str(tmp_path), meta)
    assert result == {
        'objects': 2, 'level': 1, 'lacking': 1, 'handoff_copies': 1,
        'policies': {
            0: {'objects': 1, 'level': 0, 'lacking': 1,
                'handoff_copies': 1},
            1: {'objects': 1, 'level': 1, 'lacking': 0,
                'handoff_copies': 0}}}
    assert local_cluster.main(['--workdir', str(tmp_path), 'census']) == 1
    assert capsys.readouterr().out.splitlines() == [
        '2 objects: 1 on every primary, 1 missing on some primary, 1 '
        'handoff copies',
        '  policy 0 gold: 1 objects: 0 on every primary, 1 missing on '
        'some primary, 1 handoff copies',
        '  policy 1 silver: 1 objects: 1 on every primary, 0 missing on '
        'some primary, 0 handoff copies']


def test_bad_policies_argument_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        local_cluster.parse_args(['--workdir', str(tmp_path), 'up',
                                  '--policies', '0'])
    assert err.value.code == 2
    assert '--policies' in capsys.readouterr().err


def _pid_file(tmp_path, pid):
    (tmp_path / 'n1').mkdir(exist_ok=True)
    (tmp_path / 'n1' / 'server.pid').write_text('%d\n' % pid)


def test_running_pid_is_none_for_a_killed_unreaped_server(tmp_path):
    # A node server killed by its starter (as the chaos driver does),
    # not yet reaped: a zombie answers kill(0) but runs nothing.
    proc = subprocess.Popen([sys.executable, '-c',
                             'import time; time.sleep(60)  # coordsync'])
    try:
        _pid_file(tmp_path, proc.pid)
        assert local_cluster.running_pid(str(tmp_path), 'n1') == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while local_cluster.running_pid(str(tmp_path), 'n1') is not None:
            assert time.monotonic() < deadline, 'still "running"'
            time.sleep(0.05)
    finally:
        proc.kill()
    # It was reaped on the way: nothing left to wait for.
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)


def test_running_pid_is_none_for_a_pid_reused_by_another_program(tmp_path):
    # Not a child of this process (its shell parent exited), and its
    # command line names no coordsync.
    out = subprocess.run(['sh', '-c', 'sleep 60 >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    try:
        _pid_file(tmp_path, pid)
        assert local_cluster.running_pid(str(tmp_path), 'n1') is None
    finally:
        os.kill(pid, signal.SIGKILL)


def test_running_pid_counts_a_server_started_here_before_its_exec(
        tmp_path):
    # Found by the chaos suite: right after start_node's fork, before
    # the exec, the child's command line is still its starter's, and
    # wait_serving took the restarted node for one that had exited.
    proc = subprocess.Popen(['sleep', '60'])
    try:
        _pid_file(tmp_path, proc.pid)
        assert local_cluster.running_pid(str(tmp_path), 'n1') == proc.pid
    finally:
        proc.kill()
        proc.wait()
