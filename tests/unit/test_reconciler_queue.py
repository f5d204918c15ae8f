"""The misplaced-object queue's names and the split-brain policy rule."""

import itertools

import pytest

from coordsync.common.timestamp import Timestamp
from coordsync.reconciler import queue


def state(policy, put, delete='0', changed=None, deleted=False):
    return {'storage_policy_index': policy, 'put_timestamp': put,
            'delete_timestamp': delete, 'status_changed_at': changed or put,
            'deleted': deleted}


def winner(*states):
    found = {queue.winning_policy(list(order))['storage_policy_index']
             for order in itertools.permutations(states)}
    assert len(found) == 1, 'the rule depends on the order: %s' % found
    return found.pop()


def test_queue_containers_are_hours_and_entries_name_the_policy():
    assert queue.queue_container('1700003599.99999') == '1700002800'
    assert queue.queue_container(Timestamp('1700002800')) == '1700002800'
    bucket, row = queue.entry_row(
        {'name': 'd/o', 'created_at': '1700000000.5', 'deleted': 1}, 2,
        'AUTH_a', 'c')
    assert bucket == '1699999200'
    assert row == {'name': '2:/AUTH_a/c/d/o',
                   'created_at': '1700000000.50000', 'size': 0,
                   'content_type': queue.DELETE_TYPE,
                   'etag': '1700000000.50000'}
    entry = queue.parse_entry(row)
    assert (entry.policy, entry.account, entry.container, entry.obj,
            entry.op, entry.path) == (2, 'AUTH_a', 'c', 'd/o', 'DELETE',
                                      '/AUTH_a/c/d/o')
    assert entry.when == Timestamp('1700000000.5')
    assert queue.lock_name('1699999200') == 'coordsync/reconcile/1699999200'
    assert queue.is_queue_container('1699999200')
    assert not queue.is_queue_container('../x')


@pytest.mark.parametrize('name,kind', [
    ('x:/a/c/o', queue.PUT_TYPE),
    ('1:/a/c', queue.PUT_TYPE),
    ('01:/a/c/o', queue.PUT_TYPE),
    ('1:a/c/o', queue.PUT_TYPE),
    ('1:/a/c/o', 'text/plain'),
    ('', queue.PUT_TYPE),
])
def test_malformed_entries_are_refused_in_one_line(name, kind):
    with pytest.raises(ValueError) as err:
        queue.parse_entry({'name': name, 'created_at': '1.0',
                           'content_type': kind})
    assert '\n' not in str(err.value)


def test_the_first_creation_holds_without_a_delete():
    assert winner(state(1, '5'), state(0, '3'), state(2, '4')) == 0


def test_a_recreate_after_the_last_delete_beats_a_replica_that_missed_it():
    stale = state(0, '1')
    recreated = state(1, '3', delete='2')
    assert winner(stale, recreated, recreated) == 1
    # ... even when the stale replica got a later put of its own.
    assert winner(state(0, '4'), recreated) == 1


def test_a_live_replica_beats_a_deleted_one():
    assert winner(state(0, '1', delete='2', changed='2', deleted=True),
                  state(1, '3', delete='2')) == 1


def test_a_recreate_older_than_another_delete_loses():
    # Recreated at 3, but another replica saw a delete at 4 and a
    # recreate with policy 2 at 5.
    assert winner(state(1, '3', delete='2'),
                  state(2, '5', delete='4')) == 2


def test_among_deleted_replicas_the_newest_change_wins():
    assert winner(state(0, '1', delete='2', changed='2', deleted=True),
                  state(1, '1', delete='3', changed='3', deleted=True)) == 1


def test_ties_go_to_the_lower_index():
    assert winner(state(3, '1'), state(2, '1')) == 2


def test_no_states_is_an_error():
    with pytest.raises(ValueError):
        queue.winning_policy([])
