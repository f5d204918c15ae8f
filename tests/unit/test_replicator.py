from coordsync import replicator


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
