#!/usr/bin/env python3
"""Swift API throughput of a local cluster, as a Swift client sees it.

    tools/bench_api.py [--workdir DIR] [--objects 2000] [--size 1024]
                       [--concurrency 16] [--gets 2000]
                       [--list-objects 100000] [--runs 5]

Without ``--workdir`` (or with one holding no running cluster) it brings
up a 3-node ``coordsync-local-cluster`` (``--replicate-every 0``: no
background worker runs in the servers; with its ``coordsync-proxy``) and
stops it at the end; a running cluster is used as it is and left
running. It authenticates as the cluster's test user, then measures,
through the proxy (plain HTTP/1.1 keep-alive connections, one per client
thread):

1. small-object PUT: ``--objects`` objects of ``--size`` bytes into one
   container, ``--concurrency`` at a time: objects/s, p50/p99;
2. small-object GET: ``--gets`` of them, bodies checked: objects/s,
   p50/p99;
3. listing of a second container of ``--list-objects`` rows. PUTting
   that many objects through the API would take most of an hour, so the
   container is created through the API (every replica's database, its
   metadata and its account row, as any container) and its object rows
   are then written straight into each replica's database on the nodes'
   disks, with :meth:`ContainerBroker.merge_items` (one transaction per
   replica; the databases' triggers keep the counts and hashes; every
   replica gets the same rows, so they stay level). Names: 90% ``obj/%06d``
   and 10% ``dir/%03d/%06d`` (100 "subdirectories"). Through the API it
   times the first page (``limit`` 10,000, JSON) ``--runs`` times, a full
   walk by marker (pages of 10,000), and three delimiter listings; each
   beside the same listing read straight from the database file the
   proxy reads (its first primary) with
   :meth:`ContainerBroker.list_objects_iter` in this process: the floor.

It prints the exact command line, every figure and the ratios to the
references of the same run. It asserts nothing about time.
"""

import argparse
import hashlib
import http.client
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import bench_repair

from coordsync.cmd import local_cluster

LISTING_LIMIT = 10000
# NOTE: one row in ten goes under dir/<nnn>/, spread over this many.
NESTED_SHARE = 10
NESTED_DIRS = 100


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', help='local cluster directory to use '
                        '(brought up if not running); default: a new '
                        'temporary one')
    parser.add_argument('--objects', type=int, default=2000, metavar='N',
                        help='objects PUT through the API (default: '
                        '%(default)s)')
    parser.add_argument('--size', type=int, default=1024, metavar='BYTES',
                        help='object size (default: %(default)s)')
    parser.add_argument('--gets', type=int, default=2000, metavar='N',
                        help='objects read back (default: %(default)s)')
    parser.add_argument('--concurrency', type=int, default=16, metavar='N',
                        help='requests in flight (default: %(default)s)')
    parser.add_argument('--list-objects', type=int, default=100000,
                        metavar='N', help='object rows written straight '
                        'into the listed container\'s databases '
                        '(default: %(default)s)')
    parser.add_argument('--runs', '--first-page-runs', type=int, default=5,
                        metavar='N', help='repetitions of the first page '
                        'and of each delimiter listing (default: '
                        '%(default)s)')
    parser.add_argument('--part-power', type=int, default=8,
                        help='of a cluster this tool creates')
    args = parser.parse_args(argv)
    if args.objects < 1 or args.concurrency < 1 or args.runs < 1 \
            or args.list_objects < 0 or args.gets < 0:
        parser.error('--objects, --concurrency and --runs must be at '
                     'least 1, --list-objects and --gets at least 0')
    return args


def _cluster(workdir, *args):
    subprocess.run([sys.executable, '-m', 'coordsync.cmd.local_cluster',
                    '--workdir', workdir, *args], check=True,
                   stdout=subprocess.DEVNULL)


class Client:
    """One keep-alive connection to the proxy, with the token."""

    def __init__(self, host, port, token):
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.token = token

    def request(self, method, path, body=None, query=''):
        headers = {'X-Auth-Token': self.token}
        if body is not None:
            headers['Content-Length'] = str(len(body))
        self.conn.request(method, path + ('?' + query if query else ''),
                          body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def head(self, path):
        self.conn.request('HEAD', path, headers={'X-Auth-Token': self.token})
        resp = self.conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())


def authenticate(auth_url):
    parsed = urllib.parse.urlsplit(auth_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                      timeout=30)
    conn.request('GET', parsed.path, headers={
        'X-Auth-User': local_cluster.TEST_USER,
        'X-Auth-Key': local_cluster.TEST_KEY})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit('auth failed: %d' % resp.status)
    storage = urllib.parse.urlsplit(resp.getheader('X-Storage-Url'))
    return (storage.hostname, storage.port, storage.path,
            resp.getheader('X-Auth-Token'))


def run_parallel(items, concurrency, make_client, work):
    """``work(client, item)`` over items with ``concurrency`` threads;
    returns (seconds, latencies, errors)."""
    latencies, errors = [], []
    lock = threading.Lock()
    pending = iter(items)

    def loop():
        client = make_client()
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            started = time.monotonic()
            try:
                work(client, item)
            except Exception as err:  # noqa: BLE001 - counted, printed
                with lock:
                    errors.append(repr(err))
                client = make_client()
                continue
            with lock:
                latencies.append(time.monotonic() - started)
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started, latencies, errors


def percentile(values, pct):
    if not values:
        return float('nan')
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def ratio(value, reference):
    return value / reference if reference else float('nan')


def report(label, count, seconds, latencies, errors, unit='req'):
    print('%-26s %7d %s in %7.2fs  %9.1f %s/s  p50 %8.1f ms  p99 %8.1f ms'
          '%s' % (label, count, unit, seconds, count / seconds if seconds
                  else 0.0, unit, percentile(latencies, 50) * 1000,
                  percentile(latencies, 99) * 1000,
                  '  (%d errors, first: %s)' % (len(errors), errors[0])
                  if errors else ''), flush=True)


# -- the listed container, filled on disk ------------------------------------

def listing_names(count):
    """``count`` names: 90% ``obj/%06d``, 10% ``dir/%03d/%06d``."""
    nested = count // NESTED_SHARE
    return (['dir/%03d/%06d' % (i % NESTED_DIRS, i) for i in range(nested)]
            + ['obj/%06d' % i for i in range(count - nested)])


def replica_paths(workdir, account, container):
    """The container's database path on each primary, in ring order
    (the order the proxy reads them in)."""
    from coordsync.common import ring as ring_mod
    from coordsync.container import backend
    meta = local_cluster.load(workdir)
    prefix, suffix = meta['hash_path_prefix'], meta['hash_path_suffix']
    ring = ring_mod.Ring(os.path.join(workdir, local_cluster.CONTAINER_RING),
                         prefix, suffix)
    part, devs = ring.get_nodes(account, container)
    return [('%s/%s' % (d['node'], d['device']), backend.container_db_path(
        os.path.join(workdir, d['node'], 'devices', d['device']), part,
        account, container, prefix, suffix)) for d in devs]


def fill(replicas, account, container, names, size, etag):
    """Every name as an object row in every replica's database, one
    ``merge_items`` transaction per replica; the seconds it took."""
    from coordsync.common.timestamp import Timestamp
    from coordsync.container import backend
    now = Timestamp.now().normal
    started = time.monotonic()
    for label, path in replicas:
        broker = backend.ContainerBroker(path, account=account,
                                         container=container)
        try:
            if not broker.exists():
                print('  %s: no database at %s: not filled' % (label, path))
                continue
            policy = broker.get_info()['storage_policy_index']
            t0 = time.monotonic()
            changed = broker.merge_items(
                {'name': name, 'created_at': now, 'size': size,
                 'content_type': 'application/octet-stream', 'etag': etag,
                 'deleted': 0, 'storage_policy_index': policy}
                for name in names)
            took = time.monotonic() - t0
            info = broker.get_info()
        finally:
            broker.close()
        print('  %s: %d rows merged in %.2fs (%.0f rows/s); object_count '
              '%d, hash %s; %s' % (label, changed, took, ratio(changed, took),
                                   info['object_count'], info['hash'],
                                   path), flush=True)
    return time.monotonic() - started


def broker_walk(path, limit, prefix='', delimiter=None):
    """``(seconds, pages, rows, page latencies)`` of a marker walk with
    ``list_objects_iter`` (a fresh broker: its own connection)."""
    from coordsync.container import backend
    broker = backend.ContainerBroker(path)
    lat, rows, marker = [], 0, ''
    started = time.monotonic()
    try:
        while True:
            t0 = time.monotonic()
            page = broker.list_objects_iter(limit, marker, '', prefix,
                                            delimiter)
            lat.append(time.monotonic() - t0)
            if not page:
                break
            rows += len(page)
            marker = page[-1].get('name') or page[-1]['subdir']
    finally:
        broker.close()
    return time.monotonic() - started, len(lat), rows, lat


def broker_pages(path, runs, query):
    """Latencies of ``runs`` one-page listings straight from the
    database, and the last page's entry count."""
    from coordsync.container import backend
    broker = backend.ContainerBroker(path)
    lat, entries = [], 0
    try:
        for _ in range(runs):
            t0 = time.monotonic()
            entries = len(broker.list_objects_iter(
                query.get('limit', LISTING_LIMIT), '', '',
                query.get('prefix', ''), query.get('delimiter')))
            lat.append(time.monotonic() - t0)
    finally:
        broker.close()
    return lat, entries


def api_pages(client, base, runs, query):
    """Latencies (request to decoded JSON) of ``runs`` one-page listings
    through the proxy, the last page's entry count and status."""
    text = urllib.parse.urlencode(dict(query, format='json'))
    lat, entries, status = [], 0, None
    for _ in range(runs):
        t0 = time.monotonic()
        status, data = client.request('GET', base, query=text)
        entries = len(json.loads(data)) if status == 200 else 0
        lat.append(time.monotonic() - t0)
    return lat, entries, status


def api_walk(client, base):
    """``(seconds, pages, rows, page latencies, bad statuses)`` of a
    marker walk through the proxy (pages of LISTING_LIMIT)."""
    lat, rows, marker, bad = [], 0, '', []
    started = time.monotonic()
    while True:
        query = 'format=json&limit=%d' % LISTING_LIMIT
        if marker:
            query += '&marker=' + urllib.parse.quote(marker)
        t0 = time.monotonic()
        status, data = client.request('GET', base, query=query)
        page = json.loads(data) if status == 200 else []
        lat.append(time.monotonic() - t0)
        if status not in (200, 204):
            bad.append(status)
        if not page:
            break
        rows += len(page)
        marker = page[-1]['name']
    return time.monotonic() - started, len(lat), rows, lat, bad


def compare(label, api_lat, floor_lat, api_entries, floor_entries,
            status=200):
    print('%-26s API p50 %8.1f ms  p99 %8.1f ms | DB p50 %7.1f ms  p99 '
          '%7.1f ms | p50 ratio %6.1fx  (%d runs; entries API %d, DB %d%s)'
          % (label, percentile(api_lat, 50) * 1000,
             percentile(api_lat, 99) * 1000,
             percentile(floor_lat, 50) * 1000,
             percentile(floor_lat, 99) * 1000,
             ratio(percentile(api_lat, 50), percentile(floor_lat, 50)),
             len(api_lat), api_entries, floor_entries,
             '' if status == 200 else '; last status %s' % status),
          flush=True)


# -- the run ------------------------------------------------------------------

def bench(workdir, auth_url, args):
    host, port, account_path, token = authenticate(auth_url)
    account = urllib.parse.unquote(account_path.rstrip('/').rsplit('/')[-1])
    stamp = int(time.time())
    base = '%s/bench-%d' % (account_path, stamp)

    def make_client():
        return Client(host, port, token)
    status, _ = make_client().request('PUT', base)
    print('PUT container %s: %d' % (base, status))
    body = os.urandom(args.size)
    etag = hashlib.md5(body).hexdigest()
    names = ['obj-%08d' % i for i in range(args.objects)]

    print('\n== objects through the API (concurrency %d)' % args.concurrency)

    def put(client, name):
        status, _ = client.request('PUT', '%s/%s' % (base, name), body)
        if status != 201:
            raise RuntimeError('PUT %s: %d' % (name, status))
    seconds, lat, errors = run_parallel(names, args.concurrency,
                                        make_client, put)
    report('PUT %dB' % args.size, len(lat), seconds, lat, errors)
    put_rate = ratio(len(lat), seconds)

    def get(client, name):
        status, data = client.request('GET', '%s/%s' % (base, name))
        if status != 200 or hashlib.md5(data).hexdigest() != etag:
            raise RuntimeError('GET %s: %d' % (name, status))
    if args.gets:
        sample = names[::max(1, len(names) // args.gets)][:args.gets]
        seconds, lat, errors = run_parallel(sample, args.concurrency,
                                            make_client, get)
        report('GET %dB' % args.size, len(lat), seconds, lat, errors)
        print('%-26s GET/PUT rate %.1fx' % ('', ratio(
            ratio(len(lat), seconds), put_rate)))

    container = 'bench-list-%d' % stamp
    list_base = '%s/%s' % (account_path, container)
    client = make_client()
    print('\n== listing container %s (%d rows written into its databases)'
          % (list_base, args.list_objects))
    status, _ = client.request('PUT', list_base)
    print('PUT container through the API: %d' % status)
    replicas = replica_paths(workdir, account, container)
    list_names = listing_names(args.list_objects)
    filled = fill(replicas, account, container, list_names, args.size, etag)
    print('filled %d replicas x %d rows in %.2fs; at the PUT rate measured '
          'above (%.1f objects/s) the API would take %.0fs for them: %.0fx '
          'the fill' % (len(replicas), len(list_names), filled, put_rate,
                        ratio(len(list_names), put_rate),
                        ratio(ratio(len(list_names), put_rate), filled)))
    status, headers = client.head(list_base)
    print('HEAD container through the API: %d, X-Container-Object-Count %s,'
          ' X-Container-Bytes-Used %s' % (
              status, headers.get('X-Container-Object-Count'),
              headers.get('X-Container-Bytes-Used')), flush=True)
    floor_path = replicas[0][1]
    print('floor: ContainerBroker.list_objects_iter in this process on %s '
          '(%s, the first primary: the replica the proxy reads)' % (
              floor_path, replicas[0][0]), flush=True)

    first = {'limit': LISTING_LIMIT}
    api_lat, api_entries, status = api_pages(client, list_base, args.runs,
                                             first)
    floor_lat, floor_entries = broker_pages(floor_path, args.runs, first)
    compare('first page (limit %d)' % LISTING_LIMIT, api_lat, floor_lat,
            api_entries, floor_entries, status)

    seconds, pages, rows, lat, bad = api_walk(client, list_base)
    report('full walk, API', pages, seconds, lat, [], unit='page')
    print('%-26s %7d rows in %7.2fs  %9.1f rows/s%s' % (
        '', rows, seconds, ratio(rows, seconds),
        '  (statuses: %s)' % bad if bad else ''), flush=True)
    walks = [broker_walk(floor_path, LISTING_LIMIT) for _ in range(3)]
    f_seconds, f_pages, f_rows, f_lat = min(walks)
    report('full walk, DB (best of 3)', f_pages, f_seconds, f_lat, [],
           unit='page')
    print('%-26s %7d rows in %7.2fs  %9.1f rows/s  (the 3: %s s)' % (
        '', f_rows, f_seconds, ratio(f_rows, f_seconds),
        ', '.join('%.3f' % w[0] for w in walks)))
    print('%-26s API walk / DB walk: %.1fx the time (%.0f vs %.0f rows/s)'
          % ('', ratio(seconds, f_seconds), ratio(rows, seconds),
             ratio(f_rows, f_seconds)), flush=True)

    nested = args.list_objects // NESTED_SHARE
    for label, query in (
            ('delimiter=/', {'delimiter': '/'}),
            ('prefix=dir/ delimiter=/', {'prefix': 'dir/',
                                         'delimiter': '/'}),
            ('prefix=obj/ delimiter=/', {'prefix': 'obj/', 'delimiter': '/',
                                         'limit': LISTING_LIMIT})):
        api_lat, api_entries, status = api_pages(client, list_base,
                                                 args.runs, query)
        floor_lat, floor_entries = broker_pages(floor_path, args.runs,
                                                query)
        compare(label, api_lat, floor_lat, api_entries, floor_entries,
                status)
    print('(%d rows under dir/ in %d subdirs, %d under obj/)' % (
        nested, min(nested, NESTED_DIRS), args.list_objects - nested))


def main(argv=None):
    args = bench_repair.announce(argv, parse_args, __file__)
    began = time.monotonic()
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='bench-api-'))
    brought_up = False
    if temporary or not os.path.exists(os.path.join(workdir,
                                                    local_cluster.META)) \
            or local_cluster.proxy_pid(workdir) is None:
        up = ['up', '--replicate-every', '0']
        if not os.path.exists(os.path.join(workdir, local_cluster.META)):
            up += ['--part-power', str(args.part_power), '--base-port',
                   str(local_cluster.free_base_port(3))]
        print('bringing up a local cluster: %s' % shlex.join(
            ['coordsync-local-cluster', '--workdir', workdir, *up]),
            flush=True)
        _cluster(workdir, *up)
        brought_up = True
    try:
        meta = local_cluster.load(workdir)
        print('cluster %s, proxy %s (up in %.1fs)' % (
            workdir, local_cluster.proxy_auth_url(meta),
            time.monotonic() - began), flush=True)
        bench(workdir, local_cluster.proxy_auth_url(meta), args)
    finally:
        if brought_up:
            _cluster(workdir, 'down')
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    print('\ntotal %.1fs; load average %s' % (
        time.monotonic() - began,
        ' '.join('%.2f' % load for load in os.getloadavg())))
    return 0


if __name__ == '__main__':
    sys.exit(main())
