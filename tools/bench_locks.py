#!/usr/bin/env python3
"""Lock cycles per second on ZooKeeper: coordsync's batched locks vs tooz.

    tools/bench_locks.py [--names 3072] [--window 64] [--warmup 1024]

It starts one private ZooKeeper (``tests/functional/zookeeper.py``) and,
in this one process, monkey-patched under eventlet exactly like the
daemons (``coordsync.concurrency.monkey_patch()`` first, so kazoo runs
its eventlet handler), joins a group with a
:class:`~coordsync.common.coordination.Coordinator` and takes and
releases a lock on each of ``--names`` distinct names, three ways:

(a) the worker engine's path: ``Coordinator.try_lock_many`` over windows
    of ``--window`` names, ``release`` of each name of the window
    (buffered: sent in batches while the next window is being taken),
    one ``flush_releases`` at the end; (a') the same with a
    ``flush_releases`` after every window, nothing overlapping;
(b) tooz's lock recipe: ``get_lock(name).acquire(blocking=False)`` and
    ``release()``, one name after another;
(c) bare kazoo: a sequential ephemeral ``create`` then ``delete``.

All three use the same kazoo client (tooz's driver's). Latency is per
window for (a) and (a'), per cycle for (b) and (c). A warm-up of
``--warmup`` names (fewer for tooz, which is slow) runs each way first,
untimed: a fresh ZooKeeper JVM is several times slower until its code is
compiled. The ratios compare figures measured in the same run. It also
counts the lock znodes left under the lock root (0 expected) and the
names refused (0 expected: nobody else holds them).

It prints figures and asserts nothing.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from oslo_config import cfg  # noqa: E402

from coordsync import concurrency  # noqa: E402
from coordsync import conf as coordsync_conf  # noqa: E402
from coordsync.common import coordination  # noqa: E402
from tests.functional import zookeeper  # noqa: E402

GROUP = 'bench-locks'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--names', type=int, default=3072, metavar='N',
                        help='distinct lock names per way (default: '
                        '%(default)s)')
    parser.add_argument('--window', type=int, default=64, metavar='N',
                        help='names per try_lock_many (default: '
                        '%(default)s)')
    parser.add_argument('--warmup', type=int, default=1024, metavar='N',
                        help='untimed names per way first (tooz: a '
                        'quarter; default: %(default)s)')
    return parser.parse_args(argv)


def make_conf(workdir, url):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], project='coordsync', default_config_files=[])
    conf.set_override('node_name', 'bench')
    conf.set_override('state_path', workdir)
    conf.set_override('backend_url', url, group='coordination')
    conf.set_override('group', GROUP, group='coordination')
    return conf


def names(prefix, count):
    return ['coordsync/bench/%s/%d' % (prefix, i) for i in range(count)]


class Result:
    def __init__(self, label, per, cycles, elapsed, latencies, refused=0):
        self.label = label
        self.per = per
        self.rate = cycles / elapsed
        self.latencies = sorted(latencies)
        self.refused = refused

    def percentile(self, fraction):
        index = min(len(self.latencies) - 1,
                    int(fraction * len(self.latencies)))
        return self.latencies[index] * 1000.0


def engine_path(coordinator, lock_names, window, flush_each):
    latencies, refused = [], 0
    started = time.monotonic()
    for start in range(0, len(lock_names), window):
        chunk = lock_names[start:start + window]
        began = time.monotonic()
        tokens = coordinator.try_lock_many(chunk)
        for name in chunk:
            coordinator.release(name)
        if flush_each:
            coordinator.flush_releases()
        latencies.append(time.monotonic() - began)
        refused += sum(1 for token in tokens.values() if token is None)
    coordinator.flush_releases()
    return time.monotonic() - started, latencies, refused


def tooz_locks(driver, lock_names):
    latencies, refused = [], 0
    started = time.monotonic()
    for name in lock_names:
        began = time.monotonic()
        lock = driver.get_lock(name.encode('utf-8'))
        if lock.acquire(blocking=False):
            lock.release()
        else:
            refused += 1
        latencies.append(time.monotonic() - began)
    return time.monotonic() - started, latencies, refused


def bare_kazoo(client, lock_names):
    client.ensure_path('/bench/bare')
    latencies = []
    started = time.monotonic()
    for index in range(len(lock_names)):
        began = time.monotonic()
        path = client.create('/bench/bare/%d' % index, b'{}',
                             ephemeral=True)
        client.delete(path)
        latencies.append(time.monotonic() - began)
    return time.monotonic() - started, latencies, 0


def run(coordinator, args, prefix, count):
    """Every way over ``count`` names: a list of Result."""
    driver = coordinator._driver
    client = coordination.kazoo_client_of(driver)
    window = args.window
    ways = [
        ('(a) try_lock_many + release, batched', 'window',
         lambda n: engine_path(coordinator, n, window, False), count),
        ("(a') same, flush after every window", 'window',
         lambda n: engine_path(coordinator, n, window, True), count),
        ('(b) tooz get_lock acquire + release', 'cycle',
         lambda n: tooz_locks(driver, n), count if prefix != 'warm'
         else count // 4),
        ('(c) kazoo ephemeral create + delete', 'cycle',
         lambda n: bare_kazoo(client, n), count),
    ]
    results = []
    for index, (label, per, way, size) in enumerate(ways):
        lock_names = names('%s-%d' % (prefix, index), size)
        elapsed, latencies, refused = way(lock_names)
        results.append(Result(label, per, size, elapsed, latencies,
                              refused))
    return results


def report(results, coordinator, args):
    print('%-40s %9s %8s %8s  %-12s %s' % (
        'way', 'cycles/s', 'p50 ms', 'p99 ms', 'latency per', 'refused'))
    for result in results:
        per = ('window of %d' % args.window if result.per == 'window'
               else 'cycle')
        print('%-40s %9.0f %8.2f %8.2f  %-12s %d' % (
            result.label, result.rate, result.percentile(0.5),
            result.percentile(0.99), per, result.refused))
    engine, _, tooz, bare = results
    print('ratio (a)/(b) tooz: %.1fx   (a)/(c) bare kazoo: %.1fx'
          % (engine.rate / tooz.rate, engine.rate / bare.rate))
    client = coordination.kazoo_client_of(coordinator._driver)
    root = coordinator._locks.root
    print('lock znodes left under %s: %d' % (
        root, len(client.get_children(root))))


def benchmark(workdir, args):
    zk = zookeeper.ZooKeeperServer(os.path.join(workdir, 'zookeeper'))
    zk.start()
    coordinator = None
    try:
        coordinator = coordination.Coordinator(
            make_conf(workdir, zk.url), roles=['bench'])
        if not coordinator.start(wait=30):
            print('could not join the group on %s' % zk.url)
            return 1
        print('ZooKeeper %s, %d names per way, window %d, eventlet '
              'monkey-patched: %s' % (zk.url, args.names, args.window,
                                      concurrency.is_monkey_patched()),
              flush=True)
        run(coordinator, args, 'warm', args.warmup)
        report(run(coordinator, args, 'timed', args.names), coordinator,
               args)
        return 0
    finally:
        if coordinator is not None:
            coordinator.stop()
        zk.stop()


def main(argv=None):
    concurrency.monkey_patch()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = tempfile.mkdtemp(prefix='coordsync-bench-locks-')
    try:
        return benchmark(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
