import json

from coordsync import exceptions
from coordsync.common import status
from tests.unit.test_status import run_status

NOW = 1_000_000.0


def lag(container, synced_ago=10.0, account='AUTH_a', **fields):
    entry = {'account': account, 'container': container,
             'target': 'https://remote/v1/AUTH_b/%s' % container,
             'holder': 'n1', 'rows_behind': 0, 'oldest_age': None,
             'retry': 0, 'failing': 0, 'last_error': '', 'point': None,
             'synced_at': NOW - synced_ago}
    entry.update(fields)
    return entry


def member(*entries, node='n1'):
    return {'node': node, 'updated_at': NOW,
            'progress': {'replicator': {'pass': 1},
                         'container-sync': {'pass': 3, 'done': 1,
                                            'total': 1, 'errors': 0,
                                            'sync': list(entries)}}}


def report(members):
    return status.build_sync_report(members, group='g', now=NOW)


def test_freshest_entry_wins_across_members():
    old = lag('c', synced_ago=300, holder='n1', rows_behind=50,
              oldest_age=40.0, last_error='boom')
    new = lag('c', synced_ago=20, holder='n2', rows_behind=7,
              oldest_age=5.0)
    other = lag('d', synced_ago=5, holder='n1', rows_behind=0,
                oldest_age=None)
    result = report({'n1@h.1': member(old, other),
                     'n2@h.2': member(new, node='n2')})
    assert result['state'] == status.HEALTHY
    assert result['problems'] == []
    rows = result['containers']
    assert [(r['container'], r['holder']) for r in rows] == [
        ('c', 'n2'), ('d', 'n1')]
    # NOTE: the oldest row has aged since it was measured.
    assert rows[0]['oldest_age'] == 25.0
    assert rows[0]['synced_age'] == 20.0
    assert rows[0]['rows_behind'] == 7
    assert rows[1]['oldest_age'] == 0
    assert rows[1]['synced_age'] == 5.0


def test_sorted_by_rows_behind_then_name():
    result = report({'n1@h.1': member(
        lag('b', rows_behind=3), lag('a', rows_behind=3),
        lag('z', rows_behind=90), lag('y', rows_behind=None),
        lag('x', rows_behind=0))})
    assert [r['container'] for r in result['containers']] == [
        'z', 'a', 'b', 'x', 'y']


def test_last_error_degrades():
    result = report({'n1@h.1': member(
        lag('c', last_error='503 from remote'))})
    assert result['state'] == status.DEGRADED
    assert result['problems'] == ['/AUTH_a/c: 503 from remote']
    assert status.EXIT_CODES[result['state']] == 1


def test_failing_rows_degrade():
    result = report({'n1@h.1': member(
        lag('c', rows_behind=4, oldest_age=900.0, retry=4, failing=2))})
    assert result['state'] == status.DEGRADED
    assert result['problems'] == ['/AUTH_a/c: 2 rows failing']


def test_no_synced_containers_is_healthy():
    result = report({'n1@h.1': {'node': 'n1', 'progress': {}},
                     'n2@h.2': None})
    assert result == {'group': 'g', 'state': status.HEALTHY,
                      'containers': [], 'problems': []}
    assert status.format_sync_table(result) == (
        'group g: healthy, no synced containers reported')


def test_table_shows_columns_and_values():
    error = 'remote said: ' + 'x' * 100
    result = report({'n1@h.1': member(
        lag('c', synced_ago=180, rows_behind=12, oldest_age=3600.0,
            retry=3, failing=1, last_error=error),
        lag('d', rows_behind=None, retry=None, failing=None,
            holder=None))})
    lines = status.format_sync_table(result).splitlines()
    assert lines[0].split() == [
        'CONTAINER', 'TARGET', 'HOLDER', 'BEHIND', 'OLDEST', 'RETRY',
        'FAILING', 'SYNCED', 'ERROR']
    cells = lines[1].split(None, 9)
    assert cells[:9] == [
        '/AUTH_a/c', 'https://remote/v1/AUTH_b/c', 'n1', '12', '63m',
        '3', '1', '3m', 'ago']
    assert cells[9] == error[:57] + '...'
    assert lines[2].split() == [
        '/AUTH_a/d', 'https://remote/v1/AUTH_b/d', '-', '-', '-', '-',
        '-', '10s', 'ago', '-']
    assert lines[3:] == [
        '', 'group g: degraded, 2 container(s)',
        '  problem: /AUTH_a/c: ' + error,
        '  problem: /AUTH_a/c: 1 rows failing']


def test_sync_as_json(tmp_path, capsys, monkeypatch):
    members = {'n1@h.1': member(lag('c', rows_behind=2, oldest_age=1.0,
                                    retry=1, synced_at=None)),
               'n2@h.2': member(lag('d', failing=3), node='n2')}
    monkeypatch.setattr(status, 'fetch_members',
                        lambda conf, timeout: members)
    code, out = run_status(tmp_path, capsys, '--sync', '--format', 'json')
    assert code == 1
    result = json.loads(out)
    assert result['group'] == 'g'
    assert result['state'] == status.DEGRADED
    assert result['problems'] == ['/AUTH_a/d: 3 rows failing']
    rows = result['containers']
    assert [r['container'] for r in rows] == ['c', 'd']
    assert sorted(rows[0]) == [
        'account', 'container', 'failing', 'holder', 'last_error',
        'oldest_age', 'point', 'retry', 'rows_behind', 'synced_age',
        'target']
    assert (rows[0]['rows_behind'], rows[0]['retry']) == (2, 1)
    # NOTE: no measurement time: nothing to add, and no age known.
    assert (rows[0]['oldest_age'], rows[0]['synced_age']) == (1.0, None)


def test_sync_as_a_table_healthy(tmp_path, capsys, monkeypatch):
    members = {'n1@h.1': member(lag('c', rows_behind=0))}
    monkeypatch.setattr(status, 'fetch_members',
                        lambda conf, timeout: members)
    code, out = run_status(tmp_path, capsys, '--sync')
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ['CONTAINER', 'TARGET', 'HOLDER',
                                    'BEHIND']
    assert lines[1].split()[0] == '/AUTH_a/c'
    assert lines[-1] == 'group g: healthy, 1 container(s)'


def test_sync_of_an_unreachable_backend_exits_2(tmp_path, capsys,
                                                monkeypatch):
    def unreachable(conf, timeout):
        raise exceptions.CoordinationUnavailable('backend down')
    monkeypatch.setattr(status, 'fetch_members', unreachable)
    code, out = run_status(tmp_path, capsys, '--sync', '--format', 'json')
    assert code == 2
    assert json.loads(out) == {'group': 'g', 'state': 'unreachable',
                               'problems': ['backend down'],
                               'containers': []}
