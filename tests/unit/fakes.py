"""Small stand-ins shared by the object store's unit tests."""

from coordsync.common.timestamp import Timestamp

NOW = 1700000000.0
RECLAIM_AGE = 1000


class Clock:
    """A settable clock: ``clock.now`` is what ``clock()`` returns."""

    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def ts(offset=0):
    return Timestamp(NOW + offset)
