"""A container's replicas that disagree about its storage policy (a
split brain) settle on one policy, and the rows of the losing policy
are queued for the reconciler, against three in-process node apps (see
:mod:`tests.unit.test_container_replication`)."""

import itertools
import json

import pytest

from coordsync.common import worker
from coordsync.container import replication
from coordsync.reconciler import queue
from tests.unit.test_container_replication import ITEM
from tests.unit.test_container_replication import NAMES
from tests.unit.test_container_replication import PART
from tests.unit.test_container_replication import Cluster
from tests.unit.test_container_replication import Owner
from tests.unit.test_container_replication import assert_level
from tests.unit.test_container_replication import call
from tests.unit.test_container_replication import db_path_of
from tests.unit.test_container_replication import ts


class Queue:
    """Stands for the queue writer: records what was queued."""

    def __init__(self, ok=True):
        self.ok = ok
        self.calls = []

    def __call__(self, account, container, rows, on_error=None):
        self.calls.append((account, container,
                           [(r['name'], r['storage_policy_index'],
                             r['deleted']) for r in rows]))
        return self.ok

    def queued(self):
        return [row for _a, _c, rows in self.calls for row in rows]


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def run(cluster, node, queue, token=10):
    rep = cluster.replicator(node)
    rep.enqueue = queue
    (job,) = [j for j in rep.collect_jobs() if j.partition == PART]
    grant = worker.Grant(ITEM, token=token, coordinator=Owner(),
                         token_store=cluster.stores[node])
    ok = rep.work(job, grant)
    return ok, rep.stats.figures


def split_brain(cluster):
    """n3 missed a delete and a recreate with policy 1; writes that met
    it first went to policy 0."""
    cluster.create(NAMES)
    for node in ('n1', 'n2'):
        broker = cluster.broker(node)
        broker.delete_db(ts(2))
        broker.update_put_timestamp(ts(3))
        broker.set_storage_policy_index(1, ts(3))
        broker.put_object('right', ts(4), 1, 'text/plain', 'e',
                          storage_policy_index=1)
    stale = cluster.broker('n3')
    stale.put_object('misplaced', ts(5), 2, 'text/plain', 'e',
                     storage_policy_index=0)
    stale.delete_object('gone', ts(6), storage_policy_index=0)


def policies(cluster):
    return [cluster.broker(n).get_info()['storage_policy_index']
            for n in NAMES]


@pytest.mark.parametrize('holder', NAMES)
def test_every_holder_settles_on_the_recreated_policy(cluster, holder):
    split_brain(cluster)
    queue = Queue()
    ok, figures = run(cluster, holder, queue)
    assert ok
    assert policies(cluster) == [1, 1, 1]
    rows = assert_level(cluster)
    assert [r[0] for r in rows] == ['gone', 'misplaced', 'right']
    assert figures.policies_settled == 1
    # The holder's replica had every row after the pull: both rows of
    # policy 0 are queued, the live one as a write, the other a delete.
    assert sorted(queue.queued()) == [('gone', 0, 1), ('misplaced', 0, 0)]
    assert queue.calls[0][:2] == ('AUTH_a', 'c')
    assert figures.misplaced_queued == 2
    # Listings show the container's policy only.
    listed = [e['name'] for e in cluster.broker(holder).list_objects_iter(
        100, '', '', '', '')]
    assert listed == ['right']


def test_queueing_resumes_where_it_ended_and_retries_a_failed_batch(
        cluster):
    split_brain(cluster)
    failing = Queue(ok=False)
    run(cluster, 'n1', failing)
    assert failing.queued()  # tried ...
    queue = Queue()
    run(cluster, 'n1', queue)  # ... and tried again, the point unmoved
    assert sorted(queue.queued()) == [('gone', 0, 1), ('misplaced', 0, 0)]
    again = Queue()
    run(cluster, 'n1', again)
    assert again.calls == []
    # A new misplaced row is queued alone.
    cluster.broker('n1').put_object('later', ts(9), 1, 'text/plain', 'e',
                                    storage_policy_index=0)
    run(cluster, 'n1', again)
    assert again.queued() == [('later', 0, 0)]


def test_rows_already_passed_are_queued_when_the_policy_changes(cluster):
    # n3 alone and stale holds a policy-0 container with rows: nothing
    # is misplaced there until it learns policy 1 won.
    cluster.create(NAMES)
    cluster.broker('n3').put_object('old', ts(1), 1, 'text/plain', 'e',
                                    storage_policy_index=0)
    queue = Queue()
    run(cluster, 'n3', queue)
    assert queue.calls == []
    for node in NAMES:
        broker = cluster.broker(node)
        if node != 'n3':
            broker.delete_db(ts(2))
            broker.update_put_timestamp(ts(3))
            broker.set_storage_policy_index(1, ts(3))
    run(cluster, 'n3', queue)
    assert policies(cluster) == [1, 1, 1]
    assert queue.queued() == [('old', 0, 0)]


def test_level_replicas_of_one_policy_queue_nothing(cluster):
    cluster.create(NAMES)
    cluster.put(NAMES, 'a', ts(1))
    queue = Queue()
    ok, figures = run(cluster, 'n1', queue)
    assert ok and queue.calls == []
    assert figures.policies_settled == 0


def test_a_merge_takes_the_senders_policy_only_if_it_wins(cluster):
    cluster.create(['n1'])
    broker = cluster.broker('n1')
    state = replication.read_state(broker)
    # Two live, never-deleted replicas: the first creation holds.
    older = dict(state, storage_policy_index=2, put_timestamp=ts(-5),
                 status_changed_at=ts(-5))
    replication.merge_into(broker, [], None, _info(older), None, None)
    assert broker.get_info()['storage_policy_index'] == 2
    recreated = dict(state, storage_policy_index=1, put_timestamp=ts(3),
                     delete_timestamp=ts(2), status_changed_at=ts(3))
    replication.merge_into(broker, [], None, _info(recreated), None, None)
    info = broker.get_info()
    assert (info['storage_policy_index'], info['status_changed_at']) == (
        1, ts(3))
    stale = dict(state, storage_policy_index=0)
    replication.merge_into(broker, [], None, _info(stale), None, None)
    assert broker.get_info()['storage_policy_index'] == 1


def _info(state):
    return {key: state[key] for key in (
        'created_at', 'put_timestamp', 'delete_timestamp', 'metadata',
        'storage_policy_index', 'status_changed_at', 'deleted')}


@pytest.mark.parametrize('bad', [
    {'storage_policy_index': -1},
    {'storage_policy_index': '1'},
    {'storage_policy_index': True},
    {'deleted': 'no'},
    {'status_changed_at': 'soon'},
    {'status_changed_at': None},
])
def test_bad_policy_fields_of_a_merge_get_400_and_change_nothing(
        cluster, bad):
    cluster.create(NAMES)
    before = replication.read_state(cluster.broker('n2'))
    info = dict(_info(before), storage_policy_index=1)
    info.update(bad)
    _name_hash, path = db_path_of()
    status, body = call(cluster, 'POST', path, json.dumps({
        'op': 'merge', 'source': 'x', 'items': [], 'info': info}).encode(),
        node='n2')
    assert status == 400, body
    assert replication.read_state(cluster.broker('n2')) == before


def test_settling_is_the_same_in_every_order(cluster):
    split_brain(cluster)
    states = [replication.read_state(cluster.broker(n)) for n in NAMES]
    winners = {queue.winning_policy(list(order))['storage_policy_index']
               for order in itertools.permutations(states)}
    assert winners == {1}
