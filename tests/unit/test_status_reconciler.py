import json

from coordsync import exceptions
from coordsync.cmd import status as status_cmd
from coordsync.common import status
from tests.unit.test_status import run_status

NOW = 1_000_000.0


def depth(queue, left, checked_ago=10.0, holder='n1', entries=None,
          more=False):
    return {'queue': queue, 'entries': left if entries is None else entries,
            'left': left, 'more': more, 'holder': holder,
            'checked_at': NOW - checked_ago, 'pass': 3}


def member(*queues, node='n1', failed=0, more=False, **figures):
    counts = {'queues': len(queues), 'entries': 0, 'moved': 0,
              'already_right': 0, 'tombstones': 0, 'retried': 0,
              'invalid': 0, 'errors': 0, 'left': 0}
    counts.update(figures)
    return {'node': node, 'updated_at': NOW,
            'progress': {'replicator': {'pass': 1},
                         'reconciler': {
                             'pass': 3, 'done': len(queues),
                             'total': len(queues), 'errors': failed,
                             'state': 'idle',
                             'queue_depth': sum(q['left'] for q in queues),
                             'queue_depth_more': more,
                             'queues': list(queues), 'figures': counts}}}


def report(members):
    return status.build_reconciler_report(members, group='g', now=NOW)


def test_each_member_depth_and_the_freshest_per_queue():
    result = report({
        'n1@h.1': member(depth('7200', 5, checked_ago=300),
                         depth('3600', 2), moved=4, tombstones=4),
        'n2@h.2': member(depth('7200', 1, checked_ago=20, holder='n2'),
                         node='n2', already_right=3)})
    assert result['state'] == status.HEALTHY
    assert result['problems'] == []
    rows = result['reconcilers']
    assert [(r['member'], r['queue_depth'], r['queue_containers'],
             r['moved'], r['already_right']) for r in rows] == [
        ('n1@h.1', 7, 2, 4, 0), ('n2@h.2', 1, 1, 0, 3)]
    # NOTE: the queue moved to n2 since n1 looked: n2's count wins.
    assert [(q['queue'], q['holder'], q['left'], q['checked_age'])
            for q in result['queues']] == [
        ('3600', 'n1', 2, 10.0), ('7200', 'n2', 1, 20.0)]
    assert result['queue_depth'] == 3
    assert result['queue_depth_more'] is False


def test_members_without_a_reconciler_are_left_out():
    result = report({'n1@h.1': {'node': 'n1', 'progress': {
        'replicator': {'pass': 1}}}, 'n2@h.2': None})
    assert result == {'group': 'g', 'state': status.HEALTHY,
                      'reconcilers': [], 'queues': [], 'queue_depth': 0,
                      'queue_depth_more': False, 'problems': []}
    assert status.format_reconciler_table(result) == (
        'group g: healthy, no reconciler reported')


def test_failed_queue_containers_or_entries_degrade():
    result = report({'n1@h.1': member(depth('3600', 1), failed=1),
                     'n2@h.2': member(node='n2', errors=2)})
    assert result['state'] == status.DEGRADED
    assert result['problems'] == [
        'n1@h.1: 1 queue container(s) failed',
        'n2@h.2: 2 entries failed in pass 3']
    assert status.EXIT_CODES[result['state']] == 1


def test_table_shows_depth_with_more_marked():
    result = report({'n1@h.1': member(
        depth('3600', 1000, entries=1000, more=True), more=True,
        moved=2, retried=1)})
    lines = status.format_reconciler_table(result).splitlines()
    assert lines[0].split() == [
        'MEMBER', 'NODE', 'STATE', 'PASS', 'DEPTH', 'QUEUES', 'MOVED',
        'RIGHT', 'TOMBSTONES', 'RETRIED', 'INVALID', 'ERRORS']
    assert lines[1].split() == [
        'n1@h.1', 'n1', 'idle', '3', '1000+', '1', '2', '0', '0', '1',
        '0', '0']
    assert lines[2] == ''
    assert lines[3].split() == ['QUEUE', 'HOLDER', 'ENTRIES', 'LEFT',
                                'CHECKED']
    assert lines[4].split() == ['3600', 'n1', '1000+', '1000+', '10s',
                                'ago']
    assert lines[-1] == ('group g: healthy, 1 reconciler(s), queue depth '
                         '1000+ in 1 queue container(s)')


def test_reconciler_as_json(tmp_path, capsys, monkeypatch):
    members = {'n1@h.1': member(depth('3600', 4), retried=4)}
    monkeypatch.setattr(status, 'fetch_members',
                        lambda conf, timeout: members)
    code, out = run_status(tmp_path, capsys, '--reconciler', '--format',
                           'json')
    assert code == 0
    result = json.loads(out)
    assert sorted(result) == ['group', 'problems', 'queue_depth',
                              'queue_depth_more', 'queues', 'reconcilers',
                              'state']
    assert result['queue_depth'] == 4
    (row,) = result['reconcilers']
    assert (row['queue_depth'], row['retried'], row['failed']) == (4, 4, 0)


def test_reconciler_as_a_table_degraded(tmp_path, capsys, monkeypatch):
    members = {'n1@h.1': member(depth('3600', 1), failed=1)}
    monkeypatch.setattr(status, 'fetch_members',
                        lambda conf, timeout: members)
    code, out = run_status(tmp_path, capsys, '--reconciler')
    assert code == 1
    assert out.splitlines()[-1] == \
        '  problem: n1@h.1: 1 queue container(s) failed'


def test_reconciler_of_an_unreachable_backend_exits_2(tmp_path, capsys,
                                                      monkeypatch):
    def unreachable(conf, timeout):
        raise exceptions.CoordinationUnavailable('backend down')
    monkeypatch.setattr(status, 'fetch_members', unreachable)
    code, out = run_status(tmp_path, capsys, '--reconciler', '--format',
                           'json')
    assert code == 2
    assert json.loads(out) == {'group': 'g', 'state': 'unreachable',
                               'problems': ['backend down'],
                               'reconcilers': [], 'queues': []}


def test_reconciler_and_sync_cannot_be_combined(tmp_path, capsys):
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n' % tmp_path)
    code = status_cmd.main(['--config-file', str(path), '--reconciler',
                            '--sync'])
    assert code == status.EXIT_USAGE == 3
    assert capsys.readouterr().err == (
        'coordsync-status: error: --sync and --reconciler cannot be '
        'combined\n')
