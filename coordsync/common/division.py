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
tooz's consistent hash ring over the eligible nodes, so a membership
change moves as few items as possible; the per-item lock is what makes
the moment of change safe.
"""

from tooz import hashring

MINE, HANDOFF, TAKEOVER = 'mine', 'handoff', 'takeover'
# NOTE: points per node on the hash ring. tooz's default (32) splits 4096
# partitions 27/29/44% over three nodes; 256 gives 32/33/35%, and the
# busiest node sets the pass time.
RING_POINTS = 256


class Division:
    """Ownership of items among nodes, given the live ones.

    :param node: this node's name.
    :param live_nodes: names of nodes with a live worker of this kind.
    """

    def __init__(self, node, live_nodes):
        self.node = node
        self.live = frozenset(live_nodes) | {node}
        self._rings = {}

    def owner(self, key, eligible):
        """The node that should work on item ``key`` among ``eligible``."""
        nodes = frozenset(eligible)
        if not nodes:
            return None
        ring = self._rings.get(nodes)
        if ring is None:
            ring = self._rings[nodes] = hashring.HashRing(
                sorted(nodes), partitions=RING_POINTS)
        return next(iter(ring.get_nodes(key.encode('utf-8'))))

    def category(self, key, eligible, handoff=False):
        """MINE, HANDOFF, TAKEOVER, or None when another node owns it."""
        if handoff:
            return HANDOFF
        live_owner = self.owner(key, self.live.intersection(eligible))
        if live_owner != self.node:
            return None
        return MINE if self.owner(key, eligible) == self.node else TAKEOVER

    def order(self, jobs, handoffs_first=False):
        """``jobs`` (with .key, .eligible, .handoff) this node should try.

        Returns ``[(category, job)]``: mine, handoffs, takeovers (handoffs
        first with ``handoffs_first``).
        """
        ranks = ({HANDOFF: 0, MINE: 1, TAKEOVER: 2} if handoffs_first
                 else {MINE: 0, HANDOFF: 1, TAKEOVER: 2})
        chosen = []
        for job in jobs:
            category = self.category(job.key, job.eligible, job.handoff)
            if category is not None:
                chosen.append((category, job))
        chosen.sort(key=lambda pair: ranks[pair[0]])
        return chosen
