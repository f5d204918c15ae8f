"""receiver.receive(): a verified sync stream written into a partition.

The streams are made with :func:`coordsync.obj.syncstream.encode` and
read back from bytes; the objects land in a real DiskFileManager.
"""

import errno
import hashlib
import io
import os

import pytest

from coordsync import exceptions
from coordsync.common import fsutil
from coordsync.obj import diskfile
from coordsync.obj import receiver
from coordsync.obj import streams
from coordsync.obj import syncstream
from tests.unit.fakes import RECLAIM_AGE
from tests.unit.fakes import ts

KEY = b'receiver secret'
SEED = b'push\nsignature'
DEVICE = 'sda'
PART = 7


@pytest.fixture
def devices(tmp_path):
    (tmp_path / DEVICE).mkdir()
    return tmp_path


@pytest.fixture
def manager(devices, clock):
    return diskfile.DiskFileManager(str(devices), reclaim_age=RECLAIM_AGE,
                                    hash_prefix='pre', hash_suffix='suf',
                                    clock=clock)


def name_of(obj):
    return '/AUTH_a/c/' + obj


def entry(obj, body, when=None, etag=None, **metadata):
    meta = dict({'name': name_of(obj), 'X-Timestamp': (when or ts()).normal,
                 'ETag': etag or hashlib.md5(body).hexdigest()}, **metadata)
    return meta, len(body), [body]


def tombstone(obj, when=None):
    return {'name': name_of(obj),
            'X-Timestamp': (when or ts()).normal}, None, None


def stream(entries, key=KEY, seed=SEED):
    return b''.join(syncstream.encode(entries, key, seed))


def reader_of(data, chunk_size=syncstream.DEFAULT_CHUNK_SIZE):
    return syncstream.StreamReader(io.BytesIO(data).read, KEY, SEED,
                                   chunk_size=chunk_size)


def receive(manager, data, **kwargs):
    return receiver.receive(manager, DEVICE, PART, reader_of(data),
                            **kwargs)


def stored(manager, obj):
    """('data', timestamp, body, metadata) / ('deleted', timestamp) /
    None."""
    df = manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', obj)
    try:
        with df.reader() as reader:
            return ('data', reader.metadata['X-Timestamp'],
                    b''.join(reader), reader.metadata)
    except exceptions.DiskFileDeleted as err:
        return ('deleted', err.timestamp.normal)
    except exceptions.DiskFileNotFound:
        return None


def tmp_files(devices):
    tmp_dir = devices / DEVICE / 'tmp'
    return sorted(os.listdir(tmp_dir)) if tmp_dir.exists() else []


def nothing_visible(manager, devices, objects):
    for obj in objects:
        assert stored(manager, obj) is None, obj
    assert tmp_files(devices) == []


def test_every_object_is_stored_and_counted(manager, devices):
    large = os.urandom(300000)
    received = receive(manager, stream([
        entry('small', b'hello', ts(1), **{
            'Content-Type': 'text/plain', 'X-Object-Meta-Color': 'blue'}),
        entry('empty', b'', ts(2)),
        entry('large', large, ts(3)),
        tombstone('gone', ts(4))]))
    assert received.results == {name_of(o): receiver.STORED
                                for o in ('small', 'empty', 'large',
                                          'gone')}
    assert received.stored == 4
    assert received.bytes_stored == 5 + len(large)
    kind, when, body, metadata = stored(manager, 'small')
    assert (kind, when, body) == ('data', ts(1).normal, b'hello')
    assert metadata['Content-Type'] == 'text/plain'
    assert metadata['X-Object-Meta-Color'] == 'blue'
    assert metadata['ETag'] == hashlib.md5(b'hello').hexdigest()
    assert metadata['Content-Length'] == '5'
    assert stored(manager, 'empty')[:3] == ('data', ts(2).normal, b'')
    assert stored(manager, 'large')[:3] == ('data', ts(3).normal, large)
    assert stored(manager, 'gone') == ('deleted', ts(4).normal)
    assert tmp_files(devices) == []


def test_empty_stream_stores_nothing(manager, devices):
    received = receive(manager, stream([]))
    assert (received.results, received.stored, received.bytes_stored) == (
        {}, 0, 0)
    assert manager.partitions(DEVICE) == []


def test_not_newer_is_409_and_never_written(manager, devices, monkeypatch):
    manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'data').write(
        [b'stored'], {'X-Timestamp': ts(5)})
    manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'deleted').delete(ts(5))
    manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'large').write(
        [b'stored'], {'X-Timestamp': ts(5)})
    opened = []
    real_mkstemp = streams.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        opened.append(args)
        return real_mkstemp(*args, **kwargs)
    monkeypatch.setattr(streams.tempfile, 'mkstemp', mkstemp)
    received = receive(manager, stream([
        entry('data', b'older', ts(4)),
        entry('deleted', b'same time as the tombstone', ts(5)),
        entry('large', b'l' * 200000, ts(5)),
        tombstone('data', ts(5)),
        entry('new', b'new', ts(1))]))
    # The tombstone at the stored data's timestamp wins the tie.
    assert received.results == {
        name_of('data'): receiver.STORED,
        name_of('deleted'): receiver.NOT_NEWER,
        name_of('large'): receiver.NOT_NEWER,
        name_of('new'): receiver.STORED}
    assert received.stored == 2
    # Only the two stored objects had a temporary file.
    assert len(opened) == 2
    assert stored(manager, 'data') == ('deleted', ts(5).normal)
    assert stored(manager, 'deleted') == ('deleted', ts(5).normal)
    assert stored(manager, 'large')[2] == b'stored'
    assert tmp_files(devices) == []


def test_admit_is_called_once_the_stream_is_verified(manager):
    reader = reader_of(stream([entry('o', b'hello')]))
    seen = []

    def admit():
        seen.append((reader.verified, stored(manager, 'o')))
    received = receiver.receive(manager, DEVICE, PART, reader, admit=admit)
    assert seen == [(True, None)]
    assert received.stored == 1


def test_admit_refusing_publishes_nothing(manager, devices):
    class Fenced(Exception):
        pass

    def admit():
        raise Fenced('a newer holder took the partition')
    with pytest.raises(Fenced):
        receive(manager, stream([entry('small', b'hello'),
                                 entry('large', b'x' * 100000),
                                 tombstone('gone')]), admit=admit)
    nothing_visible(manager, devices, ['small', 'large', 'gone'])


def three_objects():
    return [entry('small', b'hello'), entry('large', b'x' * 200000),
            entry('last', b'bye')]


@pytest.mark.parametrize('cut', [
    30,          # in the first frame's metadata
    150,         # in the large frame's metadata
    100000,      # in the large body
    -40,         # in the END line
    -1,          # the newline of END
])
def test_stream_cut_midway_publishes_nothing(manager, devices, cut):
    data = stream(three_objects())
    with pytest.raises(syncstream.StreamError):
        receive(manager, data[:cut])
    nothing_visible(manager, devices, ['small', 'large', 'last'])


def test_stream_signed_with_another_key_publishes_nothing(manager,
                                                          devices):
    with pytest.raises(syncstream.StreamError, match='does not match'):
        receive(manager, stream(three_objects(), key=b'another key'))
    nothing_visible(manager, devices, ['small', 'large', 'last'])


def test_stream_with_trailing_bytes_publishes_nothing(manager, devices):
    with pytest.raises(syncstream.StreamError, match='trailing'):
        receive(manager, stream(three_objects()) + b'x')
    nothing_visible(manager, devices, ['small', 'large', 'last'])


def test_source_failing_midway_publishes_nothing(manager, devices):
    data = stream(three_objects())
    source = io.BytesIO(data)

    def read(n):
        if source.tell() > 100000:
            raise ConnectionResetError('peer went away')
        return source.read(n)
    reader = syncstream.StreamReader(read, KEY, SEED)
    with pytest.raises(ConnectionResetError):
        receiver.receive(manager, DEVICE, PART, reader)
    nothing_visible(manager, devices, ['small', 'large', 'last'])


@pytest.mark.parametrize('order', [(1, 2), (2, 1)])
def test_duplicate_names_in_one_stream_newest_wins(manager, devices,
                                                   order):
    received = receive(manager, stream([
        entry('o', b'version %d' % n, ts(n)) for n in order]))
    assert stored(manager, 'o')[:3] == ('data', ts(2).normal,
                                        b'version 2')
    assert received.results[name_of('o')] in (receiver.STORED,
                                              receiver.NOT_NEWER)
    df = manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'o')
    assert os.listdir(df.hash_dir) == [ts(2).normal + '.data']
    assert tmp_files(devices) == []


@pytest.mark.parametrize('name', [
    '/a/c', '/AUTH_a/../o', '/AUTH_a/c/./o', '/AUTH_a/c/o\x01',
    '/AUTH_a/c/o\x7f', 'AUTH_a/c/o', '/AUTH_a//o', '//c/o',
    '/AUTH_a/c/' + 'o' * 2040])
def test_bad_object_name_is_400_for_it_alone(manager, devices, name):
    received = receive(manager, stream([
        entry('first', b'1'),
        ({'name': name, 'X-Timestamp': ts().normal}, 3, [b'bad']),
        ({'name': name, 'X-Timestamp': ts().normal}, 100000,
         [b'b' * 100000]),
        entry('last', b'2')]))
    assert received.results == {name_of('first'): receiver.STORED,
                                name: receiver.BAD_OBJECT,
                                name_of('last'): receiver.STORED}
    assert received.stored == 2
    assert stored(manager, 'last')[2] == b'2'
    assert tmp_files(devices) == []


def test_bad_timestamp_is_400_for_that_object(manager):
    received = receive(manager, stream([
        ({'name': name_of('o'), 'X-Timestamp': 'yesterday'}, 1, [b'x']),
        entry('ok', b'ok')]))
    assert received.results == {name_of('o'): receiver.BAD_OBJECT,
                                name_of('ok'): receiver.STORED}
    assert stored(manager, 'o') is None


def test_body_not_matching_its_etag_is_422_others_stored(manager,
                                                         devices):
    received = receive(manager, stream([
        entry('small', b'hello', etag=hashlib.md5(b'other').hexdigest()),
        entry('ok', b'fine'),
        entry('large', b'l' * 100000,
              etag=hashlib.md5(b'other').hexdigest()),
        entry('ok2', b'fine too')]))
    assert received.results == {name_of('small'): receiver.BAD_BODY,
                                name_of('ok'): receiver.STORED,
                                name_of('large'): receiver.BAD_BODY,
                                name_of('ok2'): receiver.STORED}
    assert stored(manager, 'small') is None
    assert stored(manager, 'large') is None
    assert stored(manager, 'ok2')[2] == b'fine too'
    assert tmp_files(devices) == []


@pytest.mark.parametrize('chunk_size', [65536, 4096])
def test_large_body_round_trips(manager, devices, chunk_size):
    body = os.urandom(5 * 65536 + 123)
    data = stream([entry('big', body, ts(1)), entry('after', b'a')])
    reader = reader_of(data, chunk_size=chunk_size)
    received = receiver.receive(manager, DEVICE, PART, reader)
    assert reader.verified
    assert received.bytes_stored == len(body) + 1
    assert stored(manager, 'big')[:3] == ('data', ts(1).normal, body)
    assert stored(manager, 'big')[3]['ETag'] == \
        hashlib.md5(body).hexdigest()
    assert tmp_files(devices) == []


def test_many_small_objects_in_one_stream(manager, devices):
    count = receiver.BATCH_OBJECTS * 2 + 7
    received = receive(manager, stream(
        [entry('o%d' % i, b'body %d' % i, ts(1)) for i in range(count)]))
    assert received.stored == count
    assert set(received.results.values()) == {receiver.STORED}
    for i in (0, receiver.BATCH_OBJECTS, count - 1):
        assert stored(manager, 'o%d' % i)[2] == b'body %d' % i
    assert tmp_files(devices) == []


def test_write_newer_during_the_stream_wins_at_publish(manager, devices):
    """A version stored while the stream was read (after the object was
    checked) makes its publish a conflict: 409, its file removed."""
    def admit():
        manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'o').write(
            [b'newer'], {'X-Timestamp': ts(9)})
    received = receive(manager, stream([entry('o', b'older', ts(1)),
                                        entry('other', b'x', ts(1))]),
                       admit=admit)
    assert received.results == {name_of('o'): receiver.NOT_NEWER,
                                name_of('other'): receiver.STORED}
    assert received.stored == 1
    assert stored(manager, 'o')[:3] == ('data', ts(9).normal, b'newer')
    assert tmp_files(devices) == []


def test_disk_failing_at_publish_publishes_nothing(manager, devices,
                                                   monkeypatch):
    def full(path):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(fsutil, 'syncfs', full)
    with pytest.raises(exceptions.DiskFileNoSpace):
        receive(manager, stream(three_objects()))
    nothing_visible(manager, devices, ['small', 'large', 'last'])


@pytest.mark.parametrize('failing', ['small', 'large'])
def test_disk_failing_while_writing_leaves_nothing(manager, devices,
                                                   monkeypatch, failing):
    real_write = streams.DiskFileWriter.write

    def write(self, chunk):
        if self._metadata['name'] == name_of(failing):
            raise exceptions.DiskFileError('I/O error')
        return real_write(self, chunk)
    monkeypatch.setattr(streams.DiskFileWriter, 'write', write)
    with pytest.raises(exceptions.DiskFileError):
        receive(manager, stream(three_objects()))
    nothing_visible(manager, devices, ['small', 'large', 'last'])


def test_unknown_device_is_an_error_and_writes_nothing(manager, devices):
    reader = reader_of(stream([entry('o', b'x')]))
    with pytest.raises(exceptions.DiskFileDeviceUnavailable):
        receiver.receive(manager, 'sdz', PART, reader)
    assert not (devices / 'sdz').exists()


@pytest.mark.parametrize('name, expected', [
    ('/a/c/o', ('a', 'c', 'o')),
    ('/a/c/dir/sub/o', ('a', 'c', 'dir/sub/o')),
    ('/a/c/é', ('a', 'c', 'é')),
])
def test_split_name(name, expected):
    assert receiver.split_name(name) == expected


@pytest.mark.parametrize('name', [
    '', '/', '/a', '/a/c', '/a/c/', 'a/c/o', '/a//o', '//c/o',
    '/a/c/../o', '/a/./o', '/a/c/o\n', '/a/c/o\x00', 5, None,
    # What the object API refuses too: an empty segment, a trailing
    # slash, names past their length limits.
    '/a/c/x//y', '/a/c/o/', '/a/c/' + 'o' * 1025, '/' + 'a' * 257 + '/c/o',
    '/a/' + 'c' * 257 + '/o'])
def test_split_name_refuses(name):
    with pytest.raises(ValueError):
        receiver.split_name(name)


def test_damaged_stored_copy_is_replaced(manager, devices):
    df = manager.diskfile(DEVICE, PART, 'AUTH_a', 'c', 'o')
    df.write([b'old'], {'X-Timestamp': ts(1)})
    path = os.path.join(df.hash_dir, ts(1).normal + '.data')
    with open(path, 'r+b') as fh:
        fh.write(b'XXXX')  # NOTE: a damaged header
    received = receive(manager, stream([entry('o', b'new', ts(2)),
                                        entry('other', b'x', ts(2))]))
    assert received.stored == 2
    assert stored(manager, 'o')[:3] == ('data', ts(2).normal, b'new')
    assert manager.quarantine_count == 1
