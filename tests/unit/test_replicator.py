from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.common.ring import builder
from coordsync.obj import diskfile
from coordsync.obj import replicator


def job(partition, handoff=False, device='d1'):
    return replicator.Job(device, partition, [], frozenset(['n1']),
                          handoff=handoff)


def test_a_partitions_jobs_run_in_one_batch_in_plan_order():
    planned = [('mine', job(3)), ('mine', job(5)),
               ('handoff', job(3, handoff=True, device='d2')),
               ('takeover', job(9))]
    batches = replicator.partition_batches(planned)
    assert [[j.partition for _, j in b] for b in batches] == [[3, 3], [5],
                                                              [9]]
    assert [c for c, _ in batches[0]] == ['mine', 'handoff']


def test_lock_name_per_policy_and_partition():
    assert replicator.lock_name(17) == 'coordsync/replicate/0/17'
    assert job(17).key == replicator.lock_name(17)


class FakeCoordinator:
    """Membership that changes after the first read, as during a start."""

    def __init__(self, views):
        self.views = list(views)
        self.healthy = True

    def members(self):
        view = self.views.pop(0) if len(self.views) > 1 else self.views[0]
        return {'%s@h.1' % n: {'node': n, 'roles': ['replicator']}
                for n in view}

    def set_progress(self, worker, **fields):
        pass


def make_replicator(tmp_path, views):
    ring_path = str(tmp_path / 'ring.json')
    ring = builder.RingBuilder(4, 3)
    for zone, node in enumerate(('n1', 'n2', 'n3'), start=1):
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
    conf.set_override('recon_cache_path', str(tmp_path / 'recon'),
                      group='replicator')
    worker = replicator.ObjectReplicator(
        conf, FakeCoordinator(views),
        manager=diskfile.DiskFileManager(str(tmp_path / 'n1')))
    ran = []
    worker.run_job = lambda category, job: ran.append(
        (category, job.partition))
    return worker, ran


def test_sweep_takes_partitions_that_became_ours_during_the_pass(tmp_path):
    # Planned while n2 and n3 seemed alive; by the end only n1 and n3 are.
    worker, ran = make_replicator(tmp_path, [['n1', 'n2', 'n3'],
                                             ['n1', 'n3']])
    summary = worker.run_once()
    first = [p for c, p in ran if c == 'mine']
    late = [p for c, p in ran if c == 'takeover']
    assert first and late, ran
    assert not set(first) & set(late)
    assert summary['total'] == len(ran)


def test_steady_membership_sweeps_nothing(tmp_path):
    worker, ran = make_replicator(tmp_path, [['n1', 'n2', 'n3']])
    worker.run_once()
    partitions = [p for _c, p in ran]
    assert len(partitions) == len(set(partitions))
    assert {c for c, _p in ran} == {'mine'}
