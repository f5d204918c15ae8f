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
