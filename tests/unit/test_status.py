import json
import logging
import time

import pytest
import tooz.coordination

from coordsync import exceptions
from coordsync.cmd import status as status_cmd
from coordsync.common import coordination
from coordsync.common import division
from coordsync.common import ring as ring_mod
from coordsync.common import status
from coordsync.common import zklocks
from coordsync.common.ring import builder
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


def test_empty_group_is_healthy_and_says_no_members():
    result = report({})
    assert result['state'] == status.HEALTHY
    assert (result['members'], result['problems']) == ([], [])
    assert status.format_table(result) == 'group g: healthy, no members'


def test_empty_group_with_members_expected_is_degraded():
    result = report({}, expect=2)
    assert result['state'] == status.DEGRADED
    assert status.format_table(result).splitlines() == [
        'group g: degraded, no members',
        '  problem: 0 members present, 2 expected']
    assert report({}, expected_nodes=['a'])['state'] == status.DEGRADED


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


def backend_logger_levels():
    """``{name: level}`` of the loggers coordsync-status silences."""
    names = set(status.BACKEND_LOGGERS) | {
        name for name in logging.root.manager.loggerDict
        if name.split('.')[0] in status.BACKEND_LOGGERS}
    return {name: logging.getLogger(name).level for name in names}


@pytest.fixture(autouse=True)
def _keep_backend_logger_levels():
    levels = backend_logger_levels()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def run_status(tmp_path, capsys, *argv):
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n[coordination]\n'
                    'group = g\n' % tmp_path)
    # NOTE: main() silences the backend clients' loggers of this
    # process; other tests may want them.
    levels = backend_logger_levels()
    try:
        code = status_cmd.main(['--config-file', str(path), *argv])
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
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


# -- reading the backend ------------------------------------------------------

class FakeResult:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value


class ReadingDriver(FakeDriver):
    def __init__(self, result):
        self.result = result

    def get_members_with_capabilities(self, group):
        return self.result


def status_conf(tmp_path, *extra):
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n[coordination]\n'
                    'group = g\n%s' % (tmp_path, '\n'.join(extra)))
    return status_cmd.service.prepare_service(
        ['--config-file', str(path)], prog='test')


def test_group_not_created_reads_as_no_members(tmp_path, monkeypatch):
    driver = ReadingDriver(FakeResult(
        error=tooz.coordination.GroupNotCreated('g')))
    monkeypatch.setattr(coordination, 'connect', lambda conf, m: driver)
    assert status.fetch_members(status_conf(tmp_path), 5.0) == {}
    assert driver.stopped


def test_a_failed_read_is_told_as_it_is_not_as_silence(tmp_path,
                                                       monkeypatch):
    # NOTE: the error used to be recorded after the reader said it had
    # answered: "no answer ... within 5.0s" at once.
    driver = ReadingDriver(FakeResult(
        error=tooz.coordination.ToozError('session expired')))
    monkeypatch.setattr(coordination, 'connect', lambda conf, m: driver)
    started = time.monotonic()
    with pytest.raises(exceptions.CoordinationUnavailable) as err:
        status.fetch_members(status_conf(tmp_path), 5.0)
    assert 'session expired' in str(err.value)
    assert 'no answer' not in str(err.value)
    assert time.monotonic() - started < 5.0


def test_the_embedded_backend_without_the_group_says_no_members(
        tmp_path, capsys):
    # NOTE: the default backend (file:// under state_path), for real:
    # nobody ever joined group g.
    code, out = run_status(tmp_path, capsys)
    assert (code, out) == (0, 'group g: healthy, no members\n')
    code, out = run_status(tmp_path, capsys, '--expect', '1', '-f', 'json')
    report = json.loads(out)
    assert code == 1
    assert (report['state'], report['members']) == ('degraded', [])
    validate(report)


# -- usage and config errors: exit 3 ------------------------------------------

@pytest.mark.parametrize('argv, message', [
    (['--who', 'x17'], "bad ITEM 'x17'"),
    (['--who', 'coordsync/nope/1'], "unknown lock kind 'nope'"),
    (['-c', 'member,bogus'], "unknown column 'bogus'; valid columns: "
                             "MEMBER, NODE"),
    (['--locks', '--who', '17'], '--locks and --who cannot be combined'),
    (['--reconciler', '-c', 'member'], '-c cannot be combined with '
                                       '--reconciler'),
    (['--who', '17'], 'cannot read the object ring'),
])
def test_bad_input_exits_3_with_one_line(tmp_path, capsys, monkeypatch,
                                          argv, message):
    def never(*args):
        raise AssertionError('the backend must not be asked')
    monkeypatch.setattr(coordination, 'connect', never)
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n' % tmp_path)
    code = status_cmd.main(['--config-file', str(path), *argv])
    out, err = capsys.readouterr()
    assert code == status.EXIT_USAGE == 3
    assert out == ''
    assert len(err.splitlines()) == 1
    assert err.startswith('coordsync-status: error: ')
    assert message in err


def test_bad_config_and_unknown_flag_exit_3(tmp_path, capsys):
    path = tmp_path / 'bad.conf'
    path.write_text('[coordination]\nheartbeat = x\n')
    with pytest.raises(SystemExit) as exit_:
        status_cmd.main(['--config-file', str(path)])
    assert exit_.value.code == 3
    err = capsys.readouterr().err.splitlines()
    assert err == ['coordsync-status: error: [coordination] heartbeat: '
                   + err[0].split('heartbeat: ', 1)[1]]
    with pytest.raises(SystemExit) as exit_:
        status_cmd.main(['--no-such-flag'])
    assert exit_.value.code == 3
    assert 'unrecognized arguments: --no-such-flag' in \
        capsys.readouterr().err


def test_the_backend_loggers_are_silenced():
    logging.getLogger('kazoo.client').setLevel(logging.WARNING)
    levels = backend_logger_levels()
    try:
        status.quiet_backend_loggers()
        for name in ('kazoo', 'kazoo.client', 'tooz', 'tooz.drivers.x'):
            assert not logging.getLogger(name).isEnabledFor(
                logging.CRITICAL)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# -- the members view: workers, summary, backlog, columns, schema -------------

def validate(report):
    """Validate against status_schema.json (jsonschema when installed,
    else the required keys, by hand)."""
    schema = status.load_schema()
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        jsonschema.Draft202012Validator(schema).validate(report)
        return
    defs = schema['$defs']
    assert set(schema['required']) <= set(report)
    for member in report['members']:
        assert set(defs['member']['required']) <= set(member)
        for worker_row in member['workers']:
            assert set(defs['worker']['required']) <= set(worker_row)
    for entry in report['summary'].values():
        assert set(defs['summary']['required']) <= set(entry)
    for entry in report['backlog'].values():
        assert set(defs['backlog']['required']) <= set(entry)


def replicator(pass_=3, done=10, total=10, errors=0, mode='coordinated',
               ended_ago=None, duration=None, failed=0, backlog=0,
               levels=None, **more):
    fields = {'pass': pass_, 'mode': mode, 'done': done, 'total': total,
              'errors': errors, 'skipped': 0, 'fenced': 0, 'state': 'idle',
              'backlog': backlog, 'backlog_oldest': 0.0,
              'levels': levels or {}}
    if ended_ago is not None:
        fields['last_pass'] = {
            'pass': pass_, 'duration': duration, 'done': done,
            'succeeded': done - failed, 'failed': failed, 'errors': failed,
            'skipped_locked': 0, 'fenced': 0, 'mode': mode,
            'started_at': NOW - ended_ago - duration,
            'ended_at': NOW - ended_ago}
    fields.update(more)
    return fields


def three_nodes():
    return {
        'n1@h.1': caps('n1', **{'object-replicator': replicator(
            ended_ago=42, duration=3.0, backlog=2, backlog_oldest=50.0),
            'object-updater': replicator(
                ended_ago=5, duration=1.0,
                levels={'async_pending': 4, 'oldest_async_age': 30.0})}),
        'n2@h.2': caps('n2', **{'object-replicator': replicator(
            ended_ago=10, duration=12.1, failed=1, errors=1),
            'object-updater': replicator(
                ended_ago=6, duration=1.0,
                levels={'async_pending': 3, 'oldest_async_age': 90.0})}),
        'n3@h.3': caps('n3', **{'object-replicator': replicator(
            pass_=1, done=4, total=10, mode='static', state='running')}),
    }


def test_each_member_and_worker_has_its_row():
    result = report(three_nodes())
    workers = {(m['node'], w['worker']): w for m in result['members']
               for w in m['workers']}
    n1 = workers[('n1', 'object-replicator')]
    assert (n1['last_pass_age'], n1['last_pass_duration'], n1['backlog'],
            n1['mode'], n1['done'], n1['total']) == (
        42.0, 3.0, 2, 'coordinated', 10, 10)
    n3 = workers[('n3', 'object-replicator')]
    assert (n3['last_pass_age'], n3['last_pass_duration'], n3['mode'],
            n3['state']) == (None, None, 'static', 'running')
    validate(result)


def test_summary_per_kind_like_swift_recon():
    summary = report(three_nodes())['summary']['object-replicator']
    assert (summary['members'], summary['passed']) == (3, 2)
    assert (summary['oldest_pass_age'], summary['oldest_pass_node']) == (
        42.0, 'n1')
    assert (summary['newest_pass_age'], summary['newest_pass_node']) == (
        10.0, 'n2')
    assert (summary['slowest_node'], summary['slowest_duration']) == (
        'n2', 12.1)
    assert (summary['failures'], summary['static'], summary['backlog']) == (
        1, 1, 2)
    assert status.summary_line('object-replicator', summary) == (
        'object-replicator: 3 member(s); last pass oldest 42s ago (n1), '
        'newest 10s ago (n2); slowest n2 (12.1s); failures 1; '
        '1 in static mode; backlog 2')


def test_backlog_sums_counts_and_takes_the_oldest_age():
    backlog = report(three_nodes())['backlog']
    assert backlog['object-updater']['levels'] == {
        'async_pending': 7, 'oldest_async_age': 90.0}
    assert (backlog['object-replicator']['items'],
            backlog['object-replicator']['oldest']) == (2, 50.0)
    assert status.backlog_line('object-updater',
                               backlog['object-updater']) == (
        'object-updater: 0 item(s) late; async_pending 7, '
        'oldest_async_age 90s')


def test_backlog_of_sync_and_reconciler_counts_each_container_once():
    # NOTE: imported here: those modules import this one.
    from tests.unit import test_status_reconciler as rec
    from tests.unit import test_status_sync as syn
    moved = syn.lag('c', synced_ago=300, rows_behind=50, oldest_age=40.0)
    fresh = syn.lag('c', synced_ago=20, rows_behind=7, oldest_age=5.0)
    members = {'n1@h.1': syn.member(moved), 'n2@h.2': syn.member(
        fresh, node='n2')}
    for caps_ in members.values():
        caps_['progress']['container-sync']['levels'] = {
            'rows_behind': 50, 'oldest_unsynced_age': 40.0}
    levels = report(members)['backlog']['container-sync']['levels']
    assert levels == {'rows_behind': 7, 'oldest_unsynced_age': 25.0}
    members = {
        'n1@h.1': rec.member(rec.depth('7200', 5, checked_ago=300)),
        'n2@h.2': rec.member(rec.depth('7200', 1, checked_ago=20),
                             node='n2')}
    entry = report(members)['backlog']['reconciler']
    assert (entry['levels']['queue_depth'], entry['queue_depth_more']) == (
        1, False)


def test_table_has_a_row_per_member_and_worker_then_summary():
    text = status.format_table(report(three_nodes()))
    lines = text.splitlines()
    assert lines[0].split() == list(status.DEFAULT_MEMBER_COLUMNS)
    rows = [line.split() for line in lines[1:6]]
    assert [(r[0], r[7]) for r in rows] == [
        ('n1@h.1', 'object-replicator'), ('n1@h.1', 'object-updater'),
        ('n2@h.2', 'object-replicator'), ('n2@h.2', 'object-updater'),
        ('n3@h.3', 'object-replicator')]
    # WSTATE MODE PASS DONE ERRORS LAST ("10s ago") DURATION BACKLOG
    assert rows[2][8:] == ['idle', 'coordinated', '3', '10/10', '1',
                           '10s', 'ago', '12.1s', '0']
    assert lines[6] == ''
    assert lines[7] == 'summary:'
    assert lines[8].startswith('  object-replicator: 3 member(s); ')
    assert lines[10] == 'backlog:'
    assert 'group g: degraded, 3 member(s)' in lines


def test_columns_choose_what_the_table_shows():
    text = status.format_table(report(three_nodes()),
                               ['node', 'WORKER', 'last'])
    assert text.splitlines()[:3] == [
        'NODE  WORKER             LAST',
        'n1    object-replicator  42s ago',
        'n1    object-updater     5s ago']
    with pytest.raises(ValueError) as err:
        status.select_columns(status.MEMBER_COLUMNS, ['nope'])
    assert str(err.value).startswith("unknown column 'nope'; valid "
                                     "columns: MEMBER, NODE, HOST")


def test_columns_and_short_format_on_the_command_line(tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(status, 'fetch_members',
                        lambda conf, timeout: three_nodes())
    monkeypatch.setattr(time, 'time', lambda: NOW)
    code, out = run_status(tmp_path, capsys, '-c', 'member', '-c',
                           'worker,mode')
    assert code == 1
    assert out.splitlines()[:2] == [
        'MEMBER  WORKER             MODE',
        'n1@h.1  object-replicator  coordinated']
    code, out = run_status(tmp_path, capsys, '-f', 'json', '-c', 'member')
    report_ = json.loads(out)
    assert report_['schema_version'] == 1
    validate(report_)


def test_unreachable_json_follows_the_schema(tmp_path, capsys,
                                             monkeypatch):
    def unreachable(conf, timeout):
        raise exceptions.CoordinationUnavailable('backend down')
    monkeypatch.setattr(status, 'fetch_members', unreachable)
    code, out = run_status(tmp_path, capsys, '-f', 'json')
    assert code == 2
    report_ = json.loads(out)
    assert (report_['state'], report_['problems']) == (
        'unreachable', ['backend down'])
    validate(report_)


def test_the_schema_refuses_a_report_missing_a_key():
    jsonschema = pytest.importorskip('jsonschema')
    broken = report(three_nodes())
    del broken['members'][0]['workers'][0]['last_pass_age']
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


# -- --who ------------------------------------------------------------------

def test_item_grammar():
    for text in ('17', '0/17', 'object-replicator:17',
                 'object-replicator:0/17', 'coordsync/replicate/0/17'):
        target = status.parse_item(text)
        assert (target['worker'], target['lock'], target['part']) == (
            'object-replicator', 'coordsync/replicate/0/17', 17)
    assert status.parse_item('container-replicator:5')['lock'] == \
        'coordsync/replicate-container/5'
    assert status.parse_item('coordsync/update/n1/d1')['nodes'] == ['n1']
    assert status.parse_item('reconciler:1700000000')['name'] == (
        '.misplaced_objects', '1700000000')
    for bad in ('', 'x', '1/2/3', 'nope:1', 'coordsync/replicate/0/017',
                'object-updater:n1', '-1'):
        with pytest.raises(ValueError) as err:
            status.parse_item(bad)
        assert str(err.value).startswith('bad ITEM %r' % bad)
        assert '\n' not in str(err.value)


def members_of(*nodes, role='object-replicator'):
    return {'%s@h.%d' % (node, i): dict(caps(node), roles=['server', role])
            for i, node in enumerate(nodes)}


def test_who_names_the_owner_the_workers_would_choose():
    eligible = ['n1', 'n2', 'n3']
    for part in range(32):
        target = status.parse_item(str(part))
        for live in (['n1', 'n2', 'n3', 'n4'], ['n1', 'n3']):
            result = status.build_who_report(
                target, eligible, members_of(*live), [], group='g',
                backend_url='zookeeper://h:1')
            # NOTE: ask each live node's own planning, as its worker does.
            takers = [node for node in live if division.Division(
                node, live).category(target['lock'], eligible) is not None]
            assert [result['owner']] == takers
            assert result['owner_members'] == [
                m for m in members_of(*live) if m.startswith(takers[0])]


def test_who_tells_the_holder_and_for_how_long():
    target = status.parse_item('17')
    locks = [{'name': 'coordsync/replicate/0/17', 'holder': 'n2@h.1',
              'age': 7.25},
             {'name': 'coordsync/replicate/0/18', 'holder': 'x', 'age': 1}]
    result = status.build_who_report(
        target, ['n1', 'n2'], members_of('n1', 'n2'), locks, group='g',
        backend_url='zookeeper://h:1')
    assert (result['holder'], result['held_for']) == ('n2@h.1', 7.2)
    assert result['state'] == status.HEALTHY
    assert '  lock: held by n2@h.1 for 7.2s' in \
        status.format_who(result).splitlines()
    free = status.build_who_report(
        target, ['n1', 'n2'], members_of('n1'), [], group='g',
        backend_url='zookeeper://h:1')
    assert (free['holder'], free['owner']) == (None, 'n1')
    assert '  lock: free' in status.format_who(free).splitlines()


def test_who_without_a_live_taker_or_lock_listing():
    target = status.parse_item('object-updater:n3/d1')
    result = status.build_who_report(
        target, status.eligible_nodes(None, target),
        members_of('n1', 'n2', role='object-updater'), None, group='g',
        backend_url='file:///tmp/x')
    assert (result['owner'], result['home']) == (None, 'n3')
    assert result['state'] == status.DEGRADED
    assert result['notes'] == [
        'no live object-updater on n3: nobody takes it now',
        'holder unknown: the file backend cannot list the locks held '
        '(only ZooKeeper can)']
    assert '  lock: holder unknown' in status.format_who(result)


def test_who_reads_the_replicas_from_the_ring(tmp_path, capsys,
                                              monkeypatch):
    ring_file = tmp_path / 'object.ring.json'
    made = builder.RingBuilder(4, 2)
    for index, node in enumerate(['n1', 'n2', 'n3'], start=1):
        made.add_device(node, '127.0.0.%d' % index, 6200, 'd1', 1.0,
                        zone=index)
    made.rebalance()
    made.save(str(ring_file))
    replicas = sorted(d['node'] for d in ring_mod.Ring(
        str(ring_file)).get_part_nodes(5))
    monkeypatch.setattr(status, 'fetch_members_and_locks',
                        lambda conf, timeout: (members_of('n1', 'n2',
                                                          'n3'), None))
    path = tmp_path / 'status.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\nring_file = %s\n'
                    '[coordination]\ngroup = g\n' % (tmp_path, ring_file))
    code = status_cmd.main(['--config-file', str(path), '--who',
                            'object-replicator:5', '-f', 'json'])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result['eligible'] == replicas
    assert result['owner'] in replicas
    assert result['item'] == 'coordsync/replicate/0/5'
    code = status_cmd.main(['--config-file', str(path), '--who', '999'])
    assert code == 3
    assert capsys.readouterr().err.startswith(
        'coordsync-status: error: ')
