"""The object rings of every storage policy, for the workers that go over
all of them (the object replicator, the object updater), and an object
client per policy for the daemons that move or read objects wherever a
container's policy puts them.

A node's devices are those any policy's ring gives it: a device may hold
objects of one policy only, and must still be replicated and swept.
"""

from coordsync.common import storage_policy
from coordsync.obj import client as object_client


def policy_rings(conf, ring=None, rings=None):
    """``{policy index: Ring}``: ``rings`` if given, else ``{0: ring}``
    if ``ring`` is given (tests of one policy), else every policy's ring
    as ``conf`` declares them (PolicyError on a missing one). A ``ring``
    given with ``rings`` is policy 0's."""
    if rings is not None:
        found = dict(rings)
        if ring is not None:
            found[0] = ring
    elif ring is not None:
        found = {0: ring}
    else:
        found = storage_policy.from_conf(conf).load_rings(conf)
    return dict(sorted(found.items()))


class PolicyRingsMixin:
    """Device and ring handling of a
    :class:`~coordsync.common.worker.RingWorker` over ``self.rings``
    (``{index: Ring}``) instead of one ring; put it first in the bases.
    """

    rings = None

    def local_devices(self):
        names = set()
        for ring in self.rings.values():
            names.update(d['device'] for d in
                         ring.devices_on_node(self.conf.node_name))
        return sorted(names)

    def expected_nodes(self):
        nodes = set()
        for ring in self.rings.values():
            nodes.update(d['node'] for d in ring.devices if d)
        return nodes

    def available_devices(self, devices=None):
        """This node's devices in any policy's ring (only ``devices`` if
        given) that are available, once each (the first ring's entry);
        an unavailable one is logged once and skipped."""
        seen = set()
        for ring in self.rings.values():
            for dev in ring.devices_on_node(self.conf.node_name):
                name = dev['device']
                if name in seen or (devices and name not in devices):
                    continue
                seen.add(name)
                if self.manager.get_dev_path(name) is None:
                    self.log.warning('Device %s unavailable, skipped', name)
                    continue
                yield dev

    def reload_rings(self):
        """Reload every ring whose file changed."""
        for index, ring in self.rings.items():
            if ring.has_changed():
                self.log.info('Ring file %s (policy %d) changed, '
                              'reloading', getattr(ring, 'path', '?'),
                              index)
                ring.reload()

    def rings_changed(self):
        """The policies whose ring file changed since it was loaded."""
        return [index for index, ring in self.rings.items()
                if ring.has_changed()]


def policy_clients(conf, node_client, container_ring=None, rings=None):
    """``{policy index: ObjectClient}``: quorum I/O over every policy's
    ring (``rings``, or loaded now: PolicyError on a missing one), for
    the daemons that read or move a container's objects wherever its
    policy puts them (container sync, the reconciler)."""
    return {index: object_client.ObjectClient(
        conf, ring, node_client, container_ring=container_ring,
        policy=index) for index, ring in policy_rings(conf, rings=rings)
        .items()}


def reload_changed(clients):
    """Reload the ring of each client (``{index: ObjectClient}``) whose
    file changed."""
    for client in clients.values():
        ring = getattr(client, 'ring', None)
        if ring is not None and ring.has_changed():
            ring.reload()
