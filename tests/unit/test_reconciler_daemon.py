"""The misplaced-object reconciler (coordsync.reconciler.daemon).

The queue container and the data container are real databases on three
in-process nodes (the product's container routes, reached through
:class:`tests.unit.test_repair.InProcessClient`: listings, HEADs and
pops are the real requests); each storage policy's objects are a small
fake with the object client's calls and its 409 rule.
"""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync import service
from coordsync.common import fencing
from coordsync.common import storage_policy
from coordsync.common import worker
from coordsync.common import wsgi
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.container import server
from coordsync.obj import client as object_client
from coordsync.obj import diskfile
from coordsync.reconciler import daemon
from coordsync.reconciler import queue
from tests.unit.node_fixtures import SECRET
from tests.unit.test_repair import InProcessClient

LOG = logging.getLogger(__name__)
NAMES = ('n1', 'n2', 'n3')
PART = 3
DEVICE = 'sda'
PREFIX, SUFFIX = 'pre', 'suf'
ACCOUNT, CONTAINER = 'AUTH_a', 'c'
# An hour boundary a while ago (entries must not look older than
# reclaim_age unless a test says so).
T0 = float(int(time.time()) // 3600 * 3600 - 3600)
QUEUE = queue.queue_container(T0)


def ts(offset=0.0):
    return Timestamp(T0 + offset)


class FakeRing:
    """Every container (queue or not) in partition PART of n1, n2, n3."""

    replicas = 3

    def __init__(self, nodes):
        self.devices = [nodes[name] for name in NAMES]

    def has_changed(self):
        return False

    def get_nodes(self, account, container=None, obj=None):
        return PART, self.get_part_nodes(PART)

    def get_part_nodes(self, part):
        return [dict(d) for d in self.devices]

    def devices_on_node(self, node):
        return [dict(d) for d in self.devices if d['node'] == node]

    def partitions_for_device(self, dev_id):
        return [PART]


class FakeObjects:
    """One storage policy's objects: (account, container, obj) ->
    (timestamp, headers or None for a tombstone, body), with the object
    client's calls and its rule (a write no newer than what is stored:
    409 on every node). ``calls`` is shared by the policies, in order."""

    def __init__(self, policy, calls):
        self.policy = policy
        self.calls = calls
        self.versions = {}
        self.fail = None
        self.unreadable = False
        self.on_put = None

    def _key(self, obj):
        return (ACCOUNT, CONTAINER, obj)

    def store(self, obj, when, body=b'data', deleted=False, **meta):
        headers = None if deleted else dict({
            'x-timestamp': when.normal, 'content-type': 'text/plain',
            'etag': 'e-%s' % obj, 'content-length': str(len(body)),
            'x-object-meta-color': 'blue'}, **meta)
        self.versions[self._key(obj)] = (when, headers, body)

    def newest(self, obj):
        found = self.versions.get(self._key(obj))
        return None if found is None else (found[0].normal,
                                           found[1] is not None)

    def _check(self, account, container):
        assert (account, container) == (ACCOUNT, CONTAINER)
        if self.fail is not None:
            raise self.fail

    def head_newest(self, account, container, obj):
        self.calls.append((self.policy, 'head', obj))
        self._check(account, container)
        found = self.versions.get(self._key(obj))
        if found is None:
            return None, None
        return found[0], found[1]

    def get_newest(self, account, container, obj):
        self.calls.append((self.policy, 'get', obj))
        self._check(account, container)
        found = self.versions.get(self._key(obj))
        if found is None:
            return None, None, None
        if found[1] is None or self.unreadable:
            return found[0], None, None
        return found[0], dict(found[1]), iter([found[2]])

    def put(self, account, container, obj, body, content_type=None,
            metadata=None, when=None):
        self.calls.append((self.policy, 'put', obj, when.normal))
        self._check(account, container)
        if self.on_put is not None:
            self.on_put(obj)
        found = self.versions.get(self._key(obj))
        if found is not None and found[0] >= when:
            raise object_client.QuorumError('PUT: 0 of 3 (409s)',
                                            [409, 409, 409])
        headers = {key.lower(): value
                   for key, value in (metadata or {}).items()}
        headers.update({'x-timestamp': when.normal,
                        'content-type': content_type,
                        'content-length': str(len(body))})
        self.versions[self._key(obj)] = (when, headers, body)
        return when

    def delete(self, account, container, obj, when=None):
        self.calls.append((self.policy, 'delete', obj, when.normal))
        self._check(account, container)
        found = self.versions.get(self._key(obj))
        if found is not None and (found[0] > when or (
                found[0] == when and found[1] is None)):
            raise object_client.QuorumError('DELETE: 0 of 3 (409s)',
                                            [409, 409, 409])
        self.versions[self._key(obj)] = (when, None, b'')
        return when


class FakeCoordinator:
    member_id = 'n1@test'


class FakeGrant:
    """A grant whose lock is lost after ``lose_after`` checks."""

    token = 7

    def __init__(self, lose_after=None, fence=None):
        self.checks = 0
        self.lose_after = lose_after
        self.fence = fence

    def check(self):
        self.checks += 1
        if self.lose_after is not None and self.checks > self.lose_after:
            raise worker.LockLost('lock lost')

    def admit_local(self):
        pass


class Cluster:
    def __init__(self, conf, tmp_path):
        self.conf = conf
        conf.set_override('node_name', 'n1')
        self.managers, self.nodes, self.apps, self.stores = {}, {}, {}, {}
        for index, name in enumerate(NAMES):
            devices = tmp_path / name
            os.makedirs(devices / DEVICE)
            self.managers[name] = diskfile.DiskFileManager(
                str(devices), hash_prefix=PREFIX, hash_suffix=SUFFIX)
            self.stores[name] = fencing.TokenStore(
                str(tmp_path / name / 'fencing.db'))
            app = wsgi.NodeApp(conf, token_store=self.stores[name])
            app.add_routes(server.ContainerRoutes(
                conf, self.managers[name]).routes())
            self.apps[name] = app
            self.nodes[name] = {'id': index, 'node': name,
                                'ip': '127.0.0.%d' % (index + 1),
                                'port': 6200, 'device': DEVICE}
        self.client = InProcessClient(conf, self.apps)
        self.ring = FakeRing(self.nodes)
        self.calls = []
        self.objects = {p: FakeObjects(p, self.calls) for p in (0, 1, 2)}
        self.made = None

    def broker(self, node, account=ACCOUNT, container=CONTAINER):
        dev_path = os.path.join(self.managers[node].devices_path, DEVICE)
        return backend.ContainerBroker(
            backend.container_db_path(dev_path, PART, account, container,
                                      PREFIX, SUFFIX),
            account=account, container=container)

    def container(self, policy, nodes=NAMES, put=None):
        """The data container, of ``policy`` on ``nodes``."""
        for node in nodes:
            self.broker(node).initialize((put or ts(-100)).normal,
                                         storage_policy_index=policy)

    def enqueue(self, obj, when, policy=1, op='PUT', nodes=NAMES):
        """A misplaced row of ``obj`` queued as the replicator does."""
        qname, row = queue.entry_row(
            {'name': obj, 'created_at': when.normal,
             'deleted': 1 if op == 'DELETE' else 0},
            policy, ACCOUNT, CONTAINER)
        self.raw_row(row['name'], row['created_at'], row['content_type'],
                     nodes, qname)
        return row['name']

    def raw_row(self, name, created_at, content_type, nodes=NAMES,
                qname=QUEUE, etag=None):
        for node in nodes:
            broker = self.broker(node, queue.MISPLACED_ACCOUNT, qname)
            if not broker.exists():
                broker.initialize(created_at)
            broker.put_object(name, created_at, 0, content_type,
                              etag or created_at)

    def queued(self, node, qname=QUEUE):
        """Names and timestamps of the live queue rows of a replica."""
        broker = self.broker(node, queue.MISPLACED_ACCOUNT, qname)
        if not broker.exists():
            return []
        return sorted((r['name'], r['created_at']) for r in
                      broker.get_items_since(-1, 1000) if not r['deleted'])

    def reconciler(self, **overrides):
        for key, value in overrides.items():
            self.conf.set_override(key, value, 'reconciler')
        rec = daemon.Reconciler(
            self.conf, FakeCoordinator(), ring=self.ring,
            manager=self.managers['n1'], node_client=self.client,
            objects=dict(self.objects), logger=LOG)
        rec.stats = worker.PassStats(figures=rec.new_figures())
        self.made = rec
        return rec

    def job(self, qname=QUEUE):
        dev_path = os.path.join(self.managers['n1'].devices_path, DEVICE)
        path = backend.container_db_path(dev_path, PART,
                                         queue.MISPLACED_ACCOUNT, qname,
                                         PREFIX, SUFFIX)
        return daemon.Job(qname, DEVICE, PART, path,
                          self.ring.get_part_nodes(PART))

    def run(self, grant=None, **overrides):
        """One queue container's pass; (ok, figures)."""
        rec = self.reconciler(**overrides)
        ok = rec.work(self.job(), grant or FakeGrant())
        return ok, rec.stats.figures

    def object_calls(self, policy=None):
        return [c for c in self.calls if policy is None or c[0] == policy]


@pytest.fixture
def cluster(conf, tmp_path, monkeypatch):
    monkeypatch.delenv(daemon.PAUSE_ENV, raising=False)
    conf.set_override('cluster_secret', SECRET)
    return Cluster(conf, tmp_path)


def figures(stats):
    return {name: getattr(stats, name) for name in (
        'moved', 'already_right', 'tombstones', 'retried', 'invalid',
        'errors', 'entries', 'left')}


def counts(**given):
    found = {'moved': 0, 'already_right': 0, 'tombstones': 0,
             'retried': 0, 'invalid': 0, 'errors': 0, 'entries': 1,
             'left': 0}
    found.update(given)
    return found


# -- the branches -------------------------------------------------------------

def test_an_entry_of_the_containers_policy_is_popped(cluster):
    cluster.container(1)
    name = cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1)
    assert cluster.calls == []
    for node in NAMES:
        assert cluster.queued(node) == []
    # NOTE: popped at the entry's timestamp one tick later, everywhere.
    for node in NAMES:
        rows = cluster.broker(node, queue.MISPLACED_ACCOUNT,
                              QUEUE).get_items_since(-1, 10)
        assert [(r['name'], r['created_at'], r['deleted'])
                for r in rows] == [(name, ts(5).later(1).normal, 1)]


def test_a_misplaced_write_is_moved(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5), body=b'hello')
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(moved=1, tombstones=1)
    copy = ts(5).later(2).normal
    assert cluster.calls == [
        (0, 'head', 'o'), (1, 'get', 'o'), (0, 'put', 'o', copy),
        (1, 'delete', 'o', copy)]
    when, headers, body = cluster.objects[0].versions[
        (ACCOUNT, CONTAINER, 'o')]
    assert (when, body) == (ts(5).later(2), b'hello')
    # NOTE: content type, ETag (which the nodes check) and user metadata
    # go along; the source's backend headers do not.
    assert headers == {'x-timestamp': copy, 'content-type': 'text/plain',
                       'etag': 'e-o', 'x-object-meta-color': 'blue',
                       'content-length': '5'}
    assert cluster.objects[1].newest('o') == (copy, False)
    for node in NAMES:
        assert cluster.queued(node) == []


def test_a_newer_misplaced_source_is_copied_at_its_own_time(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(9))
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(moved=1, tombstones=1)
    assert cluster.objects[0].newest('o') == (ts(9).later(2).normal, True)
    # NOTE: the tombstone at the entry's time loses to the newer write,
    # which has an entry of its own.
    assert cluster.objects[1].newest('o') == (ts(9).normal, True)
    assert cluster.calls[-2:] == [(1, 'delete', 'o', ts(5).later(2).normal),
                                  (1, 'head', 'o')]


def test_a_newer_write_in_the_right_policy_is_not_overwritten(cluster):
    cluster.container(0)
    cluster.objects[0].store('o', ts(7), body=b'newer')
    cluster.objects[1].store('o', ts(5), body=b'older')
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1, tombstones=1)
    assert [c for c in cluster.calls if c[1] == 'put'] == []
    assert cluster.objects[0].versions[(ACCOUNT, CONTAINER, 'o')][2] == \
        b'newer'
    assert cluster.objects[1].newest('o') == (ts(5).later(2).normal, False)
    assert cluster.queued('n2') == []


def test_a_copy_refused_for_a_newer_version_is_already_right(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))

    def user_writes_meanwhile(obj):
        cluster.objects[0].store(obj, ts(60), body=b'user')
    cluster.objects[0].on_put = user_writes_meanwhile
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1, tombstones=1)
    assert cluster.objects[0].versions[(ACCOUNT, CONTAINER, 'o')][2] == \
        b'user'
    assert cluster.queued('n1') == []


def test_a_copy_failing_without_a_newer_version_keeps_the_entry(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))

    def nodes_fail(obj):
        raise object_client.QuorumError('PUT: 1 of 3 (503s)', [201, 503])
    cluster.objects[0].on_put = nodes_fail
    name = cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is False
    assert figures(stats) == counts(errors=1, left=1)
    # NOTE: no tombstone: the source is all there is.
    assert cluster.objects[1].newest('o') == (ts(5).normal, True)
    assert cluster.queued('n1') == [(name, ts(5).normal)]


def test_a_misplaced_delete_is_carried_over(cluster):
    cluster.container(0)
    cluster.objects[0].store('o', ts(-50), body=b'old')
    cluster.objects[1].store('o', ts(5), deleted=True)
    cluster.enqueue('o', ts(5), policy=1, op='DELETE')
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(tombstones=1)
    stamp = ts(5).later(2).normal
    # NOTE: the wrong policy keeps its own tombstone: the entry is it.
    assert cluster.calls == [
        (0, 'head', 'o'), (1, 'head', 'o'), (0, 'delete', 'o', stamp)]
    assert cluster.objects[0].newest('o') == (stamp, False)
    assert cluster.objects[1].newest('o') == (ts(5).normal, False)
    assert cluster.queued('n3') == []


def test_a_cleanup_tombstone_queued_in_turn_ends_there(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5), body=b'data')
    cluster.enqueue('o', ts(5), policy=1)
    assert cluster.run()[0] is True
    copy = (ts(5).later(2).normal, True)
    cleanup = ts(5).later(2)
    assert cluster.objects[0].newest('o') == copy
    assert cluster.objects[1].newest('o') == (cleanup.normal, False)
    # The container replicator queues the cleanup tombstone's row, a
    # delete as new as the copy: popped, and nothing else is written
    # (a later tombstone would be queued newer than the copy, and its
    # entry would delete the copy).
    cluster.enqueue('o', cleanup, policy=1, op='DELETE')
    before = len(cluster.calls)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1)
    assert [c for c in cluster.calls[before:] if c[1] != 'head'] == []
    assert cluster.objects[0].newest('o') == copy
    assert cluster.objects[1].newest('o') == (cleanup.normal, False)
    assert cluster.queued('n3') == []


def test_a_delete_whose_source_was_written_again_moves_it(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(8), body=b'again')
    cluster.enqueue('o', ts(5), policy=1, op='DELETE')
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(moved=1)
    assert cluster.objects[0].newest('o') == (ts(8).later(2).normal, True)
    # The version of 8 has an entry of its own, which cleans it up.
    assert cluster.objects[1].newest('o') == (ts(8).normal, True)


def test_an_invalid_entry_is_logged_and_popped(cluster, caplog):
    cluster.container(0)
    cluster.raw_row('nonsense', ts(3).normal, queue.PUT_TYPE)
    cluster.raw_row('1:/a/c/o', ts(4).normal, 'text/plain')
    with caplog.at_level(logging.WARNING):
        ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(invalid=2, entries=2)
    assert cluster.calls == []
    for node in NAMES:
        assert cluster.queued(node) == []
    lines = [r.getMessage() for r in caplog.records
             if 'invalid entry' in r.getMessage()]
    assert len(lines) == 2 and all('\n' not in line for line in lines)


def test_a_source_not_there_yet_keeps_the_entry(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(2))
    name = cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(retried=1, left=1)
    assert [c for c in cluster.calls if c[1] in ('put', 'delete')] == []
    assert cluster.queued('n1') == [(name, ts(5).normal)]
    assert cluster.made.depth[QUEUE]['left'] == 1


def test_a_source_lost_past_reclaim_age_is_given_up(cluster, caplog):
    cluster.conf.set_override('reclaim_age', 3600)
    old = Timestamp(T0 - 7200)
    cluster.container(0)
    qname = queue.queue_container(old)
    cluster.enqueue('o', old, policy=1)
    rec = cluster.reconciler()
    with caplog.at_level(logging.CRITICAL):
        ok = rec.work(cluster.job(qname), FakeGrant())
    assert ok is False
    assert figures(rec.stats.figures) == counts(errors=1)
    assert cluster.queued('n1', qname) == []
    (line,) = [r.getMessage() for r in caplog.records
               if r.levelno == logging.CRITICAL]
    assert 'lost' in line and '/AUTH_a/c/o' in line


def test_a_source_deleted_after_the_entry_pops_it(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(9), deleted=True)
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1)
    assert cluster.queued('n1') == []
    assert [c for c in cluster.calls if c[1] in ('put', 'delete')] == []


def test_an_unreadable_newest_source_is_an_error_not_a_delete(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    cluster.objects[1].unreadable = True
    name = cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is False
    assert figures(stats) == counts(errors=1, left=1)
    assert cluster.queued('n1') == [(name, ts(5).normal)]


def test_no_container_replica_answering_keeps_the_entry(cluster):
    # NOTE: no data container anywhere: every HEAD is a bare 404.
    name = cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(retried=1, left=1)
    assert cluster.queued('n2') == [(name, ts(5).normal)]


def test_the_winning_policy_decides_when_replicas_disagree(cluster):
    # n1 and n2 were recreated with policy 0 while n3 was away and
    # kept policy 1 (put before the delete it missed).
    cluster.container(1, nodes=['n3'], put=ts(-100))
    for node in ('n1', 'n2'):
        broker = cluster.broker(node)
        broker.initialize(ts(-100).normal, storage_policy_index=1)
        broker.delete_db(ts(-90).normal)
        broker.update_put_timestamp(ts(-80).normal)
        broker.set_storage_policy_index(0, ts(-80).normal)
    cluster.objects[1].store('o', ts(5))
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(moved=1, tombstones=1)
    assert cluster.objects[0].newest('o') == (ts(5).later(2).normal, True)


def test_a_container_policy_is_asked_once_per_pass(cluster):
    cluster.container(0)
    for index in range(3):
        cluster.enqueue('o%d' % index, ts(index), policy=0)
    before = len(cluster.client.requests)
    ok, stats = cluster.run(entry_concurrency=1)
    assert ok is True
    assert figures(stats) == counts(already_right=3, entries=3)
    heads = [r for r in cluster.client.requests[before:]
             if r[1] == 'HEAD']
    assert len(heads) == 3


# -- idempotence: a pass killed between two steps -----------------------------

def test_a_pass_killed_after_the_copy_is_finished_by_the_next(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    # What a holder killed right after the copy left.
    cluster.objects[0].store('o', ts(5).later(2))
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1, tombstones=1)
    assert [c for c in cluster.calls if c[1] == 'put'] == []
    assert cluster.objects[1].newest('o') == (ts(5).later(2).normal, False)
    for node in NAMES:
        assert cluster.queued(node) == []


def test_a_pass_killed_after_the_tombstones_is_finished_by_the_next(
        cluster):
    cluster.container(0)
    cluster.objects[0].store('o', ts(5).later(2))
    cluster.objects[1].store('o', ts(5).later(2), deleted=True)
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True
    # NOTE: the tombstone is there already: its 409 is as good.
    assert figures(stats) == counts(already_right=1, tombstones=1)
    for node in NAMES:
        assert cluster.queued(node) == []


def test_a_pop_on_a_minority_keeps_the_entry_for_the_next_pass(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    name = cluster.enqueue('o', ts(5), policy=1)
    cluster.client.down = {'n2', 'n3'}
    ok, stats = cluster.run()
    assert ok is False
    assert figures(stats) == counts(moved=0, tombstones=1, errors=1,
                                    left=1)
    assert cluster.queued('n2') == [(name, ts(5).normal)]
    cluster.client.down = set()
    cluster.calls.clear()
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1, tombstones=1)
    assert [c for c in cluster.calls if c[1] == 'put'] == []
    for node in NAMES:
        assert cluster.queued(node) == []


def test_an_entry_queued_again_later_survives_the_pop(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    name = cluster.enqueue('o', ts(5), policy=1)

    def written_again(obj):
        cluster.objects[1].store(obj, ts(30))
        cluster.enqueue(obj, ts(30), policy=1)
    cluster.objects[0].on_put = written_again
    ok, stats = cluster.run()
    assert ok is True
    for node in NAMES:
        assert cluster.queued(node) == [(name, ts(30).normal)]
    cluster.objects[0].on_put = None
    ok, stats = cluster.run()
    assert figures(stats) == counts(moved=1, tombstones=1)
    assert cluster.objects[0].newest('o') == (ts(30).later(2).normal, True)
    assert cluster.queued('n1') == []


# -- the listing --------------------------------------------------------------

def test_the_listing_is_the_union_of_the_replicas(cluster):
    cluster.container(0)
    names = [cluster.enqueue('a', ts(1), policy=0, nodes=['n1']),
             cluster.enqueue('b', ts(2), policy=0, nodes=['n2']),
             cluster.enqueue('c', ts(3), policy=0, nodes=['n3'])]
    cluster.broker('n2', queue.MISPLACED_ACCOUNT, QUEUE).put_object(
        names[0], ts(2).normal, 0, queue.PUT_TYPE, ts(2).normal)
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=3, entries=3)
    # NOTE: the newest row of a name is the entry (and its pop time).
    rows = cluster.broker('n1', queue.MISPLACED_ACCOUNT,
                          QUEUE).get_items_since(-1, 10)
    assert {r['name']: r['created_at'] for r in rows} == {
        names[0]: ts(2).later(1).normal, names[1]: ts(2).later(1).normal,
        names[2]: ts(3).later(1).normal}
    for node in NAMES:
        assert cluster.queued(node) == []


def test_a_replica_down_does_not_hide_the_others_entries(cluster):
    cluster.container(0)
    cluster.enqueue('a', ts(1), policy=0, nodes=['n2', 'n3'])
    cluster.client.down = {'n1'}
    ok, stats = cluster.run()
    assert ok is True
    assert figures(stats) == counts(already_right=1)
    assert cluster.made.peer_errors.counts


def test_entries_per_pass_bounds_a_pass_and_shows_in_the_depth(cluster):
    cluster.container(0)
    for index in range(7):
        cluster.enqueue('o%d' % index, ts(index), policy=0)
    ok, stats = cluster.run(entries_per_pass=3)
    assert figures(stats) == counts(already_right=3, entries=3)
    assert cluster.queued('n1')[0][0].endswith('/o3')
    depth = cluster.made.depth[QUEUE]
    assert (depth['entries'], depth['left'], depth['more']) == (3, 0, True)
    for _ in range(2):
        cluster.run(entries_per_pass=3)
    assert cluster.queued('n1') == []
    depth = cluster.made.depth[QUEUE]
    assert (depth['entries'], depth['left'], depth['more']) == (1, 0, False)


def test_no_replica_listed_fails_the_queue_container(cluster):
    cluster.enqueue('o', ts(5), policy=0)
    cluster.client.down = set(NAMES)
    ok, stats = cluster.run()
    assert ok is False
    assert stats.queues == 1 and stats.entries == 0


# -- errors, locks, fences ----------------------------------------------------

def test_an_error_on_one_entry_leaves_it_and_goes_on(cluster, caplog):
    cluster.container(0)
    cluster.objects[1].fail = object_client.QuorumError(
        'no replica of /AUTH_a/c/o answered')
    cluster.objects[2].store('p', ts(6))
    broken = cluster.enqueue('o', ts(5), policy=1)
    cluster.enqueue('p', ts(6), policy=2)
    with caplog.at_level(logging.ERROR):
        ok, stats = cluster.run()
    assert ok is False
    assert figures(stats) == counts(moved=1, tombstones=1, errors=1,
                                    entries=2, left=1)
    assert cluster.queued('n1') == [(broken, ts(5).normal)]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is None and 'no replica' in record.getMessage()


def test_an_unknown_policy_is_an_error(cluster):
    cluster.container(0)
    name = cluster.enqueue('o', ts(5), policy=9)
    ok, stats = cluster.run()
    assert ok is False
    assert figures(stats) == counts(errors=1, left=1)
    assert cluster.queued('n1') == [(name, ts(5).normal)]


def test_a_lost_lock_stops_the_pass_at_once(cluster):
    cluster.container(0)
    for index in range(4):
        cluster.objects[1].store('o%d' % index, ts(index))
        cluster.enqueue('o%d' % index, ts(index), policy=1)
    rec = cluster.reconciler(entry_concurrency=1)
    # NOTE: a move checks the lock at its start, before the copy, the
    # tombstones and the pop: lost after the first entry's.
    with pytest.raises(worker.LockLost):
        rec.work(cluster.job(), FakeGrant(lose_after=4))
    assert [c[2] for c in cluster.calls] == ['o0'] * 4
    assert [n for n, _ in cluster.queued('n1')] == [
        '1:/AUTH_a/c/o%d' % i for i in (1, 2, 3)]


def test_a_fenced_pop_stops_the_pass(cluster):
    cluster.container(0)
    cluster.enqueue('o', ts(5), policy=0)
    item = queue.lock_name(QUEUE)
    cluster.stores['n2'].admit(item, 9)
    with pytest.raises(worker.LockLost):
        cluster.run(grant=FakeGrant(fence=fencing.Fence(item, 5)))
    cluster.run(grant=FakeGrant(fence=fencing.Fence(item, 9)))
    assert cluster.queued('n2') == []


# -- the test-only pause ------------------------------------------------------

@pytest.fixture
def kills(cluster, monkeypatch):
    """os.kill recorded (with the object calls made so far), not sent."""
    sent = []
    monkeypatch.setattr(os, 'kill', lambda pid, sig: sent.append(
        (pid, sig, list(cluster.calls))))
    return sent


@pytest.mark.parametrize('step, done', [
    ('copy', ['head', 'get', 'put']),
    ('tombstones', ['head', 'get', 'put', 'delete'])])
def test_the_pause_hook_stops_after_its_step(cluster, kills, monkeypatch,
                                             caplog, step, done):
    monkeypatch.setenv(daemon.PAUSE_ENV, step)
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    cluster.enqueue('o', ts(5), policy=1)
    with caplog.at_level(logging.WARNING):
        cluster.run()
    (pid, sig, calls) = kills[0]
    assert (pid, sig) == (os.getpid(), signal.SIGSTOP)
    assert [c[1] for c in calls] == done
    assert 'pausing after %s of /AUTH_a/c/o' % step in [
        r.getMessage() for r in caplog.records]


def test_the_pause_hook_does_nothing_when_unset(cluster, kills):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    cluster.enqueue('o', ts(5), policy=1)
    ok, stats = cluster.run()
    assert ok is True and stats.moved == 1
    assert kills == []


def test_a_bad_pause_step_is_a_config_error(cluster, monkeypatch):
    monkeypatch.setenv(daemon.PAUSE_ENV, 'sometimes')
    with pytest.raises(exceptions.ConfigError) as err:
        cluster.reconciler()
    assert daemon.PAUSE_ENV in str(err.value)


# -- items and reports --------------------------------------------------------

def test_collect_jobs_finds_queue_containers_with_rows(cluster,
                                                       monkeypatch):
    cluster.container(0, nodes=['n1'])
    later = Timestamp(T0 + 2 * 3600)
    cluster.enqueue('o', later, policy=1, nodes=['n1'])
    cluster.enqueue('o', ts(5), policy=1, nodes=['n1'])
    # An empty queue container, and a queue-like name elsewhere.
    cluster.broker('n1', queue.MISPLACED_ACCOUNT, '3600').initialize(
        ts().normal)
    cluster.broker('n1', ACCOUNT, '7200').initialize(ts().normal)
    rec = cluster.reconciler()
    jobs = rec.collect_jobs()
    assert [j.queue for j in jobs] == [QUEUE, queue.queue_container(later)]
    job = jobs[0]
    assert job.key == 'coordsync/reconcile/%s' % QUEUE
    assert job.eligible == frozenset(NAMES)
    assert (job.device, job.partition) == (DEVICE, PART)
    assert rec.collect_jobs(partitions={PART + 1}) == []
    # NOTE: a database's name is read once: the next scans skip the
    # other containers without opening them.
    opened = []
    real = backend.ContainerBroker.get_info
    monkeypatch.setattr(backend.ContainerBroker, 'get_info',
                        lambda self: opened.append(self.db_file)
                        or real(self))
    assert [j.queue for j in rec.collect_jobs()] == [
        QUEUE, queue.queue_container(later)]
    assert opened == []


def test_reports_carry_the_depth_and_figures(cluster):
    cluster.container(0)
    cluster.objects[1].store('o', ts(5))
    cluster.enqueue('o', ts(5), policy=1)
    cluster.enqueue('p', ts(6), policy=1)
    ok, stats = cluster.run()
    rec = cluster.made
    extra = rec.report_extra()
    assert extra['queue_depth'] == 1 and extra['queue_depth_more'] is False
    (entry,) = extra['queues']
    assert (entry['queue'], entry['entries'], entry['left'],
            entry['holder']) == (QUEUE, 2, 1, 'n1')
    assert extra['figures']['moved'] == 1
    assert extra['figures']['retried'] == 1
    recon = rec.recon_extra()
    assert recon['queue_depth'] == 1 and recon['queues'] == [entry]
    assert rec.figures_text(stats) == (
        '1 queue containers, 2 entries: 1 moved, 0 already right, 1 '
        'tombstones, 1 retried, 0 invalid, 0 errors; 1 left')
    # NOTE: a queue container not worked in the last pass drops out.
    rec.passes = 5
    rec.before_pass()
    assert rec.report_extra()['queues'] == []


def test_the_policies_rings_are_loaded_at_start(tmp_path):
    (tmp_path / 'object.ring.json').write_text('{}')
    path = tmp_path / 'reconciler.conf'
    path.write_text(
        '[DEFAULT]\nring_file = %s/object.ring.json\n'
        '[storage-policy:0]\nname = gold\ndefault = true\n'
        '[storage-policy:1]\nname = silver\n' % tmp_path)
    conf = service.prepare_service(['--config-file', str(path)],
                                   prog='test', default_config_files=[])
    with pytest.raises(storage_policy.PolicyError) as err:
        daemon.Reconciler(conf, FakeCoordinator(), ring=object(),
                          manager=object(), node_client=object())
    assert str(err.value) == '[storage-policy:1] ring file %s does not ' \
        'exist' % (tmp_path / 'object-1.ring.json')


def test_the_command_exits_2_on_a_missing_policy_ring(tmp_path):
    path = tmp_path / 'reconciler.conf'
    path.write_text(
        '[DEFAULT]\ncluster_secret = s\nstate_path = %s\n'
        'ring_file = %s/none.ring.json\n'
        'container_ring_file = %s/none-c.ring.json\n'
        '[storage-policy:0]\nname = gold\ndefault = true\n'
        '[storage-policy:1]\nname = silver\n' % ((tmp_path,) * 3))
    proc = subprocess.run(
        [sys.executable, '-m', 'coordsync.cmd.reconciler',
         '--config-file', str(path), '--once'],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count('\n') == 1
    assert proc.stderr.startswith('coordsync-reconciler: error: '
                                  '[storage-policy:0] ring file ')


def test_the_group_is_registered():
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    group = conf.reconciler
    assert (group.entries_per_pass, group.concurrency,
            group.entry_concurrency) == (1000, 4, 4)
    assert group.request_timeout > 0 and group.run_pause == 30.0
