"""Who works on what: ownership of items among the live eligible nodes."""

import dataclasses
import random

import pytest

from coordsync.common import division
from coordsync.common.division import HANDOFF
from coordsync.common.division import MINE
from coordsync.common.division import TAKEOVER

NODES = ['n1', 'n2', 'n3']
FIVE = ['n1', 'n2', 'n3', 'n4', 'n5']
KEYS = ['coordsync/replicate/0/%d' % part for part in range(1024)]


@dataclasses.dataclass
class Job:
    key: str
    eligible: frozenset
    handoff: bool = False


def jobs_of(eligible, keys=KEYS):
    return [Job(key, frozenset(eligible)) for key in keys]


def placed_jobs(nodes, replicas, keys=KEYS, seed=7):
    """Each key eligible on ``replicas`` nodes, as a ring would place it."""
    rng = random.Random(seed)
    return [Job(key, frozenset(rng.sample(nodes, replicas)))
            for key in keys]


def picked(node, live, jobs, category=None, handoffs_first=False):
    order = division.Division(node, live).order(jobs, handoffs_first)
    return {job.key for cat, job in order
            if category is None or cat == category}


# -- one owner per item ------------------------------------------------------

@pytest.mark.parametrize('eligible', [NODES, FIVE, ['n2'], ['n4', 'n1']])
def test_every_key_has_one_owner_among_the_eligible(eligible):
    owners = [division.Division(n, FIVE) for n in FIVE]
    for key in KEYS:
        seen = {d.owner(key, eligible) for d in owners}
        assert len(seen) == 1, key  # every node computes the same owner
        assert seen.pop() in eligible


def test_owner_ignores_the_order_eligible_nodes_are_given_in():
    div = division.Division('n1', FIVE)
    for key in KEYS[:200]:
        assert div.owner(key, FIVE) == div.owner(key, FIVE[::-1])


def test_no_eligible_node_means_no_owner():
    assert division.Division('n1', NODES).owner(KEYS[0], []) is None


def test_this_node_always_counts_as_live():
    div = division.Division('n1', [])
    assert div.live == {'n1'}
    assert div.category(KEYS[0], ['n1']) == MINE


# -- three live nodes split the work -----------------------------------------

def test_three_nodes_take_disjoint_mine_sets_covering_every_key():
    jobs = jobs_of(NODES)
    mine = {n: picked(n, NODES, jobs, MINE) for n in NODES}
    for a in NODES:
        for b in NODES:
            if a < b:
                assert not mine[a] & mine[b]
    assert set.union(*mine.values()) == set(KEYS)
    # NOTE: nothing else is picked: no takeovers with everyone alive.
    assert all(picked(n, NODES, jobs) == mine[n] for n in NODES)
    # A consistent hash ring spreads items roughly evenly.
    assert all(len(keys) > len(KEYS) / 6 for keys in mine.values())


def test_items_placed_on_three_of_five_nodes_are_each_taken_once():
    jobs = placed_jobs(FIVE, 3)
    taken = {}
    for node in FIVE:
        # Each node lists only the items it holds a replica of.
        held = [j for j in jobs if node in j.eligible]
        for key in picked(node, FIVE, held):
            assert key not in taken, (key, taken.get(key), node)
            taken[key] = node
    assert set(taken) == set(KEYS)
    owner_of = {j.key: j.eligible for j in jobs}
    assert all(node in owner_of[key] for key, node in taken.items())


# -- a dead node's share -----------------------------------------------------

def test_dead_nodes_keys_become_takeover_split_among_survivors():
    jobs = jobs_of(NODES)
    before = {n: picked(n, NODES, jobs, MINE) for n in NODES}
    survivors = ['n1', 'n2']
    takeover = {n: picked(n, survivors, jobs, TAKEOVER) for n in survivors}
    mine_after = {n: picked(n, survivors, jobs, MINE) for n in survivors}
    # Survivors keep what they had, as MINE.
    assert mine_after == {n: before[n] for n in survivors}
    # The dead node's keys, and only those, are taken over, each once.
    assert not takeover['n1'] & takeover['n2']
    assert takeover['n1'] | takeover['n2'] == before['n3']
    assert takeover['n1'] and takeover['n2']


def test_takeovers_come_after_mine():
    jobs = jobs_of(NODES)
    order = division.Division('n1', ['n1', 'n2']).order(jobs)
    categories = [cat for cat, _job in order]
    assert set(categories) == {MINE, TAKEOVER}
    assert categories == sorted(categories, key=[MINE, TAKEOVER].index)


def test_node_that_is_not_eligible_takes_nothing():
    jobs = jobs_of(['n2', 'n3'])
    assert picked('n1', NODES, jobs) == set()


# -- consistent hashing ------------------------------------------------------

def test_removing_a_node_moves_only_its_keys():
    div = division.Division('n1', FIVE)
    four = [n for n in FIVE if n != 'n4']
    moved = owned_by_n4 = 0
    for key in KEYS:
        before, after = div.owner(key, FIVE), div.owner(key, four)
        if before == 'n4':
            owned_by_n4 += 1
            assert after != 'n4'
        else:
            assert after == before, key
        moved += before != after
    assert moved == owned_by_n4 > 0


def test_adding_a_node_moves_keys_only_to_it():
    div = division.Division('n1', FIVE)
    six = FIVE + ['n6']
    gained = 0
    for key in KEYS:
        before, after = div.owner(key, FIVE), div.owner(key, six)
        if after != before:
            assert after == 'n6'
            gained += 1
    assert 0 < gained < len(KEYS) / 3


# -- handoffs ----------------------------------------------------------------

def mixed_jobs():
    """Keys of n1 (mine), of n3 (dead: takeover) and handoffs, shuffled."""
    jobs = jobs_of(NODES, KEYS[:60])
    jobs += [Job('coordsync/replicate/0/h%d' % i, frozenset(['n2', 'n3']),
                 handoff=True) for i in range(5)]
    random.Random(3).shuffle(jobs)
    return jobs


@pytest.mark.parametrize('handoffs_first, expected', [
    (False, [MINE, HANDOFF, TAKEOVER]),
    (True, [HANDOFF, MINE, TAKEOVER]),
])
def test_handoffs_are_ordered_per_handoffs_first(handoffs_first, expected):
    jobs = mixed_jobs()
    order = division.Division('n1', ['n1', 'n2']).order(jobs,
                                                        handoffs_first)
    categories = [cat for cat, _job in order]
    assert set(categories) == set(expected)
    assert categories == sorted(categories, key=expected.index)
    # Every handoff is pushed, whoever owns the partition.
    assert categories.count(HANDOFF) == 5
    # Within a category the listing order is kept.
    for category in expected:
        keys = [job.key for cat, job in order if cat == category]
        listed = [job.key for job in jobs if job.key in keys]
        assert keys == listed


# -- one ring per membership view --------------------------------------------

def test_owner_is_what_a_ring_over_the_eligible_nodes_alone_gives():
    from tooz import hashring
    nodes = ['n%d' % i for i in range(40)]
    rng = random.Random(11)
    div = division.Division('n0', nodes[:25])
    for key in KEYS[:300]:
        eligible = sorted(rng.sample(nodes, 3))
        alone = hashring.HashRing(eligible,
                                  partitions=division.RING_POINTS)
        expected = next(iter(alone.get_nodes(key.encode('utf-8'))))
        assert div.owner(key, eligible) == expected, (key, eligible)


def test_a_plan_over_many_nodes_builds_one_ring():
    nodes = ['n%d' % i for i in range(200)]
    jobs = placed_jobs(nodes, 3, keys=KEYS)
    div = division.Division('n7', nodes)
    div.order([j for j in jobs if 'n7' in j.eligible])
    assert set(div._ring.nodes) == set(nodes)
