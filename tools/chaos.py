#!/usr/bin/env python3
"""The chaos suite's driver: a cluster under faults, then the checker.

    tools/chaos.py [--seed S] [--kills 20] [--duration SECONDS]
                   [--faults kill,stop,leader,zk_outage,disk_full,corrupt]
                   [--clients 3] [--converge 300] [--workdir DIR] [--keep]

Starts a three-server ZooKeeper ensemble on loopback and a local cluster
of 4 nodes (3 replicas, one storage policy) on it with a Swift API
proxy; client threads write, overwrite and delete objects through the
proxy with python-swiftclient, recording every operation (acknowledged
with its ``X-Timestamp``, or "maybe") in ``history.jsonl``; a kazoo
client of the driver's own records every lock holding
(:class:`chaos_check.LockRecorder`).

Meanwhile a fault schedule drawn from the seed runs, one fault at a time
(so writes keep a quorum): SIGKILL a node and restart it (``kill``, at
least ``--kills``), SIGSTOP one past its session timeout and SIGCONT it
(``stop``), SIGKILL the ZooKeeper leader and restart it (``leader``),
stop every ZooKeeper server for a while, past the nodes' ``static_after``,
with a node killed and restarted meanwhile (``zk_outage``), fill a device
(a small tmpfs mounted over one node's device before the cluster
starts, filled then freed: ``disk_full``; skipped with a note when mount
is not allowed), flip the last byte of the body of an object's
``.data`` on one of its primaries, read back to confirm the damage
(``corrupt``; on by default only when the nodes run an object auditor,
which quarantines it so that replication restores it). ``--duration``
stretches the schedule with more faults of every kind for longer runs.

Then the faults stop, every node and ZooKeeper server runs, the clients
stop, and :mod:`chaos_check` (which shares no code with coordsync) is
run until the cluster is clean or ``--converge`` seconds pass. The last
line is the figure line; exit 0 only when every count is 0, every
fault's minimum was met and every corrupted file is found in its
device's quarantine (moved aside, not deleted). The seed is printed
first: ``--seed`` replays the same schedule (timing, and so the
history, varies).
"""

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import chaos_check  # noqa: E402
from swiftclient import client as swift_client  # noqa: E402
from swiftclient import exceptions as swift_exceptions  # noqa: E402

from coordsync.cmd import local_cluster  # noqa: E402
from coordsync.conf import worker as worker_conf  # noqa: E402
from tests.functional import zookeeper  # noqa: E402

FAULTS = ('kill', 'stop', 'leader', 'zk_outage', 'disk_full', 'corrupt')
NODES = 4
REPLICAS = 3
SESSION_TIMEOUT = 6
# NOTE: below the ZooKeeper outage's length, so that the nodes run
# static passes during it and the checker sees how they end.
STATIC_AFTER = 6.0
CONTAINERS = ('chaos-a', 'chaos-b')
KEYS_PER_CLIENT = 25
STATIC_OBJECTS = 12
TMPFS_SIZE = '48m'
# Bounds (not goals) for one step of a fault.
SERVE_BOUND = 90.0
QUORUM_BOUND = 120.0


def log(message):
    print('[%7.1f] %s' % (time.monotonic() - STARTED, message), flush=True)


STARTED = time.monotonic()


def default_faults():
    faults = list(FAULTS)
    if 'object-auditor' not in worker_conf.WORKER_GROUPS:
        faults.remove('corrupt')
    return faults


def make_schedule(seed, kills, faults, duration):
    """The fault list: ``[(kind, params)]``, drawn from ``seed``."""
    rng = random.Random(seed)
    rounds = 1
    if duration:
        # NOTE: about 6 minutes of faults per round of the minimums.
        rounds = max(1, int(duration // 360))
    plan = []
    for _round in range(rounds):
        if 'kill' in faults:
            plan += [('kill', {}) for _ in range(kills)]
        if 'stop' in faults:
            plan.append(('stop', {}))
        if 'leader' in faults:
            plan.append(('leader', {}))
        if 'zk_outage' in faults:
            plan.append(('zk_outage', {}))
        if 'disk_full' in faults:
            plan.append(('disk_full', {}))
        if 'corrupt' in faults:
            plan += [('corrupt', {}) for _ in range(3)]
    rng.shuffle(plan)
    names = ['n%d' % i for i in range(1, NODES + 1)]
    schedule = []
    for kind, params in plan:
        params = dict(params, gap=round(rng.uniform(0.5, 2.0), 2))
        if kind in ('kill', 'stop', 'corrupt'):
            params['node'] = rng.choice(names)
        if kind == 'kill':
            params['down'] = round(rng.uniform(0.5, 4.0), 2)
        if kind == 'leader':
            params['down'] = round(rng.uniform(2.0, 6.0), 2)
        if kind == 'zk_outage':
            params['down'] = round(rng.uniform(STATIC_AFTER + 6.0,
                                               STATIC_AFTER + 12.0), 2)
            # A node down for a while in the outage misses writes that
            # only static passes can bring it meanwhile.
            params['node'] = rng.choice(names)
        if kind == 'disk_full':
            params['hold'] = round(rng.uniform(6.0, 12.0), 2)
        if kind == 'corrupt':
            params['pick'] = rng.randrange(1 << 30)
        schedule.append((kind, params))
    return schedule


class History:
    """The clients' operations, appended to a JSON lines file."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.ops = 0
        self.acked = 0
        self._fh = open(path, 'w')

    def record(self, entry):
        with self.lock:
            self.ops += 1
            self.acked += bool(entry['acked'])
            self._fh.write(json.dumps(entry) + '\n')
            self._fh.flush()

    def close(self):
        self._fh.close()


def client_loop(index, seed, auth_url, history, stop):
    """One client thread: its own objects, written, overwritten and
    deleted until ``stop`` is set."""
    rng = random.Random(seed * 1000 + index)
    container = CONTAINERS[index % len(CONTAINERS)]
    conn = None
    exists = set()
    number = 0
    while not stop.is_set():
        if conn is None:
            conn = swift_client.Connection(
                auth_url, local_cluster.TEST_USER, local_cluster.TEST_KEY,
                retries=0, timeout=15)
        key = rng.randrange(KEYS_PER_CLIENT)
        name = 'o-%d-%d' % (index, key)
        number += 1
        op_id = 'c%d-%d' % (index, number)
        delete = name in exists and rng.random() < 0.3
        entry = {'id': op_id, 'op': 'delete' if delete else 'put',
                 'account': 'AUTH_test', 'container': container,
                 'object': name, 'acked': False, 'ts': None,
                 'start': time.time()}
        answer = {}
        try:
            if delete:
                conn.delete_object(container, name, response_dict=answer)
                exists.discard(name)
            else:
                body = ('%s ' % op_id).encode() + rng.randbytes(
                    rng.randrange(16, 2048))
                entry['etag'] = hashlib.md5(body).hexdigest()
                conn.put_object(container, name, body,
                                response_dict=answer)
                exists.add(name)
            entry['acked'] = True
            entry['ts'] = answer['headers'].get('x-timestamp')
            if entry['ts'] is None:
                entry['acked'] = False
        except swift_exceptions.ClientException as err:
            headers = err.http_response_headers or {}
            if delete and err.http_status == 404 \
                    and headers.get('x-timestamp'):
                # NOTE: the tombstone was written all the same.
                entry['acked'] = True
                entry['ts'] = headers['x-timestamp']
                exists.discard(name)
            if err.http_status in (401, None):
                conn = None
        except Exception:  # noqa: BLE001 - any failure is a "maybe"
            conn = None
        entry['end'] = time.time()
        history.record(entry)
        if not entry['acked']:
            stop.wait(0.2)
        else:
            stop.wait(0.01)


class Chaos:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.cluster_dir = os.path.join(workdir, 'cluster')
        self.counts = dict.fromkeys(
            ('kills', 'stops', 'leader_kills', 'zk_outages', 'disk_full',
             'corruptions'), 0)
        self.notes = []
        self.corrupted = []
        self.ensemble = None
        self.meta = None
        self.mounted = None
        self.recorder = None

    # -- set up ------------------------------------------------------------

    def start(self, history):
        os.makedirs(self.workdir, exist_ok=True)
        self.ensemble = zookeeper.ZooKeeperEnsemble(
            os.path.join(self.workdir, 'zookeeper'))
        self.ensemble.start()
        log('ZooKeeper ensemble up, leader zk%s' % self.ensemble.leader())
        ns = types.SimpleNamespace(
            nodes=NODES, devices=1, policies=1, replicas=REPLICAS,
            part_power=self.args.part_power,
            base_port=local_cluster.free_base_port(NODES),
            session_timeout=SESSION_TIMEOUT,
            replicate_every=self.args.replicate_every,
            backend=self.ensemble.url)
        self.meta = local_cluster.create(
            self.cluster_dir, ns,
            {'coordination.static_after': str(STATIC_AFTER)})
        if 'disk_full' in self.args.faults:
            self.mount_small_device()
        for name in self.names():
            local_cluster.start_node(self.cluster_dir, self.meta, name)
        local_cluster.wait_serving(self.cluster_dir, self.meta,
                                   self.names(), timeout=SERVE_BOUND)
        local_cluster.start_proxy(self.cluster_dir, self.meta)
        self.recorder = chaos_check.LockRecorder.of_url(
            self.ensemble.url).start()
        self.auth_url = local_cluster.proxy_auth_url(self.meta)
        self.make_containers(history)
        log('cluster up: %d nodes, proxy %s' % (NODES, self.auth_url))

    def names(self):
        return ['n%d' % i for i in range(1, NODES + 1)]

    def device_dir(self, name):
        return os.path.join(self.cluster_dir, name, 'devices', 'd1')

    def mount_small_device(self):
        target = self.device_dir(self.names()[-1])
        result = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=%s' % TMPFS_SIZE, 'tmpfs',
             target], capture_output=True, text=True)
        if result.returncode != 0:
            self.notes.append('disk_full skipped: mount failed (%s)'
                              % result.stderr.strip().splitlines()[-1:])
            log(self.notes[-1])
            self.args.faults = [f for f in self.args.faults
                                if f != 'disk_full']
            return
        self.mounted = target

    def make_containers(self, history):
        """The containers, and objects no client touches afterwards:
        what ``corrupt`` damages (a client's overwrite would repair a
        damaged file and prove nothing)."""
        conn = swift_client.Connection(
            self.auth_url, local_cluster.TEST_USER, local_cluster.TEST_KEY,
            retries=5)
        for container in CONTAINERS:
            conn.put_container(container)
        for number in range(STATIC_OBJECTS):
            body = ('static %d ' % number).encode() * 50
            answer = {}
            start = time.time()
            conn.put_object(CONTAINERS[0], 'static-%d' % number, body,
                            response_dict=answer)
            history.record({
                'id': 'static-%d' % number, 'op': 'put',
                'account': 'AUTH_test', 'container': CONTAINERS[0],
                'object': 'static-%d' % number, 'acked': True,
                'ts': answer['headers']['x-timestamp'],
                'etag': hashlib.md5(body).hexdigest(), 'start': start,
                'end': time.time()})

    # -- faults ------------------------------------------------------------

    def pid(self, name):
        return local_cluster.running_pid(self.cluster_dir, name)

    def kill_node(self, name, down):
        pid = self.pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self.counts['kills'] += 1
        time.sleep(down)
        self.start_node(name)

    def start_node(self, name):
        local_cluster.start_node(self.cluster_dir, self.meta, name)
        local_cluster.wait_serving(self.cluster_dir, self.meta, [name],
                                   timeout=SERVE_BOUND)

    def stop_node(self, name):
        pid = self.pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(SESSION_TIMEOUT + 4)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.counts['stops'] += 1

    def kill_leader(self, down):
        leader = self.ensemble.leader()
        if leader is None:
            self.ensemble.wait_quorum(QUORUM_BOUND)
            leader = self.ensemble.leader()
        self.ensemble.kill(leader)
        self.counts['leader_kills'] += 1
        time.sleep(down)
        self.ensemble.start_server(leader)
        self.ensemble.wait_quorum(QUORUM_BOUND)

    def zk_outage(self, down, name):
        """Every ZooKeeper server stopped for ``down`` seconds; meanwhile
        ``name`` is SIGKILLed for 2 s (so it misses writes the others'
        static passes push to it) and restarted, without a backend."""
        self.ensemble.stop()
        self.counts['zk_outages'] += 1
        started = time.monotonic()
        time.sleep(1.0)
        self.kill_node(name, 2.0)
        time.sleep(max(0.0, down - (time.monotonic() - started)))
        self.ensemble.start(QUORUM_BOUND)

    def disk_full(self, hold):
        if self.mounted is None:
            return
        filler = os.path.join(self.mounted, 'chaos-filler')
        chunk = b'\0' * (1 << 20)
        try:
            with open(filler, 'wb') as fh:
                for _ in range(1024):
                    fh.write(chunk)
                    fh.flush()
        except OSError:
            pass
        self.counts['disk_full'] += 1
        time.sleep(hold)
        os.unlink(filler)

    def corrupt(self, name, pick):
        """Flip the last byte of a static object's newest ``.data`` on
        ``name``, one of the object's primaries by the ring (a damaged
        handoff would be removed anyway and prove nothing); counted only
        when reading it back shows the damage."""
        rng = random.Random(pick)
        cluster = chaos_check.Cluster(self.cluster_dir)
        ring = cluster.object_ring
        candidates = []
        for number in range(STATIC_OBJECTS):
            obj_hash = cluster.name_hash('AUTH_test', CONTAINERS[0],
                                         'static-%d' % number)
            part = ring.partition(obj_hash)
            candidates += [(device, os.path.join(
                cluster.device_path(node, device), 'objects', str(part),
                obj_hash[-3:], obj_hash))
                for node, device in ring.primaries(part) if node == name]
        rng.shuffle(candidates)
        for device, hash_dir in candidates:
            copy = self._newest(hash_dir)
            if copy is None or copy.kind != 'data' or copy.error:
                continue
            try:
                with open(copy.path, 'r+b') as fh:
                    fh.seek(-1, os.SEEK_END)
                    last = fh.read(1)
                    fh.seek(-1, os.SEEK_END)
                    fh.write(bytes([last[0] ^ 0xff]))
            except (OSError, IndexError):
                continue
            _metadata, error = chaos_check.read_object_file(copy.path)
            if error is None:
                continue
            self.corrupted.append({
                'node': name, 'dev_path': cluster.device_path(name, device),
                'hash': os.path.basename(hash_dir),
                'file': os.path.basename(copy.path), 'error': error})
            self.counts['corruptions'] += 1
            log('corrupted %s (%s)' % (copy.path, error))
            return

    @staticmethod
    def _newest(hash_dir):
        try:
            return chaos_check.newest_copy(hash_dir)
        except OSError:
            return None

    def quarantined(self):
        """How many of the corrupted files are in their device's
        quarantine."""
        return sum(1 for entry in self.corrupted
                   if self.quarantined_entry(entry))

    @staticmethod
    def quarantined_entry(entry):
        """Is a corrupted file in its device's quarantine
        (``quarantined/objects/<hash>[-suffix]/<file>``)?"""
        qroot = os.path.join(entry['dev_path'], 'quarantined', 'objects')
        try:
            names = os.listdir(qroot)
        except OSError:
            return False
        return any(qname.split('-')[0] == entry['hash'] and os.path.exists(
            os.path.join(qroot, qname, entry['file'])) for qname in names)

    def run_fault(self, kind, params):
        if kind == 'kill':
            self.kill_node(params['node'], params['down'])
        elif kind == 'stop':
            self.stop_node(params['node'])
        elif kind == 'leader':
            self.kill_leader(params['down'])
        elif kind == 'zk_outage':
            self.zk_outage(params['down'], params['node'])
        elif kind == 'disk_full':
            self.disk_full(params['hold'])
        elif kind == 'corrupt':
            self.corrupt(params['node'], params['pick'])

    # -- the end -----------------------------------------------------------

    def heal(self):
        """Every ZooKeeper server and node running again."""
        for name in self.names():
            pid = self.pid(name)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        running = [i for i, p in self.ensemble.processes.items()
                   if p.poll() is None]
        for i in self.ensemble.ids:
            if i not in running:
                self.ensemble.start_server(i)
        self.ensemble.wait_quorum(QUORUM_BOUND)
        for name in self.names():
            if self.pid(name) is None:
                self.start_node(name)

    def check(self, history_path, locks_path):
        self.recorder.dump(locks_path)
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'tools', 'chaos_check.py'),
             '--workdir', self.cluster_dir, '--history', history_path,
             '--locks', locks_path, '--json'],
            capture_output=True, text=True)
        if result.returncode == 2 or not result.stdout.strip():
            raise RuntimeError('chaos_check failed: %s' % result.stderr)
        return json.loads(result.stdout)

    def close(self):
        if self.recorder is not None:
            self.recorder.stop()
        if self.meta is not None:
            try:
                local_cluster.stop_proxy(self.cluster_dir)
            except OSError:
                pass
            for name in self.names():
                pid = self.pid(name)
                if pid is None:
                    continue
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        if self.ensemble is not None:
            try:
                self.ensemble.stop()
            except (OSError, subprocess.SubprocessError):
                pass
        if self.mounted is not None:
            subprocess.run(['umount', '-l', self.mounted],
                           capture_output=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='chaos', description='Run coordsync under faults and check '
        'the result with an independent checker.')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--kills', type=int, default=20, metavar='N',
                        help='node kills per round (default %(default)s)')
    parser.add_argument('--duration', type=float, default=0,
                        metavar='SECONDS', help='repeat the schedule\'s '
                        'rounds to fill about this long (default: one '
                        'round)')
    parser.add_argument('--faults', default=','.join(default_faults()),
                        help='comma separated, of %s (default: '
                        '%%(default)s)' % ', '.join(FAULTS))
    parser.add_argument('--clients', type=int, default=3)
    parser.add_argument('--part-power', type=int, default=6)
    parser.add_argument('--replicate-every', type=float, default=2.0)
    parser.add_argument('--converge', type=float, default=300.0,
                        metavar='SECONDS', help='bound on convergence '
                        '(default %(default)s)')
    parser.add_argument('--workdir', help='default: a new temporary '
                        'directory, removed after a clean run')
    parser.add_argument('--keep', action='store_true',
                        help='keep the working directory')
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(',') if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error('--faults: unknown %s (known: %s)'
                     % (', '.join(unknown), ', '.join(FAULTS)))
    if args.kills < 0 or args.clients < 1 or args.converge <= 0:
        parser.error('--kills >= 0, --clients >= 1, --converge > 0')
    args.faults = faults
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    return args


def minimums_met(args, counts):
    rounds = max(1, int(args.duration // 360)) if args.duration else 1
    wanted = {'kill': ('kills', args.kills * rounds),
              'stop': ('stops', rounds), 'leader': ('leader_kills', rounds),
              'zk_outage': ('zk_outages', rounds),
              'disk_full': ('disk_full', rounds),
              'corrupt': ('corruptions', rounds)}
    short = []
    for fault in args.faults:
        key, least = wanted[fault]
        if counts[key] < least:
            short.append('%s=%d<%d' % (key, counts[key], least))
    return short


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # NOTE: kazoo and swiftclient report every dropped connection; under
    # chaos that is the point, not news.
    logging.basicConfig(level=logging.ERROR)
    for name in ('kazoo', 'swiftclient'):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    print('chaos seed=%d faults=%s (replay: tools/chaos.py --seed %d)'
          % (args.seed, ','.join(args.faults), args.seed), flush=True)
    schedule = make_schedule(args.seed, args.kills, args.faults,
                             args.duration)
    print('schedule: %s' % ' '.join(
        '%s(%s)' % (kind, ','.join('%s=%s' % kv for kv in
                                   sorted(params.items())))
        for kind, params in schedule), flush=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix='coordsync-chaos-')
    chaos = Chaos(args, workdir)
    history_path = os.path.join(workdir, 'history.jsonl')
    locks_path = os.path.join(workdir, 'locks.json')
    stop_clients = threading.Event()
    threads = []
    history = None
    status = 1
    try:
        os.makedirs(workdir, exist_ok=True)
        history = History(history_path)
        chaos.start(history)
        for i in range(args.clients):
            thread = threading.Thread(
                target=client_loop, name='client-%d' % i, daemon=True,
                args=(i, args.seed, chaos.auth_url, history, stop_clients))
            thread.start()
            threads.append(thread)
        for number, (kind, params) in enumerate(schedule, 1):
            time.sleep(params['gap'])
            log('fault %d/%d: %s %s' % (number, len(schedule), kind,
                                        params))
            chaos.run_fault(kind, params)
        log('faults over: %s' % chaos.counts)
        chaos.heal()
        stop_clients.set()
        for thread in threads:
            thread.join(60)
        history.close()
        faults_end = time.monotonic()
        deadline = faults_end + args.converge
        while True:
            result = chaos.check(history_path, locks_path)
            counts = result['counts']
            converged = not any(v for k, v in counts.items()
                                if k != 'overlaps')
            log('check: %s' % chaos_check.figure(counts))
            if converged or time.monotonic() > deadline:
                break
            time.sleep(10)
        converged_in = time.monotonic() - faults_end
        print('checked %s' % ' '.join(
            '%s=%d' % kv for kv in sorted(result['evidence'].items())))
        for line in result['details'][:20]:
            print('  %s' % line)
        short = minimums_met(args, chaos.counts)
        for note in chaos.notes:
            print('note: %s' % note)
        if short:
            print('fault minimums not met: %s' % ', '.join(short))
        c = chaos.counts
        quarantined = chaos.quarantined()
        if quarantined < c['corruptions']:
            print('not quarantined: %s' % ', '.join(
                '%(node)s %(hash)s/%(file)s' % e for e in chaos.corrupted
                if not chaos.quarantined_entry(e)))
        print('chaos seed=%d ops=%d acked=%d faults: kills=%d stops=%d '
              'leader_kills=%d zk_outages=%d disk_full=%d corruptions=%d '
              'quarantined=%d | %s converged_in=%s' % (
                  args.seed, history.ops, history.acked, c['kills'],
                  c['stops'], c['leader_kills'], c['zk_outages'],
                  c['disk_full'], c['corruptions'], quarantined,
                  chaos_check.figure(counts),
                  '%ds' % converged_in if converged else 'no'), flush=True)
        status = 0 if converged and not any(counts.values()) \
            and not short and quarantined == c['corruptions'] else 1
    finally:
        stop_clients.set()
        chaos.close()
        if status == 0 and not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print('working directory: %s' % workdir)
    return status


if __name__ == '__main__':
    sys.exit(main())
