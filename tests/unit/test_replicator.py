"""The object replicator's declarations: jobs, locks, static rule."""

from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.common.ring import builder
from coordsync.obj import diskfile
from coordsync.obj import replicator


class FakeCoordinator:
    member_id = 'n1@h.1'
    healthy = True

    def settling(self):
        return 0.0


def make_replicator(tmp_path):
    ring_path = str(tmp_path / 'ring.json')
    ring = builder.RingBuilder(4, 3)
    for zone, node in enumerate(('n1', 'n2', 'n3', 'n4'), start=1):
        ring.add_device(node, '127.0.0.%d' % zone, 6200, 'd1', 1.0,
                        zone=zone)
    ring.rebalance()
    ring.save(ring_path)
    (tmp_path / 'n1' / 'd1').mkdir(parents=True)
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('node_name', 'n1')
    conf.set_override('ring_file', ring_path)
    conf.set_override('cluster_secret', 'x')
    return replicator.ObjectReplicator(
        conf, FakeCoordinator(),
        manager=diskfile.DiskFileManager(str(tmp_path / 'n1')))


def test_lock_name_per_policy_and_partition():
    assert replicator.lock_name(17) == 'coordsync/replicate/0/17'
    job = replicator.Job('d1', 17, [], frozenset(['n1']))
    assert job.key == replicator.lock_name(17)
    assert (job.item_id, job.where) == (17, 'd1')


def test_jobs_are_own_primaries_and_handoffs_on_disk(tmp_path):
    worker = make_replicator(tmp_path)
    primary = set(worker.ring.partitions_for_device(0))
    handoff = next(p for p in range(16) if p not in primary)
    (tmp_path / 'n1' / 'd1' / 'objects' / str(handoff)).mkdir(parents=True)
    jobs = worker.collect_jobs()
    assert {j.partition for j in jobs if not j.handoff} == primary
    assert [j.partition for j in jobs if j.handoff] == [handoff]
    for job in jobs:
        nodes = {d['node'] for d in worker.ring.get_part_nodes(
            job.partition)}
        assert job.eligible == nodes
        assert all(p['node'] != 'n1' for p in job.peers) or job.handoff
    # The static rule: own primaries only, never a handoff.
    assert all(not j.handoff for j in worker.static_jobs(jobs))
    assert worker.expected_nodes() == {'n1', 'n2', 'n3', 'n4'}


def test_filters_keep_only_named_partitions(tmp_path):
    worker = make_replicator(tmp_path)
    some = sorted(worker.ring.partitions_for_device(0))[:2]
    jobs = worker.collect_jobs(partitions=set(some))
    assert sorted(j.partition for j in jobs) == some
    assert worker.collect_jobs(devices={'nope'}) == []
