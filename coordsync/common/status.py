"""What coordsync-status reports: the group's members and their health.

The report is built from the capabilities every member publishes (see
:meth:`coordsync.common.coordination.Coordinator._capabilities`). The group is
*healthy* when every expected member is present (``--expect`` members,
and one per node of the ring when the config names a readable ring),
fresh, and reports no errors; *degraded* otherwise; *unreachable* when
the backend does not answer in time.

With ``--locks`` it lists the locks held in the group instead: name,
holder (member id) and age, read from ZooKeeper's lock root
(:mod:`coordsync.common.zklocks`); other backends cannot list theirs,
which the listing says.

With ``--sync`` it shows the container sync lag instead, per container
(like ``kafka-consumer-groups --describe`` per partition), from the
``sync`` list the container sync daemons publish in their progress
(``progress['container-sync']['sync']``): rows behind, the age of the
oldest unsynced row, rows in the retry set, rows failing, the last
error. When several members report a container (its lock changed hands
between passes) the freshest measurement wins.

With ``--reconciler`` it shows the misplaced-object queue instead: per
reconciler member, the queue depth it reported (entries left after its
last look at each queue container it works; ``+`` when some listing
stopped at ``entries_per_pass``) and its pass's figures; per queue
container, the freshest depth any member reported; the total depth is
the sum of those. Read from ``progress['reconciler']`` (see
:meth:`coordsync.reconciler.daemon.Reconciler.report_extra`).
"""

import json
import logging as std_logging
import os
import socket
import threading
import time
import urllib.parse

import tooz.coordination
from oslo_log import log as logging

from coordsync import exceptions
from coordsync.common import coordination
from coordsync.common import division
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import zklocks
from coordsync.container import replication
from coordsync.container import updater
from coordsync.obj import replicator
from coordsync.reconciler import queue
from coordsync.sync import state as sync_state

LOG = logging.getLogger(__name__)

HEALTHY, DEGRADED, UNREACHABLE = 'healthy', 'degraded', 'unreachable'
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, UNREACHABLE: 2}
# Nagios: UNKNOWN. A usage or config error (bad flag, value, item).
EXIT_USAGE = 3
SCHEMA_VERSION = 1
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'status_schema.json')
# Libraries whose loggers a command-line reader silences: they log each
# connection attempt, and the command says the outcome in one line.
BACKEND_LOGGERS = ('kazoo', 'tooz', 'futurist', 'stevedore')
# Tries of a member listing that a member leaving in the middle of it
# broke (the file driver reads each member's file after listing them).
MEMBER_READ_TRIES = 3


def load_schema():
    """The JSON Schema of the default view's ``-f json`` output."""
    with open(SCHEMA_FILE, encoding='utf-8') as fh:
        return json.load(fh)


def quiet_backend_loggers():
    """Keep the backend clients' own log lines (kazoo's retries, each
    with its error) out of a command's output: its one-line verdict
    says what went wrong. Loggers created later inherit the level."""
    names = set(BACKEND_LOGGERS)
    for name in list(std_logging.root.manager.loggerDict):
        if name.split('.')[0] in BACKEND_LOGGERS:
            names.add(name)
    for name in names:
        std_logging.getLogger(name).setLevel(std_logging.CRITICAL + 1)


def _members_or_empty(driver, group, timeout):
    """The members of ``group``; ``{}`` when it does not exist yet.

    A member leaving between the listing and the read of its
    capabilities (MemberNotJoined) is a moment, not an outage: read
    again.
    """
    for attempt in range(MEMBER_READ_TRIES):
        try:
            return coordination.read_members(driver, group, timeout)
        except tooz.coordination.GroupNotCreated:
            return {}
        except tooz.coordination.MemberNotJoined:
            if attempt + 1 == MEMBER_READ_TRIES:
                raise
    return {}


def fetch_members(conf, timeout):
    """Read the group once, without joining it; bounded by ``timeout``.

    A group that does not exist yet reads as no members. Raises
    CoordinationUnavailable if the backend does not answer in time,
    whatever the driver does (some block on connect).
    """
    return _read_backend(conf, timeout, lambda driver: _members_or_empty(
        driver, conf.coordination.group, timeout))


def fetch_locks(conf, timeout):
    """The locks held in the group (see :func:`read_locks`), read once
    without joining it; bounded by ``timeout`` like
    :func:`fetch_members`."""
    return _read_backend(conf, timeout, lambda driver: read_locks(
        driver, conf.coordination.group, timeout))


def fetch_members_and_locks(conf, timeout):
    """``(members, locks)`` read in one backend session (``--who``);
    locks None when the backend cannot list them."""
    def both(driver):
        group = conf.coordination.group
        return (_members_or_empty(driver, group, timeout),
                read_locks(driver, group, timeout))
    return _read_backend(conf, timeout, both)


def read_locks(driver, group, timeout):
    """``[{'name', 'holder', 'age'}]`` of the locks held in ``group``,
    or None when the driver's backend cannot list them (only
    ZooKeeper's can: tooz has no lock listing)."""
    client = coordination.kazoo_client_of(driver)
    if client is None:
        return None
    return zklocks.ZooKeeperLocks(client, group, None, timeout,
                                  LOG).list_locks()


def _read_backend(conf, timeout, read):
    """``read(driver)`` on a short-lived driver, in a thread, bounded by
    ``timeout``; CoordinationUnavailable when it does not answer.

    NOTE: the outcome (value or error) is recorded *before* the reader
    says it answered: the caller looks at it as soon as it is told, and
    an error recorded after that read as "no answer within the
    timeout" long before the timeout.
    """
    outcome = {}
    answered = threading.Event()

    def run():
        member_id = 'status-%s-%d' % (socket.gethostname(), os.getpid())
        driver = None
        try:
            driver = coordination.connect(conf, member_id)
            outcome['value'] = read(driver)
        except (exceptions.CoordsyncError,
                *coordination.BACKEND_ERRORS) as err:
            outcome['error'] = err
        except Exception as err:
            # NOTE: any other failure is told, not taken for silence.
            outcome['error'] = exceptions.CoordinationUnavailable(
                'reading the group failed: %s: %s'
                % (type(err).__name__, err))
        finally:
            answered.set()
        if driver is not None:
            # NOTE: after answering: closing may take a while (the file
            # driver's executor) and the reader is done.
            try:
                driver.stop()
            except (exceptions.CoordsyncError,
                    *coordination.BACKEND_ERRORS):
                pass

    reader = threading.Thread(target=run, name='status-read', daemon=True)
    reader.start()
    answered.wait(timeout + 1.0)
    if 'value' in outcome:
        return outcome['value']
    url = coordination.redact_url(conf.coordination.backend_url)
    if 'error' in outcome:
        err = outcome['error']
        if isinstance(err, exceptions.CoordsyncError):
            raise err
        raise exceptions.CoordinationUnavailable(
            'coordination backend %s: %s' % (url, _one_line(err)))
    raise exceptions.CoordinationUnavailable(
        'no answer from coordination backend %s within %.1fs'
        % (url, timeout))


def _one_line(err):
    text = ' '.join(str(err).split())
    return text or type(err).__name__


def build_locks_report(locks, *, group, backend_url):
    """The ``--locks`` listing; ``locks`` None: the backend cannot list
    them."""
    report = {'group': group, 'listable': locks is not None,
              'locks': [{'name': row['name'], 'holder': row['holder'],
                         'age': round(row['age'], 1)}
                        for row in locks or ()]}
    if locks is None:
        report['note'] = (
            'the %s backend cannot list the locks held (only ZooKeeper '
            'can)' % (urllib.parse.urlsplit(backend_url).scheme
                      or 'configured'))
    return report


LOCK_COLUMNS = (
    ('NAME', lambda r: r['name']),
    ('HOLDER', lambda r: r['holder'] or '-'),
    ('AGE', lambda r: '%.1fs' % r['age']),
)


def format_locks_table(report, columns=None):
    lines = []
    if report['locks']:
        lines = _table(select_columns(LOCK_COLUMNS, columns),
                       report['locks'])
        lines.append('')
    if report['listable']:
        lines.append('group %s: %d lock(s) held' % (report['group'],
                                                    len(report['locks'])))
    else:
        lines.append('group %s: %s' % (report['group'], report['note']))
    return '\n'.join(lines)


def summarize_progress(progress):
    """One short text per worker: ``replicator pass 3 40/100 err 0``."""
    parts = []
    for worker in sorted(progress or {}):
        fields = progress[worker]
        text = worker
        if 'pass' in fields:
            text += ' pass %s' % fields['pass']
        if 'total' in fields:
            text += ' %s/%s' % (fields.get('done', 0), fields['total'])
        if fields.get('errors'):
            text += ' err %s' % fields['errors']
        if fields.get('state'):
            text += ' (%s)' % fields['state']
        parts.append(text)
    return '; '.join(parts) or '-'


def member_problems(caps, now, stale_after):
    problems = []
    age = now - float(caps.get('updated_at', 0) or 0)
    if age > stale_after:
        problems.append('stale: last update %.0fs ago' % age)
    for worker, fields in sorted((caps.get('progress') or {}).items()):
        if fields.get('errors'):
            problems.append('%s reports %s errors'
                            % (worker, fields['errors']))
    return problems


def ring_nodes(conf):
    """Node names in the ring, or None when there is no usable ring."""
    try:
        ring = ring_mod.Ring(conf.ring_file)
    except exceptions.RingError:
        return None
    return sorted({d['node'] for d in ring.devices if d})


def _age(now, stamp):
    """Seconds since ``stamp`` (None when unknown), never negative."""
    stamp = _number(stamp)
    return None if stamp is None else round(max(0.0, now - stamp), 1)


def worker_row(name, fields, now):
    """One worker of one member, from its published progress: what
    the members view shows per member and worker (unknown: None)."""
    fields = fields if isinstance(fields, dict) else {}
    last = fields.get('last_pass')
    last = last if isinstance(last, dict) else {}
    levels = fields.get('levels')
    levels = {key: value for key, value in (
        levels.items() if isinstance(levels, dict) else ())
        if _number(value) is not None}
    return {
        'worker': name,
        'state': fields.get('state'),
        'mode': fields.get('mode'),
        'pass': _count(fields.get('pass')),
        'done': _count(fields.get('done')),
        'total': _count(fields.get('total')),
        'errors': _count(fields.get('errors')) or 0,
        'skipped': _count(fields.get('skipped')),
        'fenced': _count(fields.get('fenced')),
        'backlog': _count(fields.get('backlog')),
        'backlog_oldest': _number(fields.get('backlog_oldest')),
        'levels': levels,
        'last_pass': _count(last.get('pass')),
        'last_pass_age': _age(now, last.get('ended_at')),
        'last_pass_duration': _number(last.get('duration')),
        'last_pass_failed': _count(last.get('failed')),
        'last_pass_mode': last.get('mode'),
    }


def build_report(members, *, group, expect=None, stale_after, now=None,
                 expected_nodes=None):
    """The default (members) view; see the module docstring.

    ``expected_nodes`` (from the ring) must each have at least one
    member, or the group is degraded. An empty group with no member
    expected is healthy: nothing runs there, which the report says.
    """
    now = time.time() if now is None else now
    rows, problems = [], []
    present = {(caps or {}).get('node') for caps in members.values()}
    for node in expected_nodes or ():
        if node not in present:
            problems.append('node %s (in the ring) has no member in the '
                            'group' % node)
    for member_id in sorted(members):
        caps = members[member_id] or {}
        progress = caps.get('progress')
        progress = progress if isinstance(progress, dict) else {}
        mine = member_problems(caps, now, stale_after)
        problems.extend('%s: %s' % (member_id, p) for p in mine)
        rows.append({
            'member': member_id,
            'host': caps.get('host'),
            'node': caps.get('node'),
            'pid': caps.get('pid'),
            'version': caps.get('version'),
            'uptime': round(now - float(caps.get('started_at') or now), 1),
            'roles': list(caps.get('roles') or []),
            'devices': list(caps.get('devices') or []),
            'progress': progress,
            'progress_summary': summarize_progress(progress),
            'last_update_age': round(
                now - float(caps.get('updated_at') or now), 1),
            'outages': caps.get('outages', 0),
            'state': 'degraded' if mine else 'ok',
            'workers': [worker_row(name, progress[name], now)
                        for name in sorted(progress)],
        })
    if expect is not None and len(rows) < expect:
        problems.append('%d members present, %d expected'
                        % (len(rows), expect))
    return {
        'schema_version': SCHEMA_VERSION,
        'group': group,
        'state': DEGRADED if problems else HEALTHY,
        'members': rows,
        'summary': build_summary(rows),
        'backlog': build_backlog(rows, members, now),
        'problems': problems,
    }


def unreachable_report(group, error):
    """The default view when the backend did not answer."""
    return {'schema_version': SCHEMA_VERSION, 'group': group,
            'state': UNREACHABLE, 'members': [], 'summary': {},
            'backlog': {}, 'problems': [str(error)]}


def _by_kind(rows):
    kinds = {}
    for row in rows:
        for worker in row['workers']:
            kinds.setdefault(worker['worker'], []).append((row, worker))
    return kinds


def build_summary(rows):
    """``{kind: {...}}``: the cluster line per worker kind, as
    ``swift-recon -r`` prints one for replication."""
    summary = {}
    for kind, pairs in sorted(_by_kind(rows).items()):
        passed = [(row, w) for row, w in pairs
                  if w['last_pass_age'] is not None]
        timed = [(row, w) for row, w in passed
                 if w['last_pass_duration'] is not None]
        oldest = max(passed, key=lambda p: p[1]['last_pass_age'],
                     default=None)
        newest = min(passed, key=lambda p: p[1]['last_pass_age'],
                     default=None)
        slowest = max(timed, key=lambda p: p[1]['last_pass_duration'],
                      default=None)
        summary[kind] = {
            'members': len(pairs),
            'nodes': sorted({row['node'] for row, _ in pairs
                             if row['node']}),
            'passed': len(passed),
            'oldest_pass_age': oldest and oldest[1]['last_pass_age'],
            'oldest_pass_node': oldest and oldest[0]['node'],
            'newest_pass_age': newest and newest[1]['last_pass_age'],
            'newest_pass_node': newest and newest[0]['node'],
            'slowest_node': slowest and slowest[0]['node'],
            'slowest_member': slowest and slowest[0]['member'],
            'slowest_duration': slowest and slowest[1][
                'last_pass_duration'],
            'failures': sum(w['last_pass_failed'] or 0 for _, w in pairs),
            'errors': sum(w['errors'] for _, w in pairs),
            'static': sum(1 for _, w in pairs if w['mode'] == 'static'),
            'backlog': sum(w['backlog'] or 0 for _, w in pairs),
        }
    return summary


def _level_total(name, values):
    """Cluster figure of one level: the oldest age, else the sum."""
    if 'age' in name or 'oldest' in name:
        return max(values)
    return sum(values)


def build_backlog(rows, members, now):
    """``{kind: {'items', 'oldest', 'levels'}}``: items members own that
    no pass finished within ``backlog_intervals`` (summed, the oldest
    one's age), and the levels (async pendings, sync lag, queue depth).

    Container sync's lag and the reconciler's depth come from the
    freshest report per container and queue container (as ``--sync``
    and ``--reconciler`` count them): a container that changed hands
    is counted once.
    """
    backlog = {}
    for kind, pairs in sorted(_by_kind(rows).items()):
        levels = {}
        for _row, worker in pairs:
            for name, value in worker['levels'].items():
                levels.setdefault(name, []).append(_number(value))
        entry = {
            'items': sum(w['backlog'] or 0 for _, w in pairs),
            'oldest': max((w['backlog_oldest'] or 0.0 for _, w in pairs),
                          default=0.0),
            'levels': {name: _level_total(name, values)
                       for name, values in sorted(levels.items())},
        }
        if kind == SYNC_WORKER:
            synced = [_sync_row(e, now)
                      for e in _freshest_sync_entries(members).values()]
            if synced:
                entry['levels']['rows_behind'] = sum(
                    r['rows_behind'] or 0 for r in synced)
                entry['levels']['oldest_unsynced_age'] = max(
                    r['oldest_age'] or 0 for r in synced)
        if kind == RECONCILER_WORKER:
            queues = _freshest_queues(members)
            if queues:
                entry['levels']['queue_depth'] = sum(
                    _count(q.get('left')) or 0 for q in queues.values())
                entry['queue_depth_more'] = any(
                    bool(q.get('more')) for q in queues.values())
        backlog[kind] = entry
    return backlog


def _duration(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return '%ds' % seconds
    if seconds < 7200:
        return '%dm' % (seconds // 60)
    return '%dh' % (seconds // 3600)


def _seconds(value):
    """A pass duration: tenths below two minutes."""
    if value is None:
        return '-'
    return '%.1fs' % value if value < 120 else _duration(value)


def _w(getter):
    """A worker cell; ``-`` on a member without workers."""
    return lambda r: '-' if r['w'] is None else getter(r['w'])


def _done_cell(worker):
    if worker['total'] is None:
        return _dash(worker['done'])
    return '%s/%s' % (_dash(worker['done']), worker['total'])


# NOTE: r is {'m': member row, 'w': worker row or None}, a table row per
# member and worker.
MEMBER_COLUMNS = (
    ('MEMBER', lambda r: r['m']['member']),
    ('NODE', lambda r: _dash(r['m']['node'])),
    ('HOST', lambda r: _dash(r['m']['host'])),
    ('PID', lambda r: _dash(r['m']['pid'])),
    ('VERSION', lambda r: _dash(r['m']['version'])),
    ('UPTIME', lambda r: _duration(r['m']['uptime'])),
    ('ROLES', lambda r: ','.join(r['m']['roles']) or '-'),
    ('DEVICES', lambda r: ','.join(r['m']['devices']) or '-'),
    ('OUTAGES', lambda r: _dash(r['m']['outages'])),
    ('PROGRESS', lambda r: r['m']['progress_summary']),
    ('AGE', lambda r: _duration(r['m']['last_update_age'])),
    ('STATE', lambda r: r['m']['state']),
    ('WORKER', _w(lambda w: w['worker'])),
    ('WSTATE', _w(lambda w: _dash(w['state']))),
    ('MODE', _w(lambda w: _dash(w['mode']))),
    ('PASS', _w(lambda w: _dash(w['pass']))),
    ('DONE', _w(_done_cell)),
    ('ERRORS', _w(lambda w: str(w['errors']))),
    ('SKIPPED', _w(lambda w: _dash(w['skipped']))),
    ('FENCED', _w(lambda w: _dash(w['fenced']))),
    ('LAST', _w(lambda w: _age_cell(w['last_pass_age'], ' ago'))),
    ('DURATION', _w(lambda w: _seconds(w['last_pass_duration']))),
    ('FAILED', _w(lambda w: _dash(w['last_pass_failed']))),
    ('BACKLOG', _w(lambda w: _dash(w['backlog']))),
)
DEFAULT_MEMBER_COLUMNS = (
    'MEMBER', 'NODE', 'HOST', 'PID', 'UPTIME', 'AGE', 'STATE', 'WORKER',
    'WSTATE', 'MODE', 'PASS', 'DONE', 'ERRORS', 'LAST', 'DURATION',
    'BACKLOG')
# Kept for readers of the old name: every column of the members view.
TABLE_COLUMNS = MEMBER_COLUMNS


def select_columns(columns, wanted, default=None):
    """The ``(name, getter)`` pairs of ``wanted`` (names, any case, in
    that order), else of ``default``, else all; ValueError (one line,
    naming the valid ones) on an unknown name."""
    known = dict(columns)
    names = wanted or default or [name for name, _ in columns]
    chosen = []
    for name in names:
        key = name.strip().upper()
        if key not in known:
            raise ValueError('unknown column %r; valid columns: %s'
                             % (name, ', '.join(n for n, _ in columns)))
        chosen.append((key, known[key]))
    return chosen


def _row(cells, widths):
    pairs = zip(cells, widths, strict=True)
    return '  '.join(cell.ljust(width) for cell, width in pairs).rstrip()


def summary_line(kind, entry):
    """``object-replicator: 3 members; last pass oldest 42s ago (n1),
    newest 3s ago (n3); slowest n2 (12.1s); failures 0; backlog 0``."""
    parts = ['%s: %d member(s)' % (kind, entry['members'])]
    if entry['passed']:
        parts.append('last pass oldest %s ago (%s), newest %s ago (%s)' % (
            _duration(entry['oldest_pass_age']), entry['oldest_pass_node'],
            _duration(entry['newest_pass_age']),
            entry['newest_pass_node']))
    else:
        parts.append('no pass finished yet')
    if entry['slowest_duration'] is not None:
        parts.append('slowest %s (%s)' % (
            entry['slowest_node'], _seconds(entry['slowest_duration'])))
    parts.append('failures %d' % entry['failures'])
    if entry['errors'] != entry['failures']:
        parts.append('errors %d' % entry['errors'])
    if entry['static']:
        parts.append('%d in static mode' % entry['static'])
    parts.append('backlog %d' % entry['backlog'])
    return '; '.join(parts)


def _level_cell(name, value):
    if 'age' in name or 'oldest' in name:
        return '%s %s' % (name, _duration(value))
    return '%s %s' % (name, int(value) if float(value).is_integer()
                      else value)


def backlog_line(kind, entry):
    """``object-updater: 0 item(s) late; async_pending 12,
    oldest_async_age 40s``."""
    text = '%s: %d item(s) late' % (kind, entry['items'])
    if entry['items']:
        text += ' (oldest %s)' % _duration(entry['oldest'])
    levels = [_level_cell(name, value)
              for name, value in sorted(entry['levels'].items())]
    if entry.get('queue_depth_more'):
        levels = [cell + '+' if cell.startswith('queue_depth ') else cell
                  for cell in levels]
    if levels:
        text += '; ' + ', '.join(levels)
    return text


def format_table(report, columns=None):
    """The members view as text: a row per member and worker, the
    summary and backlog lines per worker kind, the verdict."""
    chosen = select_columns(MEMBER_COLUMNS, columns,
                            DEFAULT_MEMBER_COLUMNS)
    flat = []
    for member in report['members']:
        for worker in member.get('workers') or [None]:
            flat.append({'m': member, 'w': worker})
    lines = []
    if flat:
        lines.extend(_table(chosen, flat))
        lines.append('')
    if report.get('summary'):
        lines.append('summary:')
        lines.extend('  ' + summary_line(kind, entry)
                     for kind, entry in sorted(report['summary'].items()))
    if report.get('backlog'):
        lines.append('backlog:')
        lines.extend('  ' + backlog_line(kind, entry)
                     for kind, entry in sorted(report['backlog'].items()))
    if report['members']:
        lines.append('group %s: %s, %d member(s)' % (
            report['group'], report['state'], len(report['members'])))
    else:
        lines.append('group %s: %s, no members' % (report['group'],
                                                   report['state']))
    lines.extend('  problem: %s' % p for p in report['problems'])
    return '\n'.join(lines)


SYNC_WORKER = 'container-sync'


def _freshest_sync_entries(members):
    """``{(account, container): entry}``, the entry with the largest
    ``synced_at`` among every member's reports."""
    chosen = {}
    for member_id in sorted(members):
        progress = (members[member_id] or {}).get('progress') or {}
        for entry in (progress.get(SYNC_WORKER) or {}).get('sync') or ():
            if not isinstance(entry, dict) or not entry.get('container'):
                continue
            key = (entry.get('account') or '', entry['container'])
            known = chosen.get(key)
            if known is None or (_number(entry.get('synced_at'), 0.0)
                                 > _number(known.get('synced_at'), 0.0)):
                chosen[key] = entry
    return chosen


def _number(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _sync_row(entry, now):
    synced_at = _number(entry.get('synced_at'))
    since = None if synced_at is None else max(0.0, now - synced_at)
    behind = entry.get('rows_behind')
    measured = _number(entry.get('oldest_age'))
    if behind is None:
        oldest = measured
    elif behind > 0:
        # NOTE: measured when synced; the row has aged since.
        oldest = (None if measured is None
                  else round(measured + (since or 0.0), 1))
    else:
        oldest = 0
    return {
        'account': entry.get('account'),
        'container': entry.get('container'),
        'target': entry.get('target'),
        'holder': entry.get('holder'),
        'rows_behind': behind,
        'oldest_age': oldest,
        'retry': entry.get('retry'),
        'failing': entry.get('failing'),
        'last_error': entry.get('last_error') or '',
        'point': entry.get('point'),
        'synced_age': None if since is None else round(since, 1),
    }


def build_sync_report(members, *, group, now=None):
    """The ``--sync`` report: one row per synced container, the most
    behind first; degraded when a container has rows failing or an
    error."""
    now = time.time() if now is None else now
    rows = [_sync_row(entry, now)
            for entry in _freshest_sync_entries(members).values()]
    rows.sort(key=lambda r: (
        -(r['rows_behind'] if r['rows_behind'] is not None else -1),
        r['account'] or '', r['container']))
    problems = []
    for row in rows:
        name = '/%s/%s' % (row['account'], row['container'])
        if row['last_error']:
            problems.append('%s: %s' % (name, row['last_error']))
        if row['failing']:
            problems.append('%s: %s rows failing' % (name, row['failing']))
    return {
        'group': group,
        'state': DEGRADED if problems else HEALTHY,
        'containers': rows,
        'problems': problems,
    }


def _dash(value):
    return '-' if value is None else str(value)


def _age_cell(seconds, suffix=''):
    return '-' if seconds is None else _duration(seconds) + suffix


def _error_cell(text, width=60):
    text = ' '.join((text or '').split())
    if not text:
        return '-'
    return text if len(text) <= width else text[:width - 3] + '...'


SYNC_COLUMNS = (
    ('CONTAINER', lambda r: '/%s/%s' % (r['account'], r['container'])),
    ('TARGET', lambda r: r['target'] or '-'),
    ('HOLDER', lambda r: r['holder'] or '-'),
    ('BEHIND', lambda r: _dash(r['rows_behind'])),
    ('OLDEST', lambda r: _age_cell(r['oldest_age'])),
    ('RETRY', lambda r: _dash(r['retry'])),
    ('FAILING', lambda r: _dash(r['failing'])),
    ('SYNCED', lambda r: _age_cell(r['synced_age'], ' ago')),
    ('ERROR', lambda r: _error_cell(r['last_error'])),
)


def format_sync_table(report, columns=None):
    rows = report['containers']
    lines = []
    if rows:
        lines = _table(select_columns(SYNC_COLUMNS, columns), rows)
        lines.append('')
        lines.append('group %s: %s, %d container(s)' % (
            report['group'], report['state'], len(rows)))
    else:
        lines.append('group %s: %s, no synced containers reported' % (
            report['group'], report['state']))
    lines.extend('  problem: %s' % p for p in report['problems'])
    return '\n'.join(lines)


RECONCILER_WORKER = 'reconciler'
RECONCILER_FIGURES = ('moved', 'already_right', 'tombstones', 'retried',
                      'invalid', 'errors')


def _count(value):
    number = _number(value)
    return None if number is None else int(number)


def _reconciler_member(member_id, caps, fields):
    figures = fields.get('figures')
    figures = figures if isinstance(figures, dict) else {}
    queues = fields.get('queues')
    row = {
        'member': member_id,
        'node': caps.get('node'),
        'state': fields.get('state'),
        'pass': fields.get('pass'),
        'queue_depth': _count(fields.get('queue_depth')),
        'queue_depth_more': bool(fields.get('queue_depth_more')),
        'queue_containers': len(queues) if isinstance(queues, list)
        else None,
        'failed': _count(fields.get('errors')) or 0,
    }
    for name in RECONCILER_FIGURES:
        row[name] = _count(figures.get(name))
    return row


def _freshest_queues(members):
    """``{queue container: entry}``, the entry with the largest
    ``checked_at`` among every reconciler's reports."""
    chosen = {}
    for member_id in sorted(members):
        progress = (members[member_id] or {}).get('progress') or {}
        for entry in (progress.get(RECONCILER_WORKER) or {}).get(
                'queues') or ():
            if not isinstance(entry, dict) or not entry.get('queue'):
                continue
            known = chosen.get(entry['queue'])
            if known is None or (_number(entry.get('checked_at'), 0.0)
                                 > _number(known.get('checked_at'), 0.0)):
                chosen[entry['queue']] = entry
    return chosen


def _queue_row(entry, now):
    checked = _number(entry.get('checked_at'))
    return {'queue': str(entry['queue']), 'holder': entry.get('holder'),
            'entries': _count(entry.get('entries')),
            'left': _count(entry.get('left')),
            'more': bool(entry.get('more')),
            'checked_age': None if checked is None
            else round(max(0.0, now - checked), 1)}


def build_reconciler_report(members, *, group, now=None):
    """The ``--reconciler`` report: the queue depth and figures each
    reconciler member reported, and per queue container the freshest
    depth among them; degraded when a member reports failed queue
    containers or entries."""
    now = time.time() if now is None else now
    rows, problems = [], []
    for member_id in sorted(members):
        caps = members[member_id] or {}
        fields = (caps.get('progress') or {}).get(RECONCILER_WORKER)
        if not isinstance(fields, dict):
            continue
        row = _reconciler_member(member_id, caps, fields)
        rows.append(row)
        if row['failed']:
            problems.append('%s: %d queue container(s) failed'
                            % (member_id, row['failed']))
        if row['errors']:
            problems.append('%s: %d entries failed in pass %s'
                            % (member_id, row['errors'], row['pass']))
    queues = [_queue_row(entry, now)
              for entry in _freshest_queues(members).values()]
    queues.sort(key=lambda r: (-(r['left'] or 0), r['queue']))
    return {
        'group': group,
        'state': DEGRADED if problems else HEALTHY,
        'reconcilers': rows,
        'queues': queues,
        'queue_depth': sum(r['left'] or 0 for r in queues),
        'queue_depth_more': any(r['more'] for r in queues),
        'problems': problems,
    }


def _depth_cell(value, more):
    return _dash(value) + ('+' if more and value is not None else '')


RECONCILER_COLUMNS = (
    ('MEMBER', lambda r: r['member']),
    ('NODE', lambda r: r['node'] or '-'),
    ('STATE', lambda r: r['state'] or '-'),
    ('PASS', lambda r: _dash(r['pass'])),
    ('DEPTH', lambda r: _depth_cell(r['queue_depth'],
                                    r['queue_depth_more'])),
    ('QUEUES', lambda r: _dash(r['queue_containers'])),
    ('MOVED', lambda r: _dash(r['moved'])),
    ('RIGHT', lambda r: _dash(r['already_right'])),
    ('TOMBSTONES', lambda r: _dash(r['tombstones'])),
    ('RETRIED', lambda r: _dash(r['retried'])),
    ('INVALID', lambda r: _dash(r['invalid'])),
    ('ERRORS', lambda r: _dash(r['errors'])),
)

QUEUE_COLUMNS = (
    ('QUEUE', lambda r: r['queue']),
    ('HOLDER', lambda r: r['holder'] or '-'),
    ('ENTRIES', lambda r: _depth_cell(r['entries'], r['more'])),
    ('LEFT', lambda r: _depth_cell(r['left'], r['more'])),
    ('CHECKED', lambda r: _age_cell(r['checked_age'], ' ago')),
)


def _table(columns, rows):
    header = [name for name, _ in columns]
    body = [[get(row) for _, get in columns] for row in rows]
    widths = [max(len(cell) for cell in column)
              for column in zip(header, *body, strict=True)]
    return [_row(line, widths) for line in [header] + body]


def format_reconciler_table(report):
    lines = []
    if report['reconcilers']:
        lines.extend(_table(RECONCILER_COLUMNS, report['reconcilers']))
        lines.append('')
    if report['queues']:
        lines.extend(_table(QUEUE_COLUMNS, report['queues']))
        lines.append('')
    if report['reconcilers']:
        lines.append('group %s: %s, %d reconciler(s), queue depth %s in '
                     '%d queue container(s)' % (
                         report['group'], report['state'],
                         len(report['reconcilers']),
                         _depth_cell(report['queue_depth'],
                                     report['queue_depth_more']),
                         len(report['queues'])))
    else:
        lines.append('group %s: %s, no reconciler reported' % (
            report['group'], report['state']))
    lines.extend('  problem: %s' % p for p in report['problems'])
    return '\n'.join(lines)


# -- --who ITEM ---------------------------------------------------------------

OBJECT_REPLICATOR = 'object-replicator'
CONTAINER_REPLICATOR = 'container-replicator'
ACCOUNT_REPLICATOR = 'account-replicator'
OBJECT_UPDATER = 'object-updater'
WHO_KINDS = (OBJECT_REPLICATOR, CONTAINER_REPLICATOR, ACCOUNT_REPLICATOR,
             OBJECT_UPDATER, SYNC_WORKER, RECONCILER_WORKER)
WHO_GRAMMAR = (
    'ITEM is a lock name (coordsync/replicate/<policy>/<partition>, '
    'coordsync/replicate-container/<partition>, '
    'coordsync/replicate-account/<partition>, '
    'coordsync/update/<node>/<device>, coordsync/sync/<account>/'
    '<container>, coordsync/reconcile/<queue>), KIND:SPEC '
    '(object-replicator:[<policy>/]<partition>, '
    'container-replicator:<partition>, account-replicator:<partition>, '
    'object-updater:<node>/<device>, container-sync:<account>/'
    '<container>, reconciler:<queue>), or [<policy>/]<partition> for '
    'the object replicator')


def _partition(text, what='partition'):
    if not text.isdigit() or len(text) > 10:
        raise ValueError('%s must be a number, not %r' % (what, text))
    return int(text)


def _two(spec, first, second):
    parts = spec.split('/', 1)
    if len(parts) != 2 or not all(parts):
        raise ValueError('expected <%s>/<%s>, not %r' % (first, second,
                                                         spec))
    return parts


def _target(kind, spec):
    """``{'worker', 'lock', 'what', 'ring', 'part', 'name', 'nodes'}``
    of a ``KIND:SPEC`` item; ValueError on a bad one."""
    target = {'worker': kind, 'ring': None, 'part': None, 'name': None,
              'nodes': None}
    if kind == OBJECT_REPLICATOR:
        policy, _, part = spec.rpartition('/')
        policy = _partition(policy, 'policy') if policy else 0
        part = _partition(part)
        target.update(lock=replicator.lock_name(part, policy),
                      what='policy %d partition %d' % (policy, part),
                      ring=('object', policy), part=part)
    elif kind in (CONTAINER_REPLICATOR, ACCOUNT_REPLICATOR):
        part = _partition(spec)
        datadir = {CONTAINER_REPLICATOR: replication.DATADIRS[0],
                   ACCOUNT_REPLICATOR: replication.DATADIRS[1]}[kind]
        ring = kind.split('-')[0]
        target.update(lock=replication.lock_name(datadir, part),
                      what='%s ring partition %d' % (ring, part),
                      ring=(ring,), part=part)
    elif kind == OBJECT_UPDATER:
        node, device = _two(spec, 'node', 'device')
        target.update(lock=updater.lock_name(node, device),
                      what='device %s of node %s' % (device, node),
                      nodes=[node])
    elif kind == SYNC_WORKER:
        account, container = _two(spec, 'account', 'container')
        target.update(lock=sync_state.lock_name(account, container),
                      what='container /%s/%s' % (account, container),
                      ring=('container',), name=(account, container))
    elif kind == RECONCILER_WORKER:
        if not spec or '/' in spec:
            raise ValueError('expected a queue container name, not %r'
                             % spec)
        target.update(lock=queue.lock_name(spec),
                      what='queue container /%s/%s' % (
                          queue.MISPLACED_ACCOUNT, spec),
                      ring=('container',),
                      name=(queue.MISPLACED_ACCOUNT, spec))
    else:
        raise ValueError('unknown kind %r (one of %s)'
                         % (kind, ', '.join(WHO_KINDS)))
    return target


# Lock name prefix (kind part) -> the worker kind taking such locks.
LOCK_KINDS = {'replicate': OBJECT_REPLICATOR,
              'replicate-container': CONTAINER_REPLICATOR,
              'replicate-account': ACCOUNT_REPLICATOR,
              'update': OBJECT_UPDATER, 'sync': SYNC_WORKER,
              'reconcile': RECONCILER_WORKER}


def parse_item(text):
    """The target of ``--who ITEM`` (see :data:`WHO_GRAMMAR`);
    ValueError (one line) on a bad item."""
    item = (text or '').strip()
    try:
        if item.startswith('coordsync/'):
            _, kind, spec = (item.split('/', 2) + ['', ''])[:3]
            if kind not in LOCK_KINDS:
                raise ValueError('unknown lock kind %r (one of %s)' % (
                    kind, ', '.join(sorted(LOCK_KINDS))))
            if kind == 'sync' and spec.startswith('.hashed/'):
                # NOTE: a hashed name cannot be turned back into its
                # container: its holder can still be told.
                return {'worker': SYNC_WORKER, 'lock': item,
                        'what': 'a container with a long name (hashed)',
                        'ring': None, 'part': None, 'name': None,
                        'nodes': None}
            target = _target(LOCK_KINDS[kind], spec)
        elif ':' in item:
            kind, spec = item.split(':', 1)
            target = _target(kind, spec)
        else:
            target = _target(OBJECT_REPLICATOR, item)
    except ValueError as err:
        raise ValueError('bad ITEM %r: %s (ITEM: a lock name, KIND:SPEC '
                         'or [POLICY/]PARTITION; see --help)'
                         % (text, err)) from None
    if target['lock'] != item and item.startswith('coordsync/'):
        raise ValueError('bad ITEM %r: not a lock name as the workers '
                         'spell it (%s)' % (text, target['lock']))
    return target


def _ring_of(conf, target):
    """The ring ``target`` lives in; ConfigError when unreadable."""
    kind = target['ring'][0]
    try:
        if kind == 'object':
            policy = target['ring'][1]
            found = [p for p in storage_policy.from_conf(conf)
                     if p.index == policy]
            if not found:
                raise exceptions.ConfigError(
                    'no storage policy %d in the config' % policy)
            return found[0].load_ring(conf)
        path = (conf.container_ring_file if kind == 'container'
                else conf.account_ring_file)
        return ring_mod.Ring(path, conf.hash_path_prefix,
                             conf.hash_path_suffix)
    except exceptions.RingError as err:
        raise exceptions.ConfigError('cannot read the %s ring: %s'
                                     % (kind, err)) from err


def eligible_nodes(conf, target):
    """The node names that may take ``target``'s item (those holding a
    replica of it, as the workers' jobs say), None when unknown."""
    if target['nodes'] is not None:
        return sorted(target['nodes'])
    if target['ring'] is None:
        return None
    ring = _ring_of(conf, target)
    try:
        if target['part'] is not None:
            devices = ring.get_part_nodes(target['part'])
        else:
            _part, devices = ring.get_nodes(*target['name'])
    except exceptions.RingError as err:
        raise exceptions.ConfigError(str(err)) from err
    return sorted({dev['node'] for dev in devices})


def build_who_report(target, eligible, members, locks, *, group,
                     backend_url):
    """Who owns ``target``'s item by the division the workers use
    (:class:`coordsync.common.division.Division` over the live nodes
    with a member of its worker kind), and who holds its lock now."""
    worker = target['worker']
    by_node = {}
    for member_id, caps in sorted(members.items()):
        caps = caps or {}
        if worker in (caps.get('roles') or []) and caps.get('node'):
            by_node.setdefault(caps['node'], []).append(member_id)
    owner = home = None
    live = []
    if eligible:
        live = sorted(set(eligible) & set(by_node))
        split = division.Division(eligible[0], by_node)
        home = split.owner(target['lock'], eligible)
        owner = split.owner(target['lock'], live) if live else None
    report = {
        'schema_version': SCHEMA_VERSION,
        'group': group,
        'item': target['lock'],
        'worker': worker,
        'what': target['what'],
        'eligible': eligible,
        'live': live if eligible is not None else sorted(by_node),
        'owner': owner,
        'owner_members': by_node.get(owner, []) if owner else [],
        'home': home,
        'holder_known': locks is not None,
        'holder': None,
        'held_for': None,
        'notes': [],
    }
    if eligible is None:
        report['notes'].append('owner unknown: the item does not name '
                               'its replicas')
    elif not live:
        report['notes'].append('no live %s on %s: nobody takes it now'
                               % (worker, ', '.join(eligible)))
    if locks is None:
        report['notes'].append(
            'holder unknown: the %s backend cannot list the locks held '
            '(only ZooKeeper can)' % (
                urllib.parse.urlsplit(backend_url).scheme or 'configured'))
    else:
        for row in locks:
            if row['name'] == target['lock']:
                report['holder'] = row['holder'] or '?'
                report['held_for'] = round(row['age'], 1)
    report['state'] = (DEGRADED if eligible is not None and not live
                       else HEALTHY)
    return report


def format_who(report):
    lines = ['%s (%s, %s)' % (report['item'], report['worker'],
                              report['what'])]
    if report['eligible'] is not None:
        lines.append('  replicas on: %s' % (', '.join(report['eligible'])
                                           or '-'))
        lines.append('  live %s: %s' % (report['worker'],
                                        ', '.join(report['live']) or '-'))
    if report['owner']:
        text = '  owner: %s (%s)' % (report['owner'],
                                     ', '.join(report['owner_members']))
        if report['home'] != report['owner']:
            text += ', standing in for %s (not live)' % report['home']
        lines.append(text)
    else:
        lines.append('  owner: -')
    if not report['holder_known']:
        lines.append('  lock: holder unknown')
    elif report['holder']:
        lines.append('  lock: held by %s for %s' % (
            report['holder'], _seconds(report['held_for'])))
    else:
        lines.append('  lock: free')
    lines.extend('  note: %s' % note for note in report['notes'])
    return '\n'.join(lines)
