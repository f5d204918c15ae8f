"""The coordinated object replicator, on the worker engine.

Its items are partitions of every storage policy: every partition this
node holds a primary replica of in a policy's ring (on each of its
available devices), plus the handoff partitions found on its disks
(``objects/`` for policy 0, ``objects-N/`` for policy N). The lock of
partition P of policy N is ``coordsync/replicate/<N>/<P>``; its holder
levels every replica of it (:mod:`coordsync.obj.repair`) or, for a
handoff, pushes it home, talking to the policy's routes only. Without
coordination, the static rule is its own primaries, push-only. Planning,
locks, fencing, the watchdog and every report come from
:mod:`coordsync.common.worker`.

In the audit log a partition of policy 0 is its number (``27``), one of
policy N ``N/P`` (``1/27``).
"""

import dataclasses

from coordsync import concurrency
from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import worker
from coordsync.obj import diskfile
from coordsync.obj import repair as repair_mod
from coordsync.obj import rings as rings_mod


def lock_name(partition, policy=0):
    return fencing.replicate_item(policy, partition)


@dataclasses.dataclass
class Job:
    """One partition of one storage policy on one local device."""

    device: str
    partition: int
    peers: list
    eligible: frozenset
    handoff: bool = False
    policy: int = 0

    @property
    def key(self):
        return lock_name(self.partition, self.policy)

    @property
    def item_id(self):
        # NOTE: policy 0's stays the bare number, as audit readers expect.
        if not self.policy:
            return self.partition
        return '%d/%d' % (self.policy, self.partition)

    @property
    def where(self):
        return self.device


class ObjectReplicator(rings_mod.PolicyRingsMixin, worker.RingReplicator):
    """See the module docstring.

    :param ring: policy 0's object ring (tests of one policy).
    :param rings: ``{policy index: Ring}``; by default every policy's
        ring as the config declares them.
    :param manager: a DiskFileManager (any policy's: the others come from
        its ``for_policy``).
    """

    name = 'object-replicator'
    conf_group = 'replicator'
    item_noun = 'partitions'
    pass_title = 'Replication pass'
    done_verb = 'replicated'

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, logger=None, rings=None):
        super().__init__(conf, coordinator, logger)
        self.rings = rings_mod.policy_rings(conf, ring, rings)
        self.ring = self.rings.get(0)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)

    def collect_jobs(self, devices=None, partitions=None):
        """Jobs for this node's available devices (optionally filtered),
        policy by policy."""
        available = {dev['device'] for dev in
                     self.available_devices(devices)}
        jobs = []
        for policy, ring in self.rings.items():
            manager = self.manager.for_policy(policy)
            for dev in ring.devices_on_node(self.conf.node_name):
                name = dev['device']
                if name not in available:
                    continue
                primary = set(ring.partitions_for_device(dev['id']))
                for part in sorted(primary):
                    nodes = ring.get_part_nodes(part)
                    jobs.append(Job(
                        name, part,
                        [d for d in nodes if d['id'] != dev['id']],
                        frozenset(d['node'] for d in nodes),
                        policy=policy))
                jobs.extend(self._handoff_jobs(
                    ring, manager, name, primary, policy))
            # NOTE: a device of this node outside this policy's ring may
            # still hold its partitions (the ring changed): handoffs.
            for name in sorted(available - {
                    d['device'] for d in
                    ring.devices_on_node(self.conf.node_name)}):
                jobs.extend(self._handoff_jobs(ring, manager, name, set(),
                                               policy))
        if partitions:
            jobs = [j for j in jobs if j.partition in partitions]
        return jobs

    @staticmethod
    def _handoff_jobs(ring, manager, device, primary, policy):
        jobs = []
        for part in manager.partitions(device):
            if part in primary or part >= ring.partition_count:
                continue
            nodes = ring.get_part_nodes(part)
            jobs.append(Job(device, part, nodes,
                            frozenset(d['node'] for d in nodes),
                            handoff=True, policy=policy))
        return jobs

    def static_jobs(self, jobs):
        return [job for job in jobs if not job.handoff]

    def before_pass(self):
        self.reload_rings()
        concurrency.run_in_thread(self.manager.cleanup_all_tmp, self.log)

    def abort_reason(self):
        changed = self.rings_changed()
        if not changed:
            return None
        if changed == [0]:
            return 'ring changed'
        return 'ring of policy %s changed' % ', '.join(map(str, changed))

    def new_figures(self):
        return repair_mod.RepairStats()

    def figures_text(self, figures):
        return ('%d suffixes hashed, %d synced; %d objects pushed, %d '
                'pulled; %d handoffs deleted' % (
                    figures.suffixes_checked, figures.suffixes_synced,
                    figures.objects_pushed, figures.objects_pulled,
                    figures.handoffs_deleted))

    def work(self, job, grant):
        repair = repair_mod.PartitionRepair(
            self.manager.for_policy(job.policy), self.client, job.device,
            job.partition, job.peers, grant=grant, logger=self.log,
            suffix_concurrency=self.wconf.suffix_concurrency,
            on_peer_error=self.peer_errors.record, policy=job.policy)
        try:
            if job.handoff:
                needed = min(self.wconf.handoff_delete or len(job.peers),
                             len(job.peers))
                if repair.push_handoff(needed):
                    repair.stats.handoffs_deleted += 1
            else:
                repair.repair(pull=not grant.static)
        finally:
            self.stats.figures.add(repair.stats)
        return repair.stats.errors == 0
