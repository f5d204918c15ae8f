#!/usr/bin/env python3
"""Time to plan one node's pass in a large cluster.

    tools/bench_plan.py [--nodes 200] [--part-power 18] [--replicas 3]

Places 2**part-power partitions on ``--replicas`` of ``--nodes`` nodes
(a seeded random choice per partition, as a balanced ring would), takes
the partitions one node holds (its jobs), and times, in the same run:

* ``Division.order`` as the engine plans: one hash ring for the whole
  membership view;
* the reference: one ``tooz.hashring.HashRing`` per distinct set of
  eligible nodes (how coordsync planned before), same owners.

It checks that both give the same plan, and prints the times and their
ratio. It asserts nothing about time.
"""

import argparse
import random
import sys
import time

from tooz import hashring

from coordsync.common import division


def placement(nodes, partitions, replicas, seed=1):
    rng = random.Random(seed)
    return [frozenset(rng.sample(nodes, replicas))
            for _ in range(partitions)]


class Job:
    __slots__ = ('key', 'eligible', 'handoff')

    def __init__(self, key, eligible):
        self.key = key
        self.eligible = eligible
        self.handoff = False


def reference_order(node, live, jobs):
    """One HashRing per distinct eligible set (the old division)."""
    rings = {}

    def owner(key, eligible):
        ring = rings.get(eligible)
        if ring is None:
            ring = rings[eligible] = hashring.HashRing(
                sorted(eligible), partitions=division.RING_POINTS)
        return next(iter(ring.get_nodes(key.encode('utf-8'))))
    chosen = []
    for job in jobs:
        alive = live & job.eligible
        if alive and owner(job.key, alive) == node:
            category = (division.MINE if owner(job.key, job.eligible)
                        == node else division.TAKEOVER)
            chosen.append((category, job))
    chosen.sort(key=lambda pair: pair[0] != division.MINE)
    return chosen, len(rings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--nodes', type=int, default=200)
    parser.add_argument('--part-power', type=int, default=18)
    parser.add_argument('--replicas', type=int, default=3)
    parser.add_argument('--dead', type=int, default=2,
                        help='nodes not alive (their items are takeovers)')
    args = parser.parse_args(argv)
    nodes = ['node%03d' % i for i in range(args.nodes)]
    me = nodes[0]
    live = frozenset(nodes[args.dead + 1:]) | {me}
    started = time.monotonic()
    places = placement(nodes, 2 ** args.part_power, args.replicas)
    jobs = [Job('coordsync/replicate/0/%d' % part, eligible)
            for part, eligible in enumerate(places) if me in eligible]
    print('%d nodes (%d alive), 2^%d partitions x %d replicas: %d jobs on '
          '%s (placed in %.2fs)' % (args.nodes, len(live), args.part_power,
                                    args.replicas, len(jobs), me,
                                    time.monotonic() - started))
    started = time.monotonic()
    plan = division.Division(me, live).order(jobs)
    engine = time.monotonic() - started
    started = time.monotonic()
    reference, rings = reference_order(me, live, jobs)
    old = time.monotonic() - started
    same = ([(c, j.key) for c, j in plan]
            == [(c, j.key) for c, j in reference])
    print('%-36s %9s %8s' % ('planner', 'seconds', 'rings'))
    print('%-36s %9.3f %8d' % ('one ring per membership view', engine, 1))
    print('%-36s %9.3f %8d' % ('reference: one ring per eligible set', old,
                               rings))
    print('ratio reference/engine: %.1fx; %d items planned (%d mine, %d '
          'takeover); same plan: %s' % (
              old / max(engine, 1e-9), len(plan),
              sum(c == division.MINE for c, _ in plan),
              sum(c == division.TAKEOVER for c, _ in plan), same))
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
