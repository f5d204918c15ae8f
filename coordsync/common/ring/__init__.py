"""The ring: which devices hold each partition of the name space.

``Ring`` is the read side every daemon uses; ``RingBuilder`` edits and
rebalances the same versioned JSON file (see ``coordsync.common.ring.ring``).
"""

from coordsync.common.ring.builder import RebalanceResult
from coordsync.common.ring.builder import RingBuilder
from coordsync.common.ring.ring import Ring

__all__ = ['RebalanceResult', 'Ring', 'RingBuilder']
