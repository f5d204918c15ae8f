"""Container sync between two real local clusters on the test run's
ZooKeeper, checked from outside.

One module-scoped pair: a source of 3 nodes whose servers run the sync
daemon (``container-sync``, plus the object updater) on every node, and
a destination of 3 nodes running no sync daemon; both share one realms
file (realm ``test``, clusters ``src`` and ``dst``). Sync is set up as a
Swift user does it, through each cluster's proxy with
python-swiftclient: the destination container gets
``X-Container-Sync-Key``, the source container ``X-Container-Sync-To:
//test/dst/AUTH_test/<container>`` and the same key. Each test uses a
source and a destination container of its own.

What is checked comes from outsiders: the destination's listings and
HEADs through its API, the destination proxy's access log (one line per
request, with the user ``container-sync:TEST`` for sync requests), the
lock znodes polled from ZooKeeper (:class:`harness.LockHistory`), the
container databases on disk (:class:`ContainerBroker`) and
``coordsync-status --sync``.

* 1,000 objects written, 200 overwritten, 100 deleted, then sync turned
  on: the destination ends equal (names, etags, sizes, timestamps) with
  exactly one PUT per live row and one DELETE per tombstone; then more
  overwrites and deletes with sync on: one more PUT per new version.
* The lock holder SIGKILLed mid-container: another node takes the lock
  within the session timeout plus a pass, the destination ends equal and
  no object body was sent twice.
* The destination's proxy down: the rows wait in the retry set, status
  shows the lag, and it drains once the proxy is back.
* A container replica's node down the whole time: the container syncs.
* Refused sync requests (wrong key, wrong realm key, unknown realm, a
  replayed request, ``X-Timestamp`` without sync authentication) change
  nothing.
"""

import collections
import concurrent.futures
import contextlib
import hashlib
import http.client
import os
import re
import signal
import socket
import threading
import time
import urllib.parse
import uuid

import pytest
from swiftclient import client as swift
from swiftclient import exceptions as swift_exceptions

from coordsync.cmd import local_cluster as local_cluster_cmd
from coordsync.common import ring as ring_mod
from coordsync.container import backend
from coordsync.sync import realms as realms_mod
from coordsync.sync import state as sync_state
from tests.functional import harness

USER, KEY = local_cluster_cmd.TEST_USER, local_cluster_cmd.TEST_KEY
ACCOUNT = 'AUTH_test'
REALM = 'test'
REALM_KEY = '5f1c0e2b9a7d4c3e8b6a1f0d2c4e6a8b'
SYNC_KEY = 'sync-key-of-the-tests'
SYNC_USER = 'container-sync:%s' % REALM.upper()
BATCH_SIZE = 20
ROWS_PER_PASS = 100
RUN_PAUSE = 1
RETRY_INTERVAL = 1
MAX_RETRY_INTERVAL = 4
WRITERS = 8
POLL = 0.5

# NOTE: a loaded 2-core box syncs 10-20 rows a second; the first test
# alone writes 1,370 objects and syncs as many rows.
pytestmark = pytest.mark.timeout(900)


def _two_base_ports(nodes_count):
    """Base ports of two clusters whose ports (nodes and proxy) do not
    overlap."""
    first = local_cluster_cmd.free_base_port(nodes_count)
    while True:
        second = local_cluster_cmd.free_base_port(nodes_count)
        if abs(second - first) > nodes_count + 1:
            return first, second


class Pair:
    """The two clusters, their proxies and what they log."""

    def __init__(self, src, dst, history, audit_log):
        self.src = src
        self.dst = dst
        self.history = history
        self.audit_log = audit_log
        self.dst_host, self.dst_port = local_cluster_cmd.proxy_address(
            dst.meta)

    @staticmethod
    def connect(cluster):
        # NOTE: no retries: a retried PUT would write a second version.
        return swift.Connection(local_cluster_cmd.proxy_auth_url(
            cluster.meta), USER, KEY, retries=0, timeout=60)

    def src_conn(self):
        return self.connect(self.src)

    def dst_conn(self):
        return self.connect(self.dst)

    def proxy_log(self):
        path = os.path.join(self.dst.workdir, local_cluster_cmd.PROXY_DIR,
                            'proxy.log')
        with open(path, encoding='utf-8', errors='replace') as fh:
            return fh.read()

    def diagnostics(self, lines=25):
        """Tails of what the sync daemons and the destination logged."""
        parts = []
        for node in self.src.node_names:
            try:
                text = self.src.node_log(node)
            except FileNotFoundError:
                continue
            picked = [line for line in text.splitlines()
                      if 'container-sync' in line or 'Sync' in line
                      or 'sync' in line]
            parts.append('--- source %s server.log (sync lines)\n%s' % (
                node, '\n'.join(picked[-lines:])))
        try:
            text = self.proxy_log().splitlines()
        except FileNotFoundError:
            text = []
        others = [line for line in text if 'proxy.access' not in line]
        parts.append('--- destination proxy.log (not access)\n%s'
                     % '\n'.join(others[-lines:]))
        parts.append('--- destination proxy.log (tail)\n%s'
                     % '\n'.join(text[-lines:]))
        try:
            with open(self.audit_log) as fh:
                audit = fh.read().splitlines()
        except FileNotFoundError:
            audit = []
        parts.append('--- sync audit log (tail)\n%s'
                     % '\n'.join(audit[-lines:]))
        return '\n'.join(parts)


@pytest.fixture(scope='module')
def pair(zk_server, tmp_path_factory):
    top = tmp_path_factory.mktemp('containersync')
    src_port, dst_port = _two_base_ports(3)
    realms = top / 'container-sync-realms.conf'
    realms.write_text(
        '[%s]\nkey = %s\ncluster_src = http://127.0.0.1:%d/v1/\n'
        'cluster_dst = http://127.0.0.1:%d/v1/\n'
        % (REALM, REALM_KEY, src_port + 3, dst_port + 3))
    audit_log = str(top / 'sync-audit.log')
    tag = uuid.uuid4().hex[:8]
    common = {
        'DEFAULT.container_sync_realms_file': str(realms),
        'coordination.progress_interval': '1',
        'object-updater.run_pause': '5',
    }
    src_group = 'sync-src-%s' % tag
    src_settings = dict(common, **{
        'coordination.group': src_group,
        'server.workers': 'container-sync,object-updater',
        'container-sync.run_pause': str(RUN_PAUSE),
        'container-sync.batch_size': str(BATCH_SIZE),
        'container-sync.rows_per_pass': str(ROWS_PER_PASS),
        'container-sync.retry_interval': str(RETRY_INTERVAL),
        'container-sync.max_retry_interval': str(MAX_RETRY_INTERVAL),
        'container-sync.audit_log': audit_log,
    })
    dst_settings = dict(common, **{
        'coordination.group': 'sync-dst-%s' % tag,
        'server.workers': 'object-updater',
    })
    managers = [harness.local_cluster(
        top / name, part_power=4, backend=zk_server.url,
        session_timeout=harness.SESSION_TIMEOUT, settings=settings,
        base_port=port) for name, settings, port in (
            ('src', src_settings, src_port), ('dst', dst_settings,
                                              dst_port))]
    with contextlib.ExitStack() as stack:
        # NOTE: both come up at once (most of "up" is waiting).
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(m.__enter__) for m in managers]
        clusters = []
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                stack.push(manager.__exit__)
                clusters.append(future.result())
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
        src, dst = clusters
        history = stack.enter_context(harness.LockHistory.of_url(
            zk_server.url, src_group, interval=0.05))
        yield Pair(src, dst, history, audit_log)


# -- helpers ------------------------------------------------------------------

def body_of(name, version):
    return ('%s version %d %s' % (name, version, uuid.uuid4().hex)).encode()


def write_objects(cluster, container, items):
    """PUT (``(name, body)``) or DELETE (``(name, None)``) each item
    through ``cluster``'s proxy, ``WRITERS`` at a time; each PUT's etag
    checked."""
    local = threading.local()

    def one(item):
        conn = getattr(local, 'conn', None)
        if conn is None:
            conn = local.conn = Pair.connect(cluster)
        name, body = item
        if body is None:
            conn.delete_object(container, name)
        else:
            etag = conn.put_object(container, name, body)
            assert etag == hashlib.md5(body).hexdigest(), name
    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(one, items))


def listing(conn, container):
    """``{name: (etag, bytes, last_modified, content_type)}``."""
    _headers, rows = conn.get_container(container, full_listing=True)
    return {r['name']: (r['hash'], r['bytes'], r['last_modified'],
                        r['content_type']) for r in rows}


def target(container):
    return '//%s/dst/%s/%s' % (REALM, ACCOUNT, container)


def make_containers(pair, src, dst):
    pair.dst_conn().put_container(dst, headers={
        'X-Container-Sync-Key': SYNC_KEY})
    pair.src_conn().put_container(src)


def turn_sync_on(pair, src, dst):
    pair.src_conn().post_container(src, {
        'X-Container-Sync-To': target(dst),
        'X-Container-Sync-Key': SYNC_KEY})


def _difference(want, have):
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    differ = sorted(n for n in set(want) & set(have) if want[n] != have[n])
    return ('%d missing (e.g. %s), %d extra (e.g. %s), %d differ (e.g. %s)'
            % (len(missing), missing[:3], len(extra), extra[:3],
               len(differ), [(n, want[n], have[n]) for n in differ[:2]]))


def object_count(conn, container):
    return int(conn.head_container(container)['x-container-object-count'])


def wait_equal(pair, src, dst, timeout, deleted=()):
    """Wait until the destination's listing equals the source's and
    every name in ``deleted`` had its DELETE sent there (the tombstones'
    rows come last in sync order); the seconds it took.

    NOTE: object counts first (a HEAD each), full listings only once
    they agree: two listings of 1,000 rows a second cost a loaded box.
    """
    started = time.monotonic()
    want = have = None
    while time.monotonic() - started < timeout:
        try:
            dconn = pair.dst_conn()
            counts_agree = object_count(dconn, dst) == object_count(
                pair.src_conn(), src)
            if counts_agree and (not deleted or not set(deleted) - set(
                    sync_counts(pair, dst)[1])):
                want = listing(pair.src_conn(), src)
                have = listing(dconn, dst)
                if have == want:
                    return time.monotonic() - started
        except (swift_exceptions.ClientException, OSError):
            pass
        time.sleep(1.0)
    want = listing(pair.src_conn(), src)
    try:
        have = listing(pair.dst_conn(), dst)
    except (swift_exceptions.ClientException, OSError):
        have = {}
    sent = sync_counts(pair, dst)[1]
    raise AssertionError(
        'destination %s not equal to source %s after %ds: %s; %d of %d '
        'DELETEs sent\n%s' % (
            dst, src, timeout, _difference(want, have),
            len(set(deleted) & set(sent)), len(set(deleted)),
            pair.diagnostics()))


def wait_passes(pair, container, passes=2, timeout=120):
    """Wait until ``passes`` more runs of ``container``'s sync item
    ended (audit log), so that a row sent twice would show."""
    item = urllib.parse.quote('%s/%s' % (ACCOUNT, container), safe='')
    since = time.time()

    def ended():
        try:
            with open(pair.audit_log) as fh:
                rows = [line.split() for line in fh]
        except FileNotFoundError:
            return False
        return sum(1 for r in rows if len(r) == 6 and r[1] == 'end'
                   and r[2] == item and float(r[3]) > since) >= passes
    wait_for(ended, timeout, '%d more sync passes of %s' % (
        passes, container), pair)


def wait_for(predicate, timeout, what, pair):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = predicate()
        if found:
            return found
        time.sleep(POLL)
    raise AssertionError('%s: not within %ds\n%s' % (what, timeout,
                                                     pair.diagnostics()))


ACCESS = re.compile(
    r'coordsync\.proxy\.access \[[^\]]*\] (\d+\.\d+) (\S+) "([^"]*)" '
    r'(\d{3}) (\d+) ([\d.]+) (\S+) (\S+) (\S+)\s*$')
Access = collections.namedtuple('Access',
                                'time method name status user')


def dest_requests(pair, container):
    """The destination proxy's requests on objects of ``container``
    (``name`` None for the container itself), oldest first."""
    prefix = '/v1/%s/%s' % (ACCOUNT, container)
    found = []
    for line in pair.proxy_log().splitlines():
        match = ACCESS.search(line)
        if not match:
            continue
        when, method, path, status, _size, _ms, user, _tx, _client = \
            match.groups()
        path = urllib.parse.unquote(path.split('?')[0])
        if path == prefix:
            name = None
        elif path.startswith(prefix + '/'):
            name = path[len(prefix) + 1:]
        else:
            continue
        found.append(Access(float(when), method, name, int(status), user))
    return found


def sync_counts(pair, container, since=0.0):
    """``(PUTs, DELETEs, HEADs)``: Counters by object name of the sync
    requests the destination accepted (a DELETE of an object it lacks,
    404, counts: the daemon takes it as done)."""
    puts, deletes, heads = (collections.Counter() for _ in range(3))
    for req in dest_requests(pair, container):
        if req.user != SYNC_USER or req.name is None or req.time < since:
            continue
        if req.method == 'PUT' and req.status == 201:
            puts[req.name] += 1
        elif req.method == 'DELETE' and req.status in (204, 404):
            deletes[req.name] += 1
        elif req.method == 'HEAD':
            heads[req.name] += 1
    return puts, deletes, heads


def assert_timestamps_equal(pair, src, dst, names):
    sconn, dconn = pair.src_conn(), pair.dst_conn()
    for name in names:
        there = dconn.head_object(dst, name)
        here = sconn.head_object(src, name)
        assert there['x-timestamp'] == here['x-timestamp'], name
        assert there['etag'] == here['etag'], name


def assert_gone(conn, container, names):
    for name in names:
        with pytest.raises(swift_exceptions.ClientException) as caught:
            conn.head_object(container, name)
        assert caught.value.http_status == 404, name


def container_ring(cluster):
    return ring_mod.Ring(
        os.path.join(cluster.workdir, local_cluster_cmd.CONTAINER_RING),
        cluster.meta['hash_path_prefix'], cluster.meta['hash_path_suffix'])


def sync_states(pair, container):
    """``{node: sync state}`` of every container replica on disk (None
    where the replica has no database or no state)."""
    part, devs = container_ring(pair.src).get_nodes(ACCOUNT, container)
    found = {}
    for dev in devs:
        path = backend.container_db_path(
            os.path.join(pair.src.workdir, dev['node'], 'devices',
                         dev['device']), part, ACCOUNT, container,
            pair.src.meta['hash_path_prefix'],
            pair.src.meta['hash_path_suffix'])
        if not os.path.exists(path):
            found[dev['node']] = None
            continue
        broker = backend.ContainerBroker(path, account=ACCOUNT,
                                         container=container)
        try:
            text = broker.metadata.get(sync_state.STATE_KEY, ('', ''))[0]
        finally:
            broker.close()
        found[dev['node']] = sync_state.decode(text)
    return found


def container_nodes(pair, container):
    """The nodes of ``container``'s replicas in the source's ring."""
    _part, devs = container_ring(pair.src).get_nodes(ACCOUNT, container)
    return [d['node'] for d in devs]


def node_of(member):
    return (member or '').split('@')[0]


def young_holding(history, name, min_age, max_age):
    """``(member, czxid)`` of ``name``'s znode if the poller saw it in
    the last 0.2s and first between ``min_age`` and ``max_age`` seconds
    ago, else None."""
    for _attempt in range(10):
        try:
            items = list(history.open.items())
            break
        except RuntimeError:
            continue
    else:
        return None
    now = time.time()
    for (lock, czxid), (member, first, last, _restored) in items:
        if lock == name and now - last < 0.2 and \
                min_age <= now - first < max_age:
            return member, czxid
    return None


def kill_holder(pair, lock, timeout=60):
    """SIGKILL the node holding ``lock`` (taken a moment ago: its pass
    is sending rows and far from over); ``(node, czxid, time killed)``.

    NOTE: the signal is sent here, as ``stop --kill`` does, so that it
    lands within milliseconds of the sighting; ``stop`` tidies up
    after.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = young_holding(pair.history, lock, 0.3, 2.0)
        if found is not None:
            member, czxid = found
            victim = node_of(member)
            assert victim in pair.src.node_names, member
            pid = local_cluster_cmd.running_pid(pair.src.workdir, victim)
            os.kill(pid, signal.SIGKILL)
            return victim, czxid, time.time()
        time.sleep(0.02)
    raise AssertionError('no fresh holder of %s within %ds\n%s'
                         % (lock, timeout, pair.diagnostics()))


# -- the tests ----------------------------------------------------------------

def test_destination_ends_equal_one_put_per_row_version(pair):
    src, dst = 'src-equal', 'dst-equal'
    make_containers(pair, src, dst)
    names = ['obj-%04d' % i for i in range(1000)]
    write_objects(pair.src, src, [(n, body_of(n, 1)) for n in names])
    overwritten = names[::5]
    write_objects(pair.src, src, [(n, body_of(n, 2)) for n in overwritten])
    # Half of the deleted names were overwritten first.
    deleted = names[0:500:10] + names[1:501:10]
    write_objects(pair.src, src, [(n, None) for n in deleted])
    assert len(overwritten) == 200 and len(set(deleted)) == 100
    live = sorted(set(names) - set(deleted))
    want = listing(pair.src_conn(), src)
    assert sorted(want) == live

    turn_sync_on(pair, src, dst)
    took = wait_equal(pair, src, dst, timeout=360, deleted=deleted)
    print('1,000 rows synced in %.1fs' % took)
    wait_passes(pair, src)
    puts, deletes, heads = sync_counts(pair, dst)
    twice = {n: c for n, c in puts.items() if c > 1}
    assert not twice, (twice, pair.diagnostics())
    assert puts == {n: 1 for n in live}, pair.diagnostics()
    assert deletes == {n: 1 for n in deleted}, pair.diagnostics()
    print('phase 1: %d PUT, %d DELETE, %d HEAD at the destination' % (
        sum(puts.values()), sum(deletes.values()), sum(heads.values())))
    assert_timestamps_equal(pair, src, dst, live[::45] + overwritten[1::40])
    assert_gone(pair.dst_conn(), dst, deleted[::10])

    # With sync on: 50 more overwritten, 20 more deleted.
    again = live[3::17][:50]
    later_deleted = [n for n in live if n not in again][7::40][:20]
    assert len(again) == 50 and len(later_deleted) == 20
    write_objects(pair.src, src, [(n, body_of(n, 3)) for n in again] +
                  [(n, None) for n in later_deleted])
    took = wait_equal(pair, src, dst, timeout=180,
                      deleted=deleted + later_deleted)
    print('70 more rows synced in %.1fs' % took)
    wait_passes(pair, src)
    puts, deletes, heads = sync_counts(pair, dst)
    versions = collections.Counter(live)
    versions.update(again)
    too_many = {n: (c, versions[n]) for n, c in puts.items()
                if c > versions[n]}
    assert not too_many, (too_many, pair.diagnostics())
    assert puts == versions, pair.diagnostics()
    assert deletes == {n: 1 for n in deleted + later_deleted}, \
        pair.diagnostics()
    print('in all: %d PUT, %d DELETE, %d HEAD at the destination' % (
        sum(puts.values()), sum(deletes.values()), sum(heads.values())))
    assert_timestamps_equal(pair, src, dst, again[::5])
    assert_gone(pair.dst_conn(), dst, deleted + later_deleted)
    # Every replica's database holds the same final sync point: the
    # last row's.
    states = sync_states(pair, src)
    rows = listing(pair.src_conn(), src)
    assert rows == listing(pair.dst_conn(), dst)
    points = {node: st and st['point'] for node, st in states.items()}
    assert len(set(points.values())) == 1 and None not in points.values(), \
        points


def test_holder_killed_mid_container_is_taken_over_without_resending(pair):
    src, dst = 'src-takeover', 'dst-takeover'
    make_containers(pair, src, dst)
    count = 600
    names = ['obj-%04d' % i for i in range(count)]
    write_objects(pair.src, src, [(n, body_of(n, 1)) for n in names])
    lock = sync_state.lock_name(ACCOUNT, src)
    history = pair.history

    turn_sync_on(pair, src, dst)

    def some_synced():
        try:
            synced = object_count(pair.dst_conn(), dst)
        except (swift_exceptions.ClientException, OSError):
            return False
        return 2 * BATCH_SIZE <= synced <= count - ROWS_PER_PASS
    for _attempt in range(3):
        wait_for(some_synced, 240, 'some but not all rows at the '
                 'destination', pair)
        victim, czxid, killed_at = kill_holder(pair, lock)
        synced_at_kill = object_count(pair.dst_conn(), dst)
        pair.src.stop(victim, kill=True)
        # The victim held the lock when it died: its znode stays until
        # its session expires.
        if [h for h in history.of(lock) if h.czxid == czxid and (
                h.gone is None or h.gone > killed_at + 1.0)]:
            break
        # NOTE: it released the lock just before the kill landed.
        print('%s was no longer holding %s when killed: again'
              % (victim, lock))
        pair.src.start(victim)
    else:
        raise AssertionError('the holder released %s before each kill\n%s'
                             % (lock, pair.diagnostics()))
    try:
        def taken_over():
            return [h for h in history.of(lock)
                    if node_of(h.member) != victim and h.first > killed_at]
        bound = harness.SESSION_TIMEOUT + RUN_PAUSE + 25
        takers = wait_for(taken_over, bound, 'another node taking %s' % lock,
                          pair)
        took = takers[0].first - killed_at
        took_equal = wait_equal(pair, src, dst, timeout=300)
        wait_passes(pair, src)
    finally:
        pair.src.start(victim)
    print('%s killed with %d/%d rows at the destination; %s took %s over '
          'after %.1fs; equal %.1fs after the kill' % (
              victim, synced_at_kill, count, node_of(takers[0].member),
              lock, took, took_equal))
    puts, deletes, heads = sync_counts(pair, dst)
    twice = {n: c for n, c in puts.items() if c > 1}
    assert not twice, (twice, pair.diagnostics())
    assert puts == {n: 1 for n in names}, pair.diagnostics()
    assert not deletes
    # The new holder resumed from the stored point: it asked the
    # destination about the rows of the batch in flight, not about
    # every row before it.
    _p, _d, heads_after = sync_counts(pair, dst, since=killed_at)
    print('HEADs at the destination after the kill: %d'
          % sum(heads_after.values()))
    assert sum(heads_after.values()) <= 2 * BATCH_SIZE, heads_after


def sync_entry(pair, container):
    _code, report, _err = pair.src.status('--sync', '--format', 'json')
    if not isinstance(report, dict):
        return None
    for entry in report.get('containers', ()):
        if entry['account'] == ACCOUNT and entry['container'] == container:
            return entry
    return None


def test_destination_down_retries_then_drains(pair):
    src, dst = 'src-outage', 'dst-outage'
    make_containers(pair, src, dst)
    turn_sync_on(pair, src, dst)
    names = ['obj-%03d' % i for i in range(100)]
    pair.dst.cluster_cmd('stop', 'proxy')
    try:
        write_objects(pair.src, src, [(n, body_of(n, 1)) for n in names])

        def lagging():
            entry = sync_entry(pair, src)
            if entry and (entry['rows_behind'] or 0) > 0 and (
                    (entry['retry'] or 0) > 0 or entry['last_error']):
                return entry
            return None
        entry = wait_for(lagging, 90, 'status showing %s behind' % src,
                         pair)
        print('while the destination is down: %s' % entry)

        def all_waiting():
            # Every row unsent, failed ones in the retry set.
            entry = sync_entry(pair, src)
            if entry and entry['rows_behind'] == len(names) and \
                    (entry['retry'] or 0) >= BATCH_SIZE:
                return entry
            return None
        entry = wait_for(all_waiting, 60, 'status showing every row of '
                         '%s waiting' % src, pair)
        print('then: %s' % entry)
    finally:
        pair.dst.cluster_cmd('start', 'proxy')
    back = time.time()
    took = wait_equal(pair, src, dst, timeout=120)

    def drained():
        entry = sync_entry(pair, src)
        if entry and entry['rows_behind'] == 0 and entry['retry'] == 0 \
                and entry['synced_age'] is not None \
                and time.time() - entry['synced_age'] > back:
            return entry
        return None
    entry = wait_for(drained, 60, 'status showing %s drained' % src, pair)
    print('equal %.1fs after the destination came back; %s' % (took, entry))
    assert len(listing(pair.dst_conn(), dst)) == len(names)
    puts, _deletes, _heads = sync_counts(pair, dst)
    assert puts == {n: 1 for n in names}, pair.diagnostics()


def test_replica_node_down_whole_time_still_syncs(pair):
    src, dst = 'src-replica-down', 'dst-replica-down'
    replica_nodes = container_nodes(pair, src)
    assert sorted(replica_nodes) == pair.src.node_names
    down = replica_nodes[0]
    names = ['obj-%02d' % i for i in range(60)]
    lock = sync_state.lock_name(ACCOUNT, src)
    pair.src.stop(down)
    try:
        stopped_at = time.time()
        make_containers(pair, src, dst)
        write_objects(pair.src, src, [(n, body_of(n, 1)) for n in names])
        turn_sync_on(pair, src, dst)
        took = wait_equal(pair, src, dst, timeout=120)
        # The node was down the whole time: it has no replica at all,
        # and the others held the lock.
        assert sync_states(pair, src)[down] is None
        holders = {node_of(h.member) for h in pair.history.of(lock)
                   if h.first > stopped_at}
        assert holders and down not in holders, holders
    finally:
        pair.src.start(down)
    print('%s down: 60 rows synced in %.1fs by %s' % (
        down, took, ', '.join(sorted(holders))))
    assert sorted(listing(pair.dst_conn(), dst)) == names
    puts, _deletes, _heads = sync_counts(pair, dst)
    assert puts == {n: 1 for n in names}, pair.diagnostics()


# -- refused requests -------------------------------------------------------

def raw_request(host, port, method, path, headers, body=b''):
    """Send one request as these exact bytes; ``(status, bytes sent)``."""
    lines = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % (host, port)]
    lines.extend('%s: %s' % item for item in headers.items())
    lines.extend(['Content-Length: %d' % len(body), 'Connection: close'])
    data = ('\r\n'.join(lines) + '\r\n\r\n').encode('utf-8') + body
    return send_bytes(host, port, data), data


def send_bytes(host, port, data):
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=data.split(b' ')[0]
                                        .decode())
        resp.begin()
        resp.read()
        return resp.status


def signed_headers(method, path, x_timestamp, realm=REALM,
                   realm_key=REALM_KEY, user_key=SYNC_KEY):
    nonce = realms_mod.new_nonce()
    sig = realms_mod.get_sig(method, path, x_timestamp, nonce, realm_key,
                             user_key)
    return {'X-Container-Sync-Auth': '%s %s %s' % (realm, nonce, sig),
            'X-Timestamp': x_timestamp}


def test_refused_sync_requests_change_nothing(pair):
    dst = 'dst-refused'
    conn = pair.dst_conn()
    conn.put_container(dst, headers={'X-Container-Sync-Key': SYNC_KEY})
    conn.put_object(dst, 'kept', b'the original body')
    kept_before = conn.head_object(dst, 'kept')
    host, port = pair.dst_host, pair.dst_port

    def path(name):
        return '/v1/%s/%s/%s' % (ACCOUNT, dst, urllib.parse.quote(name))

    def put(name, body, **sign):
        when = '%.5f' % time.time()
        headers = signed_headers('PUT', path(name), when, **sign)
        headers.update({'ETag': hashlib.md5(body).hexdigest(),
                        'Content-Type': 'application/octet-stream'})
        return raw_request(host, port, 'PUT', path(name), headers, body)

    def delete(name, **sign):
        when = '%.5f' % time.time()
        return raw_request(host, port, 'DELETE', path(name), signed_headers(
            'DELETE', path(name), when, **sign))

    def unchanged(expected_names):
        assert sorted(listing(pair.dst_conn(), dst)) == expected_names
        now = pair.dst_conn().head_object(dst, 'kept')
        for header in ('etag', 'x-timestamp', 'content-length'):
            assert now[header] == kept_before[header], header

    refusals = {
        'wrong container key': {'user_key': 'not-the-key'},
        'wrong realm key': {'realm_key': '0' * 32},
        'unknown realm': {'realm': 'nosuchrealm'},
    }
    for what, sign in refusals.items():
        status, _ = put('kept', b'overwritten by %s' % what.encode(), **sign)
        assert status == 401, (what, status)
        status, _ = put('new-%s' % what, b'new', **sign)
        assert status == 401, (what, status)
        status, _ = delete('kept', **sign)
        assert status == 401, (what, status)
        unchanged(['kept'])

    # A valid signed PUT is taken, with its own timestamp; the same bytes
    # again are refused.
    body = b'synced body'
    status, sent = put('synced', body)
    assert status == 201, status
    synced = pair.dst_conn().head_object(dst, 'synced')
    sent_ts = re.search(rb'X-Timestamp: (\S+)\r\n', sent).group(1).decode()
    assert synced['x-timestamp'] == sent_ts
    assert synced['etag'] == hashlib.md5(body).hexdigest()
    assert send_bytes(host, port, sent) == 401
    unchanged(['kept', 'synced'])
    again = pair.dst_conn().head_object(dst, 'synced')
    assert again['x-timestamp'] == synced['x-timestamp']
    # A replayed DELETE too: the first deletes, the replay is refused
    # (the object written again in between stays).
    status, sent_delete = delete('synced')
    assert status in (204, 404), status
    assert_gone(pair.dst_conn(), dst, ['synced'])
    pair.dst_conn().put_object(dst, 'synced', body)
    rewritten = pair.dst_conn().head_object(dst, 'synced')
    assert send_bytes(host, port, sent_delete) == 401
    assert pair.dst_conn().head_object(dst, 'synced')['x-timestamp'] == \
        rewritten['x-timestamp']

    # X-Timestamp on a request that is no sync request: 400.
    token = pair.dst_conn().get_auth()[1]
    old = '%.5f' % (time.time() - 3600)
    status, _ = raw_request(host, port, 'PUT', path('kept'), {
        'X-Auth-Token': token, 'X-Timestamp': old}, b'backdated')
    assert status == 400, status
    status, _ = raw_request(host, port, 'DELETE', path('kept'), {
        'X-Auth-Token': token, 'X-Timestamp': old})
    assert status == 400, status
    unchanged(['kept', 'synced'])

    refused = [r for r in dest_requests(pair, dst) if r.status in (400, 401)]
    assert len(refused) == 3 * len(refusals) + 2 + 2, refused
