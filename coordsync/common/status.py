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

import os
import socket
import threading
import time
import urllib.parse

import tooz.coordination
from oslo_log import log as logging

from coordsync import exceptions
from coordsync.common import coordination
from coordsync.common import ring as ring_mod
from coordsync.common import zklocks

LOG = logging.getLogger(__name__)

HEALTHY, DEGRADED, UNREACHABLE = 'healthy', 'degraded', 'unreachable'
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, UNREACHABLE: 2}


def fetch_members(conf, timeout):
    """Read the group once, without joining it; bounded by ``timeout``.

    Raises CoordinationUnavailable if the backend does not answer in
    time, whatever the driver does (some block on connect).
    """
    def members(driver):
        try:
            return coordination.read_members(
                driver, conf.coordination.group, timeout)
        except tooz.coordination.GroupNotCreated:
            return {}
    return _read_backend(conf, timeout, members)


def fetch_locks(conf, timeout):
    """The locks held in the group (see :func:`read_locks`), read once
    without joining it; bounded by ``timeout`` like
    :func:`fetch_members`."""
    return _read_backend(conf, timeout, lambda driver: read_locks(
        driver, conf.coordination.group, timeout))


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
    ``timeout``; CoordinationUnavailable when it does not answer."""
    outcome = {}
    answered = threading.Event()

    def run():
        member_id = 'status-%s-%d' % (socket.gethostname(), os.getpid())
        try:
            driver = coordination.connect(conf, member_id)
            try:
                outcome['value'] = read(driver)
            finally:
                # NOTE: answer first; closing the driver may take a while
                # (the file driver's executor) and the reader is done.
                answered.set()
                driver.stop()
        except (exceptions.CoordsyncError,
                *coordination.BACKEND_ERRORS) as err:
            outcome['error'] = err
        finally:
            answered.set()

    reader = threading.Thread(target=run, name='status-read', daemon=True)
    reader.start()
    answered.wait(timeout + 1.0)
    if 'value' in outcome:
        return outcome['value']
    raise exceptions.CoordinationUnavailable(
        str(outcome.get('error') or 'no answer from coordination backend '
            '%s within %.1fs' % (coordination.redact_url(
                conf.coordination.backend_url), timeout)))


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


def format_locks_table(report):
    header = ['NAME', 'HOLDER', 'AGE']
    body = [[row['name'], row['holder'] or '-', '%.1fs' % row['age']]
            for row in report['locks']]
    lines = []
    if body:
        widths = [max(len(cell) for cell in column)
                  for column in zip(header, *body, strict=True)]
        lines = [_row(line, widths) for line in [header] + body]
        lines.append('')
    if report['listable']:
        lines.append('group %s: %d lock(s) held' % (report['group'],
                                                    len(body)))
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


def build_report(members, *, group, expect=None, stale_after, now=None,
                 expected_nodes=None):
    """The status report; ``expected_nodes`` (from the ring) must each
    have at least one member, or the group is degraded."""
    now = time.time() if now is None else now
    rows, problems = [], []
    present = {(caps or {}).get('node') for caps in members.values()}
    for node in expected_nodes or ():
        if node not in present:
            problems.append('node %s (in the ring) has no member in the '
                            'group' % node)
    for member_id in sorted(members):
        caps = members[member_id] or {}
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
            'progress': caps.get('progress') or {},
            'progress_summary': summarize_progress(caps.get('progress')),
            'last_update_age': round(
                now - float(caps.get('updated_at') or now), 1),
            'outages': caps.get('outages', 0),
            'state': 'degraded' if mine else 'ok',
        })
    if expect is not None and len(rows) < expect:
        problems.append('%d members present, %d expected'
                        % (len(rows), expect))
    if not rows and expect is None:
        problems.append('no members in group %s' % group)
    return {
        'group': group,
        'state': DEGRADED if problems else HEALTHY,
        'members': rows,
        'problems': problems,
    }


def _duration(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return '%ds' % seconds
    if seconds < 7200:
        return '%dm' % (seconds // 60)
    return '%dh' % (seconds // 3600)


TABLE_COLUMNS = (
    ('MEMBER', lambda r: r['member']),
    ('NODE', lambda r: r['node']),
    ('HOST', lambda r: r['host']),
    ('PID', lambda r: r['pid']),
    ('VERSION', lambda r: r['version']),
    ('UPTIME', lambda r: _duration(r['uptime'])),
    ('ROLES', lambda r: ','.join(r['roles']) or '-'),
    ('PROGRESS', lambda r: r['progress_summary']),
    ('AGE', lambda r: _duration(r['last_update_age'])),
    ('STATE', lambda r: r['state']),
)


def _row(cells, widths):
    pairs = zip(cells, widths, strict=True)
    return '  '.join(cell.ljust(width) for cell, width in pairs).rstrip()


def format_table(report):
    header = [name for name, _ in TABLE_COLUMNS]
    body = [[str(get(row)) for _, get in TABLE_COLUMNS]
            for row in report['members']]
    widths = [max(len(cell) for cell in column)
              for column in zip(header, *body, strict=True)]
    lines = [_row(line, widths) for line in [header] + body]
    lines.append('')
    lines.append('group %s: %s, %d member(s)' % (
        report['group'], report['state'], len(report['members'])))
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


def format_sync_table(report):
    rows = report['containers']
    lines = []
    if rows:
        header = [name for name, _ in SYNC_COLUMNS]
        body = [[get(row) for _, get in SYNC_COLUMNS] for row in rows]
        widths = [max(len(cell) for cell in column)
                  for column in zip(header, *body, strict=True)]
        lines = [_row(line, widths) for line in [header] + body]
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
