#!/usr/bin/env python3
"""Time the container replicator's no-change pass over many containers.

    tools/bench_db_replicator.py [--containers 10000] [--objects 5]
                                 [--part-power 8] [--devices 2]
                                 [--passes 1] [--distinct-ids]
                                 [--workers 8] [--workdir DIR]

1. Brings up a 3-node ``coordsync-local-cluster`` (``--replicate-every
   0``: no worker runs in the servers) in a temporary directory.
2. Creates ``--containers`` container databases, level on all three of
   their replicas, straight on the nodes' disks with
   :class:`~coordsync.container.backend.ContainerBroker`: the first
   replica is initialized, given ``--objects`` rows and marked as
   reported to its account (so the pass has nothing to report); its
   file is then copied to the other two replicas' places. The copies
   keep the first replica's id (a level pass compares the replicas'
   digests -- rows hash, timestamps, metadata -- never their ids);
   ``--distinct-ids`` gives each copy an id of its own and an incoming
   sync point with the first, as a whole-database copy by the
   replicator would (about three times slower to set up).
3. Runs ``coordsync-container-replicator --once --wait-for-peers`` on
   every node at once (``--passes`` times), and prints the exact command
   lines, the wall time (first start to last exit) and each node's pass
   time and figures from the recon file the pass writes.
4. Counts the requests the pass sent from the node servers' access logs
   (``/db-sync`` lines arriving during the run, by operation; anything
   else arriving then too) and prints them per partition and per
   container.
5. Times a plain ``os.walk`` + ``os.stat`` of the same database files
   (every replica, on every node: a floor for "looking at every
   database") and prints the pass / walk ratios.

The cluster is then stopped. It prints figures and asserts nothing.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import bench_repair

ACCOUNT = 'AUTH_bench'
NAME = 'container-replicator'
# The node servers' access lines (coordsync.common.wsgi): arrival time,
# method, "path", status, bytes, milliseconds, member, item, token,
# client.
ACCESS_LINE = re.compile(
    r'(\d+\.\d+) (\S+) "([^"]*)" (\d{3}) (\d+) ([\d.]+) (\S+) (\S+) (\S+) '
    r'(\S+)\s*$')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--containers', type=int, default=10000,
                        metavar='N', help='containers (default: '
                        '%(default)s)')
    parser.add_argument('--objects', type=int, default=5, metavar='N',
                        help='object rows per container (default: '
                        '%(default)s)')
    parser.add_argument('--part-power', type=int, default=8,
                        choices=range(1, 13), metavar='P',
                        help='of the rings (default: %(default)s)')
    parser.add_argument('--devices', type=int, default=2,
                        choices=range(1, 9), metavar='N',
                        help='devices per node (default: %(default)s)')
    parser.add_argument('--passes', type=int, default=1, metavar='N',
                        help='no-change passes to time, one after the '
                        'other (default: %(default)s)')
    parser.add_argument('--distinct-ids', action='store_true',
                        help='give each copied replica an id of its own')
    parser.add_argument('--workers', type=int, default=8, metavar='N',
                        help='threads creating the databases (default: '
                        '%(default)s)')
    parser.add_argument('--workdir', help='new cluster directory '
                        '(default: a temporary one, removed at the end)')
    args = parser.parse_args(argv)
    if args.containers < 1 or args.objects < 0 or args.passes < 1 \
            or args.workers < 1:
        parser.error('--containers, --passes and --workers must be at '
                     'least 1, --objects at least 0')
    return args


class Cluster:
    """The local cluster's container ring and node paths, from its
    files."""

    def __init__(self, workdir):
        from coordsync.cmd import local_cluster as local_cluster_cmd
        from coordsync.common import ring as ring_mod
        with open(os.path.join(workdir, 'cluster.json')) as fh:
            self.meta = json.load(fh)
        self.workdir = workdir
        self.prefix = self.meta['hash_path_prefix']
        self.suffix = self.meta['hash_path_suffix']
        self.ring = ring_mod.Ring(
            os.path.join(workdir, local_cluster_cmd.CONTAINER_RING),
            self.prefix, self.suffix)
        self.nodes = ['n%d' % i for i in range(1, self.meta['nodes'] + 1)]

    def dev_path(self, node, device):
        return os.path.join(self.workdir, node, 'devices', device)

    def config(self, node):
        return os.path.join(self.workdir, node, 'coordsync.conf')

    def recon(self, node):
        path = os.path.join(self.workdir, node, 'state', 'recon',
                            '%s.json' % NAME)
        try:
            with open(path) as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return None

    def server_log(self, node):
        return os.path.join(self.workdir, node, 'server.log')


def bring_up(workdir, args):
    from coordsync.cmd import local_cluster as local_cluster_cmd
    print('bringing up a local cluster in %s' % workdir, flush=True)
    bench_repair.local_cluster(
        workdir, 'up', '--nodes', '3', '--devices', str(args.devices),
        '--part-power', str(args.part_power), '--base-port',
        str(local_cluster_cmd.free_base_port(3)), '--replicate-every', '0')


# -- making the databases ----------------------------------------------------

def make_container(cluster, name, objects, distinct_ids):
    """One container's database on each of its replicas, level."""
    from coordsync.common.timestamp import Timestamp
    from coordsync.container import backend
    part, devs = cluster.ring.get_nodes(ACCOUNT, name)
    paths = [backend.container_db_path(
        cluster.dev_path(d['node'], d['device']), part, ACCOUNT, name,
        cluster.prefix, cluster.suffix) for d in devs]
    now = Timestamp.now().normal
    broker = backend.ContainerBroker(paths[0], account=ACCOUNT,
                                     container=name)
    try:
        broker.initialize(now)
        if objects:
            broker.merge_items([
                {'name': 'obj-%04d' % i, 'created_at': now, 'size': i,
                 'content_type': 'application/octet-stream',
                 'etag': '%032x' % i, 'deleted': 0,
                 'storage_policy_index': 0} for i in range(objects)])
        info = broker.get_replication_info()
        stats = (info['put_timestamp'], info['delete_timestamp'],
                 info['object_count'], info['bytes_used'])
        broker.reported(*stats)
    finally:
        # NOTE: the last connection closing checkpoints the WAL into the
        # file and removes it: the .db alone is the whole database.
        broker.close()
    for side in ('-wal', '-shm'):
        if os.path.exists(paths[0] + side) and \
                os.path.getsize(paths[0] + side):
            raise RuntimeError('%s%s left after close' % (paths[0], side))
    for path in paths[1:]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(paths[0], path)
        if distinct_ids:
            copy = backend.ContainerBroker(path)
            try:
                copy.newid(info['id'])
                copy.reported(*stats)
            finally:
                copy.close()
    return part


def make_containers(cluster, args):
    names = ['c%07d' % i for i in range(args.containers)]
    start = time.monotonic()
    parts = collections.Counter()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        for part in pool.map(lambda n: make_container(
                cluster, n, args.objects, args.distinct_ids), names):
            parts[part] += 1
            done += 1
            if done % 2000 == 0:
                print('  %d containers made (%.0fs)' % (
                    done, time.monotonic() - start), flush=True)
    counts = sorted(parts.values())
    print('%d containers x %d replicas (%d object rows each) made in %.1fs '
          'in %d of %d partitions (containers per partition: min %d, '
          'median %d, max %d)' % (
              args.containers, cluster.ring.replicas, args.objects,
              time.monotonic() - start, len(parts),
              cluster.ring.partition_count, counts[0],
              counts[len(counts) // 2], counts[-1]), flush=True)


# -- the pass ---------------------------------------------------------------

def replicator_argv(cluster, node):
    return [sys.executable, '-m', 'coordsync.cmd.container_replicator',
            '--config-file', cluster.config(node), '--once',
            '--wait-for-peers']


def run_pass(cluster, log_dir, number):
    """Every node's replicator at once; ``(start, end, {node: (exit,
    wall)})`` (Unix times of the first start and the last exit)."""
    def one(node):
        began = time.monotonic()
        with open(os.path.join(log_dir, 'replicator-%s.log' % node),
                  'ab') as log:
            code = subprocess.run(
                replicator_argv(cluster, node), stdout=log,
                stderr=subprocess.STDOUT, timeout=3600).returncode
        return code, time.monotonic() - began
    print('pass %d: running on every node at once:' % number)
    for node in cluster.nodes:
        print('  %s' % shlex.join(replicator_argv(cluster, node)))
    sys.stdout.flush()
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(len(cluster.nodes)) as pool:
        results = dict(zip(cluster.nodes, pool.map(one, cluster.nodes),
                           strict=True))
    return start, time.time(), results


def requests_between(cluster, start, end):
    """``[(node, method, path, status)]`` of the access lines of every
    node server whose request arrived in ``[start, end]``."""
    found = []
    for node in cluster.nodes:
        with open(cluster.server_log(node), encoding='utf-8',
                  errors='replace') as fh:
            for line in fh:
                match = ACCESS_LINE.search(line)
                if not match:
                    continue
                arrived = float(match.group(1))
                # NOTE: arrival times are logged to the millisecond.
                if start - 0.001 <= arrived <= end + 0.001:
                    found.append((node, match.group(2),
                                  urllib.parse.unquote(match.group(3)),
                                  int(match.group(4))))
    return found


def db_sync_kind(method, path):
    """``POST states``, ``POST rows/merge``, ``PUT db``... of a /db-sync
    path (``/db-sync/<datadir>/<dev>/<part>[/<hash>]``)."""
    depth = len(path.split('?')[0].strip('/').split('/'))
    return '%s %s' % (method, 'partition' if depth == 4 else 'database')


def report_pass(cluster, args, start, end, results):
    walls = {node: wall for node, (_code, wall) in results.items()}
    recons = {node: cluster.recon(node) for node in cluster.nodes}
    print('  wall %.2fs (first start to last exit); per node: %s' % (
        end - start, ', '.join('%s %.2fs exit %d' % (
            node, walls[node], results[node][0])
            for node in cluster.nodes)))
    durations = {node: r['duration'] for node, r in recons.items() if r}
    if durations:
        print('  pass (recon duration): max %.2fs; per node: %s' % (
            max(durations.values()), ', '.join(
                '%s %.2fs' % item for item in sorted(durations.items()))))
    figures = collections.Counter()
    for recon in recons.values():
        for key in ('total', 'done', 'succeeded', 'skipped_locked',
                    'failed', 'errors', 'peer_errors', 'dbs_checked',
                    'dbs_in_sync', 'rows_pushed', 'rows_pulled',
                    'dbs_pushed', 'dbs_fetched', 'dbs_reclaimed',
                    'handoffs_removed', 'quarantined', 'reported'):
            figures[key] += (recon or {}).get(key, 0)
    modes = sorted({(r or {}).get('mode') for r in recons.values()},
                   key=str)
    print('  figures (all nodes): mode %s; %d/%d partition jobs done, %d '
          'succeeded, %d skipped (locked), %d failed, %d peer errors; %d '
          'DBs checked, %d in sync; rows %d pushed, %d pulled; DBs %d '
          'pushed whole, %d fetched, %d reclaimed, %d handoffs removed; '
          '%d quarantined; %d reported' % (
              '/'.join(map(str, modes)), figures['done'], figures['total'],
              figures['succeeded'], figures['skipped_locked'],
              figures['failed'], figures['peer_errors'],
              figures['dbs_checked'], figures['dbs_in_sync'],
              figures['rows_pushed'], figures['rows_pulled'],
              figures['dbs_pushed'], figures['dbs_fetched'],
              figures['dbs_reclaimed'], figures['handoffs_removed'],
              figures['quarantined'], figures['reported']))
    lines = requests_between(cluster, start, end)
    sync = [line for line in lines if line[2].startswith('/db-sync/')]
    other = collections.Counter('%s %s %d' % (
        method, '/'.join(path.split('?')[0].split('/')[:2]), status)
        for _node, method, path, status in lines
        if not path.startswith('/db-sync/'))
    kinds = collections.Counter('%s %d' % (db_sync_kind(method, path),
                                           status)
                                for _node, method, path, status in sync)
    parts = cluster.ring.partition_count
    print('  requests: %d /db-sync (%s); per partition %.2f (%d '
          'partitions, %d replicas); per container %.4f' % (
              len(sync), ', '.join('%s: %d' % item
                                   for item in sorted(kinds.items())),
              len(sync) / parts, parts, cluster.ring.replicas,
              len(sync) / args.containers))
    print('  other requests to the node servers meanwhile: %s' % (
        ', '.join('%s: %d' % item for item in sorted(other.items()))
        or 'none'))
    sys.stdout.flush()
    return max(durations.values()) if durations else None, end - start


def walk_floor(cluster):
    """``(seconds, files)`` of os.walk + os.stat over every node's
    container databases."""
    start = time.monotonic()
    files = 0
    for node in cluster.nodes:
        devices = os.path.join(cluster.workdir, node, 'devices')
        for device in sorted(os.listdir(devices)):
            top = os.path.join(devices, device, 'containers')
            for root, _dirs, names in os.walk(top):
                for name in names:
                    if name.endswith('.db'):
                        os.stat(os.path.join(root, name))
                        files += 1
    return time.monotonic() - start, files


def benchmark(workdir, args):
    cluster = Cluster(workdir)
    make_containers(cluster, args)
    timings = []
    for number in range(1, args.passes + 1):
        start, end, results = run_pass(cluster, workdir, number)
        timings.append(report_pass(cluster, args, start, end, results))
    # NOTE: the walk is timed after the passes (the files' inodes are in
    # the cache, as they were for the passes); best of three.
    walks = [walk_floor(cluster) for _ in range(3)]
    seconds, files = min(walks)
    print()
    print('floor: os.walk + os.stat of %d DB files (every replica on every '
          'node): %.3fs (best of 3: %s)' % (
              files, seconds, ', '.join('%.3f' % w for w, _f in walks)))
    for number, (pass_time, wall) in enumerate(timings, start=1):
        print('pass %d / floor: pass %s, wall %.1fx' % (
            number, 'n/a' if pass_time is None else '%.1fx' % (
                pass_time / max(seconds, 1e-9)),
            wall / max(seconds, 1e-9)))
    sys.stdout.flush()


def main(argv=None):
    args = bench_repair.announce(argv, parse_args, __file__)
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='coordsync-bench-db-replicator-'))
    bring_up(workdir, args)
    try:
        benchmark(workdir, args)
    finally:
        bench_repair.local_cluster(workdir, 'down')
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
