"""The worker engine with a toy daemon and a fake coordinator."""

import dataclasses
import json
import logging
import time

import pytest
from oslo_config import cfg

from coordsync import concurrency
from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import daemon
from coordsync.common import metrics
from coordsync.common import worker


@dataclasses.dataclass
class Item:
    number: int
    eligible: frozenset = frozenset(['n1', 'n2', 'n3'])
    handoff: bool = False
    where: str = 'd1'

    @property
    def key(self):
        return 'coordsync/toy/%d' % self.number

    @property
    def item_id(self):
        return self.number


class FakeCoordinator:
    """Membership views (one per read, the last one kept), locks held
    elsewhere, and a record of every lock call."""

    member_id = 'n1@h.1'
    # The role every member of the fake group has.
    role = 'toy'

    def __init__(self, views=(('n1', 'n2', 'n3'),), held_elsewhere=(),
                 healthy=True, static_allowed=None):
        self.views = [list(v) for v in views]
        self.held_elsewhere = set(held_elsewhere)
        self.healthy = healthy
        # By default: unhealthy means the backend is unreachable.
        self.static_allowed = (not healthy if static_allowed is None
                               else static_allowed)
        self.windows = []
        self.released = []
        self.held = set()
        self.progress = {}
        self.next_token = 100
        self.settling_for = 0.0
        self.serving_again = False

    def settling(self):
        return self.settling_for

    def backend_back(self):
        return self.serving_again

    def members(self):
        if not self.healthy:
            raise exceptions.CoordinationUnavailable('down')
        view = self.views.pop(0) if len(self.views) > 1 else self.views[0]
        return {'%s@h.1' % n: {'node': n, 'roles': [self.role],
                               'progress': {'toy': {'state': 'idle'}}}
                for n in view}

    def try_lock_many(self, names):
        self.windows.append(list(names))
        granted = {}
        for name in names:
            if name in self.held_elsewhere or name in self.held:
                granted[name] = None
                continue
            self.next_token += 1
            self.held.add(name)
            granted[name] = self.next_token
        return granted

    def release(self, name):
        self.held.discard(name)
        self.released.append(name)

    def flush_releases(self):
        pass

    def unreachable_for(self):
        return 100.0 if self.static_allowed else 0.0

    def is_still_owner(self, name):
        return name in self.held

    def set_progress(self, worker_name, **fields):
        self.progress.setdefault(worker_name, {}).update(fields)


class Toy(worker.Worker):
    name = 'toy'
    conf_group = 'replicator'
    item_noun = 'items'

    def __init__(self, conf, coordinator, items, work=None):
        super().__init__(conf, coordinator)
        self.items = items
        self.done = []
        self._work = work or (lambda job, grant: True)

    def collect_jobs(self, **filters):
        return list(self.items)

    def static_jobs(self, jobs):
        return [j for j in jobs if not j.handoff]

    def work(self, job, grant):
        self.done.append((job.number, grant.token))
        return self._work(job, grant)


@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('node_name', 'n1')
    conf.set_override('state_path', str(tmp_path))
    conf.set_override('recon_cache_path', str(tmp_path / 'recon'),
                      group='replicator')
    conf.set_override('lock_window', 4, group='replicator')
    conf.set_override('session_timeout', 1, group='coordination')
    conf.set_override('static_after', 0.2, group='coordination')
    return conf


def single_owner(n):
    """Items that n1 owns among n1..n3 (division is deterministic)."""
    return [Item(i, frozenset(['n1'])) for i in range(n)]


# -- grouping and scoping -----------------------------------------------------

def test_jobs_of_one_item_run_in_one_batch_in_plan_order():
    a, b = Item(3), Item(3, handoff=True, where='d2')
    planned = [('mine', a), ('mine', Item(5)), ('handoff', b),
               ('takeover', Item(9))]
    batches = worker.batches_by_key(planned)
    assert [[j.number for _, j in batch] for batch in batches] == [
        [3, 3], [5], [9]]
    assert [c for c, _ in batches[0]] == ['mine', 'handoff']


def test_run_scoped_returns_results_in_order():
    def slow_square(n):
        concurrency.sleep(0.001 * (5 - n))
        return n * n
    assert worker.run_scoped(slow_square, range(5), 3) == [0, 1, 4, 9, 16]


def test_run_scoped_first_failure_cancels_the_siblings(capsys):
    finished = []

    def step(n):
        if n == 1:
            raise worker.LockLost('fenced')
        concurrency.sleep(0.2)
        finished.append(n)
    with pytest.raises(worker.LockLost):
        worker.run_scoped(step, range(6), 3)
    concurrency.sleep(0.3)
    assert finished == []
    assert 'Traceback' not in capsys.readouterr().err


# -- locks in windows ---------------------------------------------------------

def test_locks_are_taken_in_windows_and_each_released(conf):
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(10))
    summary = toy.run_once()
    assert [len(w) for w in coordinator.windows] == [4, 4, 2]
    assert sorted(coordinator.released) == sorted(
        i.key for i in single_owner(10))
    assert coordinator.held == set()
    assert summary['done'] == summary['succeeded'] == 10
    # Every item ran with its own token.
    assert len({token for _n, token in toy.done}) == 10


def test_item_locked_elsewhere_is_retried_a_few_times(conf, monkeypatch):
    monkeypatch.setattr(worker, 'BUSY_RETRY_DELAYS', (0, 0, 0))
    coordinator = FakeCoordinator(held_elsewhere=['coordsync/toy/2'])
    toy = Toy(conf, coordinator, single_owner(5))
    summary = toy.run_once()
    assert 2 not in [n for n, _t in toy.done]
    # In the pass, and on each of the three retries.
    assert summary['skipped_locked'] == 4
    assert coordinator.windows[-3:] == [['coordsync/toy/2']] * 3
    assert 'coordsync/toy/2' not in coordinator.released


def test_item_freed_by_its_holder_is_done_on_a_retry(conf, monkeypatch):
    monkeypatch.setattr(worker, 'BUSY_RETRY_DELAYS', (0, 0, 0))
    coordinator = FakeCoordinator(held_elsewhere=['coordsync/toy/2'])

    def work(job, grant):
        coordinator.held_elsewhere.clear()  # the other holder finished
        return True
    toy = Toy(conf, coordinator, single_owner(5), work)
    summary = toy.run_once()
    assert sorted(n for n, _t in toy.done) == [0, 1, 2, 3, 4]
    assert summary['skipped_locked'] == 1 and summary['succeeded'] == 5


def test_failures_are_counted_and_the_lock_released_anyway(conf, caplog):
    def work(job, grant):
        if job.number == 1:
            raise RuntimeError('boom')
        return job.number != 2
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(4), work)
    summary = toy.run_once()
    assert summary['failed'] == 2 and summary['errors'] == 2
    assert summary['succeeded'] == 2
    assert coordinator.held == set()
    assert coordinator.progress['toy']['errors'] == 2
    assert '2 failed' in toy.stats_line()


def test_lockup_is_cancelled_and_counted(conf):
    conf.set_override('lockup_timeout', 1.0, group='replicator')

    def work(job, grant):
        if job.number == 0:
            concurrency.sleep(5)
        return True
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(2), work)
    summary = toy.run_once()
    assert summary['lockups'] == 1 and summary['errors'] == 1
    assert coordinator.held == set()


def test_fenced_item_is_counted_as_fenced(conf):
    def work(job, grant):
        coordinator.held.discard(job.key)  # the lock moved away
        grant.check()
    coordinator = FakeCoordinator()
    summary = Toy(conf, coordinator, single_owner(3), work).run_once()
    assert summary['fenced'] == 3 and summary['errors'] == 0


# -- planning -----------------------------------------------------------------

def test_static_rule_without_coordination_takes_no_locks(conf):
    coordinator = FakeCoordinator(healthy=False)
    items = single_owner(3) + [Item(7, handoff=True)]
    toy = Toy(conf, coordinator, items)
    summary = toy.run_once()
    assert summary['mode'] == worker.STATIC
    assert coordinator.windows == []
    assert sorted(n for n, _t in toy.done) == [0, 1, 2]
    assert {t for _n, t in toy.done} == {None}


def test_lost_session_is_no_reason_for_a_static_pass(conf):
    # Out of the group, but the backend answers: wait, then do nothing
    # unlocked (issue 14: a paused process must not run a static pass).
    coordinator = FakeCoordinator(healthy=False, static_allowed=False)
    toy = Toy(conf, coordinator, single_owner(3))
    summary = toy.run_once()
    assert summary['mode'] == worker.WAITING
    assert toy.done == [] and coordinator.windows == []


def coordination_back(coordinator):
    coordinator.healthy = True


def zookeeper_serving_again(coordinator):
    # Still out of the group (its reconnect backs off, or is slow), but
    # a probe found a ZooKeeper server serving: others may lock the
    # items now.
    coordinator.serving_again = True
    coordinator.static_allowed = False


@pytest.mark.parametrize('back', [coordination_back,
                                  zookeeper_serving_again])
def test_static_work_ends_when_coordination_is_back(conf, back):
    # Issue 14: a static item's writes stop at the next one once the
    # backend answers again (others may take its lock), and the pass
    # starts no further window; issue 13: a ZooKeeper server serving
    # again is enough, before this process has reconnected.
    coordinator = FakeCoordinator(healthy=False)
    checks = []

    def write_twice(job, grant):
        grant.check()
        back(coordinator)
        try:
            grant.check()
        except worker.LockLost as err:
            checks.append(str(err))
            raise
        return True
    conf.set_override('concurrency', 1, group='replicator')
    toy = Toy(conf, coordinator, single_owner(10), work=write_twice)
    summary = toy.run_once()
    assert summary['mode'] == worker.STATIC
    assert summary['aborted'] == 'coordination is back'
    assert checks and 'coordination is back' in checks[0]
    # The first window (lock_window 4) at most: nothing after.
    assert len(toy.done) <= 4
    assert summary['succeeded'] == 0
    if not coordinator.healthy:
        # And the next plan does nothing unlocked.
        assert toy.plan(single_owner(3)) == ([], worker.WAITING)


def test_back_from_a_long_outage_waits_before_taking_locks(conf):
    coordinator = FakeCoordinator()
    coordinator.settling_for = 12.0
    toy = Toy(conf, coordinator, single_owner(3))
    summary = toy.run_once()
    assert summary['mode'] == worker.WAITING
    assert toy.done == [] and coordinator.windows == []


def test_a_rejoined_member_plans_a_coordinated_pass(conf):
    coordinator = FakeCoordinator(healthy=False, static_allowed=False)
    concurrency.spawn_after(0.1, setattr, coordinator, 'healthy', True)
    summary = Toy(conf, coordinator, single_owner(3)).run_once()
    assert summary['mode'] == worker.COORDINATED
    assert summary['succeeded'] == 3


def test_sweep_takes_items_that_became_ours_during_the_pass(conf):
    items = [Item(i) for i in range(60)]
    coordinator = FakeCoordinator(views=[['n1', 'n2', 'n3'],
                                         ['n1', 'n3']])
    toy = Toy(conf, coordinator, items)
    summary = toy.run_once()
    numbers = [n for n, _t in toy.done]
    assert len(numbers) == len(set(numbers))
    steady = Toy(conf, FakeCoordinator(), items)
    steady.run_once()
    mine = {n for n, _t in steady.done}
    assert mine < set(numbers)
    assert summary['total'] == len(numbers)


def test_steady_membership_takes_each_item_once(conf):
    items = [Item(i) for i in range(60)]
    done = set()
    for node in ('n1', 'n2', 'n3'):
        conf.set_override('node_name', node)
        toy = Toy(conf, FakeCoordinator(), items)
        toy.run_once()
        numbers = [n for n, _t in toy.done]
        assert not done & set(numbers)
        done.update(numbers)
    assert done == set(range(60))


# -- reports ------------------------------------------------------------------

def test_recon_and_published_progress(conf, tmp_path):
    coordinator = FakeCoordinator()
    Toy(conf, coordinator, single_owner(3)).run_once()
    with open(tmp_path / 'recon' / 'toy.json') as fh:
        recon = json.load(fh)
    assert recon['done'] == 3 and recon['mode'] == worker.COORDINATED
    progress = coordinator.progress['toy']
    assert progress['state'] == worker.IDLE
    assert progress['last_pass']['succeeded'] == 3


def test_peer_errors_make_one_line_per_peer(caplog):
    errors = worker.PeerErrors()
    for _ in range(40):
        errors.record('10.0.0.2:6200/d1', 'connection refused')
    errors.record('10.0.0.3:6200/d1', 'timed out')
    with caplog.at_level(logging.WARNING):
        errors.log(logging.getLogger('t'), 'pass 1')
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        'pass 1: 40 errors talking to 10.0.0.2:6200/d1 (last: connection '
        'refused)',
        'pass 1: 1 errors talking to 10.0.0.3:6200/d1 (last: timed out)']


class StartableCoordinator(FakeCoordinator):
    def start(self, wait=None):
        return True

    def stop(self):
        self.stopped = True


def test_once_exit_status_is_non_zero_when_an_item_failed(conf):
    toy = Toy(conf, StartableCoordinator(), single_owner(2),
              lambda job, grant: job.number == 0)
    assert daemon.run_once(conf, toy, {}) == daemon.EXIT_FAILED
    toy = Toy(conf, StartableCoordinator(), single_owner(2))
    assert daemon.run_once(conf, toy, {}) == daemon.EXIT_OK
    assert toy.coordinator.progress['toy']['state'] == worker.FINISHED


# -- orderly stop -------------------------------------------------------------

def test_stop_lets_the_write_in_flight_finish_then_releases(conf):
    conf.set_override('concurrency', 2, group='replicator')
    writes = []

    def work(job, grant):
        while True:
            grant.check()  # before each write
            concurrency.sleep(0.05)  # the write on the wire
            writes.append((job.number, coordinator.is_still_owner(job.key)))
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(6), work)
    service = worker.WorkerService(toy)
    runner = concurrency.spawn(toy.run_once)
    concurrency.sleep(0.2)
    service.stop()
    summary = runner.wait()
    # Every write happened while its item's lock was held, and only the
    # two items in flight ran at all.
    assert writes and all(held for _n, held in writes)
    assert {n for n, _held in writes} == {0, 1}
    assert summary['interrupted'] == 2
    assert coordinator.held == set()


def test_stop_cancels_stuck_items_and_keeps_their_locks(conf):
    conf.set_override('stop_timeout', 0.2, group='server')
    conf.set_override('node_timeout', 0.5, group='client')

    def work(job, grant):
        concurrency.sleep(30)  # never reaches a check
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(1), work)
    service = worker.WorkerService(toy)
    concurrency.spawn(toy.run_once)
    concurrency.sleep(0.1)
    service.stop()
    assert toy.in_flight == 0
    # Released by the coordinator's own stop, after the grace period.
    assert coordinator.held == {'coordsync/toy/0'}


def test_worker_service_passes_filters_to_every_pass(conf):
    seen = []

    class Filtered(Toy):
        def collect_jobs(self, **filters):
            seen.append(filters)
            self.stop()
            return []
    toy = Filtered(conf, FakeCoordinator(), [])
    service = worker.WorkerService(toy, {'partitions': {5}})
    service.start()
    concurrency.sleep(0.3)
    service.stop()
    assert seen == [{'partitions': {5}}]


# -- metrics and backlog -----------------------------------------------------

def _sample(registry, metric, **labels):
    value = registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def test_a_pass_is_recorded_in_the_process_metrics(conf):
    metrics.reset()
    coordinator = FakeCoordinator(held_elsewhere={'coordsync/toy/3'})

    def work(job, grant):
        return job.number != 1
    Toy(conf, coordinator, single_owner(4), work).run_once()
    registry = metrics.get().registry
    assert _sample(registry, 'coordsync_passes_total', worker='toy',
                   mode=worker.COORDINATED) == 1
    assert _sample(registry, 'coordsync_items_total', worker='toy',
                   outcome='succeeded') == 2
    assert _sample(registry, 'coordsync_items_total', worker='toy',
                   outcome='failed') == 1
    # item 3 is held elsewhere in the first try and each retry
    assert _sample(registry, 'coordsync_lock_contended_total',
                   worker='toy') >= 1
    assert _sample(registry, 'coordsync_lock_take_seconds_count',
                   worker='toy') >= 1
    assert _sample(registry, 'coordsync_pass_duration_seconds_count',
                   worker='toy') == 1
    metrics.reset()


def test_figures_are_summed_and_levels_set(conf):
    metrics.reset()

    @dataclasses.dataclass
    class ToyFigures(worker.Figures):
        moved: int = 0
        left: int = 0

    class Counting(Toy):
        level_figures = ('left',)

        def new_figures(self):
            return ToyFigures()

        def work(self, job, grant):
            self.stats.figures.moved += 2
            self.stats.figures.left = 7
            return True

        def levels(self):
            return {'queue_depth': 5}
    coordinator = FakeCoordinator()
    toy = Counting(conf, coordinator, single_owner(3))
    toy.run_once()
    toy.run_once()
    registry = metrics.get().registry
    assert _sample(registry, 'coordsync_worker_figures_total',
                   worker='toy', figure='moved') == 12
    assert _sample(registry, 'coordsync_worker_gauge', worker='toy',
                   name='left') == 7
    assert _sample(registry, 'coordsync_worker_gauge', worker='toy',
                   name='queue_depth') == 5
    assert coordinator.progress['toy']['levels'] == {'queue_depth': 5}
    metrics.reset()


def test_backlog_counts_owned_items_not_passed_in_time(conf):
    conf.set_override('run_pause', 10.0, group='replicator')
    conf.set_override('backlog_intervals', 2, group='replicator')

    def work(job, grant):
        return job.number != 0
    coordinator = FakeCoordinator()
    toy = Toy(conf, coordinator, single_owner(3), work)
    toy.run_once()
    now = time.time()
    # just after the pass nothing is late yet
    assert toy.backlog(now) == (0, 0.0)
    assert coordinator.progress['toy']['backlog'] == 0
    # past two intervals the failed item 0 is late; the others too once
    # their last success is as old
    count, oldest = toy.backlog(now + 25.0)
    assert count == 3 and oldest >= 25.0
    toy._passed_at = {key: now + 20.0 for key in toy._passed_at}
    assert toy.backlog(now + 25.0)[0] == 1
    progress = coordinator.progress['toy']
    assert progress['last_pass']['ended_at'] >= progress['last_pass'][
        'started_at']


def test_a_pass_longer_than_the_last_stretches_the_backlog_interval(conf):
    conf.set_override('run_pause', 1.0, group='replicator')
    seen = []

    def work(job, grant):
        # the first pass of a node: nothing finished yet, 10 s running
        toy.stats.started -= 10.0
        seen.append(toy.backlog())
        return True
    toy = Toy(conf, FakeCoordinator(), single_owner(2), work)
    toy.run_once()
    assert seen[0][0] == 0 and seen[1][0] == 0
    # the same ages with no pass running are late (3 x 1 s)
    toy._passed_at.clear()
    toy._last_duration = 0.0
    toy._born -= 10.0
    assert toy.backlog()[0] == 2
