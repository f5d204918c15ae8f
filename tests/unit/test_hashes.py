import json
import multiprocessing
import os
import threading

import pytest

from coordsync.obj import diskfile
from coordsync.obj import hashes
from tests.unit.fakes import NOW
from tests.unit.fakes import RECLAIM_AGE
from tests.unit.fakes import Clock
from tests.unit.fakes import ts

PART = 5


@pytest.fixture
def devices(tmp_path):
    (tmp_path / 'sda').mkdir()
    (tmp_path / 'sdb').mkdir()
    return tmp_path


def make_manager(devices_path, clock=None):
    return diskfile.DiskFileManager(str(devices_path),
                                    reclaim_age=RECLAIM_AGE,
                                    clock=clock or Clock())


@pytest.fixture
def manager(devices, clock):
    return make_manager(devices, clock)


def put(manager, name, when, device='sda', body=b'x'):
    df = manager.diskfile(device, PART, 'a', 'c', name)
    df.write([body], {'X-Timestamp': when})
    return df


def objects_in_distinct_suffixes(manager, count):
    """Object names whose hashes fall into ``count`` different suffixes."""
    found = {}
    for i in range(10000):
        df = manager.diskfile('sda', PART, 'a', 'c', 'obj%d' % i)
        found.setdefault(df.suffix, 'obj%d' % i)
        if len(found) == count:
            return list(found.values())
    raise AssertionError('not enough suffixes')


def part_dir(devices, device='sda'):
    return devices / device / 'objects' / str(PART)


def rebuilt(manager, devices, device='sda'):
    """Hashes computed from scratch, ignoring any cache."""
    cache = part_dir(devices, device) / 'hashes.json'
    if cache.exists():
        cache.unlink()
    return manager.get_hashes(device, PART)


def test_missing_partition_has_no_hashes(manager, devices):
    assert manager.get_hashes('sda', PART) == {}
    assert not part_dir(devices).exists()


def test_one_write_changes_only_its_suffix(manager):
    names = objects_in_distinct_suffixes(manager, 4)
    dfs = [put(manager, name, ts(1)) for name in names]
    before = manager.get_hashes('sda', PART)
    assert sorted(before) == sorted(df.suffix for df in dfs)

    put(manager, names[0], ts(2))
    after = manager.get_hashes('sda', PART)
    changed = {s for s in before if before[s] != after[s]}
    assert changed == {dfs[0].suffix}


def test_delete_changes_only_its_suffix(manager):
    names = objects_in_distinct_suffixes(manager, 3)
    dfs = [put(manager, name, ts(1)) for name in names]
    before = manager.get_hashes('sda', PART)
    dfs[1].delete(ts(2))
    after = manager.get_hashes('sda', PART)
    assert {s for s in before if before[s] != after[s]} == {dfs[1].suffix}


def test_rehashing_untouched_partition_is_identical(manager, devices):
    for name in objects_in_distinct_suffixes(manager, 5):
        put(manager, name, ts(1))
    first = manager.get_hashes('sda', PART)
    assert manager.get_hashes('sda', PART) == first
    assert manager.get_hashes('sda', PART, recalculate=first) == first
    assert rebuilt(manager, devices) == first


def test_replicas_with_same_versions_agree(manager):
    names = objects_in_distinct_suffixes(manager, 3)
    for name in names:
        put(manager, name, ts(1), device='sda')
    put(manager, names[0], ts(2), device='sda')
    # The other replica got the same final versions in another order.
    put(manager, names[0], ts(2), device='sdb', body=b'different path')
    for name in reversed(names[1:]):
        put(manager, name, ts(1), device='sdb')
    assert manager.get_hashes('sda', PART) == manager.get_hashes('sdb', PART)
    put(manager, names[2], ts(3), device='sdb')
    sda, sdb = (manager.get_hashes(d, PART) for d in ('sda', 'sdb'))
    assert {s for s in sda if sda[s] != sdb[s]} == {
        manager.diskfile('sda', PART, 'a', 'c', names[2]).suffix}


def test_cache_is_used_until_invalidated_or_recalculated(manager):
    df = put(manager, 'o', ts(1))
    cached = manager.get_hashes('sda', PART)
    # A file appearing behind the store's back is not noticed ...
    open(os.path.join(df.hash_dir, ts(2).normal + '.data'), 'wb').close()
    assert manager.get_hashes('sda', PART) == cached
    # ... until asked for.
    recalculated = manager.get_hashes('sda', PART, recalculate=[df.suffix])
    assert recalculated[df.suffix] != cached[df.suffix]


def test_foreign_files_do_not_change_the_hash(manager):
    df = put(manager, 'o', ts(1))
    before = manager.get_hashes('sda', PART)
    open(os.path.join(df.hash_dir, 'notes.txt'), 'wb').close()
    assert manager.get_hashes('sda', PART, recalculate=[df.suffix]) == before


def test_write_records_invalidation(manager, devices):
    df = put(manager, 'o', ts(1))
    manager.get_hashes('sda', PART)
    assert not (part_dir(devices) / 'hashes.invalid').exists()
    df.delete(ts(2))
    recorded = (part_dir(devices) / 'hashes.invalid').read_text().split()
    assert recorded == [df.suffix]
    manager.get_hashes('sda', PART)
    assert not (part_dir(devices) / 'hashes.invalid').exists()


def test_rejected_write_does_not_change_hashes(manager):
    put(manager, 'o', ts(5))
    before = manager.get_hashes('sda', PART)
    with pytest.raises(Exception):  # noqa: B017 - DiskFileConflict
        put(manager, 'o', ts(4))
    assert manager.get_hashes('sda', PART) == before


def test_cache_format(manager, devices):
    df = put(manager, 'o', ts(1))
    current = manager.get_hashes('sda', PART)
    cache = part_dir(devices) / 'hashes.json'
    doc = json.loads(cache.read_text())
    assert doc['version'] == 1
    assert doc['hashes'] == current and list(current) == [df.suffix]
    assert doc['tombstones'] == {}
    df.delete(ts(2))
    manager.get_hashes('sda', PART)
    doc = json.loads(cache.read_text())
    assert doc['tombstones'] == {df.suffix: ts(2).normal}


def test_removed_suffixes_disappear(manager, devices, clock):
    names = objects_in_distinct_suffixes(manager, 2)
    keep, drop = (put(manager, name, ts(1)) for name in names)
    manager.get_hashes('sda', PART)
    drop.delete(ts(2))
    assert drop.suffix in manager.get_hashes('sda', PART)
    clock.now = NOW + 2 + RECLAIM_AGE + 1
    # Time alone makes the tombstone reclaimable: no invalidation needed.
    assert list(manager.get_hashes('sda', PART)) == [keep.suffix]
    assert not os.path.exists(os.path.join(part_dir(devices), drop.suffix))
    manager.delete_partition('sda', PART)
    assert manager.get_hashes('sda', PART) == {}


@pytest.mark.parametrize('content', [
    b'', b'{not json', b'[]', b'{"version": 2, "hashes": {}}',
    b'{"version": 1, "token": "t", "hashes": {"zzzz": "x"},'
    b' "tombstones": {}}',
    b'{"version": 1, "token": "t", "hashes": {}, "tombstones": {"abc": 1}}',
    b'\xff\xfe'])
def test_corrupt_cache_is_rebuilt(manager, devices, content):
    for name in objects_in_distinct_suffixes(manager, 3):
        put(manager, name, ts(1))
    expected = manager.get_hashes('sda', PART)
    (part_dir(devices) / 'hashes.json').write_bytes(content)
    assert manager.get_hashes('sda', PART) == expected
    doc = json.loads((part_dir(devices) / 'hashes.json').read_text())
    assert doc['hashes'] == expected


def test_stale_but_valid_cache_heals_with_invalid_record(manager, devices):
    df = put(manager, 'o', ts(1))
    real = manager.get_hashes('sda', PART)
    cache = part_dir(devices) / 'hashes.json'
    doc = json.loads(cache.read_text())
    doc['hashes'][df.suffix] = 'f' * 32
    cache.write_text(json.dumps(doc))
    (part_dir(devices) / 'hashes.invalid').write_bytes(b'\x00garbage\n')
    assert manager.get_hashes('sda', PART) == real


def test_quarantine_invalidates_suffix(manager, devices):
    df = put(manager, 'o', ts(1))
    assert df.suffix in manager.get_hashes('sda', PART)
    with open(os.path.join(df.hash_dir, ts(1).normal + '.data'), 'r+b') as fp:
        fp.write(b'garbage')
    with pytest.raises(Exception):  # noqa: B017 - DiskFileCorrupt
        df.read_metadata()
    assert manager.get_hashes('sda', PART) == {}


def test_hash_suffix_reports_oldest_tombstone(manager, devices):
    names = [n for n in (f'o{i}' for i in range(10000))
             if manager.diskfile('sda', PART, 'a', 'c', n).suffix == 'abc']
    first, second = names[:2]
    manager.diskfile('sda', PART, 'a', 'c', first).delete(ts(3))
    manager.diskfile('sda', PART, 'a', 'c', second).delete(ts(2))
    digest, oldest = hashes.hash_suffix(
        str(part_dir(devices) / 'abc'), RECLAIM_AGE, NOW)
    assert len(digest) == 32 and oldest == ts(2).normal
    assert hashes.hash_suffix(str(part_dir(devices) / '000'), RECLAIM_AGE,
                              NOW) == (None, None)


# --- concurrency -------------------------------------------------------------

def _write_objects(devices_path, prefix, count, barrier):
    manager = make_manager(devices_path)
    barrier.wait()
    for i in range(count):
        put(manager, '%s-%d' % (prefix, i), ts(1))


def _hash_repeatedly(devices_path, stop):
    manager = make_manager(devices_path)
    while not stop.is_set():
        manager.get_hashes('sda', PART)


def test_invalidations_survive_concurrent_processes(devices):
    ctx = multiprocessing.get_context('spawn')
    barrier = ctx.Barrier(3)
    stop = ctx.Event()
    writers = [ctx.Process(target=_write_objects,
                           args=(str(devices), prefix, 150, barrier))
               for prefix in ('left', 'right')]
    # Two hashers, as a replicator pass and a REPLICATE request may race.
    hashers = [ctx.Process(target=_hash_repeatedly, args=(str(devices), stop))
               for _ in range(2)]
    for proc in hashers + writers:
        proc.start()
    barrier.wait()
    for proc in writers:
        proc.join(120)
        assert proc.exitcode == 0
    stop.set()
    for proc in hashers:
        proc.join(120)
        assert proc.exitcode == 0

    manager = make_manager(devices)
    cached = manager.get_hashes('sda', PART)
    listed = set()
    for suffix in cached:
        listed.update(manager.list_suffix('sda', PART, suffix))
    expected = {manager.diskfile('sda', PART, 'a', 'c', '%s-%d' % (p, i))
                .obj_hash for p in ('left', 'right') for i in range(150)}
    assert listed == expected
    assert cached == rebuilt(manager, devices)


def test_invalidations_survive_concurrent_threads(devices):
    manager = make_manager(devices)
    stop = threading.Event()

    def hash_repeatedly():
        while not stop.is_set():
            manager.get_hashes('sda', PART)

    def write(prefix):
        for i in range(100):
            put(manager, '%s-%d' % (prefix, i), ts(1))

    hashers = [threading.Thread(target=hash_repeatedly) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(p,)) for p in 'abc']
    for thread in hashers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in hashers:
        thread.join()
    cached = manager.get_hashes('sda', PART)
    assert cached == rebuilt(manager, devices)
    assert sum(len(manager.list_suffix('sda', PART, s)) for s in cached) \
        == 300
