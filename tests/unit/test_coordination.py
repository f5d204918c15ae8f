"""Coordinator behaviour on the embedded backend, in one process."""

import random
import socket
import threading
import time

import pytest
from oslo_config import cfg

from coordsync import concurrency
from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import coordination


def make_conf(tmp_path, **coordination_opts):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], project='coordsync', default_config_files=[])
    conf.set_override('node_name', 'n1')
    conf.set_override('state_path', str(tmp_path))
    conf.set_override('backend_url', 'file://%s/coord' % tmp_path,
                      group='coordination')
    for key, value in coordination_opts.items():
        conf.set_override(key, value, group='coordination')
    return conf


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


@pytest.fixture
def joined(conf):
    coordinators = []

    def make(node='n1'):
        conf.set_override('node_name', node)
        coordinator = coordination.Coordinator(conf, roles=['test'])
        assert coordinator.step() == conf.coordination.heartbeat
        coordinators.append(coordinator)
        return coordinator
    yield make
    for coordinator in coordinators:
        coordinator.stop()


def test_backoff_grows_with_jitter_and_stays_capped():
    backoff = coordination.Backoff(0.5, 10.0, random.Random(7))
    delays = [backoff.next() for _ in range(30)]
    assert all(0.5 <= d <= 10.0 for d in delays)
    assert max(delays) == 10.0
    assert len(set(delays)) > 5, 'no jitter'
    backoff.reset()
    assert backoff.next() <= 1.5


def test_member_ids_are_unique_per_process_start():
    first = coordination.make_member_id('n1', host='h')
    second = coordination.make_member_id('n1', host='h')
    assert first != second
    assert first.startswith('n1@h.')


def test_redact_url_hides_credentials_and_query():
    url = 'redis://user:s3cret@10.0.0.1:6379/0?password=s3cret&timeout=3'
    redacted = coordination.redact_url(url)
    assert 's3cret' not in redacted
    assert redacted == 'redis://10.0.0.1:6379/0'


def test_zookeeper_options_cap_kazoo_retries(tmp_path):
    conf = make_conf(tmp_path, max_reconnect_backoff=7.0,
                     session_timeout=12)
    options = coordination.driver_options('zookeeper://h:2181', conf)
    assert options['timeout'] == 12
    assert options['connection_retry']['max_delay'] == 7.0
    assert options['connection_retry']['max_tries'] == -1
    # Not monkey-patched here: kazoo keeps its threading handler.
    assert 'handler' not in options


def test_url_timeout_wins_over_session_timeout(conf):
    options = coordination.driver_options('file:///x?timeout=99', conf)
    assert 'timeout' not in options


def test_join_publishes_capabilities(joined):
    coordinator = joined()
    members = coordinator.members()
    caps = members[coordinator.member_id]
    assert caps['node'] == 'n1'
    assert caps['roles'] == ['test']
    assert caps['pid'] > 0


def test_progress_is_published_at_next_beat(joined):
    coordinator = joined()
    coordinator.set_progress('replicator', done=3, total=10, errors=0)
    coordinator.step()
    caps = coordinator.members()[coordinator.member_id]
    assert caps['progress']['replicator'] == {'done': 3, 'total': 10,
                                              'errors': 0}


def test_try_lock_is_exclusive_and_release_frees(joined):
    first, second = joined('n1'), joined('n2')
    name = 'coordsync/replicate/0/17'
    assert first.try_lock(name) is True
    assert second.try_lock(name) is False
    assert first.try_lock(name) is False, 'not re-entrant'
    assert first.is_still_owner(name)
    assert first.release(name) is True
    assert second.try_lock(name) is True
    assert first.release(name) is False


def test_try_lock_many_tokens_grow_and_held_names_get_none(joined):
    first, second = joined('n1'), joined('n2')
    names = ['coordsync/replicate/0/%d' % i for i in range(4)]
    assert first.try_lock('coordsync/replicate/0/2')
    tokens = second.try_lock_many(names)
    assert tokens['coordsync/replicate/0/2'] is None
    held = {name: t for name, t in tokens.items() if t is not None}
    assert len(held) == 3 and all(isinstance(t, int) for t in held.values())
    assert second.try_lock_many(names[:1]) == {names[0]: None}
    for name in held:
        assert second.token(name) == held[name]
        second.release(name)
    again = first.try_lock_many(names)
    for name, token in held.items():
        assert again[name] > token
    assert second.token(names[0]) is None


def test_is_still_owner_asks_no_backend(joined):
    coordinator = joined()
    name = 'coordsync/replicate/0/9'
    assert coordinator.try_lock(name)
    lock = coordinator._held[name].grant.tooz_lock
    lock.is_still_owner = lambda: pytest.fail('backend asked')
    assert coordinator.is_still_owner(name)


def test_list_locks_is_empty_without_zookeeper(joined):
    coordinator = joined()
    assert coordinator.try_lock('coordsync/replicate/0/1')
    assert coordinator.list_locks() == []


def test_outage_fences_held_locks(joined):
    coordinator = joined()
    name = 'coordsync/replicate/0/3'
    assert coordinator.try_lock(name)
    coordinator._begin_outage('test outage')
    assert not coordinator.healthy
    assert not coordinator.is_still_owner(name)
    with pytest.raises(exceptions.CoordinationUnavailable):
        coordinator.try_lock('coordsync/replicate/0/4')
    # The next good heartbeat ends the outage, but the old lock stays
    # fenced: it was taken in an earlier epoch.
    coordinator.step()
    assert coordinator.healthy
    assert not coordinator.is_still_owner(name)


def test_member_missing_from_group_rejoins(joined):
    coordinator = joined()
    coordinator._driver.leave_group(b'coordsync').get()
    coordinator.step()
    assert coordinator.epoch == 1, 'session loss must fence'
    coordinator.step()
    assert coordinator.healthy
    assert coordinator.member_id in coordinator.members()


def test_unreachable_backend_backs_off(tmp_path):
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('x')
    conf = make_conf(tmp_path, initial_reconnect_backoff=0.2,
                     max_reconnect_backoff=2.0)
    conf.set_override('backend_url', 'file://%s/sub' % blocker,
                      group='coordination')
    coordinator = coordination.Coordinator(conf)
    delays = [coordinator.step() for _ in range(6)]
    assert not coordinator.healthy
    assert all(0.2 <= d <= 2.0 for d in delays)
    assert coordinator.epoch == 1, 'one outage, however many failures'


def test_lost_session_is_not_an_unreachable_backend(joined):
    coordinator = joined()
    # ZooKeeper told us the session is gone (as after a long pause).
    coordinator._on_kazoo_state('LOST')
    assert not coordinator.healthy
    # Nothing failed to answer: no static rule, however long it lasts.
    assert coordinator.unreachable_for() == 0.0
    assert not coordinator.static_allowed
    # The next heartbeat finds the member gone and joins again.
    coordinator._driver.leave_group(b'coordsync').get()
    coordinator.step()
    assert coordinator.healthy and coordinator.epoch == 1
    assert coordinator.unreachable_for() == 0.0


class Unreachable:
    """A coordinator whose file backend cannot be reached until
    :meth:`reachable`, on a monotonic clock the test moves."""

    def __init__(self, tmp_path, monkeypatch):
        self.blocker = tmp_path / 'not-a-dir'
        self.blocker.write_text('x')
        self.conf = make_conf(tmp_path, static_after=30.0)
        self.conf.set_override('backend_url',
                               'file://%s/sub' % self.blocker,
                               group='coordination')
        self.coordinator = coordination.Coordinator(self.conf)
        self.now = 1000.0
        monkeypatch.setattr(coordination.time, 'monotonic',
                            lambda: self.now)

    def reachable(self):
        self.blocker.unlink()


def test_static_rule_once_unreachable_for_static_after(tmp_path,
                                                       monkeypatch):
    backend = Unreachable(tmp_path, monkeypatch)
    coordinator = backend.coordinator
    coordinator.step()
    backend.now += 10.0
    coordinator.step()
    assert 0 < coordinator.unreachable_for() < 30.0
    assert not coordinator.static_allowed
    backend.now += 25.0
    coordinator.step()
    assert coordinator.unreachable_for() == 35.0
    assert coordinator.static_allowed


def test_back_from_a_static_outage_settles_before_locks(tmp_path,
                                                       monkeypatch):
    backend = Unreachable(tmp_path, monkeypatch)
    coordinator, conf = backend.coordinator, backend.conf
    coordinator.step()
    backend.now += 31.0
    coordinator.step()
    assert coordinator.static_allowed and coordinator.settling() == 0.0
    backend.reachable()
    coordinator.step()
    assert coordinator.healthy
    settle = coordination.settle_after_static(conf)
    assert coordinator.settling() == settle
    backend.now += settle
    assert coordinator.settling() == 0.0
    coordinator.stop()


def test_back_from_a_short_outage_does_not_settle(tmp_path, monkeypatch):
    backend = Unreachable(tmp_path, monkeypatch)
    coordinator = backend.coordinator
    coordinator.step()
    backend.now += 20.0
    backend.reachable()
    coordinator.step()
    assert coordinator.healthy and coordinator.settling() == 0.0
    coordinator.stop()


def test_outage_line_always_names_a_cause(joined, caplog):
    coordinator = joined()
    with caplog.at_level('WARNING'):
        coordinator._begin_outage(coordination._reason(OSError()))
    line = [r.getMessage() for r in caplog.records
            if 'outage started' in r.getMessage()][0]
    assert 'outage started: OSError (backend file://' in line


@pytest.mark.parametrize('name', ['', 'a//b', 'coordsync/../x', '/abs',
                                  'coordsync/.'])
def test_bad_lock_names_rejected(joined, name):
    coordinator = joined()
    with pytest.raises(ValueError):
        coordinator.try_lock(name)


def test_synchronized_formats_lock_name_from_arguments(joined):
    coordinator = joined()
    seen = []

    @coordinator.synchronized('coordsync/sync/{account}/{container}')
    def sync(account, container='c'):
        seen.append(coordinator.held_locks())

    sync('AUTH_a')
    assert seen == [['coordsync/sync/AUTH_a/c']]
    assert coordinator.held_locks() == []


def test_stop_releases_locks_and_leaves(joined, conf):
    coordinator = joined('n1')
    other = joined('n2')
    assert coordinator.try_lock('coordsync/x/1')
    coordinator.stop()
    assert other.try_lock('coordsync/x/1')
    assert coordinator.member_id not in other.members()


class SlowLock:
    """A tooz lock whose calls hang like kazoo's during an outage."""

    def __init__(self, delay, result=True):
        self.delay = delay
        self.result = result
        self.released = False
        self.answered = False

    def acquire(self, blocking=True):
        concurrency.sleep(self.delay)
        self.answered = True
        return self.result

    def release(self):
        self.released = True
        return True


def test_try_lock_gives_up_when_the_backend_hangs(tmp_path):
    conf = make_conf(tmp_path, session_timeout=2)
    coordinator = coordination.Coordinator(conf)
    coordinator.step()
    slow = SlowLock(delay=1.5)
    coordinator._driver.get_lock = lambda name: slow
    with pytest.raises(exceptions.CoordinationUnavailable):
        coordinator.try_lock('coordsync/replicate/0/1')
    # It gave up at its own timeout, before the hung backend answered.
    assert not slow.answered
    assert coordinator.held_locks() == []
    # The abandoned attempt got the lock after all: it is given back.
    concurrency.sleep(0.5)
    assert slow.released
    coordinator._driver.get_lock = lambda name: SlowLock(0)
    coordinator.stop()


def test_stop_is_bounded_when_the_driver_hangs(tmp_path):
    conf = make_conf(tmp_path, session_timeout=1)
    coordinator = coordination.Coordinator(conf)
    coordinator.step()
    driver = coordinator._driver
    real_stop = driver.stop
    driver.stop = lambda: concurrency.sleep(30)
    started = time.monotonic()
    coordinator.stop()
    assert time.monotonic() - started < 5
    real_stop()


def test_redact_url_keeps_an_ensembles_hosts():
    url = 'zookeeper://op:s3cret@zk1:2181,zk2:2181,zk3:2181/?timeout=5'
    assert coordination.redact_url(url) == (
        'zookeeper://zk1:2181,zk2:2181,zk3:2181/')


# -- is ZooKeeper serving again? (a static pass ends when it is) ------------

def test_zookeeper_hosts_of_every_url_form():
    hosts = coordination.zookeeper_hosts
    assert hosts('zookeeper://127.0.0.1:2182') == [('127.0.0.1', 2182)]
    assert hosts('zookeeper://zk1:1,zk2:2,zk3') == [
        ('zk1', 1), ('zk2', 2), ('zk3', 2181)]
    assert hosts('kazoo://u:secret@zk1:5?hosts=zk2:6&hosts=zk3:7') == [
        ('zk1', 5), ('zk2', 6), ('zk3', 7)]
    assert hosts('zookeeper://[::1]:2181,[fe80::1]') == [
        ('::1', 2181), ('fe80::1', 2181)]
    assert hosts('file:///var/lib/coordsync') == []
    assert hosts('zookeeper://zk1:port') == []


class SrvrServer:
    """A TCP server answering one canned reply to every connection."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.asked = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.asked.append(conn.recv(16))
                conn.sendall(self.reply)

    def close(self):
        self.sock.close()


@pytest.fixture
def srvr():
    servers = []

    def make(reply):
        servers.append(SrvrServer(reply))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_zookeeper_serving_reads_the_srvr_answer(srvr):
    serving = coordination.zookeeper_serving
    leader = srvr(b'Zookeeper version: 3.8.4\nMode: leader\nNode count: 9\n')
    assert serving('127.0.0.1', leader.port, 1.0) is True
    assert leader.asked == [b'srvr']
    alone = srvr(b'This ZooKeeper instance is not currently serving '
                 b'requests\n')
    assert serving('127.0.0.1', alone.port, 1.0) is False
    refused = srvr(b'srvr is not executed because it is not in the '
                   b'whitelist.\n')
    assert serving('127.0.0.1', refused.port, 1.0) is None
    assert serving('127.0.0.1', free_port(), 1.0) is False


def wait_probe(coordinator):
    deadline = time.monotonic() + 10
    while coordinator._probing and time.monotonic() < deadline:
        concurrency.sleep(0.01)


def test_a_zookeeper_serving_again_ends_the_static_rule(tmp_path, srvr):
    """The backend failed to answer for static_after, then a server
    serves again while this process has not reconnected (its backoff):
    no static work from then on, though it is still out of the group."""
    down_port = free_port()
    conf = make_conf(tmp_path, static_after=0.0, session_timeout=2,
                     initial_reconnect_backoff=0.05,
                     max_reconnect_backoff=0.1)
    server = srvr(b'This ZooKeeper instance is not currently serving '
                  b'requests\n')
    conf.set_override('backend_url', 'zookeeper://127.0.0.1:%d?hosts='
                      '127.0.0.1:%d' % (down_port, server.port),
                      group='coordination')
    coordinator = coordination.Coordinator(conf)
    coordinator.step()          # nothing answers: an outage begins
    assert not coordinator.healthy
    assert not coordinator.backend_back()   # the first probe starts
    wait_probe(coordinator)
    assert coordinator.static_allowed, 'no quorum is no backend'
    server.reply = b'Zookeeper version: 3.8.4\nMode: follower\n'
    coordinator._probed_at -= coordination.PROBE_EVERY
    coordinator.backend_back()
    wait_probe(coordinator)
    assert coordinator.backend_back()
    assert not coordinator.static_allowed
    assert not coordinator.healthy
    assert server.asked.count(b'srvr') >= 2


def test_a_file_backend_is_never_probed(tmp_path):
    conf = make_conf(tmp_path)
    coordinator = coordination.Coordinator(conf)
    assert coordinator.backend_back() is False
    assert not coordinator._probing
