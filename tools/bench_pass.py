#!/usr/bin/env python3
"""Cost of a no-change replication pass over many partitions.

    tools/bench_pass.py [--part-power 12] [--backend zookeeper|file]
                        [--objects 200] [--concurrency N] [--no-barrier]

It starts a private ZooKeeper (``tests/functional/zookeeper.py``; or uses
the embedded file backend with ``--backend file``), brings up a 3-node,
one-device-per-node ``coordsync-local-cluster`` with 2**part-power
partitions (3 replicas, so every node holds every partition), writes
``--objects`` objects identically onto all three replicas, and runs a
replicator pass on the three nodes at once, twice: a warm-up pass (lock
nodes created, suffix hashes cached), then the measured one. For each
node it prints the pass time, the share of it spent on coordination, the
lock operations per second and the REPLICATE requests per partition
repaired (``replicate_requests / repaired``; a no-change pass costs
R - 1 = 2).

How it measures. Each node's pass runs in a child process of this script
doing exactly what ``coordsync-replicator --once`` does (``main`` of
:mod:`coordsync.cmd.replicator`: monkey-patch, ``prepare_service``,
``make_replicator``, ``Coordinator.start``, ``ObjectReplicator.run_once``,
``Coordinator.stop``) with two additions:

* Timers wrapped around the coordinator's lock calls (``try_lock_many``,
  one per window of partitions; ``release``, buffered and sent in
  batches; ``flush_releases``) and ``members`` (the reads that plan the
  pass and re-plan it at its end). Parsing the replicator's log could
  not work: it does not log lock calls. The *share* is the wall time
  spent in those calls over the pass's wall time. It is an upper bound:
  a window's locks are taken while the previous window's partitions are
  still being repaired, so part of that time overlaps useful work.
* A barrier before the pass: each process waits until the three
  replicator members are in the group, as long-running daemons would
  be. Without it (``--no-barrier``) a process that joins before the
  others plans its pass alone and takes every partition as a takeover;
  the others, planning later, still repair their own share, and as a
  partition is locked only while it is repaired the passes seldom
  collide: many partitions are repaired twice. That measures the
  start-up race of ``--once`` on several nodes, not a steady pass.

It prints figures and asserts nothing.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import bench_repair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = 'BENCH-PASS-RESULT '
NODES = ('n1', 'n2', 'n3')
LOCK_CALLS = ('try_lock_many', 'release', 'flush_releases')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--part-power', type=int, default=12,
                        choices=range(12, 15), metavar='{12,13,14}')
    parser.add_argument('--backend', choices=('zookeeper', 'file'),
                        default='zookeeper')
    parser.add_argument('--objects', type=int, default=200,
                        help='objects on every replica (default: '
                        '%(default)s)')
    parser.add_argument('--concurrency', type=int,
                        help='[replicator] concurrency (default: the '
                        'config\'s)')
    parser.add_argument('--no-barrier', action='store_true',
                        help='start each pass as soon as its node joined')
    parser.add_argument('--workdir', help='new directory (default: a '
                        'temporary one, removed at the end)')
    # NOTE: the child mode; one node's pass, JSON figures on stdout.
    parser.add_argument('--node-pass', metavar='CONFIG',
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the child: one node's pass ----------------------------------------------

class CallTimer:
    """Counts calls of some methods of objects and sums their durations."""

    def __init__(self):
        self.calls = {}

    def wrap(self, obj, names):
        for name in names:
            setattr(obj, name, self._timed(name, getattr(obj, name)))

    def _timed(self, name, func):
        def timed(*args, **kwargs):
            start = time.monotonic()
            try:
                return func(*args, **kwargs)
            finally:
                count, total = self.calls.get(name, (0, 0.0))
                self.calls[name] = (count + 1,
                                    total + time.monotonic() - start)
        return timed

    def reset(self):
        self.calls = {}


def _replicator_members(coordinator):
    return {caps.get('node') for caps in coordinator.members().values()
            if 'object-replicator' in (caps.get('roles') or [])}


def wait_for_members(coordinator, expect, timeout):
    """True once ``expect`` replicator nodes are in the group (checked
    at least once, however short ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        if coordinator.healthy and len(_replicator_members(
                coordinator)) >= expect:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def node_pass(args):
    from coordsync import concurrency
    concurrency.monkey_patch()
    from coordsync import daemons
    from coordsync import service
    from coordsync.cmd import replicator as replicator_cmd

    conf = service.prepare_service(
        ['--config-file', args.node_pass], prog='coordsync-replicator',
        cli_opts=replicator_cmd.CLI_OPTS)
    if args.concurrency:
        conf.set_override('concurrency', args.concurrency, 'replicator')
    coordinator, (worker,) = daemons.make_workers(conf,
                                                  [replicator_cmd.NAME])
    timer = CallTimer()
    timer.wrap(coordinator, LOCK_CALLS + ('members',))
    start = time.monotonic()
    coordinator.start(wait=conf.coordination.session_timeout)
    joined = time.monotonic() - start
    complete = wait_for_members(coordinator, len(NODES),
                                timeout=0 if args.no_barrier else 60.0)
    timer.reset()
    try:
        summary = worker.run_once()
        worker.finish_once(120.0)
    finally:
        coordinator.stop()
    print(RESULT + json.dumps({
        'node': conf.node_name, 'join': joined, 'all_joined': complete,
        'concurrency': conf.replicator.concurrency, 'summary': summary,
        'calls': timer.calls}), flush=True)
    return 0


# -- the parent --------------------------------------------------------------

def write_objects(files, count):
    """``count`` objects, the same version on every replica."""
    from coordsync.common import timestamp
    when = timestamp.Timestamp.now().normal
    for i in range(count):
        name = 'few-%d' % i
        part = files.ring.get_part(bench_repair.ACCOUNT,
                                   bench_repair.CONTAINER, name)
        for dev in files.ring.get_part_nodes(part):
            files.managers[dev['node']].diskfile(
                dev['device'], part, bench_repair.ACCOUNT,
                bench_repair.CONTAINER, name).write(
                    [b'%d' % i], {'X-Timestamp': when})


def run_passes(files, args, label):
    """Run one pass on every node at once; their result dicts."""
    argv = [sys.executable, os.path.abspath(__file__)]
    if args.concurrency:
        argv += ['--concurrency', str(args.concurrency)]
    if args.no_barrier:
        argv.append('--no-barrier')
    procs = []
    for node in NODES:
        log = open(os.path.join(files.workdir, node,
                                'bench-pass-%s.log' % label), 'ab')
        procs.append(subprocess.Popen(
            argv + ['--node-pass', files.config(node)],
            stdout=subprocess.PIPE, stderr=log, text=True))
        log.close()
    results = []
    for node, proc in zip(NODES, procs, strict=True):
        out, _ = proc.communicate()
        lines = [line for line in out.splitlines()
                 if line.startswith(RESULT)]
        if proc.returncode or not lines:
            raise SystemExit('%s pass on %s failed (exit %s); see %s' % (
                label, node, proc.returncode, files.workdir))
        results.append(json.loads(lines[-1][len(RESULT):]))
    return results


def figures(result):
    summary, calls = result['summary'], result['calls']
    duration = max(summary['duration'], 1e-9)
    # NOTE: one take and one release per partition taken: the lock
    # operations the batched calls stand for.
    lock_count = 2 * summary['succeeded']
    lock_time = sum(calls.get(n, (0, 0.0))[1] for n in LOCK_CALLS)
    members_time = calls.get('members', (0, 0.0))[1]
    share = (lock_time + members_time) / duration
    ms = {n: 1000 * calls[n][1] / calls[n][0] for n in calls if calls[n][0]}
    return {
        'node': result['node'], 'total': summary['total'],
        'repaired': summary['succeeded'],
        'skipped': summary['skipped_locked'], 'duration': duration,
        'share': share, 'lock_ops': lock_count,
        'lock_ops_s': lock_count / duration,
        'try_lock_ms': ms.get('try_lock_many', 0.0),
        'release_ms': ms.get('release', 0.0),
        'members_ms': members_time * 1000,
        'replicate_per_part': (summary['replicate_requests']
                               / max(summary['succeeded'], 1)),
        'pushed': summary['objects_pushed'] + summary['objects_pulled'],
    }


HEADER = ('%-4s %6s %6s %7s %8s %7s %8s %9s %8s %8s %8s %9s %6s' % (
    'node', 'tried', 'taken', 'skipped', 'pass s', 'coord %', 'lock ops',
    'lock op/s', 'win ms', 'rel ms', 'memb ms', 'REPL/part', 'moved'))


def report(label, results, partitions):
    print('%s pass (concurrency %d, all joined: %s):' % (
        label, results[0]['concurrency'],
        all(r['all_joined'] for r in results)))
    print(HEADER)
    rows = [figures(r) for r in results]
    for f in rows:
        print('%-4s %6d %6d %7d %8.2f %7.1f %8d %9.0f %8.2f %8.2f %8.1f '
              '%9.2f %6d' % (
                  f['node'], f['total'], f['repaired'], f['skipped'],
                  f['duration'], 100 * f['share'], f['lock_ops'],
                  f['lock_ops_s'], f['try_lock_ms'], f['release_ms'],
                  f['members_ms'], f['replicate_per_part'], f['pushed']))
    longest = max(f['duration'] for f in rows)
    print('all nodes: %d partitions taken (each once: %s), %d lock ops '
          'in %.2fs = %.0f/s' % (
              sum(f['repaired'] for f in rows),
              sum(f['repaired'] for f in rows) == partitions,
              sum(f['lock_ops'] for f in rows), longest,
              sum(f['lock_ops'] for f in rows) / longest))


def benchmark(workdir, args):
    zk = None
    backend = None
    if args.backend == 'zookeeper':
        sys.path.insert(0, REPO)
        from tests.functional import zookeeper
        zk = zookeeper.ZooKeeperServer(os.path.join(workdir, 'zookeeper'))
        zk.start()
        backend = zk.url
    try:
        bench_repair.bring_up(workdir, args.part_power, backend)
        try:
            files = bench_repair.ClusterFiles(workdir)
            write_objects(files, args.objects)
            print('%d partitions x 3 replicas on 3 nodes, %d objects, '
                  'backend %s' % (2 ** args.part_power, args.objects,
                                  backend or 'file (embedded)'), flush=True)
            partitions = 2 ** args.part_power
            report('warm-up', run_passes(files, args, 'warmup'),
                   partitions)
            print()
            report('measured', run_passes(files, args, 'measured'),
                   partitions)
        finally:
            bench_repair.local_cluster(workdir, 'down')
    finally:
        if zk is not None:
            zk.stop()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.node_pass:
        return node_pass(args)
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='coordsync-bench-pass-'))
    try:
        benchmark(workdir, args)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
