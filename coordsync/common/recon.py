"""Recon: what a node tells about itself, and the cluster view of it all.

**On a node** (:class:`NodeFacts`, served signed at
``GET /recon/<kind>`` by :class:`~coordsync.obj.server.NodeServer`),
each kind is a JSON object:

* a worker's name (``object-replicator``, ``object-updater``,
  ``container-replicator``, ``account-replicator``, ``container-sync``,
  ``reconciler``): the summary of its last pass on this node, the file
  ``<[group] recon_cache_path>/<name>.json`` its worker wrote
  (:meth:`~coordsync.common.worker.Worker._dump_recon`); not found (404)
  when no pass of it ended here;
* ``disk``: ``{"mount_check", "devices": [{"device", "mounted",
  "usable", "size", "used", "avail"}]}`` of every directory under
  ``[DEFAULT] devices`` (bytes from ``statvfs``; null sizes for a device
  not usable: unmounted while ``mount_check`` is on);
* ``quarantined``: ``{"objects": {policy: n}, "async_pending": {policy:
  n}, "containers": n, "accounts": n, "other": n, "devices": {device:
  {directory: n}}}``, entries under each device's ``quarantined/``;
* ``async``: ``{"async_pending": n, "oldest_age": s, "policies":
  {policy: {"count", "oldest_age"}}}``: the async pendings on this
  node's devices now, the oldest by file mtime;
* ``ringmd5``: ``{"rings": {name: {"file", "md5"}}}``, one per ring this
  node reads: ``object`` (policy 0), ``object-N``, ``container``,
  ``account``; md5 null when the file is missing;
* ``server``: node name, version, pid, start time and uptime.

Anything else is not found; a kind is a short lower-case word, so no
request names a file (``..`` is refused before anything is read).

**Cluster side** (``coordsync-recon``): :func:`ring_endpoints` finds
every node of the rings this host has; :func:`gather` asks each for
some kinds; the ``*_view`` functions turn the answers into the summary
lines of ``swift-recon`` and :func:`build_report` into one report with
its problems (a node not answering, a ring not matching).
"""

import hashlib
import json
import os
import re
import time

from coordsync import exceptions
from coordsync import version
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.conf import worker as worker_conf
from coordsync.obj import updates

WORKERS = worker_conf.WORKERS
WORKER_GROUPS = worker_conf.WORKER_GROUPS
FACT_KINDS = ('disk', 'quarantined', 'async', 'ringmd5', 'server')
KINDS = WORKERS + FACT_KINDS
KIND_RE = re.compile(r'[a-z][a-z0-9-]{0,63}\Z')
REPLICATORS = ('object-replicator', 'container-replicator',
               'account-replicator')
# NOTE: a recon file is a small JSON object; a larger one is not ours.
MAX_RECON_FILE = 16 * 2 ** 20


class NotFound(exceptions.CoordsyncError):
    """No such recon kind, or no data of it on this node."""


# -- facts on a node ----------------------------------------------------------

class NodeFacts:
    """The recon facts of one node (see the module docstring).

    :param conf: the node's ConfigOpts.
    :param started_at: when the serving process started (Unix time).
    Each call reads the disks: run it off the hub.
    """

    def __init__(self, conf, started_at=None, clock=time.time):
        self.conf = conf
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at

    def get(self, kind):
        """The JSON-able facts of ``kind``; NotFound if none."""
        if kind in WORKERS:
            return self.worker(kind)
        if kind not in FACT_KINDS:
            raise NotFound('no recon kind %r; known: %s'
                           % (kind[:64], ', '.join(KINDS)))
        # NOTE: ``async`` is a keyword: its method is ``async_``.
        return getattr(self, kind + '_' if kind == 'async' else kind)()

    def worker(self, name):
        directory = self.conf[WORKER_GROUPS[name]].recon_cache_path
        path = os.path.join(directory, '%s.json' % name)
        try:
            with open(path, 'rb') as fh:
                data = fh.read(MAX_RECON_FILE + 1)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound('no %s pass ended on this node (no %s)'
                           % (name, path)) from None
        if len(data) > MAX_RECON_FILE:
            raise ValueError('%s is larger than %d bytes' % (
                path, MAX_RECON_FILE))
        found = json.loads(data.decode('utf-8'))
        if not isinstance(found, dict):
            raise ValueError('%s holds no JSON object' % path)
        return found

    def _device_dirs(self):
        """``[(name, path)]`` of the directories under ``devices``."""
        root = self.conf.devices
        try:
            names = sorted(os.listdir(root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [(name, os.path.join(root, name)) for name in names
                if os.path.isdir(os.path.join(root, name))]

    def _usable(self, path):
        return os.path.ismount(path) or not self.conf.mount_check

    def disk(self):
        devices = []
        for name, path in self._device_dirs():
            entry = {'device': name, 'mounted': os.path.ismount(path),
                     'usable': self._usable(path), 'size': None,
                     'used': None, 'avail': None}
            if entry['usable']:
                try:
                    st = os.statvfs(path)
                except OSError:
                    entry['usable'] = False
                else:
                    entry['size'] = st.f_blocks * st.f_frsize
                    entry['used'] = (st.f_blocks - st.f_bfree) * st.f_frsize
                    entry['avail'] = st.f_bavail * st.f_frsize
            devices.append(entry)
        return {'mount_check': bool(self.conf.mount_check),
                'devices': devices}

    def unmounted(self):
        """Devices not usable because ``mount_check`` is on and they are
        not mount points (empty when mount_check is off)."""
        if not self.conf.mount_check:
            return []
        return [name for name, path in self._device_dirs()
                if not os.path.ismount(path)]

    def quarantined(self):
        found = {'objects': {}, 'async_pending': {}, 'containers': 0,
                 'accounts': 0, 'other': 0, 'devices': {}}
        for name, path in self._device_dirs():
            if not self._usable(path):
                continue
            qroot = os.path.join(path, 'quarantined')
            try:
                kinds = sorted(os.listdir(qroot))
            except (FileNotFoundError, NotADirectoryError):
                continue
            per_dev = {}
            for kind in kinds:
                try:
                    count = len(os.listdir(os.path.join(qroot, kind)))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                per_dev[kind] = count
                obj_policy = storage_policy.index_of_datadir(kind)
                async_policy = updates.policy_of_async_dir(kind)
                if obj_policy is not None:
                    _add(found['objects'], str(obj_policy), count)
                elif async_policy is not None:
                    _add(found['async_pending'], str(async_policy), count)
                elif kind in ('containers', 'accounts'):
                    found[kind] += count
                else:
                    found['other'] += count
            found['devices'][name] = per_dev
        return found

    def async_(self):
        now = self.clock()
        policies = {}
        for _name, path in self._device_dirs():
            if not self._usable(path):
                continue
            try:
                names = os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for dirname in names:
                policy = updates.policy_of_async_dir(dirname)
                if policy is None:
                    continue
                count, oldest = _scan_pendings(os.path.join(path, dirname))
                entry = policies.setdefault(str(policy), {
                    'count': 0, 'oldest_mtime': None})
                entry['count'] += count
                if oldest is not None and (entry['oldest_mtime'] is None
                                           or oldest < entry['oldest_mtime']):
                    entry['oldest_mtime'] = oldest
        result = {}
        for policy, entry in sorted(policies.items()):
            oldest = entry['oldest_mtime']
            result[policy] = {'count': entry['count'], 'oldest_age': round(
                max(now - oldest, 0.0), 1) if oldest is not None else 0.0}
        return {'async_pending': sum(e['count'] for e in result.values()),
                'oldest_age': max((e['oldest_age'] for e in
                                   result.values()), default=0.0),
                'policies': result}

    def ringmd5(self):
        return {'rings': {name: {'file': path, 'md5': file_md5(path)}
                          for name, path in ring_files(self.conf).items()}}

    def server(self):
        now = self.clock()
        return {'node': self.conf.node_name,
                'version': version.version_string(), 'pid': os.getpid(),
                'started_at': round(self.started_at, 3),
                'uptime': round(max(now - self.started_at, 0.0), 1),
                'time': round(now, 3)}


def _add(counts, key, value):
    counts[key] = counts.get(key, 0) + value


def _scan_pendings(async_dir):
    """``(count, oldest mtime or None)`` of the pendings in an async
    pending directory (``<suffix>/<hash>-<timestamp>`` files)."""
    count, oldest = 0, None
    try:
        suffixes = os.listdir(async_dir)
    except (FileNotFoundError, NotADirectoryError):
        return 0, None
    for suffix in suffixes:
        suffix_dir = os.path.join(async_dir, suffix)
        try:
            names = os.listdir(suffix_dir)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not updates.PENDING_RE.match(name):
                continue
            try:
                mtime = os.stat(os.path.join(suffix_dir, name)).st_mtime
            except FileNotFoundError:
                continue
            count += 1
            oldest = mtime if oldest is None else min(oldest, mtime)
    return count, oldest


def ring_files(conf):
    """``{name: path}`` of every ring ``conf`` names: ``object`` (policy
    0), ``object-N``, ``container``, ``account``."""
    files = {}
    for policy in storage_policy.from_conf(conf):
        name = 'object' if policy.index == 0 else 'object-%d' % (
            policy.index)
        files[name] = policy.ring_file
    files['container'] = conf.container_ring_file
    files['account'] = conf.account_ring_file
    return files


def file_md5(path):
    """The hex md5 of a file, None if it cannot be read."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, 'rb') as fh:
            for chunk in iter(lambda: fh.read(65536), b''):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# -- the cluster view (coordsync-recon) ---------------------------------------

def ring_endpoints(conf):
    """``[{'node', 'ip', 'port'}]`` of every node server in the rings
    ``conf`` names, sorted; ConfigError (one line) when no ring can be
    read."""
    found, errors = {}, []
    for name, path in ring_files(conf).items():
        try:
            ring = ring_mod.Ring(path)
        except exceptions.CoordsyncError as err:
            errors.append('%s ring: %s' % (name, err))
            continue
        for dev in ring.devices:
            if dev:
                found[(dev['ip'], int(dev['port']))] = dev['node']
    if not found:
        raise exceptions.ConfigError(
            'no node found in the rings: %s' % ('; '.join(errors)
                                                 or 'no ring'))
    return [{'node': node, 'ip': ip, 'port': port}
            for (ip, port), node in sorted(found.items(),
                                           key=lambda kv: (kv[1], kv[0]))]


def host_label(endpoint):
    return '%s (%s:%d)' % (endpoint['node'], endpoint['ip'],
                           endpoint['port'])


def gather(endpoints, kinds, fetch, pmap=None):
    """Ask every endpoint for every kind.

    ``fetch(endpoint, kind)`` returns ``(status, data)``: 200 and the
    JSON, 404 and None (no such data there), or raises CoordsyncError
    (the node did not answer, or answered otherwise). Returns
    ``{label: {'endpoint', 'answered', 'error', 'kinds': {kind: data or
    None}}}``. ``pmap(func, items)`` maps concurrently (default: in
    turn).
    """
    pmap = pmap or (lambda func, items: [func(i) for i in items])

    def one(endpoint):
        entry = {'endpoint': endpoint, 'answered': True, 'error': None,
                 'kinds': {}}
        for kind in kinds:
            try:
                status, data = fetch(endpoint, kind)
            except exceptions.CoordsyncError as err:
                entry['answered'] = False
                entry['error'] = str(err)
                break
            entry['kinds'][kind] = data if status == 200 else None
        return host_label(endpoint), entry
    return dict(pmap(one, list(endpoints)))


def _answered(hosts):
    return {label: entry for label, entry in hosts.items()
            if entry['answered']}


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {'min': round(min(values), 3), 'max': round(max(values), 3),
            'avg': round(sum(values) / len(values), 3),
            'total': round(sum(values), 3)}


def replication_view(hosts, kind, now):
    """Per node and cluster-wide: the last pass of replicator ``kind``
    (like ``swift-recon -r``)."""
    nodes = {}
    for label, entry in sorted(_answered(hosts).items()):
        data = entry['kinds'].get(kind)
        if not data:
            nodes[label] = None
            continue
        ended = (data.get('started_at') or 0) + (data.get('duration') or 0)
        nodes[label] = {
            'pass': data.get('pass'), 'mode': data.get('mode'),
            'done': data.get('done'), 'total': data.get('total'),
            'succeeded': data.get('succeeded'),
            'failed': data.get('failed'), 'errors': data.get('errors'),
            'skipped_locked': data.get('skipped_locked'),
            'fenced': data.get('fenced'),
            'duration': data.get('duration'), 'ended_at': round(ended, 3),
            'age': round(max(now - ended, 0.0), 1)}
    reported = {k: v for k, v in nodes.items() if v}
    view = {'nodes': nodes, 'reported': len(reported),
            'duration': _stats([v['duration'] for v in reported.values()]),
            'failed': sum(v['failed'] or 0 for v in reported.values()),
            'oldest': None, 'newest': None}
    if reported:
        oldest = min(reported, key=lambda k: reported[k]['ended_at'])
        newest = max(reported, key=lambda k: reported[k]['ended_at'])
        view['oldest'] = {'node': oldest,
                          'age': reported[oldest]['age']}
        view['newest'] = {'node': newest,
                          'age': reported[newest]['age']}
    return view


def updater_view(hosts):
    """The object updater's last sweep and the async pendings now."""
    nodes = {}
    for label, entry in sorted(_answered(hosts).items()):
        sweep = entry['kinds'].get('object-updater') or {}
        pending = entry['kinds'].get('async') or {}
        nodes[label] = {
            'sweeps': sweep.get('pass'),
            'successes': sweep.get('successes'),
            'failures': sweep.get('failures'),
            'left': sweep.get('left'),
            'duration': sweep.get('duration'),
            'async_pending': pending.get('async_pending'),
            'oldest_async_age': pending.get('oldest_age')}
    rows = nodes.values()
    return {'nodes': nodes,
            'async_pending': _stats([r['async_pending'] for r in rows]),
            'oldest_async_age': max((r['oldest_async_age'] or 0
                                     for r in rows), default=0),
            'failures': sum(r['failures'] or 0 for r in rows),
            'successes': sum(r['successes'] or 0 for r in rows),
            'duration': _stats([r['duration'] for r in rows])}


def sync_view(hosts):
    """Container sync: rows behind and failing, per node's last pass."""
    nodes = {}
    for label, entry in sorted(_answered(hosts).items()):
        data = entry['kinds'].get('container-sync')
        if not data:
            nodes[label] = None
            continue
        containers = data.get('sync') or []
        nodes[label] = {
            'containers': len(containers),
            'rows_behind': sum(c.get('rows_behind') or 0
                               for c in containers),
            'failing': sum(c.get('failing') or 0 for c in containers),
            'oldest_age': max((c.get('oldest_age') or 0
                               for c in containers), default=0),
            'errors': data.get('errors'),
            'last_errors': sorted({c['last_error'] for c in containers
                                   if c.get('last_error')})[:5]}
    rows = [r for r in nodes.values() if r]
    return {'nodes': nodes,
            'rows_behind': sum(r['rows_behind'] for r in rows),
            'failing': sum(r['failing'] for r in rows),
            'oldest_age': max((r['oldest_age'] for r in rows), default=0),
            'containers': sum(r['containers'] for r in rows)}


def md5_view(hosts, local):
    """Each node's ring checksums against ``local`` (``{name: md5 or
    None}``): ``matched`` nodes have every ring this host has, alike."""
    nodes, matched, errors = {}, 0, 0
    answered = _answered(hosts)
    for label, entry in sorted(answered.items()):
        data = entry['kinds'].get('ringmd5')
        rings = (data or {}).get('rings') or {}
        differ = []
        for name, md5 in sorted(local.items()):
            if md5 is None:
                continue
            theirs = (rings.get(name) or {}).get('md5')
            if theirs != md5:
                differ.append(name)
        if data is None:
            errors += 1
            differ = ['(no answer)']
        elif not differ:
            matched += 1
        nodes[label] = {'differ': differ}
    return {'nodes': nodes, 'matched': matched, 'hosts': len(answered),
            'errors': errors,
            'local': {k: v for k, v in sorted(local.items())}}


def quarantined_view(hosts):
    nodes = {}
    for label, entry in sorted(_answered(hosts).items()):
        data = entry['kinds'].get('quarantined') or {}
        nodes[label] = {
            'objects': sum((data.get('objects') or {}).values()),
            'containers': data.get('containers') or 0,
            'accounts': data.get('accounts') or 0,
            'async_pending': sum((data.get('async_pending')
                                  or {}).values()),
            'other': data.get('other') or 0}
    rows = list(nodes.values())
    return {'nodes': nodes, **{
        kind: _stats([r[kind] for r in rows])
        for kind in ('objects', 'containers', 'accounts', 'async_pending',
                     'other')}}


def disk_view(hosts):
    """Usage per device (percent used) and its spread."""
    devices, unmounted = [], []
    for label, entry in sorted(_answered(hosts).items()):
        data = entry['kinds'].get('disk') or {}
        for dev in data.get('devices') or ():
            where = '%s/%s' % (label.split(' ')[0], dev.get('device'))
            if not dev.get('usable') or not dev.get('size'):
                unmounted.append(where)
                continue
            devices.append({'device': where, 'size': dev['size'],
                            'used': dev['used'], 'avail': dev['avail'],
                            'percent': round(100.0 * dev['used']
                                             / dev['size'], 2)})
    view = {'devices': devices, 'unmounted': unmounted,
            'usage': _stats([d['percent'] for d in devices]),
            'lowest': None, 'highest': None}
    if devices:
        view['lowest'] = min(devices, key=lambda d: d['percent'])['device']
        view['highest'] = max(devices, key=lambda d: d['percent'])['device']
    return view


SECTIONS = ('replication', 'updater', 'sync', 'md5', 'quarantined', 'disk')
SECTION_KINDS = {
    'replication': REPLICATORS,
    'updater': ('object-updater', 'async'),
    'sync': ('container-sync',),
    'md5': ('ringmd5',),
    'quarantined': ('quarantined',),
    'disk': ('disk',),
}


def kinds_of(sections):
    kinds = []
    for section in sections:
        for kind in SECTION_KINDS[section]:
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def build_report(hosts, sections, local_md5=None, now=None):
    """The report of ``coordsync-recon``: hosts answered, each section's
    view, and the problems (a node not answering, rings not matching,
    unusable devices) that make it exit 1."""
    now = time.time() if now is None else now
    unanswered = {label: entry['error'] for label, entry in
                  sorted(hosts.items()) if not entry['answered']}
    report = {'hosts': {'total': len(hosts),
                        'answered': len(hosts) - len(unanswered),
                        'unanswered': unanswered},
              'time': round(now, 3), 'problems': []}
    problems = report['problems']
    problems.extend('%s did not answer: %s' % item
                    for item in unanswered.items())
    for section in sections:
        if section == 'replication':
            report[section] = {kind: replication_view(hosts, kind, now)
                               for kind in REPLICATORS}
        elif section == 'updater':
            report[section] = updater_view(hosts)
        elif section == 'sync':
            report[section] = sync_view(hosts)
        elif section == 'md5':
            view = report[section] = md5_view(hosts, local_md5 or {})
            problems.extend('%s: ring differs: %s' % (label, ', '.join(
                node['differ'])) for label, node in view['nodes'].items()
                if node['differ'])
        elif section == 'quarantined':
            report[section] = quarantined_view(hosts)
        elif section == 'disk':
            view = report[section] = disk_view(hosts)
            problems.extend('device %s is not usable (unmounted)' % where
                            for where in view['unmounted'])
    return report


# -- the text view ------------------------------------------------------------

def _age(seconds):
    if seconds is None:
        return '-'
    seconds = float(seconds)
    if seconds < 120:
        return '%.0fs' % seconds
    if seconds < 7200:
        return '%.1fm' % (seconds / 60)
    return '%.1fh' % (seconds / 3600)


def _seconds(value):
    return '-' if value is None else '%.1fs' % float(value)


def _spread(stats, unit=''):
    if not stats:
        return 'no data'
    return 'low %s%s, high %s%s, avg %s%s' % (
        _num(stats['min']), unit, _num(stats['max']), unit,
        _num(stats['avg']), unit)


def _num(value):
    if isinstance(value, float) and not value.is_integer():
        return '%.1f' % value
    return '%d' % value


def _table(header, rows):
    rows = [[str('-' if c is None else c) for c in row] for row in rows]
    widths = [max(len(cell) for cell in column)
              for column in zip(header, *rows, strict=True)]
    return ['  '.join(cell.ljust(w) for cell, w in zip(
        line, widths, strict=True)).rstrip() for line in [header] + rows]


def format_text(report):
    """The report as ``swift-recon`` prints it: a summary line per
    figure, then a table per node."""
    hosts = report['hosts']
    lines = ['%d/%d hosts answered' % (hosts['answered'], hosts['total'])]
    lines.extend('  not answering: %s: %s' % item
                 for item in hosts['unanswered'].items())
    for kind, view in (report.get('replication') or {}).items():
        lines.append('')
        lines.append('[%s] %d/%d hosts reported a pass' % (
            kind, view['reported'], hosts['answered']))
        if not view['reported']:
            continue
        lines.append('  oldest completion: %s ago (%s)' % (
            _age(view['oldest']['age']), view['oldest']['node']))
        lines.append('  newest completion: %s ago (%s)' % (
            _age(view['newest']['age']), view['newest']['node']))
        lines.append('  pass duration: %s' % _spread(view['duration'],
                                                      's'))
        lines.append('  failed items: %d' % view['failed'])
        lines.extend('  ' + line for line in _table(
            ['NODE', 'PASS', 'MODE', 'DONE', 'FAILED', 'DURATION', 'AGE'],
            [[label, r['pass'], r['mode'], '%s/%s' % (r['done'],
                                                       r['total']),
              r['failed'], _seconds(r['duration']), _age(r['age'])]
             for label, r in view['nodes'].items() if r]))
    if 'updater' in report:
        view = report['updater']
        lines.append('')
        lines.append('[object-updater] async pendings: %s; oldest %s; '
                     'last sweeps: %d sent, %d failed' % (
                         _spread(view['async_pending']),
                         _age(view['oldest_async_age']),
                         view['successes'], view['failures']))
        lines.extend('  ' + line for line in _table(
            ['NODE', 'SWEEP', 'SENT', 'FAILED', 'LEFT', 'ASYNC', 'OLDEST'],
            [[label, r['sweeps'], r['successes'], r['failures'], r['left'],
              r['async_pending'], _age(r['oldest_async_age'])]
             for label, r in view['nodes'].items()]))
    if 'sync' in report:
        view = report['sync']
        lines.append('')
        reported = {label: r for label, r in view['nodes'].items() if r}
        lines.append('[container-sync] %d/%d hosts reported a pass: %d '
                     'containers, %d rows behind, %d failing, oldest '
                     'unsynced %s' % (
                         len(reported), hosts['answered'],
                         view['containers'], view['rows_behind'],
                         view['failing'], _age(view['oldest_age'])))
        if reported:
            lines.extend('  ' + line for line in _table(
                ['NODE', 'CONTAINERS', 'BEHIND', 'FAILING', 'OLDEST',
                 'ERROR'],
                [[label, r['containers'], r['rows_behind'], r['failing'],
                  _age(r['oldest_age']), '; '.join(r['last_errors'])[:60]]
                 for label, r in reported.items()]))
    if 'md5' in report:
        view = report['md5']
        lines.append('')
        lines.append('[ring md5] %d/%d hosts matched, %d error(s)' % (
            view['matched'], view['hosts'], view['errors']))
        lines.extend('  %s: differs: %s' % (label, ', '.join(n['differ']))
                     for label, n in view['nodes'].items() if n['differ'])
    if 'quarantined' in report:
        view = report['quarantined']
        lines.append('')
        for kind in ('objects', 'containers', 'accounts', 'async_pending'):
            lines.append('[quarantined] %s: %s, total %s' % (
                kind, _spread(view[kind]),
                _num(view[kind]['total']) if view[kind] else 0))
    if 'disk' in report:
        view = report['disk']
        lines.append('')
        lines.append('[disk usage] %s; lowest %s, highest %s; %d '
                     'device(s) unmounted' % (
                         _spread(view['usage'], '%'), view['lowest'] or '-',
                         view['highest'] or '-', len(view['unmounted'])))
        lines.extend('  unmounted: %s' % where
                     for where in view['unmounted'])
    if report['problems']:
        lines.append('')
        lines.extend('problem: %s' % p for p in report['problems'])
    return '\n'.join(lines)
