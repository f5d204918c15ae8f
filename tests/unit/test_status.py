import json
import time

import pytest

from coordsync import exceptions
from coordsync.cmd import status as status_cmd
from coordsync.common import coordination
from coordsync.common import status
from coordsync.common import zklocks
from tests.unit import test_zklocks

NOW = 1_000_000.0


def caps(node, updated_ago=1.0, **progress):
    return {'node': node, 'host': 'h', 'pid': 42, 'version': '1.0',
            'started_at': NOW - 3600, 'updated_at': NOW - updated_ago,
            'roles': ['server'], 'progress': progress}


def report(members, **kwargs):
    kwargs.setdefault('stale_after', 30)
    return status.build_report(members, group='g', now=NOW, **kwargs)


def test_fresh_members_are_healthy():
    result = report({'a@h.1': caps('a'), 'b@h.2': caps('b')}, expect=2)
    assert result['state'] == status.HEALTHY
    assert [r['node'] for r in result['members']] == ['a', 'b']
    assert result['members'][0]['uptime'] == 3600
    assert status.EXIT_CODES[result['state']] == 0


def test_missing_member_degrades():
    result = report({'a@h.1': caps('a')}, expect=3)
    assert result['state'] == status.DEGRADED
    assert result['problems'] == ['1 members present, 3 expected']


def test_stale_member_degrades():
    result = report({'a@h.1': caps('a', updated_ago=120)})
    assert result['state'] == status.DEGRADED
    assert result['members'][0]['state'] == 'degraded'
    assert 'stale' in result['problems'][0]


def test_worker_errors_degrade_and_show_in_summary():
    member = caps('a', replicator={'pass': 2, 'done': 5, 'total': 9,
                                   'errors': 3})
    result = report({'a@h.1': member})
    assert result['state'] == status.DEGRADED
    assert result['members'][0]['progress_summary'] == \
        'replicator pass 2 5/9 err 3'
    assert 'replicator reports 3 errors' in result['problems'][0]


def test_empty_group_is_degraded():
    assert report({})['state'] == status.DEGRADED


def test_table_lists_members_and_verdict():
    text = status.format_table(report({'a@h.1': caps('a')}, expect=1))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ['MEMBER', 'NODE', 'HOST']
    assert lines[1].split()[:3] == ['a@h.1', 'a', 'h']
    assert lines[-1] == 'group g: healthy, 1 member(s)'


def test_ring_node_without_member_degrades():
    result = report({'a@h.1': caps('a')}, expected_nodes=['a', 'b'])
    assert result['state'] == status.DEGRADED
    assert result['problems'] == [
        'node b (in the ring) has no member in the group']
    assert report({'a@h.1': caps('a')},
                  expected_nodes=['a'])['state'] == status.HEALTHY


# -- --locks -----------------------------------------------------------------

class FakeDriver:
    stopped = False

    def stop(self):
        self.stopped = True


@pytest.fixture
def zookeeper(monkeypatch):
    """coordsync-status connects to a fake ZooKeeper holding two locks."""
    client = test_zklocks.FakeKazoo()
    for name, data in [
            ('coordsync/replicate/0/17', {'member': 'n2@h.2',
                                          'at': time.time() - 7}),
            ('coordsync/sync/a/c d', {'member': 'n1@h.1',
                                      'at': time.time()})]:
        path = '%s/%s' % (zklocks.lock_root('g'), zklocks.encode_name(name))
        client.nodes[path] = (json.dumps(data).encode(), 11, 0x999)
    driver = FakeDriver()
    monkeypatch.setattr(coordination, 'connect',
                        lambda conf, member_id: driver)
    monkeypatch.setattr(coordination, 'kazoo_client_of',
                        lambda d: client if d is driver else None)
    return driver


def run_status(tmp_path, capsys, *argv):
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n[coordination]\n'
                    'group = g\n' % tmp_path)
    code = status_cmd.main(['--config-file', str(path), *argv])
    return code, capsys.readouterr().out


def test_locks_as_json(tmp_path, capsys, zookeeper):
    code, out = run_status(tmp_path, capsys, '--locks', '--format', 'json')
    assert code == 0
    report = json.loads(out)
    assert report['group'] == 'g' and report['listable']
    rows = report['locks']
    assert [(r['name'], r['holder']) for r in rows] == [
        ('coordsync/replicate/0/17', 'n2@h.2'),
        ('coordsync/sync/a/c d', 'n1@h.1')]
    assert rows[0]['age'] >= 7
    assert zookeeper.stopped


def test_locks_as_a_table(tmp_path, capsys, zookeeper):
    code, out = run_status(tmp_path, capsys, '--locks')
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ['NAME', 'HOLDER', 'AGE']
    assert lines[1].split()[:2] == ['coordsync/replicate/0/17', 'n2@h.2']
    assert lines[1].split()[2].endswith('s')
    assert lines[-1] == 'group g: 2 lock(s) held'


def test_other_backends_say_they_cannot_list_locks(tmp_path, capsys):
    # NOTE: the default backend (file://, embedded), for real.
    code, out = run_status(tmp_path, capsys, '--locks', '--format', 'json')
    assert code == 0
    report = json.loads(out)
    assert (report['listable'], report['locks']) == (False, [])
    assert report['note'] == ('the file backend cannot list the locks '
                              'held (only ZooKeeper can)')
    code, out = run_status(tmp_path, capsys, '--locks')
    assert out.splitlines() == ['group g: ' + report['note']]


def test_locks_of_an_unreachable_backend_exit_2(tmp_path, capsys,
                                                monkeypatch):
    def unreachable(conf, member_id):
        raise exceptions.CoordinationUnavailable('backend down')
    monkeypatch.setattr(coordination, 'connect', unreachable)
    code, out = run_status(tmp_path, capsys, '--locks', '--format', 'json')
    assert code == 2
    assert json.loads(out)['problems'] == ['backend down']
