"""The coordinated object replicator, on the worker engine.

Its items are partitions: every partition this node holds a primary
replica of (on each of its available devices), plus the handoff
partitions found on its disks. The lock of partition P of policy N is
``coordsync/replicate/<N>/<P>``; its holder levels every replica of it
(:mod:`coordsync.obj.repair`) or, for a handoff, pushes it home. Without
coordination, the static rule is its own primaries, push-only. Planning,
locks, fencing, the watchdog and every report come from
:mod:`coordsync.common.worker`.
"""

import dataclasses

from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import ring as ring_mod
from coordsync.common import worker
from coordsync.obj import diskfile
from coordsync.obj import repair as repair_mod

POLICY = 0


def lock_name(partition, policy=POLICY):
    return fencing.replicate_item(policy, partition)


@dataclasses.dataclass
class Job:
    """One partition on one local device."""

    device: str
    partition: int
    peers: list
    eligible: frozenset
    handoff: bool = False

    @property
    def key(self):
        return lock_name(self.partition)

    @property
    def item_id(self):
        return self.partition

    @property
    def where(self):
        return self.device


class ObjectReplicator(worker.RingReplicator):
    """See the module docstring."""

    name = 'object-replicator'
    conf_group = 'replicator'
    item_noun = 'partitions'
    pass_title = 'Replication pass'
    done_verb = 'replicated'

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, logger=None):
        super().__init__(conf, coordinator, logger)
        self.ring = ring or ring_mod.Ring(
            conf.ring_file, conf.hash_path_prefix, conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)

    def collect_jobs(self, devices=None, partitions=None):
        """Jobs for this node's available devices (optionally filtered)."""
        jobs = []
        for dev in self.available_devices(devices):
            name = dev['device']
            primary = set(self.ring.partitions_for_device(dev['id']))
            for part in sorted(primary):
                nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(name, part,
                                [d for d in nodes if d['id'] != dev['id']],
                                frozenset(d['node'] for d in nodes)))
            for part in self.manager.partitions(name):
                if part in primary or part >= self.ring.partition_count:
                    continue
                nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(name, part, nodes,
                                frozenset(d['node'] for d in nodes),
                                handoff=True))
        if partitions:
            jobs = [j for j in jobs if j.partition in partitions]
        return jobs

    def static_jobs(self, jobs):
        return [job for job in jobs if not job.handoff]

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
            self.manager, self.client, job.device, job.partition, job.peers,
            grant=grant, logger=self.log,
            suffix_concurrency=self.wconf.suffix_concurrency,
            on_peer_error=self.peer_errors.record)
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

