#!/usr/bin/env python3
"""Swift API throughput of a local cluster, as a Swift client sees it.

    tools/bench_api.py [--workdir DIR] [--objects 100000] [--size 1024]
                       [--concurrency 16] [--gets 2000]

Without ``--workdir`` (or with one holding no running cluster) it brings
up a 3-node ``coordsync-local-cluster`` (with its ``coordsync-proxy``)
and stops it at the end; a running cluster is used as it is and left
running. It authenticates as the cluster's test user, then measures,
through the proxy only (plain HTTP/1.1 keep-alive connections, one per
client thread):

1. small-object PUT: ``--objects`` objects of ``--size`` bytes into one
   container, ``--concurrency`` at a time: objects/s, p50/p99;
2. small-object GET: ``--gets`` of them, bodies checked: objects/s,
   p50/p99;
3. listing of that container: the first page (``limit`` 10,000, JSON)
   a few times, and a full walk by marker: pages/s, rows/s, p50/p99
   per page.

It asserts nothing about time: the figures are for reading.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from coordsync.cmd import local_cluster

LISTING_LIMIT = 10000


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', help='local cluster directory to use '
                        '(brought up if not running); default: a new '
                        'temporary one')
    parser.add_argument('--objects', type=int, default=100000, metavar='N',
                        help='objects PUT, then listed (default: '
                        '%(default)s)')
    parser.add_argument('--size', type=int, default=1024, metavar='BYTES',
                        help='object size (default: %(default)s)')
    parser.add_argument('--gets', type=int, default=2000, metavar='N',
                        help='objects read back (default: %(default)s)')
    parser.add_argument('--concurrency', type=int, default=16, metavar='N',
                        help='requests in flight (default: %(default)s)')
    parser.add_argument('--first-page-runs', type=int, default=5,
                        metavar='N', help='default: %(default)s')
    parser.add_argument('--part-power', type=int, default=8,
                        help='of a cluster this tool creates')
    return parser.parse_args(argv)


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


def report(label, count, seconds, latencies, errors, unit='req'):
    print('%-22s %8d %s in %7.2fs  %9.1f %s/s  p50 %7.1f ms  p99 %7.1f ms'
          '%s' % (label, count, unit, seconds, count / seconds if seconds
                  else 0.0, unit, percentile(latencies, 50) * 1000,
                  percentile(latencies, 99) * 1000,
                  '  (%d errors, first: %s)' % (len(errors), errors[0])
                  if errors else ''))


def bench(auth_url, args):
    host, port, account_path, token = authenticate(auth_url)
    container = 'bench-%d' % int(time.time())
    base = '%s/%s' % (account_path, container)

    def make_client():
        return Client(host, port, token)
    status, _ = make_client().request('PUT', base)
    assert status in (201, 202), status
    body = os.urandom(args.size)
    etag = hashlib.md5(body).hexdigest()
    names = ['obj-%08d' % i for i in range(args.objects)]

    def put(client, name):
        status, _ = client.request('PUT', '%s/%s' % (base, name), body)
        if status != 201:
            raise RuntimeError('PUT %s: %d' % (name, status))
    seconds, lat, errors = run_parallel(names, args.concurrency,
                                        make_client, put)
    report('PUT %dB' % args.size, len(lat), seconds, lat, errors)

    def get(client, name):
        status, data = client.request('GET', '%s/%s' % (base, name))
        if status != 200 or hashlib.md5(data).hexdigest() != etag:
            raise RuntimeError('GET %s: %d' % (name, status))
    sample = names[::max(1, len(names) // max(1, args.gets))][:args.gets]
    seconds, lat, errors = run_parallel(sample, args.concurrency,
                                        make_client, get)
    report('GET %dB' % args.size, len(lat), seconds, lat, errors)

    client = make_client()
    lat = []
    started = time.monotonic()
    for _ in range(args.first_page_runs):
        t0 = time.monotonic()
        status, data = client.request('GET', base, query='format=json')
        lat.append(time.monotonic() - t0)
        rows = len(json.loads(data)) if status == 200 else 0
    report('listing first page', len(lat), time.monotonic() - started,
           lat, [], unit='page')
    print('%-22s %8d rows a page' % ('', rows))
    lat, total, marker = [], 0, ''
    started = time.monotonic()
    while True:
        query = 'format=json&limit=%d' % LISTING_LIMIT
        if marker:
            query += '&marker=' + urllib.parse.quote(marker)
        t0 = time.monotonic()
        status, data = client.request('GET', base, query=query)
        lat.append(time.monotonic() - t0)
        page = json.loads(data) if status == 200 else []
        if not page:
            break
        total += len(page)
        marker = page[-1]['name']
    seconds = time.monotonic() - started
    report('listing full walk', len(lat), seconds, lat, [], unit='page')
    print('%-22s %8d rows in %7.2fs  %9.1f rows/s (%d PUT)' % (
        '', total, seconds, total / seconds if seconds else 0.0,
        args.objects))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
        _cluster(workdir, *up)
        brought_up = True
    try:
        meta = local_cluster.load(workdir)
        print('cluster %s, proxy %s, concurrency %d' % (
            workdir, local_cluster.proxy_auth_url(meta), args.concurrency))
        bench(local_cluster.proxy_auth_url(meta), args)
    finally:
        if brought_up:
            _cluster(workdir, 'down')
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
