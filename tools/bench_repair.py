#!/usr/bin/env python3
"""Time levelling one partition with coordsync-replicator, against rsync.

    tools/bench_repair.py [--small 20000] [--large 100] [--part-power 4]
                          [--partition P] [--case full|differ|both]
                          [--differ-percent 1] [--workdir DIR]

1. Brings up a 3-node ``coordsync-local-cluster`` (one device per node,
   part power 4 so a chosen partition is easy to fill, no replicator in
   the servers) in a temporary directory.
2. Fills partition P on its first primary's device directly with
   :class:`~coordsync.obj.diskfile.DiskFileManager`: ``--small`` objects
   of ``--small-size`` bytes and ``--large`` of ``--large-size``, named so
   that ``ring.get_part`` puts them in P (names are generated and those
   hashing elsewhere dropped). The other two replicas stay empty.

The "full" case (one full partition onto two empty replicas):

3. Runs ``coordsync-replicator --once --partitions P`` on that node, again
   until all three replicas have the same suffix hashes, and times each
   run: the command's wall time (process start, group join, pass, leave)
   and the pass alone (``duration`` of the recon file the pass writes).
4. Times ``rsync -a`` of ``objects/P`` from the full device into an empty
   directory on the same machine, and ``rsync -a --fsync`` (coordsync
   fsyncs every object, plain rsync does not), each once per empty
   replica, as coordsync writes R - 1 copies.
5. Prints the times, coordsync/rsync ratios, objects/s and MB/s.

The "differ" case (``--differ-percent``, 1 % of the objects, differ),
run after the full one (with ``--case differ`` alone the levelling of
step 3 is done but neither timed against rsync nor reported as a case):

6. Copies the levelled ``objects/P`` of the first primary (``cp -a``, not
   timed) four times: two copies stand for the two up-to-date replicas
   of ``rsync -a``, two for those of ``rsync -a --fsync``.
7. Writes a newer version (new body, same size) of about 1 % of the
   small objects and 1 % of the large ones (at least one of each kind
   there is) on the first primary only, directly, as in step 2. The
   other two replicas now each lack exactly those versions.
8. Times ``coordsync-replicator --once --partitions P`` on that node
   again, as in step 3: finding the difference (suffix hashes, the
   missing check) and sending it.
9. Times ``rsync -a --stats`` (and ``rsync -a --stats --fsync``) of the
   changed ``objects/P`` into each of the two copies of step 6: rsync
   scans the whole tree and transfers only the changed files (and the
   partition's small hashes files). Plain ``rsync -a`` does not delete:
   the old versions stay in its copies, where coordsync removes them.
10. Prints the times, objects/s over the whole partition scanned and
    over the changed objects, and the coordsync/rsync ratios.

The cluster is then stopped. Every ratio is against a reference measured
in the same run (the machine may be shared and noisy). Both sides read
from the page cache (the partition was just written); neither side drops
caches. It prints figures and asserts nothing.
"""

import argparse
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

KIB = 1024
MIB = 1024 * KIB
ACCOUNT, CONTAINER = 'bench', 'objects'
CASES = {'full': ('full',), 'differ': ('differ',),
         'both': ('full', 'differ')}


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
    parser.add_argument('--case', choices=sorted(CASES), default='both',
                        help='full: one full partition onto two empty '
                        'replicas; differ: then a newer version of '
                        '--differ-percent of the objects on the first '
                        'primary only (default: %(default)s)')
    parser.add_argument('--differ-percent', type=float, default=1.0,
                        metavar='PERCENT',
                        help='objects changed in the differ case '
                        '(default: %(default)s)')
    parser.add_argument('--max-passes', type=int, default=3,
                        help='replicator runs before giving up levelling')
    parser.add_argument('--workdir', help='new cluster directory '
                        '(default: a temporary one, removed at the end)')
    args = parser.parse_args(argv)
    if not 0 <= args.partition < 2 ** args.part_power:
        parser.error('--partition must be below 2**--part-power')
    if not 0 < args.differ_percent <= 100:
        parser.error('--differ-percent must be above 0 and at most 100')
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

def write_objects(files, node, device, partition, sets):
    """Write a new version of every name of ``sets`` [(names, size)]
    directly, bodies of ``size`` bytes; return (objects, bytes)."""
    from coordsync.common import timestamp
    manager = files.managers[node]

    def write(job):
        name, body = job
        manager.diskfile(device, partition, ACCOUNT, CONTAINER, name).write(
            [body], {'X-Timestamp': timestamp.Timestamp.now().normal})

    jobs = []
    for names, size in sets:
        template = os.urandom(size)
        for index, name in enumerate(names):
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


def replicate(files, primaries, partition, max_passes, log_path, what):
    """Run the replicator on the first primary until level; print each run.

    Returns (wall seconds, pass seconds, runs, level).
    """
    node = primaries[0]['node']
    wall = pass_time = 0.0
    for run in range(1, max_passes + 1):
        seconds, status, recon = run_replicator(files, node, partition,
                                                log_path)
        wall += seconds
        pass_time += recon['duration']
        print('%scoordsync-replicator --once --partitions %d (run %d): '
              'exit %d, wall %.2fs, pass %.2fs; %d objects pushed '
              '(%.1f MB), %d pulled, %d REPLICATE, %d errors' % (
                  what, partition, run, status, seconds, recon['duration'],
                  recon['objects_pushed'], recon['bytes_pushed'] / 1e6,
                  recon['objects_pulled'], recon['replicate_requests'],
                  recon['errors']), flush=True)
        if level(files, primaries, partition):
            return wall, pass_time, run, True
    print('NOT level after %d runs; see %s' % (max_passes, log_path),
          flush=True)
    return wall, pass_time, max_passes, False


def time_rsync(source, dest, *options):
    os.makedirs(dest)
    start = time.monotonic()
    subprocess.run(['rsync', '-a', *options, source + '/', dest + '/'],
                   check=True)
    return time.monotonic() - start


def time_rsync_update(source, dest, *options):
    """Time ``rsync -a --stats`` into the existing copy ``dest``; return
    (seconds, regular files transferred)."""
    start = time.monotonic()
    result = subprocess.run(
        ['rsync', '-a', '--stats', *options, source + '/', dest + '/'],
        check=True, stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - start
    found = re.search(r'^Number of regular files transferred: ([\d,.]+)',
                      result.stdout, re.MULTILINE)
    sent = int(re.sub(r'\D', '', found.group(1))) if found else -1
    return seconds, sent


# -- the run -----------------------------------------------------------------

def rate(objects, nbytes, seconds):
    seconds = max(seconds, 1e-9)
    return '%8.0f objects/s %8.1f MB/s' % (objects / seconds,
                                           nbytes / seconds / 1e6)


def ratios(wall, pass_time, rsync_plain, rsync_fsync):
    rsync_plain = max(rsync_plain, 1e-9)
    rsync_fsync = max(rsync_fsync, 1e-9)
    return ('ratio coordsync/rsync: wall %.2f, pass %.2f (vs rsync --fsync: '
            'wall %.2f, pass %.2f)' % (
                wall / rsync_plain, pass_time / rsync_plain,
                wall / rsync_fsync, pass_time / rsync_fsync))


def runs_label(runs):
    return 'coordsync-replicator, wall (%d run%s)' % (
        runs, '' if runs == 1 else 's')


def full_case(files, workdir, primaries, part, objects, nbytes, replicated):
    wall, pass_time, runs, _level = replicated
    copies = len(primaries) - 1
    full = primaries[0]
    source = os.path.join(files.devices_path(full['node']), full['device'],
                          'objects', str(part))
    dests = ['rsync-%d' % i for i in range(copies)]
    fsync_dests = ['rsync-fsync-%d' % i for i in range(copies)]
    rsync_plain = sum(time_rsync(source, os.path.join(workdir, d))
                      for d in dests)
    rsync_fsync = sum(time_rsync(source, os.path.join(workdir, d), '--fsync')
                      for d in fsync_dests)
    for dest in dests + fsync_dests:
        shutil.rmtree(os.path.join(workdir, dest), ignore_errors=True)

    print()
    print('full: %d copies of %d objects (%.1f MB) made by each:'
          % (copies, objects, nbytes / 1e6))
    rows = [(runs_label(runs), wall),
            ('coordsync pass only', pass_time),
            ('rsync -a', rsync_plain),
            ('rsync -a --fsync', rsync_fsync)]
    for label, seconds in rows:
        print('  %-38s %8.2fs %s' % (label, seconds,
                                     rate(copies * objects,
                                          copies * nbytes, seconds)))
    print(ratios(wall, pass_time, rsync_plain, rsync_fsync))
    print(flush=True)


def pick(names, percent):
    """About ``percent`` % of ``names`` (at least one), evenly spread."""
    if not names:
        return []
    count = min(len(names), max(1, round(len(names) * percent / 100)))
    return [names[i * len(names) // count] for i in range(count)]


def differ_case(files, workdir, primaries, part, objects, args, names):
    copies = len(primaries) - 1
    full = primaries[0]
    lacking = ['%s/%s' % (d['node'], d['device']) for d in primaries[1:]]
    source = os.path.join(files.devices_path(full['node']), full['device'],
                          'objects', str(part))

    # The up-to-date replicas of rsync: copies of the levelled partition.
    start = time.monotonic()
    dests = [os.path.join(workdir, 'rsync-differ-%d' % i)
             for i in range(copies)]
    fsync_dests = [os.path.join(workdir, 'rsync-differ-fsync-%d' % i)
                   for i in range(copies)]
    for dest in dests + fsync_dests:
        subprocess.run(['cp', '-a', source, dest], check=True)
    os.sync()  # NOTE: so the copies' writeback does not fall in a timing.
    copied = time.monotonic() - start

    start = time.monotonic()
    changed_sets = [(pick(names['small'], args.differ_percent),
                     args.small_size),
                    (pick(names['large'], args.differ_percent),
                     args.large_size)]
    changed, changed_bytes = write_objects(files, full['node'],
                                           full['device'], part,
                                           changed_sets)
    print('differ: %d of %d objects (%d x %d B + %d x %d B), %.1f MB, '
          'changed on %s/%s in %.1fs; lacking them: %s (%d rsync copies '
          'made by cp -a in %.1fs, not timed)' % (
              changed, objects, len(changed_sets[0][0]), args.small_size,
              len(changed_sets[1][0]), args.large_size,
              changed_bytes / 1e6, full['node'], full['device'],
              time.monotonic() - start, ', '.join(lacking),
              len(dests + fsync_dests), copied), flush=True)

    log_path = os.path.join(workdir, 'bench-replicator.log')
    wall, pass_time, runs, _level = replicate(
        files, primaries, part, args.max_passes, log_path, 'differ: ')

    rsync_plain = rsync_fsync = 0.0
    sent_plain, sent_fsync = [], []
    for dest in dests:
        seconds, sent = time_rsync_update(source, dest)
        rsync_plain += seconds
        sent_plain.append(sent)
    for dest in fsync_dests:
        seconds, sent = time_rsync_update(source, dest, '--fsync')
        rsync_fsync += seconds
        sent_fsync.append(sent)

    print()
    print('differ: %d changed of %d objects (%.1f MB) brought to %d '
          'up-to-date copies by each' % (changed, objects,
                                         changed_bytes / 1e6, copies))
    print('  (rsync regular files transferred per copy: -a %s, '
          '-a --fsync %s)' % (
              ', '.join(map(str, sent_plain)),
              ', '.join(map(str, sent_fsync))))
    print('  %-38s %9s %17s %17s %10s' % (
        '', 'seconds', 'scanned objects/s', 'changed objects/s',
        'changed MB/s'))
    rows = [(runs_label(runs), wall),
            ('coordsync pass only', pass_time),
            ('rsync -a', rsync_plain),
            ('rsync -a --fsync', rsync_fsync)]
    for label, seconds in rows:
        per_second = 1 / max(seconds, 1e-9)
        print('  %-38s %8.2fs %17.0f %17.0f %10.1f' % (
            label, seconds, copies * objects * per_second,
            copies * changed * per_second,
            copies * changed_bytes * per_second / 1e6))
    print(ratios(wall, pass_time, rsync_plain, rsync_fsync))
    print(flush=True)


def benchmark(workdir, args):
    files = ClusterFiles(workdir)
    cases = CASES[args.case]
    part = args.partition
    primaries = files.ring.get_part_nodes(part)
    full = primaries[0]
    empties = ['%s/%s' % (d['node'], d['device']) for d in primaries[1:]]
    names = {prefix: files.names_in(part, prefix, count)
             for prefix, count in (('small', args.small),
                                   ('large', args.large))}
    start = time.monotonic()
    objects, nbytes = write_objects(
        files, full['node'], full['device'], part,
        [(names['small'], args.small_size),
         (names['large'], args.large_size)])
    print('partition %d: %d objects (%d x %d B + %d x %d B), %.1f MB on '
          '%s/%s, written in %.1fs; empty: %s' % (
              part, objects, args.small, args.small_size, args.large,
              args.large_size, nbytes / 1e6, full['node'], full['device'],
              time.monotonic() - start, ', '.join(empties)), flush=True)

    log_path = os.path.join(workdir, 'bench-replicator.log')
    timed = 'full' in cases
    replicated = replicate(files, primaries, part, args.max_passes,
                           log_path, 'full: ' if timed else
                           'levelling (not a timed case): ')
    if timed:
        full_case(files, workdir, primaries, part, objects, nbytes,
                  replicated)
    if 'differ' in cases:
        if not replicated[3]:
            print('differ: skipped, the replicas are not level')
            return
        differ_case(files, workdir, primaries, part, objects, args, names)


def announce(argv, parse_args, script):
    """Print the exact command line, parse it, print the settings and
    the load average; return the parsed arguments (the benchmarks in
    tools/ share this header)."""
    if argv is None:
        argv = sys.argv[1:]
        command = getattr(sys, 'orig_argv', sys.argv)
    else:
        command = [sys.executable, script, *argv]
    print('command: %s' % shlex.join(command))
    args = parse_args(argv)
    print('settings: %s; load average %s' % (
        ', '.join('%s=%s' % item for item in sorted(vars(args).items())),
        ' '.join('%.2f' % load for load in os.getloadavg())), flush=True)
    return args


def main(argv=None):
    args = announce(argv, parse_args, __file__)
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
