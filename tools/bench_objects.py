#!/usr/bin/env python3
"""Object PUT and GET throughput of a local cluster, through ObjectClient.

    tools/bench_objects.py [--workdir DIR] [--small 2000] [--large 20]
                           [--concurrency 16]

Without ``--workdir`` (or with one holding no running cluster) it brings
up a 3-node ``coordsync-local-cluster`` and stops it at the end; a
cluster that was already running is used as it is and left running.

Four phases run one after another: PUT small, PUT large, GET small, GET
large, each with ``--concurrency`` green threads sharing one
:class:`~coordsync.obj.client.ObjectClient`. Every GET body is checked against
what was PUT. For each phase it prints objects/s and MB/s of object
bytes (each PUT byte is stored once per replica, so the disks see
``replicas`` times as much) and latency percentiles. It asserts nothing
about time: the figures are for reading, not for a test to fail on.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from coordsync import concurrency
from coordsync.cmd import local_cluster

KIB = 1024
MIB = 1024 * KIB


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', help='local cluster directory to use '
                        '(brought up if not running); default: a new '
                        'temporary one')
    parser.add_argument('--small', type=int, default=2000, metavar='N',
                        help='small objects (default: %(default)s)')
    parser.add_argument('--small-size', type=int, default=4 * KIB,
                        metavar='BYTES', help='default: %(default)s')
    parser.add_argument('--large', type=int, default=20, metavar='N',
                        help='large objects (default: %(default)s)')
    parser.add_argument('--large-size', type=int, default=8 * MIB,
                        metavar='BYTES', help='default: %(default)s')
    parser.add_argument('--concurrency', type=int, default=16, metavar='N',
                        help='requests in flight (default: %(default)s)')
    parser.add_argument('--part-power', type=int, default=8,
                        help='of a cluster this tool creates')
    return parser.parse_args(argv)


# -- the cluster ------------------------------------------------------------

def _local_cluster(workdir, *args):
    subprocess.run([sys.executable, '-m', 'coordsync.cmd.local_cluster',
                    '--workdir', workdir, *args], check=True,
                   stdout=subprocess.DEVNULL)


def _all_running(workdir):
    from coordsync import exceptions
    from coordsync.cmd import local_cluster
    try:
        meta = local_cluster.load(workdir)
    except exceptions.ConfigError:
        return False
    names = ['n%d' % i for i in range(1, meta['nodes'] + 1)]
    return all(local_cluster.running_pid(workdir, n) for n in names)


def bring_up(args):
    """``(workdir, started, temporary)`` of a running cluster."""
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='coordsync-bench-'))
    if _all_running(workdir):
        return workdir, False, temporary
    # NOTE: no background replication: it would compete with the load.
    up = ['up', '--part-power', str(args.part_power),
          '--replicate-every', '0']
    if not os.path.exists(os.path.join(workdir, 'cluster.json')):
        up += ['--base-port', str(local_cluster.free_base_port(3))]
    print('bringing up a local cluster in %s' % workdir, flush=True)
    _local_cluster(workdir, *up)
    return workdir, True, temporary


def object_client(workdir):
    from oslo_config import cfg

    from coordsync import conf as coordsync_conf
    from coordsync.cmd import local_cluster
    from coordsync.common import ring as ring_mod
    from coordsync.obj import client

    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf(['--config-file', local_cluster.node_config_path(workdir, 'n1')],
         default_config_files=[])
    ring = ring_mod.Ring(conf.ring_file, conf.hash_path_prefix,
                         conf.hash_path_suffix)
    return client.ObjectClient(conf, ring), ring


# -- the phases -------------------------------------------------------------

def _body(template, index):
    """``template`` made unique to object ``index`` (its first 16 bytes)."""
    head = b'%016d' % index
    return head + template[len(head):]


class Phase:
    """Runs one operation over many objects; collects its figures."""

    def __init__(self, name, count, size):
        self.name = name
        self.count = count
        self.size = size
        self.latencies = []
        self.errors = []
        self.seconds = 0.0

    def run(self, pool_size, operation):
        def timed(index):
            start = time.monotonic()
            try:
                operation(index)
            except Exception as err:  # NOTE: counted and shown, not fatal.
                self.errors.append('%d: %s' % (index, err))
                return
            self.latencies.append(time.monotonic() - start)
        pool = concurrency.GreenPool(pool_size)
        start = time.monotonic()
        for _ in pool.imap(timed, range(self.count)):
            pass
        self.seconds = time.monotonic() - start
        return self

    def row(self):
        done = len(self.latencies)
        lat = sorted(self.latencies) or [0.0]

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] * 1000
        seconds = self.seconds or 1e-9
        return ('%-10s %7d %9s %8.2f %9.1f %8.1f %8.1f %8.1f %8.1f %6d' % (
            self.name, done, _size(self.size), self.seconds,
            done / seconds, done * self.size / seconds / MIB,
            pct(50), pct(99), lat[-1] * 1000, len(self.errors)))


HEADER = ('%-10s %7s %9s %8s %9s %8s %8s %8s %8s %6s' % (
    'phase', 'objects', 'size', 'seconds', 'objects/s', 'MB/s',
    'p50 ms', 'p99 ms', 'max ms', 'errors'))


def _size(n):
    if n >= MIB:
        return '%g MiB' % (n / MIB)
    if n >= KIB:
        return '%g KiB' % (n / KIB)
    return '%d B' % n


def run_benchmark(objects, args):
    prefix = 'bench-%d' % os.getpid()
    sets = [('small', args.small, args.small_size),
            ('large', args.large, args.large_size)]
    templates = {kind: os.urandom(size) for kind, _, size in sets}
    phases = []
    print(HEADER, flush=True)

    def name(kind, index):
        return '%s-%s-%d' % (prefix, kind, index)

    for kind, count, size in sets:
        def put(index, kind=kind):
            objects.put('bench', 'objects', name(kind, index),
                        _body(templates[kind], index))
        phases.append(Phase('PUT ' + kind, count, size)
                      .run(args.concurrency, put))
        print(phases[-1].row(), flush=True)

    for kind, count, size in sets:
        def get(index, kind=kind):
            found = objects.get('bench', 'objects', name(kind, index))
            if found is None:
                raise LookupError('not found')
            md5 = hashlib.md5(usedforsecurity=False)
            for chunk in found[1]:
                md5.update(chunk)
            expected = hashlib.md5(_body(templates[kind], index),
                                   usedforsecurity=False)
            if md5.hexdigest() != expected.hexdigest():
                raise ValueError('body differs from what was PUT')
        phases.append(Phase('GET ' + kind, count, size)
                      .run(args.concurrency, get))
        print(phases[-1].row(), flush=True)
    return phases


def main(argv=None):
    concurrency.monkey_patch()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir, started, temporary = bring_up(args)
    try:
        objects, ring = object_client(workdir)
        print('cluster %s: %d replicas, %d partitions, %d devices; '
              'concurrency %d' % (workdir, ring.replicas,
                                  2 ** ring.part_power,
                                  len([d for d in ring.devices if d]),
                                  args.concurrency), flush=True)
        phases = run_benchmark(objects, args)
    finally:
        if started:
            _local_cluster(workdir, 'down')
        if started and temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    errors = [e for phase in phases for e in phase.errors]
    for error in errors[:10]:
        print('error: %s' % error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
