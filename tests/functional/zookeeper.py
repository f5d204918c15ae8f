"""A private ZooKeeper server for the functional tests.

Started on a free loopback port with a temporary data dir, from Debian's
``zookeeper`` package; "up" means it answers the ``srvr`` four-letter word
with a mode line (``ruok`` answers before the server can serve sessions).
"""

import os
import shutil
import signal
import socket
import subprocess
import time

JARS = ('/usr/share/java/zookeeper.jar',)
CONF_DIR = '/etc/zookeeper/conf'


def free_port(host='127.0.0.1'):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def four_letter_word(port, word, timeout=1.0):
    with socket.create_connection(('127.0.0.1', port), timeout) as sock:
        sock.sendall(word.encode('ascii'))
        chunks = []
        while True:
            data = sock.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b''.join(chunks).decode('utf-8', 'replace')


class ZooKeeperServer:
    def __init__(self, workdir, tick_ms=200):
        missing = [j for j in JARS if not os.path.exists(j)]
        if missing or not shutil.which('java'):
            raise RuntimeError(
                'ZooKeeper or Java missing (%s); run tools/test-setup.sh '
                'or apt-get install zookeeper default-jre-headless'
                % ', '.join(missing or ['java']))
        self.workdir = workdir
        self.port = free_port()
        self.tick_ms = tick_ms
        self.process = None
        os.makedirs(os.path.join(workdir, 'data'), exist_ok=True)
        self.config = os.path.join(workdir, 'zoo.cfg')
        with open(self.config, 'w') as fh:
            fh.write('\n'.join([
                'tickTime=%d' % tick_ms,
                'dataDir=%s' % os.path.join(workdir, 'data'),
                'clientPort=%d' % self.port,
                'clientPortAddress=127.0.0.1',
                'minSessionTimeout=%d' % (2 * tick_ms),
                'maxSessionTimeout=60000',
                '4lw.commands.whitelist=srvr,ruok,mntr',
                'admin.enableServer=false',
                '',
            ]))

    @property
    def url(self):
        return 'zookeeper://127.0.0.1:%d' % self.port

    def start(self, timeout=60.0):
        classpath = ':'.join((CONF_DIR,) + JARS)
        log = open(os.path.join(self.workdir, 'zookeeper.log'), 'ab')
        self.process = subprocess.Popen(
            ['java', '-Xmx256m', '-Dzookeeper.log.dir=%s' % self.workdir,
             '-cp', classpath,
             'org.apache.zookeeper.server.ZooKeeperServerMain',
             self.config],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_serving(timeout)

    def serving(self):
        try:
            return 'Mode:' in four_letter_word(self.port, 'srvr')
        except OSError:
            return False

    def wait_serving(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('ZooKeeper exited with %s; see %s'
                                   % (self.process.returncode,
                                      self.workdir))
            if self.serving():
                return
            time.sleep(0.2)
        raise RuntimeError('ZooKeeper did not serve within %ss' % timeout)

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.process = None


class ZooKeeperEnsemble:
    """Three (or ``size``) ZooKeeper servers in one quorum on loopback.

    Each server has its own data dir, ``myid``, client port and quorum
    ports; ``url`` names them all, so clients fail over when one dies.
    """

    def __init__(self, workdir, size=3, tick_ms=200):
        self.workdir = workdir
        self.tick_ms = tick_ms
        self.ids = list(range(1, size + 1))
        self.client_ports = {i: free_port() for i in self.ids}
        quorum = {i: (free_port(), free_port()) for i in self.ids}
        self.processes = {}
        self.configs = {}
        for i in self.ids:
            data = os.path.join(workdir, 'zk%d' % i, 'data')
            os.makedirs(data, exist_ok=True)
            with open(os.path.join(data, 'myid'), 'w') as fh:
                fh.write('%d\n' % i)
            lines = [
                'tickTime=%d' % tick_ms,
                'initLimit=20',
                'syncLimit=10',
                'dataDir=%s' % data,
                'clientPort=%d' % self.client_ports[i],
                'clientPortAddress=127.0.0.1',
                'minSessionTimeout=%d' % (2 * tick_ms),
                'maxSessionTimeout=60000',
                '4lw.commands.whitelist=srvr,ruok,mntr',
                'admin.enableServer=false',
            ] + ['server.%d=127.0.0.1:%d:%d' % (j, *quorum[j])
                 for j in self.ids]
            self.configs[i] = os.path.join(workdir, 'zk%d' % i, 'zoo.cfg')
            with open(self.configs[i], 'w') as fh:
                fh.write('\n'.join(lines) + '\n')

    @property
    def url(self):
        first, *rest = self.ids
        return 'zookeeper://127.0.0.1:%d?%s' % (
            self.client_ports[first], '&'.join(
                'hosts=127.0.0.1:%d' % self.client_ports[i] for i in rest))

    def start_server(self, i):
        classpath = ':'.join((CONF_DIR,) + JARS)
        log_dir = os.path.dirname(self.configs[i])
        log = open(os.path.join(log_dir, 'zookeeper.log'), 'ab')
        self.processes[i] = subprocess.Popen(
            ['java', '-Xmx192m', '-Dzookeeper.log.dir=%s' % log_dir,
             '-cp', classpath,
             'org.apache.zookeeper.server.quorum.QuorumPeerMain',
             self.configs[i]],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start(self, timeout=90.0):
        for i in self.ids:
            self.start_server(i)
        self.wait_quorum(timeout)

    def mode(self, i):
        """'leader', 'follower', or None when server ``i`` does not
        serve."""
        try:
            text = four_letter_word(self.client_ports[i], 'srvr')
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith('Mode:'):
                return line.split(':', 1)[1].strip()
        return None

    def leader(self):
        for i in self.ids:
            if self.mode(i) == 'leader':
                return i
        return None

    def wait_quorum(self, timeout):
        """Wait until a leader and every running server serve."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [i for i, p in self.processes.items()
                       if p.poll() is None]
            modes = [self.mode(i) for i in running]
            if 'leader' in modes and None not in modes:
                return self.leader()
            time.sleep(0.2)
        raise RuntimeError('ZooKeeper ensemble has no quorum after %ss; '
                           'see %s' % (timeout, self.workdir))

    def kill(self, i):
        process = self.processes.pop(i)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self):
        for i in list(self.processes):
            self.kill(i)
