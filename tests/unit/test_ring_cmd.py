"""coordsync-ring: what an operator types, sees, and what it leaves."""

import json
import os
import re
import subprocess
import sys

import pytest

from coordsync.cmd import ring as ring_cmd
from coordsync.common import hashing
from coordsync.common.ring import Ring

ERROR_PREFIX = 'coordsync-ring: error: '


def run(capsys, *argv):
    """Run main(); return (status, stdout, stderr)."""
    status = ring_cmd.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def add(capsys, path, node, zone, device='sdb', weight=1, *extra):
    status, _out, err = run(
        capsys, path, 'add', '--node', node, '--ip', '10.0.0.%d' % zone,
        '--port', 6200, '--device', device, '--weight', weight,
        '--zone', zone, *extra)
    assert (status, err) == (0, '')


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'object.ring')


@pytest.fixture
def built(capsys, path):
    """A rebalanced ring: 4 nodes in 4 zones, 256 partitions, 3 replicas."""
    assert run(capsys, path, 'create', '--part-power', 8,
               '--replicas', 3)[0] == 0
    for zone in range(1, 5):
        add(capsys, path, 'node%d' % zone, zone)
    assert run(capsys, path, 'rebalance')[0] == 0
    return path


def snapshot(path):
    st = os.stat(path)
    with open(path, 'rb') as f:
        return f.read(), st.st_ino, st.st_mtime_ns


def test_create_add_rebalance(capsys, path):
    status, out, err = run(capsys, path, 'create', '--part-power', 6,
                           '--replicas', 2)
    assert (status, err) == (0, '')
    assert out == ('created %s: 64 partitions, 2 replicas, '
                   'min_part_hours 1\n' % path)
    add(capsys, path, 'n1', 1)
    add(capsys, path, 'n2', 2, 'sdc', 3, '--id', 7, '--region', 1)
    status, out, err = run(capsys, path, 'rebalance')
    assert (status, err) == (0, '')
    # Two replicas on two nodes: each holds every partition whatever the
    # weights say, so the weight-1 device is 100% over its 32.
    assert out.splitlines() == [
        'assigned 128 partition-replicas',
        'balance 100.00%, 0 partitions with two replicas in one zone']
    ring = Ring(path)
    assert [dev['id'] for dev in ring.devices if dev] == [0, 7]
    assert ring.devices[7]['region'] == 1
    assert len(ring.partitions_for_device(7)) == 64


def test_rebalance_reports_moves_and_skips_a_needless_write(capsys, built):
    before = snapshot(built)
    status, out, _err = run(capsys, built, 'rebalance')
    assert status == 0
    assert out.startswith('nothing to move; %s unchanged\n' % built)
    # Daemons abort a pass on a ring change; a no-op must not look like one.
    assert snapshot(built) == before
    held = len(Ring(built).partitions_for_device(3))
    status, out, _err = run(capsys, built, 'remove', '--id', 3)
    assert status == 0
    assert 'marked device 3 node4' in out
    assert 'move its %d partition-replicas' % held in out
    status, out, _err = run(capsys, built, 'rebalance')
    assert status == 0
    assert out.splitlines()[0] == 'moved %d partition-replicas' % held
    assert [dev['id'] for dev in Ring(built).devices if dev] == [0, 1, 2]


def test_show_table_and_json(capsys, built):
    status, out, _err = run(capsys, built, 'show')
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == ('%s: part_power 8 (256 partitions), 3 replicas, '
                        'balance 0.00%%, 0 partitions with two replicas in '
                        'one zone' % built)
    assert lines[1] == 'min_part_hours 1, 0 partitions held'
    assert lines[2].split() == ['id', 'region', 'zone', 'node', 'ip', 'port',
                                'device', 'weight', 'parts', 'ideal',
                                'balance', 'removed']
    assert lines[3].split() == ['0', '0', '1', 'node1', '10.0.0.1', '6200',
                                'sdb', '1.0', '192', '192.0', '0.0']
    status, out, _err = run(capsys, built, 'show', '--format', 'json')
    assert status == 0
    report = json.loads(out)
    assert report['partitions'] == 256 and report['rebalanced'] is True
    assert [dev['parts'] for dev in report['devices']] == [192] * 4
    assert report['balance'] == 0
    assert report['min_part_hours'] == 1
    assert [dev['balance'] for dev in report['devices']] == [0] * 4


def test_show_before_rebalance(capsys, path):
    run(capsys, path, 'create', '--part-power', 4, '--replicas', 1)
    status, out, _err = run(capsys, path, 'show')
    assert status == 0
    assert out.splitlines()[0].endswith('1 replicas, not rebalanced yet')


def test_lookup(capsys, built):
    status, out, _err = run(capsys, built, 'lookup', '--hash-prefix', 'p',
                            '--hash-suffix', 's', 'acct', 'cont', 'obj')
    assert status == 0
    ring = Ring(built, hash_prefix='p', hash_suffix='s')
    part, primaries = ring.get_nodes('acct', 'cont', 'obj')
    lines = out.splitlines()
    assert lines[0] == 'partition %d' % part
    # Four devices: three primaries and the one handoff left.
    assert [line.split(':')[0].strip() for line in lines[1:]] == [
        'primary 0', 'primary 1', 'primary 2', 'handoff 0']
    assert lines[1] == '  primary 0: %d %s 10.0.0.%d:6200/sdb weight 1 ' \
        '(region 0 zone %d)' % (primaries[0]['id'], primaries[0]['node'],
                                primaries[0]['zone'], primaries[0]['zone'])
    handoff = next(ring.get_more_nodes(part))
    assert lines[4].startswith('  handoff 0: %d ' % handoff['id'])


@pytest.mark.parametrize('argv, message', [
    (['remove', '--id', 9], 'no device with id 9'),
    (['set-weight', '--id', 9, '--weight', 1], 'no device with id 9'),
    (['add', '--node', 'node1', '--ip', '10.0.0.1', '--port', 6200,
      '--device', 'sdb', '--weight', 1, '--zone', 1],
     'node node1 has two devices named sdb'),
    (['add', '--node', 'n', '--ip', '10.0.0.1', '--port', 70000,
      '--device', 'sdb', '--weight', 1], 'port must be an integer 1..65535'),
    (['add', '--node', 'n', '--ip', '10.0.0.1', '--port', 'x',
      '--device', 'sdb', '--weight', 1], "invalid int value: 'x'"),
    (['add', '--node', 'n', '--ip', '10.0.0.1', '--port', 1,
      '--device', '..', '--weight', 1], 'device must match'),
    (['add', '--node', 'n', '--ip', '10.0.0.1', '--port', 1,
      '--device', 'sdb', '--weight', 0], 'weight must be a finite number > 0'),
    (['add', '--node', 'n'], 'the following arguments are required'),
    (['create', '--part-power', 8, '--replicas', 3], 'already exists'),
    (['frobnicate'], "invalid choice: 'frobnicate'"),
    (['lookup', '--hash-prefix', 'p', ''], 'an account name is required'),
    (['lookup', 'a'], "lookup needs the cluster's hash salts"),
    (['lookup', '--config-file', '/nonexistent/c.conf', 'a'],
     'config file not found: /nonexistent/c.conf'),
    (['set-weight', '--id', 1, '--weight', -1],
     'weight must be a finite number >= 0'),
    (['set-weight', '--id', 1, '--weight', 'abc'],
     "invalid float value: 'abc'"),
    (['set-weight', '--id', 1, '--weight', 'nan'],
     'weight must be a finite number'),
    (['set-min-part-hours', -1], 'min_part_hours must be an integer'),
    (['set-min-part-hours', 'x'], "invalid int value: 'x'"),
    (['lookup', 'a', 'c', 'o', 'extra'], 'unrecognized arguments: extra'),
    (['show', '--format', 'xml'], "invalid choice: 'xml'"),
])
def test_errors_are_one_line_and_change_nothing(capsys, built, argv,
                                                message):
    before = snapshot(built)
    status, out, err = run(capsys, built, *argv)
    assert status == 2
    assert out == ''
    assert err.startswith(ERROR_PREFIX) and err.count('\n') == 1
    assert message in err
    assert snapshot(built) == before


def test_replicas_more_than_nodes(capsys, built):
    for dev_id in (0, 1):
        assert run(capsys, built, 'remove', '--id', dev_id)[0] == 0
    before = snapshot(built)
    status, _out, err = run(capsys, built, 'rebalance')
    assert status == 2
    assert err == ERROR_PREFIX + 'replicas (3) > nodes (2)\n'
    assert snapshot(built) == before


def test_corrupt_and_missing_files(capsys, built, tmp_path):
    with open(built, 'r+') as f:
        f.truncate(200)
    before = snapshot(built)
    for command in ('show', 'rebalance', 'lookup', 'dispersion', 'add',
                    'set-min-part-hours', 'pretend-min-part-hours-passed'):
        argv = [command] + {
            'lookup': ['--hash-prefix', 'p', 'acct'],
            'add': ['--node', 'n', '--ip', '10.0.0.1', '--port', 1,
                    '--device', 'd', '--weight', 1],
            'set-min-part-hours': [2]}.get(command, [])
        status, _out, err = run(capsys, built, *argv)
        assert status == 2
        assert err.startswith(ERROR_PREFIX + 'not a ring file: %s is not '
                                             'valid JSON: ' % built)
        assert err.count('\n') == 1
    assert snapshot(built) == before
    missing = tmp_path / 'absent.ring'
    status, _out, err = run(capsys, missing, 'add', '--node', 'n', '--ip',
                            '10.0.0.1', '--port', 1, '--device', 'd',
                            '--weight', 1)
    assert status == 2
    assert err == (ERROR_PREFIX + 'cannot read ring file %s: No such file '
                   'or directory\n' % missing)
    assert not missing.exists()


def test_lookup_before_rebalance(capsys, path):
    run(capsys, path, 'create', '--part-power', 4, '--replicas', 1)
    status, _out, err = run(capsys, path, 'lookup', '--hash-prefix', '',
                            'acct')
    assert status == 2
    assert err == ERROR_PREFIX + 'ring %s has not been rebalanced yet\n' % (
        path)


def test_module_entry_point_exit_status(built):
    # The real process: the exit status and that no traceback escapes.
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    result = subprocess.run(
        [sys.executable, '-m', 'coordsync.cmd.ring', built, 'remove',
         '--id', '42'], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 2
    assert result.stderr == ERROR_PREFIX + 'no device with id 42\n'
    ok = subprocess.run(
        [sys.executable, '-m', 'coordsync.cmd.ring', built, 'show'],
        capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0
    assert 'node4' in ok.stdout


def columns(path):
    with open(path) as f:
        return list(zip(*json.load(f)['assignment'], strict=True))


def changed_replicas(before, after):
    """Per partition, how many replicas changed device."""
    return [sum(a != b for a, b in zip(old, new, strict=True))
            for old, new in zip(before, after, strict=True)]


def test_min_part_hours_holds_a_second_replica(capsys, built):
    first = columns(built)
    add(capsys, built, 'node5', 5)
    status, out, _err = run(capsys, built, 'rebalance')
    assert status == 0 and out.startswith('moved ')
    # The weights change again at once: one replica of a partition may
    # have moved, so no other may go until replication copied it.
    assert run(capsys, built, 'set-weight', '--id', 4, '--weight', 3)[0] == 0
    add(capsys, built, 'node6', 6, 'sdb', 2)
    for _again in range(2):
        status, out, err = run(capsys, built, 'rebalance')
        assert (status, err) == (0, '')
        held = out.splitlines()[-1]
        assert re.fullmatch(r'\d+ partition-replicas held back by '
                            r'min_part_hours \(1 h\): rebalance again in '
                            r'(0h[0-5]\dm|1h00m)', held)
        assert max(changed_replicas(first, columns(built))) == 1
    status, out, _err = run(capsys, built, 'show')
    assert 'min_part_hours 1, ' in out and 'the first may move in' in out
    # Each rebalance still moves one replica per partition at most; a
    # few rounds reach the weights.
    for _round in range(3):
        status, out, _err = run(capsys, built,
                                'pretend-min-part-hours-passed')
        assert status == 0 and 'no longer held' in out
        status, out, _err = run(capsys, built, 'rebalance')
        assert status == 0
        if 'held back' not in out:
            break
    assert 'held back' not in out
    # Free to move, the builder now reaches the weights.
    report = json.loads(run(capsys, built, 'show', '--format', 'json')[1])
    assert report['balance'] < 1
    assert max(changed_replicas(first, columns(built))) >= 2


def test_min_part_hours_zero_moves_freely(capsys, path):
    assert run(capsys, path, 'create', '--part-power', 6, '--replicas', 2,
               '--min-part-hours', 0)[0] == 0
    for zone in (1, 2):
        add(capsys, path, 'node%d' % zone, zone)
    run(capsys, path, 'rebalance')
    add(capsys, path, 'node3', 3)
    run(capsys, path, 'rebalance')
    assert run(capsys, path, 'set-min-part-hours', 0)[1] == (
        'set min_part_hours to 0\n')
    run(capsys, path, 'set-weight', '--id', 2, '--weight', 2)
    status, out, _err = run(capsys, path, 'rebalance')
    assert status == 0 and 'held back' not in out
    assert json.loads(run(capsys, path, 'show', '--format', 'json')[1])[
        'balance'] < 2


def test_old_ring_files_load_as_moved_long_ago(capsys, built):
    with open(built) as f:
        data = json.load(f)
    del data['min_part_hours'], data['last_moved']
    with open(built, 'w') as f:
        json.dump(data, f)
    status, out, _err = run(capsys, built, 'show')
    assert status == 0 and 'min_part_hours 1, 0 partitions held' in out
    add(capsys, built, 'node5', 5)
    status, out, _err = run(capsys, built, 'rebalance')
    assert status == 0 and 'held back' not in out


def test_the_ring_reader_ignores_builder_fields(capsys, built):
    add(capsys, built, 'node5', 5)
    run(capsys, built, 'rebalance')
    with open(built) as f:
        data = json.load(f)
    assert data['min_part_hours'] == 1 and any(data['last_moved'])
    # Even values the builder would refuse do not stop a node.
    data['min_part_hours'] = 'junk'
    data['last_moved'] = [None]
    with open(built, 'w') as f:
        json.dump(data, f)
    assert Ring(built).get_part_nodes(0)
    status, _out, err = run(capsys, built, 'show')
    assert status == 2
    assert 'min_part_hours must be an integer' in err


def test_dispersion_report(capsys, built):
    status, out, _err = run(capsys, built, 'dispersion')
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == ('%s: dispersion 0.00%% (0 of 256 partitions with '
                        'two replicas in one zone), balance 0.00%%' % built)
    assert lines[1].split() == ['tier', 'name', 'replicas', 'max',
                                'parts@0', 'parts@1', 'parts@2', 'parts@3']
    # One region holding all three replicas of every partition, four
    # one-node zones holding one replica of 3/4 of them.
    assert lines[2].split() == ['region', '0', '768', '3', '0', '0', '0',
                                '256']
    assert lines[3].split() == ['zone', '0/1', '192', '1', '64', '192',
                                '0', '0']
    report = json.loads(run(capsys, built, 'dispersion', '--format',
                            'json')[1])
    assert report['dispersion'] == 0
    assert [t['tier'] for t in report['tiers']] == (
        ['region'] + ['zone'] * 4 + ['node'] * 4)


def test_dispersion_counts_doubled_zones(capsys, path):
    run(capsys, path, 'create', '--part-power', 4, '--replicas', 2)
    add(capsys, path, 'a', 1)
    add(capsys, path, 'b', 2)
    # Two nodes in zone 1 take 2/3 of the weight: some partitions must
    # have both replicas there.
    run(capsys, path, 'add', '--node', 'c', '--ip', '10.0.0.3', '--port',
        6200, '--device', 'sdb', '--weight', 4, '--zone', 1)
    run(capsys, path, 'rebalance')
    report = json.loads(run(capsys, path, 'dispersion', '--format',
                            'json')[1])
    zone1 = next(t for t in report['tiers'] if t['name'] == '0/1')
    assert zone1['max'] == 2 and zone1['histogram'][2] > 0
    assert report['undispersed'] == zone1['histogram'][2]


def write_conf(tmp_path, text):
    conf = tmp_path / 'coordsync.conf'
    conf.write_text(text)
    return conf


def test_lookup_reads_the_salts_from_the_config(capsys, built, tmp_path):
    conf = write_conf(tmp_path, '[DEFAULT]\nhash_path_prefix = pre\n'
                                'hash_path_suffix = suf\n')
    status, out, err = run(capsys, built, 'lookup', '--config-file', conf,
                           'acct', 'cont', 'obj')
    assert (status, err) == (0, '')
    # What a node computes with the same config.
    part = hashing.partition_of(hashing.hash_path(
        'acct', 'cont', 'obj', prefix='pre', suffix='suf'), 8)
    assert out.splitlines()[0] == 'partition %d' % part
    unsalted = hashing.partition_of(hashing.hash_path(
        'acct', 'cont', 'obj'), 8)
    assert part != unsalted
    given = run(capsys, built, 'lookup', '--hash-prefix', 'pre',
                '--hash-suffix', 'suf', 'acct', 'cont', 'obj')
    assert given == (0, out, '')


def test_lookup_refuses_a_config_without_salts(capsys, built, tmp_path):
    conf = write_conf(tmp_path, '[DEFAULT]\nnode_name = n1\n')
    status, out, err = run(capsys, built, 'lookup', '--config-file', conf,
                           'acct')
    assert (status, out) == (2, '')
    assert err == (ERROR_PREFIX + 'no hash_path_prefix or hash_path_suffix '
                   "in %s; for an unsalted cluster give --hash-prefix '' "
                   "--hash-suffix ''\n" % conf)
    # Explicitly unsalted is the operator's word.
    status, out, _err = run(capsys, built, 'lookup', '--hash-prefix', '',
                            '--hash-suffix', '', 'acct')
    assert status == 0 and out.startswith('partition %d\n' % (
        hashing.partition_of(hashing.hash_path('acct'), 8)))
    bad = write_conf(tmp_path, '[DEFAULT\nhash_path_prefix = x\n')
    status, _out, err = run(capsys, built, 'lookup', '--config-file', bad,
                            'acct')
    assert status == 2 and err.count('\n') == 1


@pytest.mark.parametrize('argv, message', [
    (['--part-power', 30, '--replicas', 3],
     'part_power must be an integer 1..24'),
    (['--part-power', 0, '--replicas', 3],
     'part_power must be an integer 1..24'),
    (['--part-power', 8, '--replicas', 0], 'replicas must be an integer'),
    (['--part-power', 8, '--replicas', 3, '--min-part-hours', -2],
     'min_part_hours must be an integer 0..8760'),
    (['--part-power', 'x', '--replicas', 3], "invalid int value: 'x'"),
])
def test_create_refuses_bad_values(capsys, path, argv, message):
    status, out, err = run(capsys, path, 'create', *argv)
    assert (status, out) == (2, '')
    assert err.startswith(ERROR_PREFIX) and err.count('\n') == 1
    assert message in err
    assert not os.path.exists(path)


def test_rebalance_with_more_replicas_than_devices(capsys, path):
    run(capsys, path, 'create', '--part-power', 4, '--replicas', 3)
    add(capsys, path, 'a', 1)
    before = snapshot(path)
    status, _out, err = run(capsys, path, 'rebalance')
    assert status == 2
    assert err == ERROR_PREFIX + 'replicas (3) > nodes (1)\n'
    assert snapshot(path) == before
