#!/usr/bin/env python3
"""Time levelling one full partition onto empty replicas, against rsync.

    tools/bench_repair.py [--small 20000] [--large 100] [--part-power 4]
                          [--partition P] [--workdir DIR]

1. Brings up a 3-node ``coordsync-local-cluster`` (one device per node,
   part power 4 so a chosen partition is easy to fill, no replicator in
   the servers) in a temporary directory.
2. Fills partition P on its first primary's device directly with
   :class:`~coordsync.obj.diskfile.DiskFileManager`: ``--small`` objects
   of ``--small-size`` bytes and ``--large`` of ``--large-size``, named so
   that ``ring.get_part`` puts them in P (names are generated and those
   hashing elsewhere dropped). The other two replicas stay empty.
3. Runs ``coordsync-replicator --once --partitions P`` on that node, again
   until all three replicas have the same suffix hashes, and times each
   run: the command's wall time (process start, group join, pass, leave)
   and the pass alone (``duration`` of the recon file the pass writes).
4. Times ``rsync -a`` of ``objects/P`` from the full device into an empty
   directory on the same machine, and ``rsync -a --fsync`` (coordsync
   fsyncs every object, plain rsync does not), each once per empty
   replica, as coordsync writes R - 1 copies.
5. Prints the times, coordsync/rsync ratios, objects/s and MB/s, and
   stops the cluster.

Both sides read from the page cache (the partition was just written);
neither side drops caches. It prints figures and asserts nothing.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

KIB = 1024
MIB = 1024 * KIB
ACCOUNT, CONTAINER = 'bench', 'objects'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--small', type=int, default=20000, metavar='N')
    parser.add_argument('--small-size', type=int, default=KIB,
                        metavar='BYTES')
    parser.add_argument('--large', type=int, default=100, metavar='N')
    parser.add_argument('--large-size', type=int, default=MIB,
                        metavar='BYTES')
    parser.add_argument('--part-power', type=int, default=4,
                        choices=range(1, 9), metavar='P')
    parser.add_argument('--partition', type=int, default=0,
                        help='partition to fill (default: %(default)s)')
    parser.add_argument('--max-passes', type=int, default=3,
                        help='replicator runs before giving up levelling')
    parser.add_argument('--workdir', help='new cluster directory '
                        '(default: a temporary one, removed at the end)')
    args = parser.parse_args(argv)
    if not 0 <= args.partition < 2 ** args.part_power:
        parser.error('--partition must be below 2**--part-power')
    return args


# -- the cluster (bench_pass.py uses these too) -----------------------------

def local_cluster(workdir, *args):
    subprocess.run([sys.executable, '-m', 'coordsync.cmd.local_cluster',
                    '--workdir', workdir, *args], check=True,
                   stdout=subprocess.DEVNULL)


def bring_up(workdir, part_power, backend=None):
    from coordsync.cmd import local_cluster as local_cluster_cmd
    args = ['up', '--nodes', '3', '--devices', '1', '--part-power',
            str(part_power), '--base-port',
            str(local_cluster_cmd.free_base_port(3)),
            '--replicate-every', '0']
    if backend:
        args += ['--backend', backend]
    print('bringing up a local cluster in %s' % workdir, flush=True)
    local_cluster(workdir, *args)


class ClusterFiles:
    """The cluster's ring and every node's object store, from its files."""

    def __init__(self, workdir):
        from coordsync.common import ring as ring_mod
        from coordsync.obj import diskfile
        with open(os.path.join(workdir, 'cluster.json')) as fh:
            self.meta = json.load(fh)
        prefix = self.meta['hash_path_prefix']
        suffix = self.meta['hash_path_suffix']
        self.workdir = workdir
        self.ring = ring_mod.Ring(os.path.join(workdir, 'object.ring.json'),
                                  prefix, suffix)
        self.managers = {
            name: diskfile.DiskFileManager(
                self.devices_path(name), hash_prefix=prefix,
                hash_suffix=suffix)
            for name in ('n%d' % i for i in range(1, self.meta['nodes'] + 1))}

    def devices_path(self, node):
        return os.path.join(self.workdir, node, 'devices')

    def config(self, node):
        return os.path.join(self.workdir, node, 'coordsync.conf')

    def recon(self, node):
        path = os.path.join(self.workdir, node, 'state', 'recon',
                            'object-replicator.json')
        with open(path) as fh:
            return json.load(fh)

    def names_in(self, partition, prefix, count):
        """``count`` object names that hash into ``partition``."""
        names, i = [], 0
        while len(names) < count:
            name = '%s-%d' % (prefix, i)
            if self.ring.get_part(ACCOUNT, CONTAINER, name) == partition:
                names.append(name)
            i += 1
        return names


# -- filling and levelling ---------------------------------------------------

def fill(files, node, device, partition, sets):
    """Write every object of ``sets`` [(prefix, count, size)] directly."""
    from coordsync.common import timestamp
    manager = files.managers[node]

    def write(job):
        name, body = job
        manager.diskfile(device, partition, ACCOUNT, CONTAINER, name).write(
            [body], {'X-Timestamp': timestamp.Timestamp.now().normal})

    jobs = []
    for prefix, count, size in sets:
        template = os.urandom(size)
        for index, name in enumerate(files.names_in(partition, prefix,
                                                    count)):
            head = b'%016d' % index
            jobs.append((name, head + template[len(head):]))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(write, jobs))
    return len(jobs), sum(len(body) for _name, body in jobs)


def level(files, primaries, partition):
    """True when every primary has the same suffix hashes."""
    hashes = [files.managers[d['node']].get_hashes(d['device'], partition)
              for d in primaries]
    return all(h == hashes[0] for h in hashes)


def run_replicator(files, node, partition, log_path):
    start = time.monotonic()
    with open(log_path, 'ab') as log:
        result = subprocess.run(
            [sys.executable, '-m', 'coordsync.cmd.replicator',
             '--config-file', files.config(node), '--once',
             '--partitions', str(partition)],
            stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - start
    return wall, result.returncode, files.recon(node)


def time_rsync(source, dest, *options):
    os.makedirs(dest)
    start = time.monotonic()
    subprocess.run(['rsync', '-a', *options, source + '/', dest + '/'],
                   check=True)
    return time.monotonic() - start


# -- the run -----------------------------------------------------------------

def rate(objects, nbytes, seconds):
    seconds = max(seconds, 1e-9)
    return '%8.0f objects/s %8.1f MB/s' % (objects / seconds,
                                           nbytes / seconds / 1e6)


def benchmark(workdir, args):
    files = ClusterFiles(workdir)
    part = args.partition
    primaries = files.ring.get_part_nodes(part)
    full = primaries[0]
    empties = ['%s/%s' % (d['node'], d['device']) for d in primaries[1:]]
    start = time.monotonic()
    objects, nbytes = fill(files, full['node'], full['device'], part,
                           [('small', args.small, args.small_size),
                            ('large', args.large, args.large_size)])
    print('partition %d: %d objects (%d x %d B + %d x %d B), %.1f MB on '
          '%s/%s, written in %.1fs; empty: %s' % (
              part, objects, args.small, args.small_size, args.large,
              args.large_size, nbytes / 1e6, full['node'], full['device'],
              time.monotonic() - start, ', '.join(empties)), flush=True)

    wall = passes = 0.0
    pass_time = 0.0
    log_path = os.path.join(workdir, 'bench-replicator.log')
    for run in range(1, args.max_passes + 1):
        seconds, status, recon = run_replicator(files, full['node'], part,
                                                log_path)
        wall += seconds
        pass_time += recon['duration']
        passes = run
        print('coordsync-replicator --once --partitions %d (run %d): '
              'exit %d, wall %.2fs, pass %.2fs; %d objects pushed '
              '(%.1f MB), %d pulled, %d REPLICATE, %d errors' % (
                  part, run, status, seconds, recon['duration'],
                  recon['objects_pushed'], recon['bytes_pushed'] / 1e6,
                  recon['objects_pulled'], recon['replicate_requests'],
                  recon['errors']), flush=True)
        if level(files, primaries, part):
            break
    else:
        print('NOT level after %d runs; see %s' % (passes, log_path))
    copies = len(primaries) - 1

    source = os.path.join(files.devices_path(full['node']), full['device'],
                          'objects', str(part))
    rsync_plain = sum(time_rsync(source, os.path.join(
        workdir, 'rsync-%d' % i)) for i in range(copies))
    rsync_fsync = sum(time_rsync(source, os.path.join(
        workdir, 'rsync-fsync-%d' % i), '--fsync') for i in range(copies))

    print()
    print('%d copies of %d objects (%.1f MB) made by each:'
          % (copies, objects, nbytes / 1e6))
    rows = [('coordsync-replicator, wall (%d run%s)' % (
                passes, '' if passes == 1 else 's'), wall),
            ('coordsync pass only', pass_time),
            ('rsync -a', rsync_plain),
            ('rsync -a --fsync', rsync_fsync)]
    for label, seconds in rows:
        print('  %-38s %8.2fs %s' % (label, seconds,
                                     rate(copies * objects,
                                          copies * nbytes, seconds)))
    print('ratio coordsync/rsync: wall %.2f, pass %.2f (vs rsync --fsync: '
          'wall %.2f, pass %.2f)' % (
              wall / rsync_plain, pass_time / rsync_plain,
              wall / rsync_fsync, pass_time / rsync_fsync))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    temporary = args.workdir is None
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(
        prefix='coordsync-bench-repair-'))
    bring_up(workdir, args.part_power)
    try:
        benchmark(workdir, args)
    finally:
        local_cluster(workdir, 'down')
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
