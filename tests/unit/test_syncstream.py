import hashlib
import hmac
import io
import json
import random
import tracemalloc

import pytest

from coordsync.obj import syncstream
from coordsync.obj.syncstream import StreamError

KEY = b'cluster secret'
SEED = b'request signature|to receiver'
WHEN = '1700000000.00000'


def meta(name, **extra):
    return dict({'name': name, 'X-Timestamp': WHEN}, **extra)


def obj(name, body, **extra):
    return (meta(name, **extra), len(body), [body])


def tomb(name):
    return (meta(name), None, None)


def encoded(entries, key=KEY, seed=SEED, **kwargs):
    return b''.join(syncstream.encode(entries, key, seed, **kwargs))


class Source:
    """A stream's ``read``, recording what it was asked for.

    With ``rng``, each read returns 1 to n bytes at random.
    """

    def __init__(self, data, rng=None):
        self.data = data
        self.pos = 0
        self.rng = rng
        self.calls = []

    def read(self, n):
        assert n > 0
        self.calls.append((self.pos, n))
        size = self.rng.randint(1, n) if self.rng else n
        piece = self.data[self.pos:self.pos + size]
        self.pos += len(piece)
        return piece


def read_all(data, key=KEY, seed=SEED, rng=None, chunk_size=65536):
    """[(kind, metadata, body)] of a stream, and its reader."""
    reader = syncstream.StreamReader(Source(data, rng).read, key, seed,
                                     chunk_size=chunk_size)
    frames = []
    for frame in reader:
        pieces = list(frame.chunks())
        assert all(0 < len(p) <= chunk_size for p in pieces)
        frames.append((frame.kind, frame.metadata, b''.join(pieces)))
        assert frame.index == len(frames) - 1
        assert reader.count == len(frames)
        assert not reader.verified
    assert reader.verified
    return frames, reader


def signed(frames, count, key=KEY, seed=SEED):
    """A stream of hand-made frames with a correct END for ``count``."""
    head = syncstream.MAGIC + frames + b'END %d ' % count
    mac = hmac.new(key, seed + head, hashlib.sha256).hexdigest()
    return head + mac.encode('ascii') + b'\n'


def frame(meta_bytes, body=b'', kind=b'OBJ'):
    return b'%s %d %d\n' % (kind, len(meta_bytes), len(body)) + \
        meta_bytes + body


def meta_json(name='/a/c/o', **extra):
    return json.dumps(meta(name, **extra)).encode('utf-8')


def elements(stream):
    """(start, end) of the header, each line, metadata and body."""
    spans = [(0, len(syncstream.MAGIC))]
    pos = len(syncstream.MAGIC)
    while True:
        end = stream.index(b'\n', pos) + 1
        line = stream[pos:end]
        spans.append((pos, end))
        pos = end
        if line.startswith(b'END '):
            assert pos == len(stream)
            return spans
        _kind, meta_length, body_length = line.split()
        for size in (int(meta_length), int(body_length)):
            if size:
                spans.append((pos, pos + size))
                pos += size


BIG = bytes(random.Random(1).randbytes(300 * 1024))

ENTRIES = [
    obj('/a/c/empty', b''),
    obj('/a/c/small', b'hello world', **{'X-Object-Meta-Color': 'blue',
                                         'Content-Type': 'text/plain'}),
    tomb('/a/c/gone'),
    obj('/a/c/\u00e9t\u00e9 \u2603', b'snow',
        **{'X-Object-Meta-\u00c7a': 'va \u2713'}),
    (meta('/a/c/big', ETag=hashlib.md5(BIG).hexdigest()), len(BIG),
     (BIG[i:i + 1000] for i in range(0, len(BIG), 1000))),
    tomb('/a/c/\u2603 gone'),
]


def expected(entries):
    result = []
    for metadata, length, chunks in entries:
        metadata = dict(metadata)
        if chunks is None:
            result.append(('DEL', metadata, b''))
        else:
            metadata['Content-Length'] = str(length)
            body = b''.join(chunks)
            result.append(('OBJ', metadata, body))
    return result


def fresh_entries():
    entries = list(ENTRIES)
    metadata, length, _chunks = entries[4]
    entries[4] = (metadata, length,
                  (BIG[i:i + 1000] for i in range(0, len(BIG), 1000)))
    return entries


SMALL = encoded([obj('/a/c/o1', b'abc'), tomb('/a/c/o2'),
                 obj('/a/c/o3', b''), obj('/a/c/o4', b'xy')])
SMALL_BODIES = [b'abc', b'', b'', b'xy']


# Round trips


@pytest.mark.parametrize('rng_seed', [None, 1, 2, 3])
def test_round_trip(rng_seed):
    stream = encoded(fresh_entries())
    rng = random.Random(rng_seed) if rng_seed is not None else None
    frames, reader = read_all(stream, rng=rng, chunk_size=4096)
    assert frames == expected(fresh_entries())
    assert reader.count == len(ENTRIES)


def test_round_trip_small_chunk_size():
    frames, _reader = read_all(encoded(fresh_entries(), chunk_size=97),
                               rng=random.Random(4), chunk_size=97)
    assert frames == expected(fresh_entries())


def test_zero_frames():
    stream = encoded([])
    assert stream.startswith(syncstream.MAGIC + b'END 0 ')
    frames, reader = read_all(stream, rng=random.Random(5))
    assert frames == []
    assert reader.count == 0
    assert reader.verified


def test_wire_format():
    stream = encoded([obj('/a/c/o', b'body'), tomb('/a/c/t')])
    meta1 = json.dumps(meta('/a/c/o', **{'Content-Length': '4'}),
                       sort_keys=True, separators=(',', ':')).encode()
    meta2 = json.dumps(meta('/a/c/t'), sort_keys=True,
                       separators=(',', ':')).encode()
    assert stream == signed(
        b'OBJ %d 4\n' % len(meta1) + meta1 + b'body'
        + b'DEL %d 0\n' % len(meta2) + meta2, 2)


def test_unread_bodies_are_skipped_and_signed():
    reader = syncstream.StreamReader(io.BytesIO(encoded(fresh_entries()))
                                     .read, KEY, SEED, chunk_size=1000)
    names = [frame.metadata['name'] for frame in reader]
    assert names == [m['name'] for m, _l, _c in ENTRIES]
    assert reader.verified


def test_partly_read_body_is_not_resumed_after_the_next_frame():
    reader = syncstream.StreamReader(io.BytesIO(encoded(fresh_entries()))
                                     .read, KEY, SEED, chunk_size=1000)
    frames = iter(reader)
    for _i in range(5):
        big = next(frames)
    assert big.metadata['name'] == '/a/c/big'
    chunks = big.chunks()
    assert next(chunks) == BIG[:1000]
    assert next(frames).kind == 'DEL'
    with pytest.raises(RuntimeError, match='skipped'):
        next(chunks)
    assert list(frames) == []
    assert reader.verified


def test_skip_then_next():
    reader = syncstream.StreamReader(io.BytesIO(SMALL).read, KEY, SEED)
    first = next(reader)
    first.skip()
    first.skip()
    assert next(reader).metadata['name'] == '/a/c/o2'
    assert [f.metadata['name'] for f in reader] == ['/a/c/o3', '/a/c/o4']
    assert reader.verified


# Truncation, alteration, extension


@pytest.mark.parametrize('rng_seed', [None, 7])
def test_truncation_at_every_byte(rng_seed):
    for size in range(len(SMALL)):
        rng = random.Random(rng_seed) if rng_seed is not None else None
        reader = syncstream.StreamReader(Source(SMALL[:size], rng).read,
                                         KEY, SEED, chunk_size=2)
        with pytest.raises(StreamError, match='truncated') as caught:
            for frame in reader:
                body = b''.join(frame.chunks())
                assert body == SMALL_BODIES[frame.index]
        assert '\n' not in str(caught.value)
        assert not reader.verified
        # Asking again does not make the stream look finished.
        with pytest.raises(StreamError):
            next(reader)


def test_every_bit_flip():
    for pos in range(len(SMALL)):
        for mask in (0x01, 0x80, 0x20):
            altered = bytearray(SMALL)
            altered[pos] ^= mask
            reader = syncstream.StreamReader(io.BytesIO(altered).read,
                                             KEY, SEED)
            with pytest.raises(StreamError):
                for frame in reader:
                    b''.join(frame.chunks())
            assert not reader.verified


@pytest.mark.parametrize('key,seed', [(b'other secret', SEED),
                                      (KEY, b'request signature|to sender'),
                                      (KEY, b'')])
def test_wrong_key_or_seed(key, seed):
    reader = syncstream.StreamReader(io.BytesIO(SMALL).read, key, seed)
    with pytest.raises(StreamError, match='^stream signature does not'
                       ' match$'):
        for frame in reader:
            b''.join(frame.chunks())
    # Every frame was read before the signature could be checked.
    assert reader.count == 4
    assert not reader.verified


@pytest.mark.parametrize('extra', [b'X', b'\n', SMALL])
def test_trailing_bytes(extra):
    reader = syncstream.StreamReader(io.BytesIO(SMALL + extra).read,
                                     KEY, SEED)
    with pytest.raises(StreamError, match='trailing bytes'):
        list(reader)
    assert not reader.verified


# What the reader asks its source for


@pytest.mark.parametrize('rng_seed', [None, 8, 9])
@pytest.mark.parametrize('chunk_size', [999, 65536])
def test_reads_stay_within_each_element(rng_seed, chunk_size):
    stream = encoded(fresh_entries())
    spans = elements(stream)
    source = Source(stream, random.Random(rng_seed) if rng_seed else None)
    reader = syncstream.StreamReader(source.read, KEY, SEED,
                                     chunk_size=chunk_size)
    for frame in reader:
        frame.skip()
    assert reader.verified
    *calls, last = source.calls
    assert last == (len(stream), 1)
    span = iter(spans)
    start, end = next(span)
    for pos, n in calls:
        while pos >= end:
            start, end = next(span)
        assert start <= pos and pos + n <= end, (pos, n, start, end)
    if rng_seed is None:
        assert sum(n for _pos, n in source.calls) == len(stream) + 1


def test_body_is_exactly_the_declared_length():
    stream = signed(frame(meta_json('/a/c/ten', **{'Content-Length': '10'}),
                          b'0123456789')
                    + frame(meta_json('/a/c/next'), kind=b'DEL'), 2)
    source = Source(stream)
    reader = syncstream.StreamReader(source.read, KEY, SEED)
    first = next(reader)
    before = len(source.calls)
    assert list(first.chunks()) == [b'0123456789']
    assert source.calls[before:] == [(source.pos - 10, 10)]
    second = next(reader)
    assert (second.kind, second.metadata['name']) == ('DEL', '/a/c/next')
    assert list(second.chunks()) == []
    assert list(reader) == []
    assert reader.verified


def test_source_returning_more_than_asked():
    def read(n):
        return b'x' * (n + 1)

    with pytest.raises(StreamError, match='asked for'):
        list(syncstream.StreamReader(read, KEY, SEED))


def test_source_failure_is_not_an_end():
    data = io.BytesIO(SMALL[:60])

    def read(n):
        piece = data.read(n)
        if not piece:
            raise OSError('connection reset')
        return piece

    reader = syncstream.StreamReader(read, KEY, SEED)
    with pytest.raises(OSError):
        for frame in reader:
            frame.skip()
    with pytest.raises(StreamError, match='connection reset'):
        next(reader)


# Limits and malformed streams

OK_META = meta_json()


@pytest.mark.parametrize('stream,message', [
    (b'', 'truncated in the header'),
    (b'COORDSYNC-STREAM 2\n' + b'END 0 ' + b'0' * 64 + b'\n',
     'unsupported stream version'),
    (b'HTTP/1.1 500 Oops\r\n', 'bad header'),
    (syncstream.MAGIC, 'truncated before END'),
    (syncstream.MAGIC + b'OBJ 5', 'truncated in frame line 0'),
    (syncstream.MAGIC + b'END 0 abc', 'truncated in the END line'),
    (syncstream.MAGIC + b'OBJ 10 0\n{}', 'truncated in the metadata of'
     ' frame 0'),
    (syncstream.MAGIC + b'OBJ %d 5\n' % len(OK_META) + OK_META + b'abc',
     r'truncated in the body of frame 0 \(/a/c/o\)'),
])
def test_bad_streams(stream, message):
    with pytest.raises(StreamError, match=message):
        for frame in syncstream.StreamReader(io.BytesIO(stream).read,
                                             KEY, SEED):
            frame.skip()


@pytest.mark.parametrize('frames,message', [
    (b'OBJ 0 0\n', 'metadata length 0 is not 1 to 65536'),
    (b'OBJ 65537 0\n', 'metadata length 65537 is not 1 to 65536'),
    (b'OBJ 2 %d\n' % (syncstream.MAX_BODY_LENGTH + 1),
     'body length 5369757697 is not 0 to 5369757696'),
    (b'OBJ 1%s 0\n' % (b'0' * 19), 'more than 19 digits'),
    (b'OBJ 2 1%s\n' % (b'0' * 19), 'more than 19 digits'),
    (b'OBJ 02 0\n', 'leading zero'),
    (b'OBJ 2 00\n', 'leading zero'),
    (b'OBJ -2 0\n', 'not a decimal number'),
    (b'OBJ +2 0\n', 'not a decimal number'),
    (b'OBJ 2 0x1\n', 'not a decimal number'),
    (b'OBJ \xd9\xa2 0\n', 'not a decimal number'),
    (b'OBJ 2  0\n', 'bad frame line 0'),
    (b'OBJ 2 0 \n', 'bad frame line 0'),
    (b'OBJ 2\n', 'bad frame line 0'),
    (b'OBJ 2 0\r\n', 'bad frame line 0'),
    (b'DEL 2 5\n', 'a tombstone has no body'),
    (b'DEL 2 ' + b' ' * 200, 'frame line 0 too long'),
    (b'OBJ ' + b'1' * 200, 'frame line 0 too long'),
    (b'PUT 2 0\n{}', 'unknown frame kind'),
    (b'obj 2 0\n{}', 'unknown frame kind'),
    (b'END\n', 'unknown frame kind'),
    (b'\n', 'bad frame line 0'),
    (b'END 00 ' + b'0' * 64 + b'\n', 'count has a leading zero'),
    (b'END 0 ' + b'0' * 63 + b'\n', 'not 64 lowercase hex'),
    (b'END 0 ' + b'A' * 64 + b'\n', 'not 64 lowercase hex'),
    (b'END 0 ' + b'0' * 65 + b'\n', 'not 64 lowercase hex'),
    (b'END 0 ' + b'0' * 200, 'END line too long'),
    (b'END 1 ' + b'0' * 64 + b'\n', 'END counts 1 frames, the stream has 0'),
])
def test_bad_lines(frames, message):
    stream = syncstream.MAGIC + frames
    with pytest.raises(StreamError, match=message) as caught:
        for frame_ in syncstream.StreamReader(io.BytesIO(stream).read,
                                              KEY, SEED):
            frame_.skip()
    assert '\n' not in str(caught.value)


@pytest.mark.parametrize('meta_bytes,message', [
    (b'not json', 'not valid JSON'),
    (b'{"name": "/a/c/o"', 'not valid JSON'),
    (b'[' * 60000, 'not valid JSON'),
    (b'\xff', 'not UTF-8'),
    (b'["/a/c/o"]', 'not an object'),
    (b'"/a/c/o"', 'not an object'),
    (json.dumps(meta('/a/c/o', Size=5)).encode(), "'Size' is not a string"),
    (json.dumps(meta('/a/c/o', X=None)).encode(), "'X' is not a string"),
    (json.dumps(meta('/a/c/o', X=['y'])).encode(), "'X' is not a string"),
    (json.dumps(meta('/a/c/\ud800')).encode(), 'not valid UTF-8'),
    (json.dumps({'X-Timestamp': WHEN}).encode(), 'no name'),
    (json.dumps({'name': '/a/c/o'}).encode(), 'no X-Timestamp'),
    (b'{"name":"/a/c/o","X-Timestamp":"1","name":"/a/c/p"}',
     "duplicate key 'name'"),
    (meta_json(**{'Content-Length': '3'}), 'Content-Length 3 is not the body'
     ' length 2'),
    (meta_json(**{'Content-Length': '02'}), 'Content-Length 02 is not'),
])
def test_bad_metadata(meta_bytes, message):
    # Correctly signed: the parser itself refuses these.
    stream = signed(frame(meta_bytes, b'ab'), 1)
    with pytest.raises(StreamError, match=message):
        for frame_ in syncstream.StreamReader(io.BytesIO(stream).read,
                                              KEY, SEED):
            frame_.skip()


def test_tombstone_with_content_length():
    stream = signed(frame(meta_json(**{'Content-Length': '0'}), kind=b'DEL'),
                    1)
    with pytest.raises(StreamError, match='tombstone metadata has a'
                       ' Content-Length'):
        list(syncstream.StreamReader(io.BytesIO(stream).read, KEY, SEED))


def test_largest_metadata():
    padding = syncstream.MAX_META_LENGTH - len(meta_json(X=''))
    meta_bytes = meta_json(X='x' * padding)
    assert len(meta_bytes) == syncstream.MAX_META_LENGTH
    frames, _reader = read_all(signed(frame(meta_bytes, b'ab'), 1))
    assert frames == [('OBJ', meta('/a/c/o', X='x' * padding), b'ab')]


# Encoder


@pytest.mark.parametrize('chunks', [[b'ab'], [b'ab', b'c'], [],
                                    [b'abcdef'], [b'abc', b'de'],
                                    [b'abcd', b'e']])
def test_encode_body_of_the_wrong_length(chunks):
    pieces = []
    with pytest.raises(StreamError, match=r'object 1 \(/a/c/o\)'):
        for piece in syncstream.encode(
                [tomb('/a/c/t'), (meta('/a/c/o'), 4, iter(chunks))],
                KEY, SEED, chunk_size=1):
            pieces.append(piece)
    partial = b''.join(pieces)
    # Never a byte beyond the declared length.
    if b'"name":"/a/c/o"}' in partial:
        sent = partial.split(b'"name":"/a/c/o"}')[-1]
        assert b'abcd'.startswith(sent)
    with pytest.raises(StreamError, match='truncated'):
        for frame in syncstream.StreamReader(io.BytesIO(partial).read,
                                             KEY, SEED):
            frame.skip()


@pytest.mark.parametrize('entry,message', [
    (({'name': '/a/c/o'}, 1, [b'x']), 'no X-Timestamp'),
    (({'X-Timestamp': WHEN}, 1, [b'x']), 'no name'),
    ((meta('/a/c/o', Size=1), 1, [b'x']), "'Size' is not a string"),
    ((meta('/a/c/o', **{'Content-Length': '2'}), 1, [b'x']),
     'Content-Length 2 is not the body length 1'),
    ((meta('/a/c/o', **{'Content-Length': 1}), 1, [b'x']),
     "'Content-Length' is not a string"),
    ((meta('/a/c/o'), -1, []), 'body length -1'),
    ((meta('/a/c/o'), None, []), 'body length None'),
    ((meta('/a/c/o'), syncstream.MAX_BODY_LENGTH + 1, []), 'body length'),
    ((meta('/a/c/o'), 1, ['x']), 'str chunk'),
    ((meta('/a/c/o', X='x' * 70000), 0, []), 'more than 65536'),
    ((['/a/c/o'], 0, []), 'not a dict'),
])
def test_encode_bad_entries(entry, message):
    with pytest.raises(StreamError, match=message):
        encoded([entry])


def test_encode_tombstone_drops_content_length():
    stream = encoded([(meta('/a/c/t', **{'Content-Length': '12'}), 12,
                       None)])
    frames, _reader = read_all(stream)
    assert frames == [('DEL', meta('/a/c/t'), b'')]


def test_encode_drops_empty_chunks():
    pieces = list(syncstream.encode(
        [(meta('/a/c/o'), 3, [b'', b'abc', b''])], KEY, SEED, chunk_size=1))
    assert b'' not in pieces
    assert read_all(b''.join(pieces))[0][0][2] == b'abc'


def test_encode_gathers_small_pieces():
    entries = [tomb('/a/c/t%d' % i) for i in range(1000)]
    pieces = list(syncstream.encode(entries, KEY, SEED, chunk_size=8192))
    assert len(pieces) < 10
    assert all(len(piece) < 8192 + 200 for piece in pieces)
    assert len(read_all(b''.join(pieces))[0]) == 1000


def test_encode_does_not_join_bodies():
    size = 50 * 2 ** 20
    chunk_size = 65536
    given = []
    current = [None]

    def body():
        for i in range(size // chunk_size):
            chunk = i.to_bytes(4, 'big') * (chunk_size // 4)
            given.append((id(chunk), len(chunk)))
            current[0] = chunk
            yield chunk
            current[0] = None

    yielded = []
    same = 0
    tracemalloc.start()
    try:
        for piece in syncstream.encode(
                [obj('/a/c/small', b'x'), (meta('/a/c/big'), size, body()),
                 tomb('/a/c/t')], KEY, SEED, chunk_size=chunk_size):
            same += piece is current[0]
            yielded.append((id(piece), len(piece)))
            del piece
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * chunk_size
    assert same == len(given) == size // chunk_size
    # The header, first object and second frame line, each body chunk as
    # given, then the last frame and END.
    assert yielded[1:-1] == given
    assert len(yielded) == len(given) + 2


def test_keys():
    with pytest.raises(ValueError, match='empty'):
        syncstream.StreamReader(io.BytesIO(SMALL).read, b'', SEED)
    with pytest.raises(TypeError):
        syncstream.StreamReader(io.BytesIO(SMALL).read, 'secret', SEED)
    with pytest.raises(TypeError):
        encoded([], seed='seed')
    with pytest.raises(ValueError, match='chunk_size'):
        syncstream.StreamReader(io.BytesIO(SMALL).read, KEY, SEED,
                                chunk_size=0)
