#!/usr/bin/env python3
"""Container sync throughput between two local clusters, against a copier.

    tools/bench_container_sync.py [--objects 20000] [--size 1024]
                                  [--takeover] [--row-concurrency 8]
                                  [--copy-objects N] [--part-power 6]
                                  [--workdir DIR] [--keep]

1. Brings up two ``coordsync-local-cluster`` s, A (source) and B
   (destination), 3 nodes of one device each, embedded coordination
   backend, free base ports (``free_base_port``), ``--replicate-every 0``
   and ``--set server.workers=container-sync`` (the container sync
   daemon is the only background worker), ``container-sync.run_pause``
   0.5 s, ``row_concurrency`` ``--row-concurrency``, a shared realms
   file (realm ``bench``, clusters ``a`` and ``b``) and an audit log per
   cluster (``audit-a.log``: who held the container's lock when).
2. Through the APIs: B's container ``dst`` with ``X-Container-Sync-Key``
   and ``copy`` (the copier's), A's container ``src``.
3. Fills ``src`` behind the servers' backs (the API would take ~60
   PUT/s): ``--objects`` objects of ``--size`` bytes (distinct bodies,
   distinct timestamps) written on each of their three primaries' disks
   (sealed, then published one batch per partition) and their rows
   merged into the three replicas of the container's database. Each
   replica is also given the others' sync points, as a container
   replicator pass would leave them: the daemon's "level" step finds
   nothing to pull.
4. Sets ``X-Container-Sync-To: //bench/b/<account>/dst`` and the key on
   ``src`` (API POST) and times from there until a HEAD of ``dst``
   through B's proxy (every 0.5 s) says ``X-Container-Object-Count``
   equals the number of objects.
   With ``--takeover``: once half the rows are at the destination, the
   node holding ``src``'s lock (the one with a ``start`` and no ``end``
   in the audit log) is SIGKILLed (``coordsync-local-cluster stop NODE
   --kill``) and stays down; the time from the kill to the new holder's
   first item start (audit log) and to its first PUT at the destination
   (B's access log) are printed.
5. The reference, in the same run: a naive copier outside coordsync
   lists ``src`` through A's API, then for each of the first
   ``--copy-objects`` objects (default: all, at most 2,000: its rate is
   steady long before) GETs it from A and PUTs it
   to B's ``copy`` container, ``--row-concurrency`` at once (urllib3,
   one keep-alive pool per cluster), timed from the first listing
   request to the last PUT.
6. Prints rows, seconds and rows/s of sync and copier, their ratio, and
   what reached B from the sync user ``container-sync:BENCH`` (from B's
   proxy access log): successful PUTs per synced row (target 1.00;
   Swift's design sends a row up to 1 + R times), DELETEs, other
   requests; and the daemon's own figures, summed from the source
   nodes' pass lines.

Both clusters are stopped at the end unless ``--keep``; a temporary
working directory is removed unless ``--keep`` or ``--workdir``. It
asserts nothing about time; it exits 1 if the destination count stops
growing for ``--stall`` seconds before it reaches the source's.
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import bench_api
import bench_repair
import urllib3

from coordsync.cmd import local_cluster

REALM = 'bench'
SYNC_KEY = 'bench-sync-key'
SYNC_USER = 'container-sync:%s' % REALM.upper()
SOURCE, DEST, COPY = 'src', 'dst', 'copy'
CLUSTERS = ('a', 'b')
POLL = 0.5
# NOTE: the copier's rate is steady after a few hundred objects; copying
# all 20,000 would double the run for no better reference.
COPY_DEFAULT_MAX = 2000
ACCESS_LINE = re.compile(
    r'coordsync\.proxy\.access \[[^\]]*\] (?P<arrived>[\d.]+) '
    r'(?P<method>\S+) "(?P<path>[^"]*)" (?P<status>\d+) \S+ \S+ '
    r'(?P<user>\S+) ')
PASS_LINE = re.compile(
    r'container-sync: \d+/\d+ .*?; \d+ containers; \d+ rows sent '
    r'\((?P<puts>\d+) PUT, (?P<deletes>\d+) DELETE, \d+ bytes\), '
    r'(?P<present>\d+) already there, (?P<superseded>\d+) superseded, '
    r'(?P<gone>\d+) gone, (?P<late>\d+) late, (?P<retried>\d+) retried, '
    r'(?P<failed>\d+) failed; (?P<checks>\d+) checks')
DAEMON_FIGURES = ('puts', 'deletes', 'present', 'superseded', 'gone',
                  'late', 'retried', 'failed', 'checks')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--objects', type=int, default=20000, metavar='N',
                        help='objects in the synced container (default: '
                        '%(default)s)')
    parser.add_argument('--size', type=int, default=1024, metavar='BYTES',
                        help='object size (default: %(default)s)')
    parser.add_argument('--takeover', action='store_true',
                        help='SIGKILL the lock holder once half the rows '
                        'are at the destination')
    parser.add_argument('--row-concurrency', type=int, default=8,
                        metavar='N', help='container-sync.row_concurrency '
                        'and the copier\'s concurrency (default: '
                        '%(default)s)')
    parser.add_argument('--copy-objects', type=int, metavar='N',
                        help='objects the copier copies (default: '
                        '--objects, at most %d)' % COPY_DEFAULT_MAX)
    parser.add_argument('--part-power', type=int, default=6,
                        choices=range(1, 11), metavar='P',
                        help='of both clusters (default: %(default)s)')
    parser.add_argument('--stall', type=float, default=300.0,
                        metavar='SECONDS', help='give up when the '
                        'destination count does not grow for this long '
                        '(default: %(default)s)')
    parser.add_argument('--workdir', help='new directory for both '
                        'clusters (default: a temporary one)')
    parser.add_argument('--keep', action='store_true',
                        help='leave both clusters running (and the '
                        'directory)')
    args = parser.parse_args(argv)
    if args.objects < 2 or args.size < 16 or args.row_concurrency < 1:
        parser.error('--objects must be at least 2, --size at least 16, '
                     '--row-concurrency at least 1')
    if args.copy_objects is None:
        args.copy_objects = min(args.objects, COPY_DEFAULT_MAX)
    if not 0 < args.copy_objects <= args.objects:
        parser.error('--copy-objects must be between 1 and --objects')
    return args


def ratio(value, reference):
    return value / reference if reference else float('nan')


# -- the clusters -------------------------------------------------------------

def base_ports():
    """Two base ports whose clusters (3 nodes and a proxy) do not
    overlap."""
    first = local_cluster.free_base_port(3)
    while True:
        second = local_cluster.free_base_port(3)
        if abs(second - first) > 4:
            return first, second


def write_realms(path, ports):
    lines = ['[%s]' % REALM, 'key = %s' % hashlib.md5(
        path.encode('utf-8')).hexdigest()]
    for name, port in zip(CLUSTERS, ports, strict=True):
        lines.append('cluster_%s = http://127.0.0.1:%d/v1/' % (name,
                                                              port + 3))
    with open(path, 'w') as fh:
        fh.write('\n'.join(lines) + '\n')


def up_args(workdir, name, base, args):
    return ['up', '--nodes', '3', '--devices', '1', '--part-power',
            str(args.part_power), '--base-port', str(base),
            '--replicate-every', '0',
            '--set', 'server.workers=container-sync',
            '--set', 'container-sync.run_pause=0.5',
            '--set', 'container-sync.row_concurrency=%d'
            % args.row_concurrency,
            '--set', 'container-sync.audit_log=%s'
            % os.path.join(workdir, 'audit-%s.log' % name),
            '--set', 'DEFAULT.container_sync_realms_file=%s'
            % os.path.join(workdir, 'realms.conf')]


class Api:
    """One cluster's Swift API as the test user (urllib3, keep-alive)."""

    def __init__(self, workdir, concurrency):
        self.workdir = workdir
        self.meta = local_cluster.load(workdir)
        host, port, path, self.token = bench_api.authenticate(
            local_cluster.proxy_auth_url(self.meta))
        self.account_path = path.rstrip('/')
        self.account = urllib.parse.unquote(self.account_path.rsplit(
            '/', 1)[-1])
        self.origin = 'http://%s:%d' % (host, port)
        self.pool = urllib3.HTTPConnectionPool(
            host, port, maxsize=concurrency + 2, block=True, retries=False,
            timeout=urllib3.Timeout(connect=10, read=120))

    def url(self, container, name=None):
        path = '%s/%s' % (self.account_path, container)
        if name is not None:
            path += '/' + urllib.parse.quote(name)
        return path

    def request(self, method, path, body=None, headers=None, fields=None):
        headers = dict(headers or {}, **{'X-Auth-Token': self.token})
        if fields:
            path += '?' + urllib.parse.urlencode(fields)
        return self.pool.urlopen(method, path, body=body, headers=headers,
                                 preload_content=True)

    def count(self, container):
        resp = self.request('HEAD', self.url(container))
        if resp.status // 100 != 2:
            return None
        return int(resp.headers.get('X-Container-Object-Count', -1))

    def checked(self, method, path, expected, **kwargs):
        resp = self.request(method, path, **kwargs)
        if resp.status not in expected:
            raise SystemExit('%s %s%s: %d %s' % (
                method, self.origin, path, resp.status, resp.data[:200]))
        return resp


# -- filling the source container on disk -------------------------------------

def object_names(count):
    return ['obj-%06d' % i for i in range(count)]


def timestamps(count):
    """``count`` distinct increasing timestamps (10 us apart) ending
    now."""
    from coordsync.common.timestamp import Timestamp
    last = int(time.time() * 100000)
    return [Timestamp('%d.%05d' % divmod(last - count + i, 100000)).normal
            for i in range(1, count + 1)]


def fill_objects(workdir, account, names, whens, size):
    """Every object on its three primaries' disks; returns the ETags."""
    from coordsync.common import ring as ring_mod
    from coordsync.obj import diskfile
    meta = local_cluster.load(workdir)
    prefix, suffix = meta['hash_path_prefix'], meta['hash_path_suffix']
    ring = ring_mod.Ring(os.path.join(workdir, 'object.ring.json'),
                         prefix, suffix)
    managers = {}
    template = os.urandom(size)
    bodies, etags = {}, {}
    groups = collections.defaultdict(list)
    for index, name in enumerate(names):
        head = b'%016d' % index
        bodies[name] = head + template[len(head):]
        etags[name] = hashlib.md5(bodies[name]).hexdigest()
        part = ring.get_part(account, SOURCE, name)
        for dev in ring.get_part_nodes(part):
            groups[(dev['node'], dev['device'], part)].append(
                (name, whens[index]))
    for node in {key[0] for key in groups}:
        managers[node] = diskfile.DiskFileManager(
            os.path.join(workdir, node, 'devices'), hash_prefix=prefix,
            hash_suffix=suffix)

    def publish(key):
        node, device, part = key
        manager = managers[node]
        sealed = []
        for name, when in groups[key]:
            df = manager.diskfile(device, part, account, SOURCE, name)
            with df.writer({'X-Timestamp': when,
                            'Content-Type': 'application/octet-stream'}
                           ) as writer:
                writer.write(bodies[name])
                sealed.append(writer.seal())
        results = manager.publish_batch(device, part, sealed)
        return sum(1 for result in results if result is None)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        written = sum(pool.map(publish, sorted(groups)))
    return etags, written, len(groups)


def fill_rows(workdir, account, names, whens, etags, size):
    """Every object's row in every replica of the container's database;
    then each replica is given the others' sync points."""
    from coordsync.container import backend
    replicas = bench_api.replica_paths(workdir, account, SOURCE)
    infos = []
    for label, path in replicas:
        broker = backend.ContainerBroker(path, account=account,
                                         container=SOURCE)
        try:
            policy = broker.get_info()['storage_policy_index']
            changed = broker.merge_items(
                {'name': name, 'created_at': when, 'size': size,
                 'content_type': 'application/octet-stream',
                 'etag': etags[name], 'deleted': 0,
                 'storage_policy_index': policy}
                for name, when in zip(names, whens, strict=True))
            info = broker.get_info()
            infos.append((label, path, info['id'], broker.get_max_row(),
                          changed, info['object_count']))
        finally:
            broker.close()
    for _label, path, own_id, _max_row, _changed, _count in infos:
        broker = backend.ContainerBroker(path)
        try:
            broker.merge_syncs([{'remote_id': other[2],
                                 'sync_point': other[3]}
                                for other in infos if other[2] != own_id])
        finally:
            broker.close()
    return [(label, changed, count)
            for label, _p, _i, _m, changed, count in infos]


# -- watching the sync --------------------------------------------------------

def audit_events(path, item):
    """``[(time, node, event)]`` of ``item`` in an audit log."""
    events = []
    try:
        with open(path) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 4 and fields[2] == item:
                    events.append((float(fields[3]), fields[0], fields[1]))
    except FileNotFoundError:
        pass
    return sorted(events)


def holder(path, item, dead=None):
    """The node working on ``item`` now (a start without its end; a
    killed node, ``dead``, never writes its end)."""
    last = {}
    for _when, node, event in audit_events(path, item):
        if node != dead:
            last[node] = event
    working = [node for node, event in last.items() if event == 'start']
    return working[0] if len(working) == 1 else None


def access_lines(path):
    """The parsed access lines of a proxy log."""
    lines = []
    with open(path, errors='replace') as fh:
        for line in fh:
            found = ACCESS_LINE.search(line)
            if found:
                lines.append(found.groupdict())
    return lines


def daemon_figures(workdir):
    """``{node: Counter}`` of the daemon's figures summed over the pass
    lines of each node's log (a killed node's last pass is missing)."""
    figures = {}
    for node in ('n1', 'n2', 'n3'):
        counter = collections.Counter()
        path = os.path.join(workdir, node, 'server.log')
        with open(path, errors='replace') as fh:
            for line in fh:
                found = PASS_LINE.search(line)
                if found:
                    counter['passes'] += 1
                    for key in DAEMON_FIGURES:
                        counter[key] += int(found.group(key))
        figures[node] = counter
    return figures


def watch(src_api, dst_api, workdir_a, args, item):
    """Poll the destination count until it equals the source's; with
    ``--takeover`` kill the holder half-way. Returns (seconds or None,
    kill dict or None, start wall time)."""
    audit = os.path.join(os.path.dirname(workdir_a), 'audit-a.log')
    started_wall = time.time()
    started = time.monotonic()
    src_api.checked('POST', src_api.url(SOURCE), (204,), headers={
        'X-Container-Sync-To': '//%s/b/%s/%s' % (REALM, dst_api.account,
                                                 DEST),
        'X-Container-Sync-Key': SYNC_KEY})
    kill = None
    last_count, last_change, last_print = 0, started, started
    while True:
        count = dst_api.count(DEST) or 0
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        if count >= args.objects:
            return now - started, kill, started_wall
        if now - last_change > args.stall:
            print('destination stuck at %d of %d rows for %.0fs: giving '
                  'up' % (count, args.objects, args.stall), flush=True)
            return None, kill, started_wall
        if now - last_print >= 10:
            last_print = now
            print('  %6.1fs: %d of %d rows at the destination (holder %s)'
                  % (now - started, count, args.objects,
                     holder(audit, item, kill and kill['node']) or '-'),
                  flush=True)
        if args.takeover and kill is None and count >= args.objects / 2:
            node = holder(audit, item)
            if node is not None:
                kill = {'node': node, 'rows': count,
                        'after': now - started}
                bench_repair.local_cluster(workdir_a, 'stop', node,
                                           '--kill')
                kill['wall'] = time.time()
                print('  %6.1fs: %d rows at the destination: SIGKILLed %s,'
                      ' the lock holder' % (now - started, count, node),
                      flush=True)
        time.sleep(POLL)


# -- the reference ------------------------------------------------------------

def copier(src_api, dst_api, count, concurrency):
    """List the source, GET each object and PUT it to ``copy``;
    returns (seconds, listing seconds, copied, errors)."""
    started = time.monotonic()
    names, marker = [], ''
    while len(names) < count:
        fields = {'format': 'json', 'limit': min(10000, count - len(names))}
        if marker:
            fields['marker'] = marker
        page = json.loads(src_api.checked(
            'GET', src_api.url(SOURCE), (200,), fields=fields).data)
        if not page:
            break
        names.extend(entry['name'] for entry in page)
        marker = page[-1]['name']
    listed = time.monotonic() - started

    def copy(name):
        got = src_api.request('GET', src_api.url(SOURCE, name))
        if got.status != 200:
            return 'GET %d' % got.status
        put = dst_api.request('PUT', dst_api.url(COPY, name), body=got.data,
                              headers={
                                  'Content-Type': got.headers.get(
                                      'Content-Type',
                                      'application/octet-stream'),
                                  'ETag': got.headers.get('ETag', '')})
        return None if put.status == 201 else 'PUT %d' % put.status

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(copy, names))
    errors = [o for o in outcomes if o is not None]
    return (time.monotonic() - started, listed,
            len(outcomes) - len(errors), errors)


# -- the report ---------------------------------------------------------------

def sync_requests(workdir_b, dst_api, since):
    """What the sync user sent to B's proxy since ``since`` (wall)."""
    prefix = dst_api.url(DEST)
    lines = [line for line in access_lines(os.path.join(
        workdir_b, local_cluster.PROXY_DIR, 'proxy.log'))
        if line['user'] == SYNC_USER and float(line['arrived']) >= since]
    by_kind = collections.Counter(
        (line['method'], line['status']) for line in lines
        if line['path'].split('?')[0].startswith(prefix + '/'))
    on_container = collections.Counter(
        (line['method'], line['status']) for line in lines
        if line['path'].split('?')[0] == prefix)
    return lines, by_kind, on_container


def kinds_text(counter):
    return ', '.join('%s %s: %d' % (method, status, n)
                     for (method, status), n in sorted(counter.items())
                     ) or 'none'


def report(args, synced, copied, requests, kill, figures, audit, item):
    seconds = synced
    copy_seconds, listed, copied_count, errors = copied
    lines, by_kind, on_container = requests
    sync_rate = ratio(args.objects, seconds)
    copy_rate = ratio(copied_count, copy_seconds)
    puts_ok = sum(n for (method, status), n in by_kind.items()
                  if method == 'PUT' and status in ('201', '202'))
    puts_all = sum(n for (method, _s), n in by_kind.items()
                   if method == 'PUT')
    deletes = sum(n for (method, _s), n in by_kind.items()
                  if method == 'DELETE')
    print()
    print('== results (%d objects of %d B, row_concurrency %d%s)' % (
        args.objects, args.size, args.row_concurrency,
        ', takeover' if args.takeover else ''))
    print('sync:   %7d rows    in %8.2fs  %8.1f rows/s  (POST of '
          'X-Container-Sync-To to destination count = source)' % (
              args.objects, seconds, sync_rate))
    print('copier: %7d objects in %8.2fs  %8.1f rows/s  (GET from A, PUT '
          'to B, %d at once; listing %.2fs%s)' % (
              copied_count, copy_seconds, copy_rate, args.row_concurrency,
              listed, '; %d errors, first: %s' % (len(errors), errors[0])
              if errors else ''))
    print('ratio sync/copier (rows/s): %.2f' % ratio(sync_rate, copy_rate))
    print('bodies per synced row: %.3f  (%d PUT answered 201/202 to %s / '
          '%d rows; PUT attempts %d: %.3f per row)' % (
              ratio(puts_ok, args.objects), puts_ok, SYNC_USER,
              args.objects, puts_all, ratio(puts_all, args.objects)))
    print('DELETEs: %d' % deletes)
    print('sync requests to B objects: %s' % kinds_text(by_kind))
    print('sync requests to B container: %s' % kinds_text(on_container))
    print('daemon figures (summed pass lines of A\'s nodes): %s' % '; '.join(
        '%s: %s' % (node, ', '.join('%s %d' % (key, figure[key])
                                    for key in ('passes',)
                                    + DAEMON_FIGURES))
        for node, figure in sorted(figures.items())))
    if kill is not None:
        events = [e for e in audit_events(audit, item)
                  if e[0] > kill['wall'] and e[1] != kill['node']
                  and e[2] == 'start']
        new_puts = sorted(float(line['arrived']) for line in lines
                          if line['method'] == 'PUT'
                          and float(line['arrived']) > kill['wall'])
        print('takeover: %s SIGKILLed %.1fs after the start with %d rows '
              '(%.0f%%) at the destination' % (
                  kill['node'], kill['after'], kill['rows'],
                  100.0 * kill['rows'] / args.objects))
        print('takeover: new holder %s started the container %.2fs after '
              'the kill; first PUT after the kill arrived at B %.2fs after '
              'it' % (events[0][1] if events else '(none)',
                      events[0][0] - kill['wall'] if events
                      else float('nan'),
                      new_puts[0] - kill['wall'] if new_puts
                      else float('nan')))


# -- the run ------------------------------------------------------------------

def bench(workdir, args):
    dirs = {name: os.path.join(workdir, name) for name in CLUSTERS}
    for path in dirs.values():
        if os.path.exists(os.path.join(path, local_cluster.META)):
            raise SystemExit('%s holds a cluster already: give a new '
                             '--workdir' % path)
    ports = base_ports()
    write_realms(os.path.join(workdir, 'realms.conf'), ports)
    began = time.monotonic()
    for (name, path), base in zip(dirs.items(), ports, strict=True):
        up = up_args(workdir, name, base, args)
        print('bringing up %s: coordsync-local-cluster --workdir %s %s' % (
            name, path, ' '.join(up)), flush=True)
        bench_repair.local_cluster(path, *up)
    print('both up in %.1fs' % (time.monotonic() - began), flush=True)

    src_api = Api(dirs['a'], args.row_concurrency)
    dst_api = Api(dirs['b'], args.row_concurrency)
    dst_api.checked('PUT', dst_api.url(DEST), (201, 202), headers={
        'X-Container-Sync-Key': SYNC_KEY})
    dst_api.checked('PUT', dst_api.url(COPY), (201, 202))
    src_api.checked('PUT', src_api.url(SOURCE), (201, 202))

    names = object_names(args.objects)
    whens = timestamps(args.objects)
    started = time.monotonic()
    etags, written, batches = fill_objects(dirs['a'], src_api.account,
                                           names, whens, args.size)
    objects_took = time.monotonic() - started
    started = time.monotonic()
    rows = fill_rows(dirs['a'], src_api.account, names, whens, etags,
                     args.size)
    print('filled %s: %d object files (%d objects x 3) in %d partition '
          'batches in %.1fs; rows in %.1fs: %s' % (
              SOURCE, written, args.objects, batches, objects_took,
              time.monotonic() - started, ', '.join(
                  '%s %d merged (count %d)' % row for row in rows)),
          flush=True)
    count = src_api.count(SOURCE)
    print('HEAD %s through A: X-Container-Object-Count %s' % (SOURCE,
                                                            count))
    if count != args.objects:
        raise SystemExit('the source container holds %s objects, not %d'
                         % (count, args.objects))

    item = urllib.parse.quote('%s/%s' % (src_api.account, SOURCE), safe='')
    print('syncing %s to //%s/b/%s/%s%s; load average %s' % (
        SOURCE, REALM, dst_api.account, DEST,
        ' (the lock holder is killed half-way)' if args.takeover else '',
        ' '.join('%.2f' % load for load in os.getloadavg())), flush=True)
    seconds, kill, since = watch(src_api, dst_api, dirs['a'], args, item)
    if seconds is None:
        return 1
    print('synced: destination count %d after %.2fs; load average %s' % (
        args.objects, seconds,
        ' '.join('%.2f' % load for load in os.getloadavg())), flush=True)

    print('copier: %d objects, %d at once, A %s -> B %s' % (
        args.copy_objects, args.row_concurrency, SOURCE, COPY), flush=True)
    copied = copier(src_api, dst_api, args.copy_objects,
                    args.row_concurrency)
    print('copied: destination %s count %s; load average %s' % (
        COPY, dst_api.count(COPY),
        ' '.join('%.2f' % load for load in os.getloadavg())), flush=True)
    # NOTE: read after the copier: a late duplicate PUT would show too.
    requests = sync_requests(dirs['b'], dst_api, since)
    report(args, seconds, copied, requests, kill,
           daemon_figures(dirs['a']),
           os.path.join(workdir, 'audit-a.log'), item)
    return 0


def main(argv=None):
    args = bench_repair.announce(argv, parse_args, __file__)
    began = time.monotonic()
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='bench-container-sync-'))
    os.makedirs(workdir, exist_ok=True)
    status = 1
    try:
        status = bench(workdir, args)
    finally:
        if args.keep:
            print('kept: %s (coordsync-local-cluster --workdir %s/a down; '
                  'same for b)' % (workdir, workdir))
        else:
            for name in CLUSTERS:
                path = os.path.join(workdir, name)
                if os.path.exists(os.path.join(path, local_cluster.META)):
                    subprocess.run(
                        [sys.executable, '-m', 'coordsync.cmd.local_cluster',
                         '--workdir', path, 'down'],
                        stdout=subprocess.DEVNULL)
            if temporary:
                shutil.rmtree(workdir, ignore_errors=True)
    print('\ntotal %.1fs; load average %s' % (
        time.monotonic() - began,
        ' '.join('%.2f' % load for load in os.getloadavg())))
    return status


if __name__ == '__main__':
    sys.exit(main())
