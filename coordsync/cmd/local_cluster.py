"""coordsync-local-cluster: a whole cluster on this machine, for trying.

    coordsync-local-cluster up [--nodes 3] [--devices 2] [--workdir DIR]
                               [--policies 2] [--set GROUP.OPTION=VALUE ...]
    coordsync-local-cluster status | census | down | stop NODE | start NODE

``up`` creates the working directory once (a config per node, devices as
plain directories, the rings, a cluster secret and hash salts), then
starts one ``coordsync-server`` per node on 127.0.0.<i>:<base port + i -
1> (each running every background worker: the object replicator, the
object updater, the container and account replicators, container sync
and the reconciler, with ``--replicate-every`` seconds between passes;
none with ``--replicate-every 0``), sharing the embedded coordination
backend (or ``--backend URL``), waits until every node serves and has
joined, and prints coordsync-status.
Running ``up`` again reuses the directory and its secrets, so data stays
findable.

``--policies N`` (default 2) declares N storage policies in every config
(``[storage-policy:<i>]``): policy 0 ``gold`` (the default), 1
``silver``, 2 ``bronze``, then ``Policy-<i>``. Each has its own object
ring over the same devices, policy 0's ``object.ring.json``, policy i's
``object-<i>.ring.json`` (rebalanced with seed i, so the same object is
placed differently in each). ``up --policies`` on an existing cluster
may add policies, never remove them (their objects would be lost from
sight).

``up`` also starts one ``coordsync-proxy`` (the Swift API) on
127.0.0.1:<base port + nodes>, config in ``<workdir>/proxy/``, with the
user ``test:tester`` key ``testing`` (.admin), and prints its auth URL;
``status`` shows it and ``down`` stops it.

``--set group.option=value`` (repeatable; ``DEFAULT.option`` for an
option of no group) sets any option in every node's config, e.g.
``--set replicator.concurrency=2 --set server.fence_lease=5``. Each is
checked against the options coordsync-server knows, value included; a
bad one is an error (exit 2) before anything is created or started.
Settings are kept in the cluster directory: ``up --set`` on an existing
cluster rewrites every node's config with them added to those set
before (nodes already running keep their old ones until restarted).
"""

import argparse
import glob
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from oslo_config import cfg
from oslo_log import log

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common.ring import builder as ring_builder
from coordsync.conf import worker as worker_conf

DEFAULT_WORKDIR = 'local-cluster'
META = 'cluster.json'
CONTAINER_RING = 'container.ring.json'
ACCOUNT_RING = 'account.ring.json'
# What each node server runs unless --replicate-every 0, and the option
# group of each (its pause between passes is --replicate-every).
BACKGROUND_WORKERS = worker_conf.WORKER_GROUPS
# Names of the storage policies a local cluster declares, by index;
# beyond these, Policy-<index> (what an unnamed policy is called).
POLICY_NAMES = ('gold', 'silver', 'bronze')
DEFAULT_POLICIES = 2
MAX_POLICIES = 8


def ports_free(base, nodes):
    """Can node i (1-based) listen on 127.0.0.i:base+i-1?"""
    for i in range(1, nodes + 1):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('127.0.0.%d' % i, base + i - 1))
            except OSError:
                return False
    return True


def _port_free(ip, port):
    """Can this process listen on ip:port (the proxy's)?"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def free_base_port(nodes, tries=100):
    """A base port with ``nodes`` free ports for a cluster (tests, tools).

    NOTE: chosen below the kernel's ephemeral range (32768+ by default) so
    no outgoing connection takes one between this check and the bind.
    """
    for _attempt in range(tries):
        base = random.randrange(20000, 30000)
        if ports_free(base, nodes) and _port_free('127.0.0.1',
                                                  base + nodes):
            return base
    raise exceptions.CoordsyncError('no %d free ports in a row' % nodes)


def _node_names(meta):
    return ['n%d' % i for i in range(1, meta['nodes'] + 1)]


def _node_address(meta, name):
    index = int(name[1:])
    return '127.0.0.%d' % index, meta['base_port'] + index - 1


def policy_count(meta):
    """How many storage policies the cluster declares (a cluster made
    before policies has policy 0 only)."""
    return meta.get('policies', 1)


def policy_name(index):
    if index < len(POLICY_NAMES):
        return POLICY_NAMES[index]
    return 'Policy-%d' % index


def policy_ring_name(index):
    """The object ring file (in the cluster directory) of a policy."""
    return 'object.ring.json' if index == 0 else 'object-%d.ring.json' % (
        index)


def _policy_sections(workdir, meta):
    """``{'storage-policy:<i>': options}`` of every policy."""
    sections = {}
    for index in range(policy_count(meta)):
        options = {'name': policy_name(index)}
        if index == 0:
            options['default'] = 'true'
        else:
            options['ring_file'] = os.path.join(workdir,
                                                policy_ring_name(index))
        sections['storage-policy:%d' % index] = options
    return sections


def node_config_path(workdir, name):
    return os.path.join(workdir, name, 'coordsync.conf')


def parse_settings(texts):
    """``{'group.option': value}`` of ``--set`` arguments, each checked
    against the options a node knows (ConfigError, one line, if not)."""
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    log.register_options(conf)
    conf([], default_config_files=[])
    settings = {}
    for text in texts:
        key, equals, value = text.partition('=')
        group, dot, name = key.strip().partition('.')
        if not equals or not dot or not group or not name:
            raise exceptions.ConfigError(
                '--set %s: expected GROUP.OPTION=VALUE (DEFAULT.OPTION '
                'for an option of no group)' % text)
        if '\n' in value or '\r' in value:
            raise exceptions.ConfigError('--set %s: a value is one line'
                                         % key)
        try:
            conf.set_override(name, value.strip(),
                              None if group == 'DEFAULT' else group)
        except cfg.NoSuchGroupError:
            raise exceptions.ConfigError('--set %s: no option group [%s]'
                                         % (text, group)) from None
        except cfg.NoSuchOptError:
            raise exceptions.ConfigError('--set %s: no option %s in [%s]'
                                         % (text, name, group)) from None
        except ValueError as err:
            raise exceptions.ConfigError('--set %s: bad value: %s'
                                         % (key, err)) from None
        settings['%s.%s' % (group, name)] = value.strip()
    return settings


def _config_sections(workdir, meta, name):
    """``{section: {option: value}}`` of a node's config."""
    ip, port = _node_address(meta, name)
    node_dir = os.path.join(workdir, name)
    sections = {
        'DEFAULT': {
            'node_name': name,
            'devices': os.path.join(node_dir, 'devices'),
            'state_path': os.path.join(node_dir, 'state'),
            'bind_ip': ip,
            'bind_port': port,
            'ring_file': os.path.join(workdir, 'object.ring.json'),
            'container_ring_file': os.path.join(workdir,
                                                CONTAINER_RING),
            'account_ring_file': os.path.join(workdir, ACCOUNT_RING),
            'hash_path_prefix': meta['hash_path_prefix'],
            'hash_path_suffix': meta['hash_path_suffix'],
            'cluster_secret': meta['cluster_secret'],
        },
        'coordination': {
            'backend_url': meta['backend_url'],
            'heartbeat': 1.0,
            'session_timeout': meta['session_timeout'],
            'progress_interval': 5,
        },
        'server': {
            'workers': (','.join(BACKGROUND_WORKERS)
                        if meta['replicate_every'] else ''),
        },
    }
    for group in BACKGROUND_WORKERS.values():
        sections[group] = {'run_pause': meta['replicate_every'] or 30,
                           'stats_interval': 60}
    sections.update(_policy_sections(workdir, meta))
    for key, value in meta.get('settings', {}).items():
        group, _, option = key.partition('.')
        sections.setdefault(group, {})[option] = value
    return sections


def _write_config(workdir, meta, name):
    lines = []
    for section, options in _config_sections(workdir, meta, name).items():
        lines.append('[%s]' % section)
        lines.extend('%s = %s' % item for item in options.items())
        lines.append('')
    path = node_config_path(workdir, name)
    with open(path, 'w') as fh:
        fh.write('\n'.join(lines))
    os.chmod(path, 0o600)


def _build_ring(workdir, meta, file_name='object.ring.json', seed=0):
    ring = ring_builder.RingBuilder(meta['part_power'], meta['replicas'])
    for zone, name in enumerate(_node_names(meta), start=1):
        ip, port = _node_address(meta, name)
        for d in range(1, meta['devices'] + 1):
            ring.add_device(name, ip, port, 'd%d' % d, 1.0, zone=zone)
    result = ring.rebalance(seed=seed)
    ring.save(os.path.join(workdir, file_name))
    return result


def _build_policy_rings(workdir, meta):
    """The object ring of every policy but 0 that has none yet: the same
    devices, rebalanced with the policy's index as seed (a policy's
    placement differs from the others')."""
    for index in range(1, policy_count(meta)):
        file_name = policy_ring_name(index)
        if not os.path.exists(os.path.join(workdir, file_name)):
            _build_ring(workdir, meta, file_name, seed=index)


def _build_db_rings(workdir, meta):
    """The container and account rings: the object ring's devices,
    built alike (a cluster made before they existed gets them at its
    next ``up``)."""
    for file_name in (CONTAINER_RING, ACCOUNT_RING):
        if not os.path.exists(os.path.join(workdir, file_name)):
            _build_ring(workdir, meta, file_name)


def create(workdir, args, settings=None):
    """Lay out a new cluster directory; return its metadata."""
    if args.replicas > args.nodes:
        raise exceptions.ConfigError('replicas (%d) > nodes (%d)'
                                     % (args.replicas, args.nodes))
    os.makedirs(workdir, exist_ok=True)
    meta = {
        'nodes': args.nodes, 'devices': args.devices,
        'policies': args.policies or DEFAULT_POLICIES,
        'replicas': args.replicas, 'part_power': args.part_power,
        'base_port': args.base_port,
        'session_timeout': args.session_timeout,
        'replicate_every': args.replicate_every,
        'backend_url': args.backend or 'file://%s' % os.path.join(
            workdir, 'coordination'),
        'cluster_secret': secrets.token_hex(16),
        'hash_path_prefix': secrets.token_hex(8),
        'hash_path_suffix': secrets.token_hex(8),
        'settings': dict(settings or {}),
    }
    for name in _node_names(meta):
        for d in range(1, meta['devices'] + 1):
            os.makedirs(os.path.join(workdir, name, 'devices', 'd%d' % d),
                        exist_ok=True)
        os.makedirs(os.path.join(workdir, name, 'state'), exist_ok=True)
        _write_config(workdir, meta, name)
    result = _build_ring(workdir, meta)
    _build_policy_rings(workdir, meta)
    _build_db_rings(workdir, meta)
    _save(workdir, meta)
    print('created %s: %d nodes x %d devices, %d partitions, %d replicas '
          '(balance %.2f%%); storage policies %s' % (
              workdir, meta['nodes'], meta['devices'],
              2 ** meta['part_power'], meta['replicas'], result.balance,
              _describe_policies(meta)))
    return meta


def _describe_policies(meta):
    return ', '.join('%d %s%s' % (i, policy_name(i),
                                  ' (default)' if i == 0 else '')
                     for i in range(policy_count(meta)))


def add_policies(workdir, meta, count):
    """Grow an existing cluster to ``count`` policies (their rings, every
    node's config); ConfigError if that would remove some."""
    if count is None or count == policy_count(meta):
        return
    if count < policy_count(meta):
        raise exceptions.ConfigError(
            '--policies %d: this cluster has %d storage policies; a policy '
            'cannot be removed (its objects would be lost from sight)'
            % (count, policy_count(meta)))
    meta['policies'] = count
    _build_policy_rings(workdir, meta)
    _save(workdir, meta)
    for name in _node_names(meta):
        _write_config(workdir, meta, name)
    print('storage policies now %s' % _describe_policies(meta))
    running = [n for n in _node_names(meta) if running_pid(workdir, n)]
    if running or proxy_pid(workdir):
        print('%s already running: restart to use the new policies'
              % ', '.join(running + (['proxy'] if proxy_pid(workdir)
                                     else [])))


def _save(workdir, meta):
    meta_path = os.path.join(workdir, META)
    with open(meta_path, 'w') as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
    os.chmod(meta_path, 0o600)


def apply_settings(workdir, meta, settings):
    """Add ``settings`` to an existing cluster's; rewrite every node's
    config with them."""
    if not settings:
        return
    meta.setdefault('settings', {}).update(settings)
    _save(workdir, meta)
    for name in _node_names(meta):
        _write_config(workdir, meta, name)
    running = [n for n in _node_names(meta) if running_pid(workdir, n)]
    if running:
        print('%s already running: restart to apply the new settings'
              % ', '.join(running))


def load(workdir):
    try:
        with open(os.path.join(workdir, META)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise exceptions.ConfigError(
            'no local cluster in %s (run "up" first)' % workdir) from None
    except ValueError as err:
        raise exceptions.ConfigError('corrupt %s: %s' % (
            os.path.join(workdir, META), err)) from None


def _pid_path(workdir, name):
    return os.path.join(workdir, name, 'server.pid')


def running_pid(workdir, name):
    """The pid of the node's server if it is alive, else None.

    A killed server this process started and has not reaped yet (a
    zombie) is not alive: it is reaped here. Nor is another program
    that was given the pid since (Linux: it is not a child of this
    process, and its command line does not name coordsync).
    """
    try:
        with open(_pid_path(workdir, name)) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    if not _is_node_server(pid):
        return None
    return pid


def _is_node_server(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as fh:
            fields = fh.read().rpartition(b')')[2].split()
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            cmdline = fh.read()
    except FileNotFoundError:
        return not os.path.isdir('/proc/self')   # no procfs: trust kill
    except OSError:
        return True
    state, ppid = fields[0], int(fields[1])
    if state == b'Z':
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass   # another process's child: its parent reaps it
        return False
    # NOTE: a server this process has just started may not have exec'd
    # yet: its command line is still this process's.
    return ppid == os.getpid() or b'coordsync' in cmdline


def start_node(workdir, meta, name):
    if name not in _node_names(meta):
        raise exceptions.ConfigError('no node %s in this cluster' % name)
    if running_pid(workdir, name):
        return False
    log = open(os.path.join(workdir, name, 'server.log'), 'ab')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'coordsync.cmd.server', '--config-file',
         node_config_path(workdir, name)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    log.close()
    with open(_pid_path(workdir, name), 'w') as fh:
        fh.write('%d\n' % proc.pid)
    return True


def _serving(meta, name):
    ip, port = _node_address(meta, name)
    try:
        with urllib.request.urlopen('http://%s:%d/healthcheck' % (ip, port),
                                    timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_serving(workdir, meta, names, timeout=60.0):
    deadline = time.monotonic() + timeout
    waiting = list(names)
    while waiting and time.monotonic() < deadline:
        for name in list(waiting):
            if running_pid(workdir, name) is None:
                raise exceptions.CoordsyncError(
                    'node %s exited; see %s' % (name, os.path.join(
                        workdir, name, 'server.log')))
            if _serving(meta, name):
                waiting.remove(name)
        time.sleep(0.2)
    if waiting:
        raise exceptions.CoordsyncError('nodes not serving after %ds: %s'
                                        % (timeout, ', '.join(waiting)))


def stop_nodes(workdir, names, sig=signal.SIGTERM, timeout=15.0):
    """Signal every named node at once, then wait; SIGKILL stragglers."""
    pids = {}
    for name in names:
        pid = running_pid(workdir, name)
        if pid is not None:
            os.kill(pid, sig)
            pids[name] = pid
    deadline = time.monotonic() + timeout
    while (any(running_pid(workdir, n) for n in pids)
           and time.monotonic() < deadline):
        time.sleep(0.1)
    for name, pid in pids.items():
        if running_pid(workdir, name):
            os.kill(pid, signal.SIGKILL)
        os.unlink(_pid_path(workdir, name))
    return sorted(pids)


# -- the Swift API (coordsync-proxy) ------------------------------------------

PROXY_DIR = 'proxy'
PROXY_NAME = 'proxy'
# The user every local cluster has: python-swiftclient's usual test user.
TEST_USER = 'test:tester'
TEST_KEY = 'testing'


def proxy_address(meta):
    """The proxy's ``(ip, port)``: 127.0.0.1, the port after the last
    node's."""
    return '127.0.0.1', meta.get('proxy_port',
                                 meta['base_port'] + meta['nodes'])


def proxy_auth_url(meta):
    return 'http://%s:%d/auth/v1.0' % proxy_address(meta)


def proxy_config_path(workdir):
    return os.path.join(workdir, PROXY_DIR, 'proxy.conf')


def _write_proxy_config(workdir, meta):
    """The proxy's config: the nodes' cluster options (rings, salts,
    secret), ``[client]``, and ``[proxy]`` with the test user."""
    node_sections = _config_sections(workdir, meta, _node_names(meta)[0])
    default = {k: v for k, v in node_sections['DEFAULT'].items()
               if k not in ('node_name', 'devices', 'bind_ip',
                            'bind_port')}
    default['state_path'] = os.path.join(workdir, PROXY_DIR)
    ip, port = proxy_address(meta)
    proxy = {'bind_ip': ip, 'bind_port': port,
             'users': '%s %s .admin' % (TEST_USER, TEST_KEY)}
    proxy.update(node_sections.get('proxy', {}))
    sections = {'DEFAULT': default, 'proxy': proxy}
    if 'client' in node_sections:
        sections['client'] = node_sections['client']
    sections.update(_policy_sections(workdir, meta))
    os.makedirs(os.path.join(workdir, PROXY_DIR), exist_ok=True)
    lines = []
    for section, options in sections.items():
        lines.append('[%s]' % section)
        lines.extend('%s = %s' % item for item in options.items())
        lines.append('')
    path = proxy_config_path(workdir)
    with open(path, 'w') as fh:
        fh.write('\n'.join(lines))
    os.chmod(path, 0o600)


def _proxy_pid_path(workdir):
    return os.path.join(workdir, PROXY_DIR, 'proxy.pid')


def proxy_pid(workdir):
    """The pid of the cluster's proxy if it is alive, else None."""
    try:
        with open(_proxy_pid_path(workdir)) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def start_proxy(workdir, meta, timeout=60.0):
    """Start the proxy (config rewritten first) and wait until it
    serves; False if it was running already."""
    if proxy_pid(workdir):
        return False
    _write_proxy_config(workdir, meta)
    log_path = os.path.join(workdir, PROXY_DIR, 'proxy.log')
    with open(log_path, 'ab') as log_file:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'coordsync.cmd.proxy', '--config-file',
             proxy_config_path(workdir)],
            stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    with open(_proxy_pid_path(workdir), 'w') as fh:
        fh.write('%d\n' % proc.pid)
    url = 'http://%s:%d/healthcheck' % proxy_address(meta)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise exceptions.CoordsyncError(
                'the proxy exited; see %s' % log_path)
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    raise exceptions.CoordsyncError('the proxy is not serving after %ds; '
                                    'see %s' % (timeout, log_path))


def stop_proxy(workdir, timeout=15.0):
    """SIGTERM the proxy, SIGKILL it after ``timeout``; was it running?"""
    pid = proxy_pid(workdir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proxy_pid(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if proxy_pid(workdir):
        os.kill(pid, signal.SIGKILL)
    os.unlink(_proxy_pid_path(workdir))
    return True


def _print_proxy(meta):
    print('Swift API: %s  (user %s, key %s; e.g. swift -A %s -U %s -K %s '
          'stat)' % (proxy_auth_url(meta), TEST_USER, TEST_KEY,
                     proxy_auth_url(meta), TEST_USER, TEST_KEY))


def show_status(workdir, meta, wait=20.0):
    """Print coordsync-status (waiting for every live node to join)."""
    alive = [n for n in _node_names(meta) if running_pid(workdir, n)]
    argv = [sys.executable, '-m', 'coordsync.cmd.status', '--config-file',
            node_config_path(workdir, _node_names(meta)[0]),
            '--expect', str(len(_node_names(meta)))]
    deadline = time.monotonic() + wait
    while True:
        result = subprocess.run(argv + ['--format', 'json'],
                                capture_output=True, text=True)
        try:
            seen = len(json.loads(result.stdout)['members'])
        except ValueError:
            seen = -1
        if seen >= len(alive) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return subprocess.run(argv).returncode


def cmd_up(workdir, args):
    settings = parse_settings(args.set)
    if os.path.exists(os.path.join(workdir, META)):
        meta = load(workdir)
        _build_db_rings(workdir, meta)
        add_policies(workdir, meta, args.policies)
        apply_settings(workdir, meta, settings)
    else:
        meta = create(workdir, args, settings)
    started = [n for n in _node_names(meta) if start_node(workdir, meta, n)]
    wait_serving(workdir, meta, _node_names(meta))
    print('started %s' % (', '.join(started) or 'nothing (all running)'))
    start_proxy(workdir, meta)
    _print_proxy(meta)
    show_status(workdir, meta)
    return 0


def cmd_down(workdir, args):
    meta = load(workdir)
    stopped = stop_nodes(workdir, _node_names(meta))
    if stop_proxy(workdir):
        stopped.append('proxy')
    print('stopped %s' % (', '.join(stopped) or 'nothing (none running)'))
    return 0


def cmd_status(workdir, args):
    meta = load(workdir)
    for name in _node_names(meta):
        ip, port = _node_address(meta, name)
        pid = running_pid(workdir, name)
        print('%s  %s:%d  %s' % (name, ip, port,
                                 'pid %d' % pid if pid else 'stopped'))
    pid = proxy_pid(workdir)
    print('proxy  %s:%d  %s  %s' % (*proxy_address(meta),
                                   'pid %d' % pid if pid else 'stopped',
                                   proxy_auth_url(meta)))
    print('storage policies: %s' % _describe_policies(meta))
    print()
    return show_status(workdir, meta, wait=0)


def cmd_start(workdir, args):
    meta = load(workdir)
    if args.node == PROXY_NAME:
        start_proxy(workdir, meta)
        print('started proxy')
        return 0
    start_node(workdir, meta, args.node)
    wait_serving(workdir, meta, [args.node])
    print('started %s' % args.node)
    return 0


def cmd_stop(workdir, args):
    load(workdir)
    if args.node == PROXY_NAME:
        print('%s proxy' % ('stopped' if stop_proxy(workdir)
                            else 'not running:'))
        return 0
    sig = signal.SIGKILL if args.kill else signal.SIGTERM
    print('%s %s' % ('stopped' if stop_nodes(workdir, [args.node], sig)
                     else 'not running:', args.node))
    return 0


def census(workdir, meta):
    """How level the replicas are, read straight from the disks.

    Returns ``{'objects', 'level', 'lacking', 'handoff_copies',
    'policies'}``: objects found anywhere; those whose newest file is on
    every primary; those missing it on some primary; copies on
    non-primary devices; and ``policies``, the same four figures per
    policy index. An object is counted once per policy it has files in
    (each ``objects[-N]`` directory, placed by that policy's ring).
    """
    newest = {}   # (policy, obj hash) -> {(node, device): newest file}
    parts = {}
    for name in _node_names(meta):
        devices_dir = os.path.join(workdir, name, 'devices')
        pattern = os.path.join(devices_dir, '*', 'objects*', '*', '*', '*')
        for hash_dir in glob.glob(pattern):
            device, datadir = hash_dir[len(devices_dir) + 1:].split(
                os.sep)[:2]
            policy = storage_policy.index_of_datadir(datadir)
            if policy is None or not os.path.isdir(hash_dir):
                continue
            files = sorted(f for f in os.listdir(hash_dir)
                           if f.endswith(('.data', '.ts')))
            if not files:
                continue
            key = (policy, os.path.basename(hash_dir))
            parts[key] = int(hash_dir.split(os.sep)[-3])
            newest.setdefault(key, {})[(name, device)] = files[-1]
    rings = {}
    policies = {}
    for (policy, obj_hash), copies in sorted(newest.items()):
        if policy not in rings:
            path = os.path.join(workdir, policy_ring_name(policy))
            if not os.path.exists(path):
                raise exceptions.ConfigError(
                    'objects of storage policy %d on the disks, but no '
                    'ring %s' % (policy, path))
            rings[policy] = ring_mod.Ring(path, meta['hash_path_prefix'],
                                          meta['hash_path_suffix'])
        figures = policies.setdefault(policy, {
            'objects': 0, 'level': 0, 'lacking': 0, 'handoff_copies': 0})
        primaries = {(d['node'], d['device']) for d in
                     rings[policy].get_part_nodes(parts[policy, obj_hash])}
        best = max(copies.values())
        on_primaries = sum(1 for p in primaries if copies.get(p) == best)
        figures['objects'] += 1
        figures['level' if on_primaries == len(primaries)
                else 'lacking'] += 1
        figures['handoff_copies'] += sum(1 for k in copies
                                         if k not in primaries)
    result = {key: sum(f[key] for f in policies.values())
              for key in ('objects', 'level', 'lacking', 'handoff_copies')}
    result['policies'] = policies
    return result


CENSUS_LINE = ('%(objects)d objects: %(level)d on every primary, '
               '%(lacking)d missing on some primary, %(handoff_copies)d '
               'handoff copies')


def cmd_census(workdir, args):
    meta = load(workdir)
    result = census(workdir, meta)
    print(CENSUS_LINE % result)
    if policy_count(meta) > 1 or set(result['policies']) - {0}:
        for index, figures in sorted(result['policies'].items()):
            print('  policy %d %s: %s' % (index, policy_name(index),
                                          CENSUS_LINE % figures))
    return 0 if not (result['lacking'] or result['handoff_copies']) else 1


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='coordsync-local-cluster',
        description='Run a coordsync cluster on this machine.')
    parser.add_argument('--workdir', default=DEFAULT_WORKDIR,
                        help='cluster directory (default: %(default)s)')
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='create (once) and start every node')
    up.add_argument('--nodes', type=int, default=3, choices=range(1, 51),
                    metavar='N')
    up.add_argument('--devices', type=int, default=2, choices=range(1, 17),
                    metavar='N', help='devices per node')
    up.add_argument('--replicas', type=int, default=3, choices=range(1, 6),
                    metavar='N')
    up.add_argument('--part-power', type=int, default=8,
                    choices=range(1, 19), metavar='P')
    up.add_argument('--policies', type=int, default=None,
                    choices=range(1, MAX_POLICIES + 1), metavar='N',
                    help='storage policies, each with its own object ring: '
                    '0 %s (the default policy), 1 %s, 2 %s, then '
                    'Policy-<i> (default for a new cluster: %d; an '
                    'existing one keeps its own unless this adds some)'
                    % (POLICY_NAMES + (DEFAULT_POLICIES,)))
    up.add_argument('--base-port', type=int, default=6200)
    up.add_argument('--session-timeout', type=int, default=10)
    up.add_argument('--replicate-every', type=float, default=5.0,
                    metavar='SECONDS',
                    help='run every background worker (object '
                    'replicator, object updater, container and account '
                    'replicators, container sync, reconciler) inside '
                    'each node server with this pause between passes; '
                    '0: none (default: %(default)s)')
    up.add_argument('--backend', help='coordination backend URL '
                    '(default: embedded, in the cluster directory)')
    up.add_argument('--set', action='append', default=[],
                    metavar='GROUP.OPTION=VALUE',
                    help='set an option in every node\'s config '
                    '(repeatable; DEFAULT.OPTION for no group), e.g. '
                    'replicator.concurrency=2')
    sub.add_parser('down', help='stop every node')
    sub.add_parser('status', help='show nodes and coordsync-status')
    sub.add_parser('census', help='count replicas on disk (in total and per '
                   'storage policy): exit 1 unless every object is on '
                   'every primary and no handoff copy is left')
    start = sub.add_parser('start', help='start one node (or "proxy")')
    start.add_argument('node')
    stop = sub.add_parser('stop', help='stop one node (or "proxy")')
    stop.add_argument('node')
    stop.add_argument('--kill', action='store_true',
                      help='SIGKILL instead of SIGTERM')
    return parser.parse_args(argv)


COMMANDS = {'up': cmd_up, 'down': cmd_down, 'status': cmd_status,
            'census': cmd_census,
            'start': cmd_start, 'stop': cmd_stop}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = os.path.abspath(args.workdir)
    try:
        return COMMANDS[args.command](workdir, args)
    except exceptions.CoordsyncError as err:
        print('coordsync-local-cluster: error: %s' % err, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
