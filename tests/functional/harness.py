"""The clusters of the functional tests, and what they leave behind.

* :class:`Group` -- bare ``coordsync-server`` and lock worker processes
  sharing one backend and one test-unique group (membership, locks).
* :class:`LocalCluster` -- a running ``coordsync-local-cluster`` (ring,
  node configs, servers on 127.0.0.x) on a given backend: objects through
  the quorum client, their files on each node's disks, nodes stopped and
  started (:func:`local_cluster` brings one up and down).
* :class:`Workers` -- processes of one worker command on a local
  cluster, each reading its node's config and then a per-process one
  (audit log, recon path, options), so the node configs stay untouched;
  their audit logs (:func:`jobs_of`, :func:`overlapping`), recon files
  and stats lines: :class:`Replicators` (``coordsync-replicator``),
  :class:`ContainerReplicators` and :class:`Reconcilers`.
* Storage policies: each policy's ring, an object client writing into a
  given policy, and where an object's files are, per policy directory
  (:meth:`LocalCluster.policy_files`, :meth:`LocalCluster.live_policies`).

Processes and ``coordsync-status`` runs come from :mod:`nodes`.
"""

import collections
import contextlib
import json
import math
import os
import re
import threading
import time
import urllib.parse
import uuid

from kazoo import client as kazoo_client
from kazoo import exceptions as kazoo_exceptions
from kazoo.handlers import threading as kazoo_threading
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import timestamp
from coordsync.obj import client as object_client
from coordsync.obj import diskfile
from coordsync.obj import hashes
from coordsync.obj import layout
from tests.functional import nodes
from tests.functional import zookeeper

SESSION_TIMEOUT = 3
ACCOUNT = 'acct'
WORKER = 'object-replicator'
# What every test process sets in [coordination]: short, so that deaths
# and outages show within seconds.
COORDINATION = {'heartbeat': 0.2, 'session_timeout': SESSION_TIMEOUT,
                'initial_reconnect_backoff': 0.1,
                'max_reconnect_backoff': 1.0, 'progress_interval': 1.0}


class Processes:
    """The child processes of one test, each logging to
    ``<workdir>/<label>.log``; :meth:`stop` ends them all."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.procs = {}
        self._started = []

    def path(self, name):
        return os.path.join(self.workdir, name)

    def spawn(self, label, argv, env=None):
        proc = nodes.Process(label, argv, self.path('%s.log' % label), env)
        self.procs[label] = proc
        self._started.append(proc)
        return proc

    def stop(self, timeout=10.0):
        for proc in self._started:
            proc.stop(timeout=timeout)


# -- bare node processes ----------------------------------------------------

class Group(Processes):
    """Node processes sharing one backend and one (test-unique) group."""

    def __init__(self, workdir, backend_url):
        super().__init__(workdir)
        self.backend_url = backend_url
        self.group = 'test-%s' % uuid.uuid4().hex[:8]
        self.status_config = self.config('status')

    def config(self, node_name, **extra):
        node_dir = self.path(node_name)
        os.makedirs(os.path.join(node_dir, 'devices'), exist_ok=True)
        default = {'node_name': node_name,
                   'state_path': node_dir,
                   'devices': os.path.join(node_dir, 'devices'),
                   'bind_ip': '127.0.0.1',
                   'bind_port': zookeeper.free_port(),
                   'cluster_secret': 'test-secret',
                   'use_stderr': 'true'}
        coordination = dict(COORDINATION, backend_url=self.backend_url,
                            group=self.group)
        coordination.update(extra.pop('coordination', {}))
        default.update(extra)
        return nodes.write_config(self.path('%s.conf' % node_name),
                                  {'DEFAULT': default,
                                   'coordination': coordination})

    def start_node(self, name, wait=True, **extra):
        config = self.config(name, **extra)
        proc = self.spawn(name, nodes.module_argv(
            'coordsync.cmd.server', '--config-file', config))
        if wait:
            proc.wait_log('Joined coordination group')
        return proc

    def start_lock_worker(self, name, *args):
        config = self.config(name)
        return self.spawn(name, nodes.script_argv(
            'lock_worker.py', '--config-file', config, *args))

    def members(self):
        return nodes.member_nodes(self.status_config)

    def close(self):
        self.stop(timeout=5)


# -- a local cluster ----------------------------------------------------------

def run_local_cluster(workdir, *args, check=True):
    return nodes.run_module('coordsync.cmd.local_cluster', '--workdir',
                            str(workdir), *args, check=check, timeout=90)


@contextlib.contextmanager
def local_cluster(workdir, nodes_count=3, part_power=6, backend=None,
                  session_timeout=None, settings=None, base_port=None,
                  policies=1):
    """``coordsync-local-cluster up`` in ``workdir``; ``down`` after.

    The servers run no replicator: tests start the replicators they
    observe, and some check the disks byte for byte, which a background
    pass would rehash and move. ``settings`` (``{'group.option':
    value}``) go to every node's config (``up --set``). ``base_port``:
    the first node's port (default: a free one), for a test that must
    know the cluster's addresses before it is up. ``policies``: how many
    storage policies (``up --policies``); one unless a test is about
    them, so that the others' passes, locks and audit logs are those of
    policy 0 alone.
    """
    if base_port is None:
        base_port = local_cluster_cmd.free_base_port(nodes_count)
    up = ['up', '--nodes', str(nodes_count), '--part-power',
          str(part_power), '--base-port', str(base_port),
          '--replicate-every', '0', '--policies', str(policies)]
    if backend:
        up += ['--backend', backend]
    if session_timeout:
        up += ['--session-timeout', str(session_timeout)]
    for option, value in sorted((settings or {}).items()):
        up += ['--set', '%s=%s' % (option, value)]
    try:
        run_local_cluster(workdir, *up)
        yield LocalCluster(workdir)
    finally:
        run_local_cluster(workdir, 'down', check=False)


class LocalCluster:
    """What the tests need to know of, and do to, a local cluster."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.meta = local_cluster_cmd.load(self.workdir)
        self.node_names = ['n%d' % i for i in range(1, self.meta['nodes']
                                                    + 1)]
        self.partitions = frozenset(range(2 ** self.meta['part_power']))
        self.config = self.node_config('n1')
        self.conf = self.node_conf('n1')
        self.ring = ring_mod.Ring(
            os.path.join(self.workdir, 'object.ring.json'),
            self.meta['hash_path_prefix'], self.meta['hash_path_suffix'])
        self.node_client = direct_client.NodeClient(self.conf)
        self.objects = object_client.ObjectClient(self.conf, self.ring,
                                                  self.node_client)
        self.policies = list(range(local_cluster_cmd.policy_count(
            self.meta)))
        self.container_ring = self._ring(local_cluster_cmd.CONTAINER_RING)
        self.account_ring = self._ring(local_cluster_cmd.ACCOUNT_RING)
        self._policy_rings = {0: self.ring}

    def _ring(self, file_name):
        return ring_mod.Ring(os.path.join(self.workdir, file_name),
                             self.meta['hash_path_prefix'],
                             self.meta['hash_path_suffix'])

    def node_config(self, node):
        return local_cluster_cmd.node_config_path(self.workdir, node)

    def node_conf(self, node):
        """``node``'s options, as its processes read them."""
        conf = cfg.ConfigOpts()
        coordsync_conf.register_opts(conf)
        conf(['--config-file', self.node_config(node)],
             default_config_files=[])
        return conf

    def node_log(self, node):
        with open(os.path.join(self.workdir, node, 'server.log'),
                  encoding='utf-8', errors='replace') as fh:
            return fh.read()

    def address(self, node):
        index = int(node[1:])
        return '127.0.0.%d' % index, self.meta['base_port'] + index - 1

    def status(self, *args):
        """``(exit code, output, stderr)`` of coordsync-status on n1."""
        return nodes.run_status(self.config, *args)

    # -- nodes --------------------------------------------------------------

    def cluster_cmd(self, *args):
        return run_local_cluster(self.workdir, *args)

    def stop(self, node, kill=False):
        self.cluster_cmd('stop', node, *(['--kill'] if kill else []))

    def start(self, node):
        self.cluster_cmd('start', node)

    @contextlib.contextmanager
    def node_down(self, node, kill=False):
        """Stop ``node``'s server for the block; start it again after."""
        self.stop(node, kill)
        try:
            yield
        finally:
            self.start(node)

    # -- objects --------------------------------------------------------------

    def client_cmd(self, *args, check=True):
        """coordsync-client on n1; stdout is bytes (object bodies)."""
        return nodes.run_module('coordsync.cmd.client', '--config-file',
                                self.config, *args, check=check, text=False)

    def put(self, container, obj, body, account=ACCOUNT):
        return self.objects.put(account, container, obj, body).normal

    def delete(self, container, obj, account=ACCOUNT):
        return self.objects.delete(account, container, obj).normal

    def get(self, container, obj, account=ACCOUNT):
        found = self.objects.get(account, container, obj)
        return None if found is None else b''.join(found[1])

    def disk(self, node):
        """A DiskFileManager of ``node``'s devices, to write behind its
        server's back."""
        return diskfile.DiskFileManager(
            os.path.join(self.workdir, node, 'devices'),
            hash_prefix=self.meta['hash_path_prefix'],
            hash_suffix=self.meta['hash_path_suffix'])

    # -- storage policies -------------------------------------------------

    def policy_ring(self, policy):
        """The object ring of storage policy ``policy``."""
        if policy not in self._policy_rings:
            self._policy_rings[policy] = self._ring(
                local_cluster_cmd.policy_ring_name(policy))
        return self._policy_rings[policy]

    def policy_client(self, policy):
        """An ObjectClient writing into ``policy`` straight to the nodes,
        the container replicas named (they get the object's row, under
        ``policy``): what a proxy that took the container for one of
        ``policy`` does."""
        return object_client.ObjectClient(
            self.conf, self.policy_ring(policy), self.node_client,
            container_ring=self.container_ring, policy=policy)

    def policy_files(self, container, obj, account=ACCOUNT):
        """``{policy: {(node, device): [file names]}}`` of an object in
        every policy's directory (``objects``, ``objects-N``) of every
        device that has some of its files."""
        obj_hash = self.obj_hash(container, obj, account)
        found = {}
        for policy in self.policies:
            part = self.policy_ring(policy).get_part(account, container,
                                                     obj)
            for node, device in self.devices():
                hash_dir = os.path.join(
                    self.workdir, node, 'devices', device,
                    storage_policy.datadir(policy), str(part),
                    hashing.suffix_of(obj_hash), obj_hash)
                try:
                    names = sorted(os.listdir(hash_dir))
                except FileNotFoundError:
                    continue
                if names:
                    found.setdefault(policy, {})[(node, device)] = names
        return found

    def live_policies(self, container, obj, account=ACCOUNT):
        """``{policy: {(node, device): newest .data}}``: where the object
        has a live copy (its newest file there is a ``.data``)."""
        live = {}
        for policy, copies in self.policy_files(container, obj,
                                                account).items():
            for where, names in copies.items():
                newest = [n for n in names if n.endswith(('.data', '.ts'))]
                if newest and newest[-1].endswith('.data'):
                    live.setdefault(policy, {})[where] = newest[-1]
        return live

    def live_primaries(self, container, obj, account=ACCOUNT):
        """:meth:`live_policies` on each policy's primaries only (a
        handoff's copy waits for the object replicator to take it home,
        where a newer tombstone wins)."""
        live = {}
        for policy, copies in self.live_policies(container, obj,
                                                 account).items():
            ring = self.policy_ring(policy)
            primaries = {(d['node'], d['device']) for d in
                         ring.get_part_nodes(ring.get_part(
                             account, container, obj))}
            on = {w: f for w, f in copies.items() if w in primaries}
            if on:
                live[policy] = on
        return live

    # -- container replicas -----------------------------------------------

    def container_replicas(self, container, account=ACCOUNT):
        """``(partition, primaries)`` of a container's database."""
        return self.container_ring.get_nodes(account, container)

    def container_heads(self, container, account=ACCOUNT):
        """``{node: (status, headers)}`` of a HEAD on every replica."""
        part, primaries = self.container_replicas(container, account)
        found = {}
        for node in primaries:
            status, headers, _ = self.node_client.call(
                node, 'HEAD', direct_client.container_path(
                    node['device'], part, account, container))
            found[node['node']] = (status, headers)
        return found

    def container_listings(self, container, account=ACCOUNT):
        """``{node: [row dicts]}`` of every replica's JSON listing (all
        pages); None for a replica answering 404."""
        part, primaries = self.container_replicas(container, account)
        found = {}
        for node in primaries:
            rows, marker = [], ''
            while True:
                status, _, body = self.node_client.call(
                    node, 'GET', direct_client.container_path(
                        node['device'], part, account, container),
                    query=urllib.parse.urlencode(
                        {'format': 'json', 'marker': marker}))
                if status == 404:
                    rows = None
                    break
                assert status == 200, (node['node'], status, body[:200])
                page = json.loads(body)
                if not page:
                    break
                rows.extend(page)
                marker = page[-1]['name']
            found[node['node']] = rows
        return found

    def fence_highest(self, node, item):
        """The highest fencing token ``node`` accepted for ``item``."""
        store = fencing.TokenStore(self.node_conf(node).server.fence_db)
        try:
            return store.highest(item)
        finally:
            store.close()

    # -- files on disk --------------------------------------------------------

    def obj_hash(self, container, obj, account=ACCOUNT):
        return hashing.hash_path(account, container, obj,
                                 prefix=self.meta['hash_path_prefix'],
                                 suffix=self.meta['hash_path_suffix'])

    def locate(self, container, obj, account=ACCOUNT):
        """``(partition, object hash)``."""
        return (self.ring.get_part(account, container, obj),
                self.obj_hash(container, obj, account))

    def primaries(self, part):
        """``{node: device}`` of a partition's primaries (one per node)."""
        return {d['node']: d['device']
                for d in self.ring.get_part_nodes(part)}

    def devices(self):
        return [(node, 'd%d' % d) for node in self.node_names
                for d in range(1, self.meta['devices'] + 1)]

    def part_dir(self, node, device, part):
        return os.path.join(self.workdir, node, 'devices', device,
                            'objects', str(part))

    def fill_one_replica(self, node, container, bodies):
        """Write objects of one partition, one per body, straight to
        ``node``'s disk behind its server's back: the other replicas lack
        them all (a long repair to come).

        Returns ``(partition, {object: expected file name})``.
        """
        disk = self.disk(node)
        part = self.locate(container, 'obj-0')[0]
        device = self.primaries(part)[node]
        expected = {}
        for i in range(len(bodies) * len(self.partitions) * 4):
            name = 'obj-%d' % i
            if self.locate(container, name)[0] != part:
                continue
            when = timestamp.Timestamp.now().normal
            disk.diskfile(device, part, ACCOUNT, container, name).write(
                [bodies[len(expected)]], {'X-Timestamp': when})
            expected[name] = when + '.data'
            if len(expected) == len(bodies):
                return part, expected
        raise AssertionError('too few names in partition %d' % part)

    def receiving(self, part, sender='n1'):
        """``{tmp file: size}`` of the bodies the other primaries of
        ``part`` are receiving (a sync stream in progress)."""
        sizes = {}
        for node, device in self.primaries(part).items():
            if node == sender:
                continue
            tmp = os.path.join(self.workdir, node, 'devices', device,
                               layout.TMPDIR)
            for name in os.listdir(tmp) if os.path.isdir(tmp) else ():
                try:
                    sizes[os.path.join(tmp, name)] = os.stat(
                        os.path.join(tmp, name)).st_size
                except FileNotFoundError:
                    pass
        return sizes

    def objects_on(self, node, part):
        """How many objects ``node``'s replica of ``part`` holds."""
        device = self.primaries(part)[node]
        return sum(name.endswith('.data') for _root, _dirs, files in os.walk(
            self.part_dir(node, device, part)) for name in files)

    def hash_dir(self, node, device, part, obj_hash):
        return os.path.join(self.part_dir(node, device, part),
                            hashing.suffix_of(obj_hash), obj_hash)

    def _file_names(self, node, device, part, obj_hash):
        hash_dir = self.hash_dir(node, device, part, obj_hash)
        return sorted(os.listdir(hash_dir)) if os.path.isdir(hash_dir) \
            else []

    def files_of(self, container, obj, account=ACCOUNT):
        """``{(node, device): [file names]}`` of an object, on every
        device that has some."""
        part, obj_hash = self.locate(container, obj, account)
        found = {}
        for node, device in self.devices():
            names = self._file_names(node, device, part, obj_hash)
            if names:
                found[(node, device)] = names
        return found

    def primary_files(self, container, obj, account=ACCOUNT):
        """``{node: sorted file names}`` of an object on its primaries."""
        part, obj_hash = self.locate(container, obj, account)
        return {node: self._file_names(node, device, part, obj_hash)
                for node, device in self.primaries(part).items()}

    def lose_files(self, node, container, obj):
        """Remove an object's files from ``node``'s replica (a lost file).

        NOTE: the suffix hash cache does not see files vanish behind its
        back; the suffix is marked for rehashing, as an auditor finding
        the loss would.
        """
        part, obj_hash = self.locate(container, obj)
        device = self.primaries(part)[node]
        hash_dir = self.hash_dir(node, device, part, obj_hash)
        names = os.listdir(hash_dir)
        assert names, hash_dir
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(hash_dir, name))
        hashes.invalidate_suffix(self.part_dir(node, device, part),
                                 hashing.suffix_of(obj_hash))

    def holders(self, part):
        """``{(node, device)}`` with a directory for ``part``."""
        return {(node, device) for node, device in self.devices()
                if os.path.isdir(self.part_dir(node, device, part))}

    def stray_files(self):
        """Object files on devices that are not a primary of their
        partition (what handoffs leave until they are pushed home)."""
        stray = []
        for part in sorted(self.partitions):
            primaries = set(self.primaries(part).items())
            for node, device in self.holders(part) - primaries:
                for root, _dirs, files in os.walk(
                        self.part_dir(node, device, part)):
                    stray.extend(os.path.join(root, f) for f in files
                                 if f.endswith(('.data', '.ts')))
        return stray

    def snapshot(self, part=None):
        """``{path: (is dir, size, mtime_ns, inode)}`` of every file and
        directory under every node's devices (``part``: under that
        partition's directories only), the top directories included."""
        if part is None:
            tops = [os.path.join(self.workdir, node, 'devices')
                    for node in self.node_names]
        else:
            tops = [self.part_dir(node, device, part)
                    for node, device in self.devices()]
        seen = {}

        def note(path, is_dir):
            st = os.lstat(path)
            seen[os.path.relpath(path, self.workdir)] = (
                is_dir, st.st_size, st.st_mtime_ns, st.st_ino)
        for top in tops:
            if os.path.isdir(top):
                note(top, True)
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    note(os.path.join(root, name), name in dirs)
        return seen

    def assert_level(self, container, expected):
        """Every object's primaries hold exactly the expected newest file
        (``{object: file name}``)."""
        wrong = {}
        for obj, name in sorted(expected.items()):
            files = self.primary_files(container, obj)
            if any(names != [name] for names in files.values()):
                wrong[obj] = (name, files)
        assert not wrong, '\n'.join('%s: want %s, have %s' % (o, n, f)
                                    for o, (n, f) in wrong.items())

    def wait_level(self, container, expected, timeout):
        def level():
            try:
                self.assert_level(container, expected)
            except AssertionError:
                return False
            return True
        nodes.wait_for(level, timeout, interval=0.2,
                       message='%s level on all primaries' % container)


# -- replicator processes -------------------------------------------------

# The replicator's log lines: the start of a pass, and the figures of its
# stats line.
PASS_LINE = re.compile(r'Replication pass (\d+) \((coordinated|static)\)')
PUSHED = re.compile(r'(\d+) objects pushed, (\d+) pulled')
SKIPPED = re.compile(r'(\d+) skipped \(locked elsewhere\)')
FENCED = re.compile(r'(\d+) fenced, (\d+) failed')


class Workers(Processes):
    """The processes of one worker command (``module``, options in
    ``[group]``, recon file ``<worker>.json``) in one test.

    Each process has a label (its node name, or e.g. ``n1-again`` for a
    second process of n1) naming its config, log, audit log and recon
    directory. ``options`` go to its ``[group]`` section, ``sections``
    (``{section: {option: value}}``) beside it.
    """

    module = None
    group = None
    worker = None

    def __init__(self, cluster, workdir, coordination=None, sections=None,
                 **options):
        super().__init__(workdir)
        self.cluster = cluster
        self.coordination = dict(COORDINATION, **(coordination or {}))
        self.sections = dict(sections or {})
        self.options = dict({'run_pause': 1.0, 'stats_interval': 60},
                            **options)

    def audit_path(self, label):
        return self.path('audit-%s.log' % label)

    def config(self, label):
        """The per-process config file, laid over the node's."""
        own = dict(self.options, audit_log=self.audit_path(label),
                   recon_cache_path=self.path('recon-%s' % label))
        return nodes.write_config(
            self.path('%s.conf' % label),
            dict(self.sections, coordination=self.coordination,
                 **{self.group: own}))

    def spawn(self, label, node, *args, env=None):
        return super().spawn(label, nodes.module_argv(
            self.module,
            '--config-file', self.cluster.node_config(node),
            '--config-file', self.config(label), *args), env=env)

    def run_once(self, processes=None, timeout=90, check=True,
                 wait_for_peers=True):
        """One ``--once`` pass of every process at the same time; their
        exit codes (``{label: code}``; ``check``: all must be 0).

        ``processes`` maps label to node (default: one per node).
        """
        processes = processes or {n: n for n in self.cluster.node_names}
        args = ['--once'] + (['--wait-for-peers'] if wait_for_peers
                             else [])
        started = [self.spawn(label, node, *args)
                   for label, node in processes.items()]
        codes = {}
        for proc in started:
            try:
                codes[proc.name] = proc.popen.wait(timeout)
            finally:
                proc.stop()
            assert not check or codes[proc.name] == 0, (
                '%s exited %s:\n%s' % (proc.name, codes[proc.name],
                                        proc.log()[-3000:]))
        return codes

    def start(self):
        """A worker running passes forever on every node."""
        for node in self.cluster.node_names:
            self.spawn(node, node)

    def audit(self):
        """Every audit line, in each process's order of writing; an item
        that is a number (a partition, a queue container) as an int."""
        lines = []
        for label in sorted(self.procs):
            try:
                with open(self.audit_path(label)) as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            for row in text.splitlines():
                node, event, part, when, mode, device = row.split(
                    maxsplit=5)
                lines.append(AuditLine(
                    label, node, event, int(part) if part.isdigit()
                    else part, float(when), mode, device))
        return lines

    def recon(self, label):
        path = self.path(os.path.join('recon-%s' % label, '%s.json'
                                      % self.worker))
        try:
            with open(path) as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return None

    def passes(self, label, start=0):
        """``[(pass number, mode)]`` logged from log offset ``start``."""
        return [(int(n), mode) for n, mode in
                PASS_LINE.findall(self.procs[label].log()[start:])]

    def log_offsets(self):
        return {label: len(proc.log()) for label, proc in self.procs.items()}

    def totals(self, pattern):
        """Sums of ``pattern``'s numbers over every stats line logged."""
        sums = None
        for proc in self.procs.values():
            for found in pattern.findall(proc.log()):
                found = (found,) if isinstance(found, str) else found
                values = [int(v) for v in found]
                sums = values if sums is None else [
                    a + b for a, b in zip(sums, values, strict=True)]
        return sums or []


class Replicators(Workers):
    """The ``coordsync-replicator`` processes of one test."""

    module = 'coordsync.cmd.replicator'
    group = 'replicator'
    worker = WORKER


class ContainerReplicators(Workers):
    """The ``coordsync-container-replicator`` processes of one test."""

    module = 'coordsync.cmd.container_replicator'
    group = 'container-replicator'
    worker = 'container-replicator'


class Reconcilers(Workers):
    """The ``coordsync-reconciler`` processes of one test."""

    module = 'coordsync.cmd.reconciler'
    group = 'reconciler'
    worker = 'reconciler'


def replicator_members(config, *args):
    """``[(node, replicator progress)]`` of the group's replicators, as
    coordsync-status run with ``config`` sees them."""
    _code, report, _err = nodes.run_status(config, *args, '--format', 'json')
    if not isinstance(report, dict):
        return []
    return sorted(((m['node'], m['progress'].get(WORKER, {}))
                   for m in report['members'] if WORKER in m['roles']),
                  key=lambda member: member[0])


# -- reading the audit log ------------------------------------------------
#
# ``<node> start|end <item> <unix time> <mode> <where>``, written while
# the item's lock is held (the replicator's item is a partition, its
# where a device).

AuditLine = collections.namedtuple(
    'AuditLine', 'label node event part time mode device')
Job = collections.namedtuple('Job', 'label part mode start end')


def jobs_of(lines, open_until=math.inf):
    """Jobs (start to end) from audit lines; unfinished ones end at
    ``open_until`` (a killed process's job ended when it died)."""
    running, jobs = {}, []
    for line in lines:
        key = (line.label, line.part)
        if line.event == 'start':
            assert key not in running, 'two starts without end: %s' % (
                line,)
            running[key] = line
        else:
            begun = running.pop(key)
            jobs.append(Job(line.label, line.part, begun.mode, begun.time,
                            line.time))
    jobs.extend(Job(b.label, b.part, b.mode, b.time, open_until)
                for b in running.values())
    return jobs


def overlapping(jobs):
    """Pairs of jobs on one partition that ran at the same time.

    Static jobs take no lock (the backend is away), so they are left out.
    """
    by_part = collections.defaultdict(list)
    for job in jobs:
        if job.mode != 'static':
            by_part[job.part].append(job)
    found = []
    for part_jobs in by_part.values():
        part_jobs.sort(key=lambda j: j.start)
        latest = part_jobs[0]
        for job in part_jobs[1:]:
            if job.start < latest.end:
                found.append((latest, job))
            if job.end > latest.end:
                latest = job
    return found


# -- who held which lock, and who wrote what --------------------------------
#
# Evidence independent of the product's own logs of its locks: a poller
# reads the lock znodes straight from ZooKeeper; the node servers'
# access logs say which member sent each write, when it arrived and how
# long it took.

LOCK_ROOT = '/coordsync/locks'
# Arrival times are logged in milliseconds, durations to 0.1 ms.
LOG_RESOLUTION = 0.001

Holding = collections.namedtuple(
    'Holding', 'name member czxid first last gone restored')
Holding.__doc__ = """One lock znode as the poller saw it: ``first`` and
``last`` the times of the first and last polls that listed it (it
certainly existed in between), ``gone`` that of the first poll that no
longer did (it was deleted before; ``None`` when the poller lost
ZooKeeper, or stopped, before it saw it go); ``restored``: created
before the poller last lost ZooKeeper (a znode of a session that
outlived an outage, or a restart of ZooKeeper)."""


class LockHistory:
    """A thread with a kazoo client of its own that lists the lock
    znodes of ``group`` every ``interval`` seconds and records every
    holding (:class:`Holding`, one per znode: name and creation zxid).

    While the poller cannot reach ZooKeeper it records nothing: the
    holdings open then are closed at their last sighting with ``gone``
    unknown, and a znode seen again afterwards starts a new holding.
    """

    def __init__(self, hosts, group, interval=0.01):
        self.root = '%s/%s' % (LOCK_ROOT, group)
        self.interval = interval
        self.client = kazoo_client.KazooClient(
            hosts=hosts, timeout=10.0,
            connection_retry={'max_tries': -1, 'max_delay': 0.5})
        self.holdings = []
        self.open = {}
        self.polls = 0
        self.failed_polls = 0
        self.max_gap = 0.0
        self._cversion = None
        self._pzxid = None
        self._outage_pzxid = None
        # (time, last child zxid seen) of each loss of ZooKeeper.
        self.outages = []
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def of_url(cls, url, group, interval=0.01):
        """From a ``zookeeper://h1:p1?hosts=h2:p2`` backend URL."""
        parsed = urllib.parse.urlsplit(url)
        hosts = [parsed.netloc] + urllib.parse.parse_qs(
            parsed.query).get('hosts', [])
        return cls(','.join(hosts), group, interval)

    def start(self):
        self.client.start(timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='lock-history')
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._close_all(None)
        with contextlib.suppress(Exception):
            self.client.stop()
            self.client.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _close_all(self, gone):
        for key, (member, first, last, restored) in sorted(
                self.open.items()):
            self.holdings.append(Holding(key[0], member, key[1], first,
                                         last, gone, restored))
        self.open = {}
        if self._cversion is not None:
            self.outages.append((time.time(), self._pzxid))
            self._outage_pzxid = self._pzxid
        self._cversion = None

    def _run(self):
        previous = None
        while not self._stop.is_set():
            started = time.time()
            if previous is not None:
                self.max_gap = max(self.max_gap, started - previous)
            try:
                self._poll(started)
                self.polls += 1
                previous = started
            except (kazoo_exceptions.KazooException, OSError,
                    kazoo_threading.KazooTimeoutError):
                self.failed_polls += 1
                self._close_all(None)
                previous = None
                self._reconnect()
            self._stop.wait(max(0.0, self.interval - (time.time()
                                                      - started)))

    def _reconnect(self):
        """Start the client again once it gave up (kazoo stops trying
        after its connection retry policy; ZooKeeper may be down for
        long)."""
        stopped = self.client._connection.connection_stopped.is_set()
        if not stopped and self.client.state != kazoo_client.KazooState.LOST:
            return
        with contextlib.suppress(Exception):
            self.client.stop()
            self.client.start(timeout=0.5)

    def _poll(self, now):
        if self.client.state != kazoo_client.KazooState.CONNECTED:
            raise OSError('lock poller not connected')
        try:
            children, stat = self.client.get_children_async(
                self.root, include_data=True).get(timeout=1.0)
        except kazoo_exceptions.NoNodeError:
            children, stat = [], None
        cversion = stat and stat.cversion
        if cversion is not None and cversion == self._cversion:
            # Nothing created or deleted since the last poll.
            for key, (member, first, _last, restored) in list(
                    self.open.items()):
                self.open[key] = (member, first, now, restored)
            return
        asyncs = {child: self.client.get_async('%s/%s' % (self.root, child))
                  for child in children}
        seen = {}
        for child, result in asyncs.items():
            try:
                data, znode = result.get(timeout=1.0)
            except kazoo_exceptions.NoNodeError:
                continue
            try:
                member = json.loads(data.decode('utf-8'))['member']
            except (ValueError, KeyError, TypeError, AttributeError):
                member = None
            seen[(urllib.parse.unquote(child), znode.czxid)] = member
        for key in list(self.open):
            if key not in seen:
                member, first, last, restored = self.open.pop(key)
                self.holdings.append(Holding(key[0], member, key[1], first,
                                             last, now, restored))
        for key, member in seen.items():
            restored = self._outage_pzxid is not None and \
                key[1] <= self._outage_pzxid
            _m, first, _l, restored = self.open.get(
                key, (member, now, now, restored))
            self.open[key] = (member, first, now, restored)
        self._cversion = cversion
        self._pzxid = stat and stat.pzxid

    def of(self, name, member=None):
        """Holdings of lock ``name`` (by ``member``), oldest first."""
        return sorted((h for h in self.holdings + [
            Holding(k[0], m, k[1], f, la, None, r)
            for k, (m, f, la, r) in self.open.items()]
            if h.name == name and member in (None, h.member)),
            key=lambda h: h.first)

    def all(self):
        return sorted({h.name for h in self.holdings} |
                      {k[0] for k in self.open})


ACCESS_LINE = re.compile(
    r'(\d+\.\d+) (\S+) "([^"]*)" (\d{3}) (\d+) ([\d.]+) (\S+) (\S+) (\S+) '
    r'(\S+)\s*$')
Access = collections.namedtuple(
    'Access', 'node start end method path status member item token client')


def access_lines(cluster):
    """Every access log line of every node server of ``cluster``."""
    found = []
    for node in cluster.node_names:
        for line in cluster.node_log(node).splitlines():
            match = ACCESS_LINE.search(line)
            if not match:
                continue
            (arrived, method, path, status, _size, duration, member, item,
             token, client) = match.groups()
            start = float(arrived)
            found.append(Access(
                node, start, start + float(duration) / 1000.0, method,
                urllib.parse.unquote(path), int(status),
                None if member == '-' else urllib.parse.unquote(member),
                None if item == '-' else urllib.parse.unquote(item),
                None if token == '-' else int(token), client))
    return found


def object_writes(cluster, member=None, part=None, accepted=True):
    """Writes (PUT, POST, DELETE) on ``/objects/<dev>/<part>/...`` and
    sync pushes (PUT ``/object-sync/<dev>/<part>``) sent by a member
    (``member``: by that one), as ``(partition, Access)``;
    ``accepted``: only those answered 2xx (a refused one wrote
    nothing)."""
    writes = []
    for line in access_lines(cluster):
        if line.method not in ('PUT', 'POST', 'DELETE') or \
                line.member is None:
            continue
        parts = line.path.split('?')[0].split('/')
        # NOTE: a sync push (PUT /object-sync/<dev>/<part>) writes a
        # batch of objects, published at its end.
        is_push = (len(parts) == 4 and parts[1] == 'object-sync'
                   and line.method == 'PUT')
        if not is_push and (len(parts) < 5 or parts[1] != 'objects'):
            continue
        try:
            line_part = int(parts[3])
        except ValueError:
            continue
        if member not in (None, line.member) or part not in (None,
                                                              line_part):
            continue
        if accepted and not 200 <= line.status < 300:
            continue
        writes.append((line_part, line))
    return writes


def lock_of(part):
    return 'coordsync/replicate/0/%d' % part


def writes_under_others_locks(writes, history):
    """``[(partition, write, holding)]``: writes into a partition that
    certainly overlap a holding of its lock by another member (the write
    from its arrival to its end, the holding from its first to its last
    sighting, both shrunk by the access log's resolution)."""
    found = []
    for part, write in writes:
        for holding in history.of(lock_of(part)):
            if holding.member == write.member:
                continue
            if write.start + LOG_RESOLUTION < holding.last and \
                    write.end - LOG_RESOLUTION > holding.first:
                found.append((part, write, holding))
    return found
