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
