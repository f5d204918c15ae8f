import errno
import hashlib
import json
import multiprocessing
import os
import threading
import time
import tracemalloc

import pytest

from coordsync import exceptions
from coordsync.common import fsutil
from coordsync.common.timestamp import Timestamp
from coordsync.obj import diskfile
from coordsync.obj import fileformat
from coordsync.obj import layout
from coordsync.obj import streams
from tests.unit.fakes import NOW
from tests.unit.fakes import RECLAIM_AGE
from tests.unit.fakes import ts


@pytest.fixture
def devices(tmp_path):
    (tmp_path / 'sda').mkdir()
    return tmp_path


@pytest.fixture
def manager(devices, clock):
    return diskfile.DiskFileManager(str(devices), reclaim_age=RECLAIM_AGE,
                                    hash_prefix='pre', hash_suffix='suf',
                                    clock=clock)


@pytest.fixture
def df(manager):
    return manager.diskfile('sda', 7, 'AUTH_a', 'c', 'o')


def put(df, body, when, **metadata):
    return df.write([body], {'X-Timestamp': when, **metadata})


def read_body(df):
    with df.reader() as reader:
        return b''.join(reader)


def files_of(df):
    return sorted(os.listdir(df.hash_dir))


def tmp_files(devices):
    tmp_dir = devices / 'sda' / 'tmp'
    return sorted(os.listdir(tmp_dir)) if tmp_dir.exists() else []


# --- writing and reading ---------------------------------------------------

def test_write_then_read(df):
    stored = put(df, b'hello world', ts(), **{
        'Content-Type': 'text/plain', 'X-Object-Meta-Color': 'blue'})
    metadata = df.read_metadata()
    assert metadata == stored
    assert metadata['name'] == '/AUTH_a/c/o'
    assert metadata['X-Timestamp'] == ts().normal
    assert metadata['Content-Length'] == '11'
    assert metadata['ETag'] == hashlib.md5(b'hello world').hexdigest()
    assert metadata['Content-Type'] == 'text/plain'
    assert metadata['X-Object-Meta-Color'] == 'blue'
    assert read_body(df) == b'hello world'
    assert files_of(df) == [ts().normal + '.data']


def test_layout_on_disk(df, devices):
    put(df, b'x', ts())
    expected = (devices / 'sda' / 'objects' / '7' / df.suffix / df.obj_hash
                / (ts().normal + '.data'))
    assert df.obj_hash.endswith(df.suffix) and len(df.suffix) == 3
    data = expected.read_bytes()
    header, rest = data.split(b'\n', 1)
    magic, version, length = header.split(b' ')
    assert (magic, version) == (b'COORDSYNC-OBJ', b'1')
    assert json.loads(rest[:int(length)])['name'] == '/AUTH_a/c/o'
    assert rest[int(length):] == b'x'


def test_empty_body(df):
    put(df, b'', ts())
    assert df.read_metadata()['Content-Length'] == '0'
    assert read_body(df) == b''


def test_never_written_is_not_found_without_timestamp(df):
    with pytest.raises(exceptions.DiskFileNotFound) as caught:
        df.read_metadata()
    assert not isinstance(caught.value, exceptions.DiskFileDeleted)


def test_reader_keeps_reading_the_version_it_opened(df):
    put(df, b'old', ts(1))
    with df.reader() as reader:
        put(df, b'new', ts(2))
        assert b''.join(reader) == b'old'
    assert read_body(df) == b'new'


def test_object_names_may_contain_slashes(manager):
    df = manager.diskfile('sda', 1, 'a', 'c', 'dir/sub/o')
    put(df, b'x', ts())
    assert df.read_metadata()['name'] == '/a/c/dir/sub/o'


def test_writer_api(df):
    with df.writer({'X-Timestamp': ts(), 'Content-Length': 6}) as writer:
        writer.write(b'abc')
        writer.write(bytearray(b'd'))
        writer.write(memoryview(b'ef'))
        stored = writer.commit()
    assert stored['Content-Length'] == '6'
    assert read_body(df) == b'abcdef'


# --- newest timestamp wins -------------------------------------------------

@pytest.mark.parametrize('offset', [0, -1])
def test_older_or_equal_put_is_rejected_and_changes_nothing(df, offset):
    put(df, b'newer', ts(10))
    before = files_of(df)
    with pytest.raises(exceptions.DiskFileConflict) as caught:
        put(df, b'older', ts(10 + offset))
    assert caught.value.timestamp == ts(10)
    assert files_of(df) == before
    assert read_body(df) == b'newer'


def test_newer_put_replaces_and_removes_old_file(df):
    put(df, b'one', ts(1))
    put(df, b'two', ts(2))
    assert files_of(df) == [ts(2).normal + '.data']
    assert read_body(df) == b'two'
    assert df.read_metadata()['X-Timestamp'] == ts(2).normal


def test_concurrent_writers_of_one_object_newest_wins(df):
    outcomes = []

    def write(offset):
        try:
            put(df, b'v%d' % offset, ts(offset))
            outcomes.append(offset)
        except exceptions.DiskFileConflict:
            pass

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 15 in outcomes
    assert files_of(df) == [ts(15).normal + '.data']
    assert read_body(df) == b'v15'


# --- tombstones -------------------------------------------------------------

def test_delete_then_read_is_not_found_with_timestamp(df):
    put(df, b'body', ts(1))
    df.delete(ts(2))
    with pytest.raises(exceptions.DiskFileDeleted) as caught:
        df.read_metadata()
    assert isinstance(caught.value, exceptions.DiskFileNotFound)
    assert caught.value.timestamp == ts(2)
    assert caught.value.metadata == {'name': '/AUTH_a/c/o',
                                     'X-Timestamp': ts(2).normal}
    assert files_of(df) == [ts(2).normal + '.ts']
    with pytest.raises(exceptions.DiskFileDeleted):
        df.reader()


def test_older_put_after_delete_is_rejected(df):
    df.delete(ts(5))
    with pytest.raises(exceptions.DiskFileConflict):
        put(df, b'late', ts(4))
    with pytest.raises(exceptions.DiskFileConflict):
        df.delete(ts(5))
    assert files_of(df) == [ts(5).normal + '.ts']
    put(df, b'back', ts(6))
    assert read_body(df) == b'back'
    assert files_of(df) == [ts(6).normal + '.data']


def test_tombstone_is_reclaimed_after_reclaim_age(manager, df, clock):
    put(df, b'body', ts(1))
    df.delete(ts(2))
    clock.now = NOW + 2 + RECLAIM_AGE - 1
    assert df.suffix in manager.get_hashes('sda', 7)
    assert files_of(df) == [ts(2).normal + '.ts']
    clock.now = NOW + 2 + RECLAIM_AGE + 1
    assert manager.list_suffix('sda', 7, df.suffix) == {}
    assert manager.get_hashes('sda', 7) == {}
    assert not os.path.exists(df.hash_dir)
    assert not os.path.exists(os.path.dirname(df.hash_dir))
    with pytest.raises(exceptions.DiskFileNotFound) as caught:
        df.read_metadata()
    assert not isinstance(caught.value, exceptions.DiskFileDeleted)


def test_data_is_never_reclaimed(manager, df, clock):
    put(df, b'body', ts())
    clock.now = NOW + 100 * RECLAIM_AGE
    manager.get_hashes('sda', 7)
    assert read_body(df) == b'body'


# --- crash safety -----------------------------------------------------------

def test_exception_mid_stream_leaves_nothing(df, devices, manager):
    def body():
        yield b'a' * 1000
        raise RuntimeError('client went away')

    with pytest.raises(RuntimeError):
        df.write(body(), {'X-Timestamp': ts()})
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert tmp_files(devices) == []
    assert manager.get_hashes('sda', 7) == {}


def test_failed_overwrite_keeps_previous_version(df, devices):
    put(df, b'good', ts(1))

    def body():
        yield b'partial'
        raise RuntimeError('boom')

    with pytest.raises(RuntimeError):
        df.write(body(), {'X-Timestamp': ts(2)})
    assert read_body(df) == b'good'
    assert files_of(df) == [ts(1).normal + '.data']
    assert tmp_files(devices) == []


def test_failed_rename_leaves_nothing(df, devices, monkeypatch):
    def refuse(src, dst):
        raise OSError(5, 'I/O error')

    monkeypatch.setattr(os, 'rename', refuse)
    with pytest.raises(OSError):
        put(df, b'x', ts())
    monkeypatch.undo()
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert tmp_files(devices) == []


def test_stray_tmp_file_never_counts(manager, df, devices):
    tmp_dir = devices / 'sda' / 'tmp'
    tmp_dir.mkdir()
    header = fileformat.encode_header({
        'name': '/AUTH_a/c/o', 'X-Timestamp': ts().normal,
        'Content-Length': '1', 'ETag': hashlib.md5(b'x').hexdigest()})
    (tmp_dir / ('%s.data' % ts().normal)).write_bytes(header + b'x')
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert manager.get_hashes('sda', 7) == {}
    assert manager.partitions('sda') == []


def _write_until_killed(devices_path, started):
    manager = diskfile.DiskFileManager(devices_path)
    df = manager.diskfile('sda', 3, 'a', 'c', 'crash')

    def body():
        yield b'x' * 4096
        started.set()
        time.sleep(60)
        yield b'never'

    df.write(body(), {'X-Timestamp': Timestamp.now()})


def test_killed_writer_leaves_no_object(manager, devices, clock):
    ctx = multiprocessing.get_context('spawn')
    started = ctx.Event()
    proc = ctx.Process(target=_write_until_killed,
                       args=(str(devices), started))
    proc.start()
    try:
        assert started.wait(60)
    finally:
        proc.kill()
        proc.join()
    assert len(tmp_files(devices)) == 1
    df = manager.diskfile('sda', 3, 'a', 'c', 'crash')
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert manager.get_hashes('sda', 3) == {}
    clock.now = time.time()
    assert manager.cleanup_tmp('sda') == 0
    clock.now = time.time() + RECLAIM_AGE + 1
    assert manager.cleanup_tmp('sda') == 1
    assert tmp_files(devices) == []


# --- verification of what is written -----------------------------------------

@pytest.mark.parametrize('given, header', [
    ({'Content-Length': '3'}, 'Content-Length'),
    ({'Content-Length': '99'}, 'Content-Length'),
    ({'ETag': hashlib.md5(b'other').hexdigest()}, 'ETag'),
])
def test_body_must_match_given_length_and_etag(df, devices, given, header):
    with pytest.raises(exceptions.DiskFileMismatch) as caught:
        put(df, b'hello', ts(), **given)
    assert caught.value.header == header
    assert tmp_files(devices) == []
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()


def test_matching_length_and_quoted_etag_accepted(df):
    etag = hashlib.md5(b'hello').hexdigest()
    put(df, b'hello', ts(), **{'Content-Length': '5',
                               'ETag': '"%s"' % etag.upper()})
    assert df.read_metadata()['ETag'] == etag


@pytest.mark.parametrize('metadata, message', [
    ({}, 'X-Timestamp is required'),
    ({'X-Timestamp': '-5'}, 'negative'),
    ({'X-Timestamp': 'soon'}, 'not a decimal'),
    ({'X-Timestamp': '1', 'name': '/other/c/o'}, 'name'),
    ({'X-Timestamp': '1', 'X-Object-Meta-N': 1.5}, 'strings'),
    ({'X-Timestamp': '1', 'Content-Length': 'ten'}, 'not a number'),
    ({'X-Timestamp': '1', 'X-Object-Meta-Big': 'x' * (2 << 20)}, 'large'),
])
def test_bad_metadata_is_a_value_error(df, devices, metadata, message):
    with pytest.raises(ValueError, match=message):
        df.write([b'x'], metadata)
    assert tmp_files(devices) == []


def test_bad_delete_timestamp_is_a_value_error(df):
    with pytest.raises(ValueError):
        df.delete('yesterday')


# --- quarantine ---------------------------------------------------------

def _rewrite(path, change):
    with open(path, 'rb') as fp:
        metadata, offset = fileformat.read_header(fp)
        body = fp.read()
    change(metadata)
    with open(path, 'wb') as fp:
        fp.write(fileformat.encode_header(metadata) + body)


def _bad_magic(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(b'NOTANOBJECT!' + data[12:])


def _bad_json(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data.replace(b'{', b'<', 1))


def _no_name(path):
    _rewrite(path, lambda metadata: metadata.pop('name'))


def _other_timestamp(path):
    _rewrite(path, lambda metadata: metadata.update({'X-Timestamp': '5'}))


def _extra_body(path):
    open(path, 'ab').write(b'junk')


def _short_body(path):
    os.truncate(path, os.path.getsize(path) - 1)


def _short_header(path):
    os.truncate(path, 20)


def _empty(path):
    os.truncate(path, 0)


@pytest.mark.parametrize('corrupt', [
    _bad_magic, _bad_json, _no_name, _other_timestamp, _extra_body,
    _short_body, _short_header, _empty])
def test_corrupt_file_is_quarantined(manager, df, devices, corrupt):
    put(df, b'payload', ts())
    path = os.path.join(df.hash_dir, ts().normal + '.data')
    corrupt(path)
    damaged = open(path, 'rb').read()
    assert df.suffix in manager.get_hashes('sda', 7)

    with pytest.raises(exceptions.DiskFileCorrupt):
        df.read_metadata()

    moved = (devices / 'sda' / 'quarantined' / 'objects' / df.obj_hash
             / (ts().normal + '.data'))
    assert moved.read_bytes() == damaged
    assert manager.quarantine_count == 1
    assert not os.path.exists(df.hash_dir)
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert manager.quarantine_count == 1
    assert df.suffix not in manager.get_hashes('sda', 7)


def test_corrupt_tombstone_is_quarantined(manager, df):
    df.delete(ts())
    _extra_body(os.path.join(df.hash_dir, ts().normal + '.ts'))
    with pytest.raises(exceptions.DiskFileCorrupt):
        df.read_metadata()
    assert manager.quarantine_count == 1


def test_quarantine_twice_keeps_both(manager, df, devices):
    for offset in (1, 2):
        put(df, b'payload', ts(offset))
        _bad_json(os.path.join(df.hash_dir, ts(offset).normal + '.data'))
        with pytest.raises(exceptions.DiskFileCorrupt):
            df.reader()
    names = os.listdir(devices / 'sda' / 'quarantined' / 'objects')
    assert len(names) == 2
    assert all(name.startswith(df.obj_hash) for name in names)
    assert manager.quarantine_count == 2


def test_body_not_matching_etag_is_quarantined_at_end_of_read(manager, df):
    put(df, b'abcdef' * 1000, ts())
    path = os.path.join(df.hash_dir, ts().normal + '.data')
    data = bytearray(open(path, 'rb').read())
    data[-1] ^= 0xff
    open(path, 'wb').write(bytes(data))
    assert df.read_metadata()['Content-Length'] == '6000'
    chunks = []
    with pytest.raises(exceptions.DiskFileCorrupt):
        with df.reader(chunk_size=1000) as reader:
            for chunk in reader:
                chunks.append(chunk)
    assert len(chunks) == 6
    assert manager.quarantine_count == 1
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()


def test_partial_read_does_not_check_etag(manager, df):
    put(df, b'abcdef' * 1000, ts())
    with df.reader(chunk_size=1000) as reader:
        assert next(iter(reader)) == b'abcdef' * 166 + b'abcd'
    assert manager.quarantine_count == 0


def test_name_collision_is_reported_not_quarantined(manager, df):
    other = manager.diskfile('sda', 7, 'AUTH_a', 'c', 'other')
    put(other, b'other', ts())
    os.makedirs(df.hash_dir)
    src = os.path.join(other.hash_dir, ts().normal + '.data')
    os.link(src, os.path.join(df.hash_dir, ts().normal + '.data'))
    with pytest.raises(exceptions.DiskFileCollision):
        df.read_metadata()
    assert manager.quarantine_count == 0
    assert files_of(df) == [ts().normal + '.data']


# --- large objects ----------------------------------------------------------

def test_large_object_streams_in_chunks(df):
    size = 20 * 2 ** 20
    block_size = 2 ** 16

    def body():
        block = bytes(range(256)) * (block_size // 256)
        for _ in range(size // block_size):
            yield block

    expected = hashlib.md5(usedforsecurity=False)
    for block in body():
        expected.update(block)
    tracemalloc.start()
    try:
        stored = df.write(body(), {'X-Timestamp': ts()})
        _current, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sizes = []
        got = hashlib.md5(usedforsecurity=False)
        with df.reader(chunk_size=block_size) as reader:
            assert reader.content_length == size
            for chunk in reader:
                sizes.append(len(chunk))
                got.update(chunk)
        _current, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored['Content-Length'] == str(size)
    assert stored['ETag'] == got.hexdigest() == expected.hexdigest()
    assert sum(sizes) == size and max(sizes) <= block_size
    assert len(sizes) == size // block_size
    assert write_peak < 2 * 2 ** 20
    assert read_peak < 2 * 2 ** 20


# --- names, devices, partitions --------------------------------------------

@pytest.mark.parametrize('device', [
    '..', '.', '', 'a/b', '../sda', 'sd..a', 'sda\x00', None])
def test_bad_device_names_rejected(manager, device):
    with pytest.raises(ValueError):
        manager.get_dev_path(device)
    with pytest.raises(ValueError):
        manager.diskfile(device, 1, 'a', 'c', 'o')
    with pytest.raises(ValueError):
        manager.get_hashes(device, 1)
    with pytest.raises(ValueError):
        manager.delete_partition(device, 1)


@pytest.mark.parametrize('partition', [
    '..', '../1', '1/2', '/1', '-1', -1, 'abc', '', '1.0', 1.0, None, True,
    '\u0661', '1' * 11])
def test_bad_partitions_rejected(manager, partition):
    with pytest.raises(ValueError):
        manager.diskfile('sda', partition, 'a', 'c', 'o')
    with pytest.raises(ValueError):
        manager.get_hashes('sda', partition)
    with pytest.raises(ValueError):
        manager.list_suffix('sda', partition, 'abc')
    with pytest.raises(ValueError):
        manager.delete_partition('sda', partition)


@pytest.mark.parametrize('names', [
    ('', 'c', 'o'), ('a', '', 'o'), ('a', 'c', ''), ('a', None, 'o'),
    ('a/b', 'c', 'o'), ('a', 'c/d', 'o')])
def test_empty_object_names_rejected(manager, names):
    with pytest.raises(ValueError):
        manager.diskfile('sda', 1, *names)


def test_bad_suffix_and_hash_rejected(manager):
    with pytest.raises(ValueError):
        manager.list_suffix('sda', 1, '../x')
    with pytest.raises(ValueError):
        manager.diskfile_by_hash('sda', 1, '../' + 'a' * 29)


def test_partition_spellings_share_a_directory(manager):
    put(manager.diskfile('sda', '007', 'a', 'c', 'o'), b'x', ts())
    assert read_body(manager.diskfile('sda', 7, 'a', 'c', 'o')) == b'x'


def test_unavailable_device(manager, devices):
    assert manager.get_dev_path('sdb') is None
    assert manager.get_dev_path('sda') == str(devices / 'sda')
    with pytest.raises(exceptions.DiskFileDeviceUnavailable):
        manager.diskfile('sdb', 1, 'a', 'c', 'o')
    with pytest.raises(exceptions.DiskFileDeviceUnavailable):
        manager.partitions('sdb')
    checked = diskfile.DiskFileManager(str(devices), mount_check=True)
    assert checked.get_dev_path('sda') is None
    assert checked.devices() == []


def test_devices_partitions_and_delete_partition(manager, devices):
    (devices / 'sdb').mkdir()
    (devices / 'not-a-device.txt').write_text('')
    assert manager.devices() == ['sda', 'sdb']
    assert manager.partitions('sda') == []
    for part in (3, 12, 100):
        put(manager.diskfile('sda', part, 'a', 'c', 'o%d' % part), b'x', ts())
    (devices / 'sda' / 'objects' / 'junk').mkdir()
    (devices / 'sda' / 'objects' / '012').mkdir()
    assert manager.partitions('sda') == [3, 12, 100]
    assert manager.delete_partition('sda', 12) is True
    assert manager.partitions('sda') == [3, 100]
    assert manager.delete_partition('sda', 12) is False
    assert manager.get_hashes('sda', 12) == {}
    assert tmp_files(devices) == []
    put(manager.diskfile('sda', 12, 'a', 'c', 'again'), b'x', ts())
    assert manager.partitions('sda') == [3, 12, 100]


# --- replication helpers ----------------------------------------------------

def test_list_suffix(manager):
    live = manager.diskfile('sda', 1, 'a', 'c', 'live')
    put(live, b'x', ts(1))
    suffix = live.suffix
    gone = next(d for d in (manager.diskfile('sda', 1, 'a', 'c', 'g%d' % i)
                            for i in range(100000)) if d.suffix == suffix)
    gone.delete(ts(2))
    assert manager.list_suffix('sda', 1, suffix) == {
        live.obj_hash: {'timestamp': ts(1).normal, 'deleted': False},
        gone.obj_hash: {'timestamp': ts(2).normal, 'deleted': True},
    }
    other = 'fff' if suffix != 'fff' else 'eee'
    assert manager.list_suffix('sda', 1, other) == {}
    assert manager.list_suffix('sda', 2, suffix) == {}


def test_list_suffix_shows_newest_file_only(manager, df):
    put(df, b'x', ts(1))
    # A second file left by a write racing with its own cleanup.
    open(os.path.join(df.hash_dir, ts(0).normal + '.data'), 'wb').close()
    assert manager.list_suffix('sda', 7, df.suffix) == {
        df.obj_hash: {'timestamp': ts(1).normal, 'deleted': False}}


def test_open_by_hash_for_pushing(manager, df):
    put(df, b'payload', ts(1), **{'X-Object-Meta-K': 'v'})
    by_hash = manager.diskfile_by_hash('sda', 7, df.obj_hash)
    with by_hash.reader() as reader:
        assert reader.metadata['name'] == '/AUTH_a/c/o'
        assert reader.metadata['X-Object-Meta-K'] == 'v'
        assert reader.timestamp == ts(1)
        assert b''.join(reader) == b'payload'
    with pytest.raises(exceptions.DiskFileError):
        by_hash.write([b'x'], {'X-Timestamp': ts(2)})
    with pytest.raises(exceptions.DiskFileError):
        by_hash.delete(ts(2))
    df.delete(ts(3))
    with pytest.raises(exceptions.DiskFileDeleted) as caught:
        by_hash.read_metadata()
    assert caught.value.metadata['name'] == '/AUTH_a/c/o'
    assert caught.value.timestamp == ts(3)


def test_files_not_named_like_objects_are_ignored(manager, df):
    put(df, b'x', ts())
    for stray in ('stray.tmp', '\u0661' * 10 + '.00000.data', '1.ts'):
        open(os.path.join(df.hash_dir, stray), 'wb').close()
    assert read_body(df) == b'x'
    assert layout.object_files(df.hash_dir)[0].timestamp == ts()


# --- sealed writes published in batches (replication) ----------------------

def sealed(manager, obj, body, when, **metadata):
    df = manager.diskfile('sda', 7, 'AUTH_a', 'c', obj)
    with df.writer({'X-Timestamp': when, **metadata}) as writer:
        writer.write(body)
        return writer.seal()


def sealed_tombstone(manager, obj, when):
    df = manager.diskfile('sda', 7, 'AUTH_a', 'c', obj)
    with streams.DiskFileWriter(
            df, streams.tombstone_metadata(df.name, when),
            tombstone=True) as writer:
        return writer.seal()


@pytest.fixture
def syncs(monkeypatch):
    """Paths fsutil.syncfs was called with (it still syncs)."""
    calls = []
    real = fsutil.syncfs

    def counting(path):
        calls.append(path)
        real(path)
    monkeypatch.setattr(fsutil, 'syncfs', counting)
    return calls


def test_sealed_is_visible_only_once_published(manager, devices, syncs):
    one = sealed(manager, 'o', b'hello', ts(1),
                 **{'X-Object-Meta-Color': 'blue'})
    df = manager.diskfile('sda', 7, 'AUTH_a', 'c', 'o')
    assert one.metadata['ETag'] == hashlib.md5(b'hello').hexdigest()
    assert one.object_file.name == ts(1).normal + '.data'
    assert tmp_files(devices) == [os.path.basename(one.tmp_path)]
    with pytest.raises(exceptions.DiskFileNotFound):
        df.read_metadata()
    assert manager.list_suffix('sda', 7, df.suffix) == {}
    assert syncs == []
    assert manager.publish_batch('sda', 7, [one]) == [None]
    assert read_body(df) == b'hello'
    assert df.read_metadata()['X-Object-Meta-Color'] == 'blue'
    assert tmp_files(devices) == []
    assert files_of(df) == [ts(1).normal + '.data']


def test_sealed_tombstone_is_published(manager, df):
    put(df, b'x', ts(1))
    assert manager.publish_batch(
        'sda', 7, [sealed_tombstone(manager, 'o', ts(2))]) == [None]
    with pytest.raises(exceptions.DiskFileDeleted) as caught:
        df.read_metadata()
    assert caught.value.timestamp == ts(2)
    assert files_of(df) == [ts(2).normal + '.ts']


def test_seal_of_a_mismatched_body_keeps_nothing(manager, devices):
    df = manager.diskfile('sda', 7, 'AUTH_a', 'c', 'o')
    with pytest.raises(exceptions.DiskFileMismatch):
        with df.writer({'X-Timestamp': ts(1), 'ETag': '0' * 32}) as writer:
            writer.write(b'hello')
            writer.seal()
    assert tmp_files(devices) == []
    with pytest.raises(ValueError):
        writer.seal()


def test_sealed_discard_removes_its_file(manager, devices):
    one = sealed(manager, 'o', b'x', ts(1))
    one.discard()
    one.discard()
    assert tmp_files(devices) == []


@pytest.mark.parametrize('offset', [0, 1])
def test_publish_conflict_is_returned_and_its_file_removed(
        manager, devices, offset):
    df = manager.diskfile('sda', 7, 'AUTH_a', 'c', 'o')
    first = sealed(manager, 'first', b'1', ts(1))
    late = sealed(manager, 'o', b'late', ts(5))
    last = sealed(manager, 'last', b'2', ts(1))
    # Stored meanwhile: an equal or newer version.
    put(df, b'stored', ts(5 + offset))
    results = manager.publish_batch('sda', 7, [first, late, last])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], exceptions.DiskFileConflict)
    assert results[1].timestamp == ts(5 + offset)
    assert read_body(df) == b'stored'
    assert files_of(df) == [ts(5 + offset).normal + '.data']
    assert read_body(manager.diskfile('sda', 7, 'AUTH_a', 'c', 'last')) \
        == b'2'
    assert tmp_files(devices) == []


def test_publish_tombstone_wins_a_tie_in_a_batch(manager, df):
    put(df, b'x', ts(5))
    data_tie = sealed(manager, 'o', b'y', ts(5))
    tomb_tie = sealed_tombstone(manager, 'o', ts(5))
    results = manager.publish_batch('sda', 7, [data_tie, tomb_tie])
    assert isinstance(results[0], exceptions.DiskFileConflict)
    assert results[1] is None
    assert files_of(df) == [ts(5).normal + '.ts']


def test_publish_newest_of_one_object_in_a_batch(manager, df):
    results = manager.publish_batch('sda', 7, [
        sealed(manager, 'o', b'one', ts(1)),
        sealed(manager, 'o', b'three', ts(3)),
        sealed(manager, 'o', b'two', ts(2))])
    assert results[:2] == [None, None]
    assert isinstance(results[2], exceptions.DiskFileConflict)
    assert read_body(df) == b'three'
    assert files_of(df) == [ts(3).normal + '.data']


def test_publish_invalidates_the_suffix(manager, df):
    put(df, b'x', ts(1))
    before = manager.get_hashes('sda', 7)
    other = manager.diskfile('sda', 7, 'AUTH_a', 'c', 'other')
    assert manager.publish_batch('sda', 7, [
        sealed(manager, 'o', b'y', ts(2)),
        sealed(manager, 'other', b'z', ts(2))]) == [None, None]
    after = manager.get_hashes('sda', 7)
    assert after[df.suffix] != before[df.suffix]
    assert other.suffix in after
    # What a hashing from scratch finds.
    assert after == manager.get_hashes('sda', 7,
                                       recalculate=tuple(after))


@pytest.mark.parametrize('count', [1, 20])
def test_publish_syncs_the_filesystem_twice_per_batch(manager, devices,
                                                      syncs, count):
    batch = [sealed(manager, 'o%d' % i, b'x', ts(1)) for i in range(count)]
    assert manager.publish_batch('sda', 7, batch) == [None] * count
    assert syncs == [str(devices / 'sda')] * 2
    assert manager.publish_batch('sda', 7, []) == []
    assert len(syncs) == 2


def test_publish_makes_no_per_object_fsync(manager, df, monkeypatch):
    put(df, b'x', ts(1))  # NOTE: the partition's directory exists now.
    batch = [sealed(manager, 'o%d' % i, b'x', ts(1)) for i in range(5)]
    fsyncs = []
    monkeypatch.setattr(os, 'fsync', lambda fd: fsyncs.append(fd))
    assert manager.publish_batch('sda', 7, batch) == [None] * 5
    assert fsyncs == []


def test_publish_failing_to_sync_leaves_nothing(manager, devices,
                                                monkeypatch):
    def full(path):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(fsutil, 'syncfs', full)
    batch = [sealed(manager, 'o%d' % i, b'x', ts(1)) for i in range(3)]
    with pytest.raises(exceptions.DiskFileNoSpace):
        manager.publish_batch('sda', 7, batch)
    assert tmp_files(devices) == []
    for i in range(3):
        with pytest.raises(exceptions.DiskFileNotFound):
            manager.diskfile('sda', 7, 'AUTH_a', 'c',
                             'o%d' % i).read_metadata()


def test_syncfs_syncs_a_real_filesystem(devices):
    fsutil.syncfs(str(devices))
    with pytest.raises(OSError):
        fsutil.syncfs(str(devices / 'missing'))
