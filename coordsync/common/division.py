"""Which work items this node should take, and in what order.

Every node lists the items it could work on and sorts them the same way:

* **mine** — the owner among the *live* eligible nodes is this node, and
  this node is also the owner when liveness is ignored (steady state);
* **handoff** — items this node only holds as a stand-in (to push home);
* **takeover** — this node owns the item only because the node that
  would own it is not alive (a dead node's share, picked up within one
  session timeout and one pass).

Items owned by another live node are left to it: that is what makes each
item processed once per pass (invariant I4). The owner is taken from
tooz's consistent hash ring, so a membership change moves as few items as
possible; the per-item lock is what makes the moment of change safe.

One ring serves a whole membership view. A node's points on a consistent
hash ring do not depend on which other nodes are on it, so "the owner
among nodes S" is the first node of S met walking the ring from the
item's position: the same answer a ring built over S alone gives, without
building one ring per distinct set of eligible nodes (thousands of them
at 200 nodes and 2^18 partitions).
"""

from tooz import hashring

from coordsync import concurrency

MINE, HANDOFF, TAKEOVER = 'mine', 'handoff', 'takeover'
# NOTE: points per node on the hash ring. tooz's default (32) splits 4096
# partitions 27/29/44% over three nodes; 256 gives 32/33/35%, and the
# busiest node sets the pass time.
RING_POINTS = 256
# Items classified between two yields to the hub while planning.
YIELD_EVERY = 512


class _Ring(hashring.HashRing):
    """tooz's HashRing, asked for the first node of a given set."""

    def add_nodes(self, nodes, weight=1):
        super().add_nodes(nodes, weight)
        # Owner of each point, in ring order: walked by first_of.
        self._owners = [self._ring[point] for point in self._partitions]

    def first_of(self, key, nodes):
        # NOTE: tooz's get_nodes(ignore_nodes=...) computes two set
        # differences over every node of the ring per call; walking the
        # points directly costs only the steps to the first allowed one.
        owners = self._owners
        position = self._get_partition(key)
        for index in range(position, len(owners)):
            if owners[index] in nodes:
                return owners[index]
        for index in range(position):
            if owners[index] in nodes:
                return owners[index]
        return None


class Division:
    """Ownership of items among nodes, given the live ones.

    :param node: this node's name.
    :param live_nodes: names of nodes with a live worker of this kind.
    """

    def __init__(self, node, live_nodes):
        self.node = node
        self.live = frozenset(live_nodes) | {node}
        self._ring = _Ring(sorted(self.live), partitions=RING_POINTS)
        self._live_eligible = {}

    def _cover(self, nodes):
        missing = nodes - self._ring.nodes.keys()
        if missing:
            self._ring.add_nodes(sorted(missing))

    def owner(self, key, eligible):
        """The node that should work on item ``key`` among ``eligible``."""
        nodes = frozenset(eligible)
        if not nodes:
            return None
        self._cover(nodes)
        return self._ring.first_of(key.encode('utf-8'), nodes)

    def category(self, key, eligible, handoff=False):
        """MINE, HANDOFF, TAKEOVER, or None when another node owns it."""
        if handoff:
            return HANDOFF
        eligible = frozenset(eligible)
        live = self._live_eligible.get(eligible)
        if live is None:
            live = self._live_eligible[eligible] = self.live & eligible
        if self.owner(key, live) != self.node:
            return None
        return MINE if self.owner(key, eligible) == self.node else TAKEOVER

    def order(self, jobs, handoffs_first=False):
        """``jobs`` (with .key, .eligible, .handoff) this node should try.

        Returns ``[(category, job)]``: mine, handoffs, takeovers (handoffs
        first with ``handoffs_first``). Yields to other green threads now
        and then: a large plan must not starve the heartbeat.
        """
        ranks = ({HANDOFF: 0, MINE: 1, TAKEOVER: 2} if handoffs_first
                 else {MINE: 0, HANDOFF: 1, TAKEOVER: 2})
        chosen = []
        for count, job in enumerate(jobs, 1):
            category = self.category(job.key, job.eligible, job.handoff)
            if category is not None:
                chosen.append((category, job))
            if count % YIELD_EVERY == 0:
                concurrency.sleep(0)
        chosen.sort(key=lambda pair: ranks[pair[0]])
        return chosen
