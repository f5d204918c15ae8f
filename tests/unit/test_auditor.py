"""The object auditor: damaged files and databases found and moved aside,
stale suffix hashes invalidated, the rate respected."""

import json
import os

import pytest

from coordsync.common import hashing
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.obj import auditor
from coordsync.obj import diskfile
from coordsync.obj import fileformat
from coordsync.obj import hashes
from coordsync.obj import layout
from tests.unit import fakes
from tests.unit.test_worker import FakeCoordinator

NOW = 1700000000.0
PART = 3
BODY = b'0123456789' * 100


class FakeClock:
    """Time moves only when the auditor sleeps."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def make_manager(conf, *devices):
    for device in devices or ('sda',):
        os.makedirs(os.path.join(conf.devices, device), exist_ok=True)
    return diskfile.DiskFileManager(conf.devices, hash_prefix='pre',
                                    hash_suffix='suf')


def names_in_distinct_suffixes(count):
    """Object names whose hashes all have different suffixes."""
    names, suffixes = [], set()
    for i in range(1000):
        name = 'o%d' % i
        suffix = hashing.suffix_of(hashing.hash_path(
            'a', 'c', name, prefix='pre', suffix='suf'))
        if suffix not in suffixes:
            suffixes.add(suffix)
            names.append(name)
        if len(names) == count:
            return names
    raise AssertionError('not enough names')


def put(manager, name, body=BODY, device='sda', offset=0):
    df = manager.diskfile(device, PART, 'a', 'c', name)
    when = Timestamp(NOW + offset).normal
    df.write([body], {'X-Timestamp': when})
    return os.path.join(df.hash_dir, when + '.data')


def audit(manager, device='sda', **kwargs):
    fake = FakeClock()
    limiter = kwargs.pop('limiter', None) or auditor.RateLimiter(
        clock=fake.clock, sleep=fake.sleep)
    return auditor.DeviceAudit(manager, device, limiter=limiter,
                               **kwargs).run()


def read(path):
    with open(path, 'rb') as fh:
        return fh.read()


def quarantined(manager, path, device='sda'):
    """Where ``path``'s hash directory went: its file, under
    quarantined/objects/."""
    hash_dir = os.path.dirname(path)
    return os.path.join(manager.devices_path, device, 'quarantined',
                        'objects', os.path.basename(hash_dir),
                        os.path.basename(path))


def zero_bytes(path):
    with open(path, 'r+b') as fh:
        fh.truncate(0)


def truncate(path):
    with open(path, 'r+b') as fh:
        fh.truncate(os.path.getsize(path) - 7)


def break_metadata(path):
    data = bytearray(read(path))
    first_line = data.index(b'\n') + 1
    data[first_line] = ord('X')  # the JSON's opening brace
    with open(path, 'wb') as fh:
        fh.write(data)


def flip_body_byte(path):
    data = bytearray(read(path))
    data[-1] ^= 0x01
    with open(path, 'wb') as fh:
        fh.write(data)


def rename_object(path):
    """Change the stored name (same length): it no longer hashes to the
    directory the file is in."""
    data = read(path)
    with open(path, 'rb') as fh:
        name = fileformat.read_header(fh)[0]['name']
    other = name[:-1] + ('x' if name[-1] != 'x' else 'y')
    with open(path, 'wb') as fh:
        fh.write(data.replace(name.encode(), other.encode(), 1))


DAMAGE = {'zero-byte': zero_bytes, 'truncated': truncate,
          'bad-metadata': break_metadata, 'flipped-body-byte': flip_body_byte,
          'wrong-name': rename_object}


def test_each_kind_of_damage_is_quarantined_and_good_files_kept(conf):
    manager = make_manager(conf)
    names = names_in_distinct_suffixes(len(DAMAGE) + 3)
    paths = {name: put(manager, name) for name in names}
    before = manager.get_hashes('sda', PART)
    bad = dict(zip(DAMAGE, names[:len(DAMAGE)], strict=True))
    damaged = {}
    for kind, name in bad.items():
        DAMAGE[kind](paths[name])
        damaged[name] = read(paths[name])
    good = {name: read(paths[name]) for name in names[len(DAMAGE):]}

    stats = audit(manager)

    assert stats.quarantined == len(DAMAGE)
    assert stats.files_checked == len(names)
    assert stats.errors == 0 and stats.stale_suffixes == 0
    assert stats.bytes_checked == len(BODY) * (len(good) + 1)
    for name, data in damaged.items():
        # Moved whole and untouched, never deleted.
        assert not os.path.exists(paths[name]), name
        assert read(quarantined(manager, paths[name])) == data, name
    for name, data in good.items():
        assert read(paths[name]) == data
    # Each bad object's suffix was invalidated: rehashed now, it is empty
    # (the quarantined object was alone in it) and no longer reported.
    after = manager.get_hashes('sda', PART)
    bad_suffixes = {os.path.basename(os.path.dirname(os.path.dirname(
        paths[name]))) for name in damaged}
    assert set(before) - set(after) == bad_suffixes
    assert {s: before[s] for s in after} == after
    # A second audit finds nothing more.
    again = audit(manager)
    assert (again.quarantined, again.files_checked) == (0, len(good))


def test_a_file_deleted_behind_the_stores_back_invalidates_its_suffix(conf):
    manager = make_manager(conf)
    kept, lost, emptied = names_in_distinct_suffixes(3)
    put(manager, kept)
    lost_path = put(manager, lost)
    # A second object in the suffix of ``lost``, so the suffix stays.
    lost_suffix = manager.diskfile('sda', PART, 'a', 'c', lost).suffix
    neighbour = next(
        'n%d' % i for i in range(10 ** 6)
        if manager.diskfile('sda', PART, 'a', 'c', 'n%d' % i).suffix
        == lost_suffix)
    put(manager, neighbour)
    emptied_path = put(manager, emptied)
    before = manager.get_hashes('sda', PART)
    os.unlink(lost_path)
    os.unlink(emptied_path)
    assert manager.get_hashes('sda', PART) == before  # the cache is stale

    stats = audit(manager)

    assert stats.stale_suffixes == 2 and stats.quarantined == 0
    after = manager.get_hashes('sda', PART)
    emptied_suffix = manager.diskfile('sda', PART, 'a', 'c', emptied).suffix
    assert after[lost_suffix] != before[lost_suffix]
    assert emptied_suffix not in after
    kept_suffix = manager.diskfile('sda', PART, 'a', 'c', kept).suffix
    assert after[kept_suffix] == before[kept_suffix]
    assert audit(manager).stale_suffixes == 0


def test_tombstones_and_other_policies_are_audited(conf):
    manager = make_manager(conf)
    manager.diskfile('sda', PART, 'a', 'c', 'gone').delete(
        Timestamp.now().normal)
    other = manager.for_policy(1)
    path = put(other, 'p1')
    flip_body_byte(path)
    stats = audit(manager)
    assert (stats.files_checked, stats.quarantined) == (2, 1)
    assert os.path.isdir(os.path.join(
        conf.devices, 'sda', 'quarantined', 'objects-1',
        os.path.basename(os.path.dirname(path))))


def test_an_unreadable_file_is_an_error_not_a_quarantine(conf):
    # NOTE: a directory where the file should be fails to open as an I/O
    # error would (permissions do not stop root).
    manager = make_manager(conf)
    path = put(manager, 'o')
    newer = path.replace(str(NOW)[:10], str(NOW + 1)[:10])
    assert newer != path
    os.mkdir(newer)
    stats = audit(manager)
    assert (stats.errors, stats.quarantined) == (1, 0)
    assert os.path.isdir(newer)
    assert not os.path.exists(os.path.join(conf.devices, 'sda',
                                           'quarantined'))


@pytest.mark.parametrize('files, nbytes, slept', [
    (5.0, 0.0, 10 / 5.0),
    (0.0, 2000.0, 10 * len(BODY) / 2000.0),
    (0.0, 0.0, 0.0),
])
def test_the_rate_is_bounded(conf, files, nbytes, slept):
    manager = make_manager(conf)
    for name in names_in_distinct_suffixes(10):
        put(manager, name)
    fake = FakeClock()
    limiter = auditor.RateLimiter(files, nbytes, clock=fake.clock,
                                  sleep=fake.sleep)
    stats = audit(manager, limiter=limiter)
    assert stats.files_checked == 10
    assert sum(fake.sleeps) == pytest.approx(slept)
    if slept:
        # Paced along the way, not one sleep at the end.
        assert len(fake.sleeps) == 10


def test_an_idle_spell_earns_no_burst():
    fake = FakeClock()
    limiter = auditor.RateLimiter(2.0, clock=fake.clock, sleep=fake.sleep)
    limiter.take(files=1)
    fake.now += 100
    limiter.take(files=1)
    limiter.take(files=1)
    assert fake.sleeps == [0.5, 0.5, 0.5]


def make_container(dev_path, name, rows=0):
    path = backend.container_db_path(dev_path, 7, 'a', name)
    broker = backend.ContainerBroker(path, account='a', container=name)
    broker.initialize(Timestamp(NOW).normal)
    if rows:
        broker.merge_items([{
            'name': 'obj-%05d-%s' % (i, 'x' * 100),
            'created_at': Timestamp(NOW + 1).normal, 'size': 1,
            'content_type': 't', 'etag': 'e' * 32, 'deleted': 0,
            'storage_policy_index': 0} for i in range(rows)])
    broker.close()
    return path


def test_a_damaged_database_is_quarantined(conf):
    manager = make_manager(conf)
    dev_path = os.path.join(conf.devices, 'sda')
    good = make_container(dev_path, 'good', rows=10)
    bad = make_container(dev_path, 'bad', rows=400)
    account = backend.account_db_path(dev_path, 2, 'a')
    backend.AccountBroker(account, account='a').initialize(
        Timestamp(NOW).normal)
    # Damage in a page that opening and get_info never read: only a
    # quick_check finds it.
    with open(bad, 'r+b') as fh:
        fh.seek(4096 * 5)
        fh.write(b'\xff' * 4096)
    damaged = read(bad)
    assert backend.ContainerBroker(bad).get_info()['object_count'] == 400
    good_data = read(good)

    without = audit(manager)
    assert (without.dbs_checked, without.dbs_quarantined) == (0, 0)
    assert os.path.exists(bad)

    stats = audit(manager, databases=True)
    assert (stats.dbs_checked, stats.dbs_quarantined) == (3, 1)
    assert stats.errors == 0
    assert not os.path.exists(bad)
    moved = os.path.join(dev_path, 'quarantined', 'containers',
                         os.path.basename(os.path.dirname(bad)),
                         os.path.basename(bad))
    assert read(moved) == damaged
    assert read(good) == good_data and os.path.exists(account)


def test_a_foreign_file_where_a_database_should_be_is_quarantined(conf):
    manager = make_manager(conf)
    dev_path = os.path.join(conf.devices, 'sda')
    path = make_container(dev_path, 'c')
    with open(path, 'wb') as fh:
        fh.write(b'not a database at all' * 100)
    stats = audit(manager, databases=True)
    assert stats.dbs_quarantined == 1 and not os.path.exists(path)


# -- the worker -------------------------------------------------------------

class DbRing(fakes.DeviceRing):
    devices = [{'id': 0, 'node': 'n1', 'device': 'd3'}]


class Coordinator(FakeCoordinator):
    role = 'object-auditor'


@pytest.mark.parametrize('healthy', [True, False])
def test_the_worker_audits_its_own_devices(conf, healthy):
    manager = make_manager(conf, 'd1', 'd2', 'd3')
    put(manager, 'o1', device='d1')
    flip_body_byte(put(manager, 'o2', device='d2'))
    make_container(os.path.join(conf.devices, 'd3'), 'c')
    conf.set_override('node_name', 'n1')
    fake = FakeClock()
    worker = auditor.ObjectAuditor(
        conf, Coordinator(healthy=healthy), ring=fakes.DeviceRing(),
        db_rings=[DbRing()], manager=manager,
        limiter=lambda: auditor.RateLimiter(
            1.0, clock=fake.clock, sleep=fake.sleep))
    jobs = worker.collect_jobs()
    assert [(j.device, j.key) for j in jobs] == [
        ('d1', 'coordsync/audit/n1/d1'), ('d2', 'coordsync/audit/n1/d2'),
        ('d3', 'coordsync/audit/n1/d3')]
    assert worker.local_devices() == ['d1', 'd2', 'd3']
    summary = worker.run_once()
    assert summary['succeeded'] == 3 and summary['errors'] == 0
    assert summary['files_checked'] == 2 and summary['quarantined'] == 1
    assert summary['dbs_checked'] == 1
    assert len(fake.sleeps) == 3  # two files, one database
    assert '1 quarantined' in worker.stats_line()
    with open(os.path.join(conf['object-auditor'].recon_cache_path,
                           'object-auditor.json')) as fh:
        recon = json.load(fh)
    assert recon['quarantined'] == 1
    assert recon['devices']['d2']['quarantined'] == 1
    assert recon['devices']['d1']['files_checked'] == 1
    progress = worker.coordinator.progress['object-auditor']
    assert progress['last_pass']['succeeded'] == 3


def test_the_worker_only_audits_the_devices_asked_for(conf):
    manager = make_manager(conf, 'd1', 'd2')
    conf.set_override('node_name', 'n1')
    worker = auditor.ObjectAuditor(conf, Coordinator(),
                                   ring=fakes.DeviceRing(), db_rings=[],
                                   manager=manager)
    assert [j.device for j in worker.collect_jobs(devices={'d2'})] == [
        'd2']


def test_a_missing_device_is_skipped(conf):
    manager = make_manager(conf, 'd1')
    conf.set_override('node_name', 'n1')
    worker = auditor.ObjectAuditor(conf, Coordinator(),
                                   ring=fakes.DeviceRing(), db_rings=[],
                                   manager=manager)
    assert [j.device for j in worker.collect_jobs()] == ['d1']


def test_the_options_are_listed_for_the_sample_config():
    from coordsync.conf import opts
    groups = {getattr(group, 'name', group): [o.name for o in options]
              for group, options in opts.list_opts()}
    for name in ('files_per_second', 'bytes_per_second', 'audit_databases',
                 'run_pause', 'recon_cache_path'):
        assert name in groups['object-auditor']


def test_layout_of_a_quarantined_object_matches_the_store(conf):
    # The auditor moves files with the store's own quarantine: where a
    # client read would have put them.
    manager = make_manager(conf)
    path = put(manager, 'o')
    zero_bytes(path)
    audit(manager)
    assert os.path.dirname(os.path.dirname(quarantined(manager, path))) == \
        os.path.join(conf.devices, 'sda', layout.quarantine_dir('objects'))


def test_the_listing_hash_is_the_stores_suffix_hash(conf):
    manager = make_manager(conf)
    name = names_in_distinct_suffixes(1)[0]
    path = put(manager, name)
    # An older file beside it (as a crash between publish and cleanup
    # leaves), which hashing would clean up.
    older = path.replace(str(int(NOW)), str(int(NOW) - 10))
    with open(older, 'wb') as fh:
        fh.write(read(path))
    df = manager.diskfile('sda', PART, 'a', 'c', name)
    neighbour = next(
        'n%d' % i for i in range(10 ** 6)
        if manager.diskfile('sda', PART, 'a', 'c', 'n%d' % i).suffix
        == df.suffix)
    manager.diskfile('sda', PART, 'a', 'c', neighbour).delete(
        Timestamp.now().normal)
    suffix_dir = os.path.dirname(os.path.dirname(path))
    now = manager.clock()
    listed = auditor.listing_hash(suffix_dir, manager.reclaim_age, now)
    assert len(os.listdir(os.path.dirname(path))) == 2  # nothing removed
    assert listed == hashes.hash_suffix(suffix_dir, manager.reclaim_age,
                                        now)[0]
    assert auditor.listing_hash(os.path.join(suffix_dir, 'nope'),
                                manager.reclaim_age, now) is None


def test_a_write_through_the_store_meanwhile_is_not_stale(conf):
    manager = make_manager(conf)
    name = names_in_distinct_suffixes(1)[0]
    put(manager, name)
    suffix = manager.diskfile('sda', PART, 'a', 'c', name).suffix
    cached = manager.get_hashes('sda', PART)[suffix]
    put(manager, name, offset=5)  # recorded for rehashing by the store
    audit_ = auditor.DeviceAudit(manager, 'sda')
    audit_.check_suffix_hash(manager, PART, suffix, cached)
    assert audit_.stats.stale_suffixes == 0
    assert manager.get_hashes('sda', PART)[suffix] != cached
