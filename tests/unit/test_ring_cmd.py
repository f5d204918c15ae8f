"""coordsync-ring: what an operator types, sees, and what it leaves."""

import json
import os
import subprocess
import sys

import pytest

from coordsync.cmd import ring as ring_cmd
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
    assert out == 'created %s: 64 partitions, 2 replicas\n' % path
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
    assert lines[1].split() == ['id', 'region', 'zone', 'node', 'ip', 'port',
                                'device', 'weight', 'parts', 'ideal',
                                'removed']
    assert lines[2].split() == ['0', '0', '1', 'node1', '10.0.0.1', '6200',
                                'sdb', '1.0', '192', '192.0']
    status, out, _err = run(capsys, built, 'show', '--format', 'json')
    assert status == 0
    report = json.loads(out)
    assert report['partitions'] == 256 and report['rebalanced'] is True
    assert [dev['parts'] for dev in report['devices']] == [192] * 4
    assert report['balance'] == 0


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
    (['lookup', ''], 'an account name is required'),
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
    for command in ('show', 'rebalance', 'lookup'):
        argv = [command] + (['acct'] if command == 'lookup' else [])
        status, _out, err = run(capsys, built, *argv)
        assert status == 2
        assert err.startswith(ERROR_PREFIX + 'ring file %s is not valid '
                                             'JSON: ' % built)
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
    status, _out, err = run(capsys, path, 'lookup', 'acct')
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
