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


class DeviceRing:
    """A ring of three devices, two on n1 and one on n2, for daemons
    whose items are this node's devices (updater, auditor)."""

    devices = [{'id': 0, 'node': 'n1', 'device': 'd1'},
               {'id': 1, 'node': 'n1', 'device': 'd2'},
               {'id': 2, 'node': 'n2', 'device': 'd1'}]

    def devices_on_node(self, node):
        return [d for d in self.devices if d['node'] == node]

    def has_changed(self):
        return False
