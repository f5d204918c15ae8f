"""SyncClient against a fake node client, and the stream entries of
objects (coordsync.obj.sync)."""

import io
import json
import os

import pytest

from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.obj import diskfile
from coordsync.obj import sync
from coordsync.obj import syncstream
from tests.unit.fakes import RECLAIM_AGE
from tests.unit.fakes import ts

SECRET = 'sync-client-secret'
NODE = {'ip': '10.0.0.2', 'port': 6200, 'device': 'sdb', 'id': 1}
FENCE = fencing.Fence('coordsync/replicate/0/7', 5)


def hash_of(n, suffix='abc'):
    return '%029x' % n + suffix


class Reply:
    """What SyncClient uses of a direct_client.Response."""

    def __init__(self, status, body=b'', headers=None, signature=None):
        self.status = status
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.signature = signature
        self._body = io.BytesIO(body)
        self.closed = False

    def read(self):
        return self._body.read()

    def read_some(self, amount):
        return self._body.read(amount)

    def json(self):
        return json.loads(self.read().decode('utf-8'))

    def close(self):
        self.closed = True


class FakeNodeClient:
    """Records requests; ``answer(request)`` makes each reply.

    A request is a dict of what :meth:`NodeClient.request` was given,
    with ``signature`` (made up, one per request) and ``sent`` (the
    body as bytes, a stream made from the signature).
    """

    secret = SECRET

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def request(self, node, method, path, headers=None, body=None,
                query='', fence=None, replication=False, stream=None):
        signature = '%064x' % (len(self.requests) + 1)
        sent = body if stream is None else b''.join(stream(signature))
        request = {'node': node, 'method': method, 'path': path,
                   'fence': fence, 'replication': replication,
                   'signature': signature, 'sent': sent,
                   'streamed': stream is not None}
        self.requests.append(request)
        reply = self.answer(request)
        if reply.signature is None:
            reply.signature = signature
        return reply


def replies(*statuses):
    """An ``answer`` giving these replies in turn (a status alone is a
    reply with a one-line body)."""
    queue = list(statuses)

    def answer(request):
        reply = queue.pop(0)
        if isinstance(reply, int):
            headers = {'Retry-After': '1'} if reply == 503 else {}
            reply = Reply(reply, b'reason of a %d\n' % reply, headers)
        return reply
    return answer


class Sleeps:
    def __init__(self):
        self.slept = []

    def __call__(self, seconds):
        self.slept.append(seconds)


class Rng:
    """``uniform`` at the top of its range."""

    def __init__(self):
        self.asked = []

    def uniform(self, low, high):
        self.asked.append((low, high))
        return high


def make(answer, **kwargs):
    node_client = FakeNodeClient(answer)
    sleeps = Sleeps()
    rng = Rng()
    client = sync.SyncClient(node_client, sleep=sleeps, rng=rng, **kwargs)
    return client, node_client, sleeps, rng


def ok_check(want=(), newer=None):
    return Reply(200, json.dumps({'want': list(want),
                                  'newer': newer or {}}).encode())


# -- retries of a busy peer --------------------------------------------------

def test_busy_peer_is_tried_again_after_growing_delays():
    client, node_client, sleeps, rng = make(
        replies(503, 503, ok_check([hash_of(1)])))
    want, newer = client.check(NODE, 7, ['abc'],
                               {hash_of(1): (ts(1).normal, False)})
    assert (want, newer) == ({hash_of(1)}, {})
    assert len(node_client.requests) == 3
    assert sleeps.slept == [0.5 * 1.5, 1.0 * 1.5]
    assert rng.asked == [(0.5, 1.5)] * 2


def test_busy_after_every_try_raises_the_last_busy():
    client, node_client, sleeps, _rng = make(replies(*[503] * 4))
    with pytest.raises(sync.Busy) as caught:
        client.check(NODE, 7, ['abc'], {})
    assert len(node_client.requests) == len(sync.BUSY_DELAYS) + 1
    assert sleeps.slept == [d * 1.5 for d in sync.BUSY_DELAYS]
    assert isinstance(caught.value, direct_client.NodeError)
    assert '503 reason of a 503' in str(caught.value)
    assert '10.0.0.2:6200/sdb' in str(caught.value)
    assert not caught.value.fenced


def test_busy_delays_can_be_set():
    client, node_client, sleeps, _rng = make(replies(503, 503),
                                             busy_delays=(0.1,))
    with pytest.raises(sync.Busy):
        client.check(NODE, 7, ['abc'], {})
    assert len(node_client.requests) == 2
    assert sleeps.slept == [pytest.approx(0.15)]


@pytest.mark.parametrize('status', [400, 401, 422, 500, 507])
def test_other_errors_are_not_tried_again(status):
    client, node_client, sleeps, _rng = make(replies(status))
    with pytest.raises(direct_client.NodeError) as caught:
        client.check(NODE, 7, ['abc'], {})
    assert not isinstance(caught.value, sync.Busy)
    assert '%d reason of a %d' % (status, status) in str(caught.value)
    assert len(node_client.requests) == 1
    assert sleeps.slept == []


@pytest.mark.parametrize('send', [
    lambda c: c.check(NODE, 7, ['abc'], {}, fence=FENCE),
    lambda c: c.push(NODE, 7, lambda: [], fence=FENCE),
    lambda c: c.pull(NODE, 7, [hash_of(1)], fence=FENCE)])
def test_fenced_refusal_is_a_fenced_error(send):
    fenced = Reply(409, b'fenced: token 5 is older than 9\n',
                   {fencing.FENCED_HEADER: 'true'})
    client, node_client, sleeps, _rng = make(replies(fenced))
    with pytest.raises(direct_client.NodeError) as caught:
        send(client)
    assert caught.value.fenced
    assert 'fenced: token 5 is older than 9' in str(caught.value)
    assert node_client.requests[0]['fence'] == FENCE
    assert len(node_client.requests) == 1 and sleeps.slept == []


def test_a_409_without_the_fenced_header_is_no_fencing():
    client, _node_client, _sleeps, _rng = make(replies(409))
    with pytest.raises(direct_client.NodeError) as caught:
        client.check(NODE, 7, ['abc'], {})
    assert not caught.value.fenced


# -- check -------------------------------------------------------------------

def test_check_sends_the_offer_and_reads_the_answer():
    offer = {hash_of(1): (ts(1).normal, False),
             hash_of(2): (ts(2).normal, True)}
    answer = ok_check(want=[hash_of(1), hash_of(9)],
                      newer={hash_of(2): [ts(3).normal, False],
                             hash_of(3): [ts(1).normal, True]})
    client, node_client, _sleeps, _rng = make(replies(answer))
    want, newer = client.check(NODE, 7, ['abc'], offer, fence=FENCE)
    # An unoffered hash in "want" is no want.
    assert want == {hash_of(1)}
    assert newer == {hash_of(2): (ts(3).normal, False),
                     hash_of(3): (ts(1).normal, True)}
    (request,) = node_client.requests
    assert (request['method'], request['path']) == (
        'POST', '/object-sync/sdb/7/check')
    assert request['fence'] == FENCE
    assert not request['streamed']
    assert request['sent'] == sync.check_body(['abc'], offer)
    assert json.loads(request['sent']) == {
        'suffixes': ['abc'],
        'offer': {hash_of(1): [ts(1).normal, False],
                  hash_of(2): [ts(2).normal, True]}}


def test_big_offer_is_split_across_checks_and_answers_merged(monkeypatch):
    monkeypatch.setattr(sync, 'MAX_CHECK_ENTRIES', 3)
    offer = {}
    for n, suffix in enumerate(['aaa', 'aaa', 'bbb', 'bbb', 'ccc', 'ddd',
                                'ddd', 'ddd', 'ddd']):
        offer[hash_of(n, suffix)] = (ts(n).normal, False)
    suffixes = ['aaa', 'bbb', 'ccc', 'ddd', 'eee']

    def answer(request):
        body = json.loads(request['sent'])
        # Wants every even offered hash, has one newer per suffix.
        return ok_check(
            want=[h for h in body['offer'] if int(h[:29], 16) % 2 == 0],
            newer={hash_of(100, s): [ts(1).normal, False]
                   for s in body['suffixes']})
    client, node_client, _sleeps, _rng = make(answer)
    want, newer = client.check(NODE, 7, suffixes, offer)
    bodies = [json.loads(r['sent']) for r in node_client.requests]
    assert len(bodies) > 1
    # Each suffix in one check exactly, its hashes with it.
    assert sorted(s for b in bodies for s in b['suffixes']) == suffixes
    for body in bodies:
        assert all(h[-3:] in body['suffixes'] for h in body['offer'])
        # At most the maximum, unless one suffix alone holds more.
        assert len(body['offer']) <= 3 or len(body['suffixes']) == 1
    assert sorted(h for b in bodies for h in b['offer']) == sorted(offer)
    assert want == {h for h in offer if int(h[:29], 16) % 2 == 0}
    assert newer == {hash_of(100, s): (ts(1).normal, False)
                     for s in suffixes}


def test_split_checks_are_each_retried_when_busy(monkeypatch):
    monkeypatch.setattr(sync, 'MAX_CHECK_ENTRIES', 1)
    offer = {hash_of(1, 'aaa'): (ts(1).normal, False),
             hash_of(2, 'bbb'): (ts(1).normal, False)}
    client, node_client, sleeps, _rng = make(replies(
        ok_check([hash_of(1, 'aaa')]), 503, ok_check([hash_of(2, 'bbb')])))
    want, _newer = client.check(NODE, 7, ['aaa', 'bbb'], offer)
    assert want == set(offer)
    assert len(sleeps.slept) == 1
    assert [json.loads(r['sent'])['suffixes']
            for r in node_client.requests] == [['aaa'], ['bbb'], ['bbb']]


def test_check_of_no_suffix_sends_nothing():
    client, node_client, _sleeps, _rng = make(replies())
    assert client.check(NODE, 7, [], {}) == (set(), {})
    assert node_client.requests == []


@pytest.mark.parametrize('body', [
    b'not json', b'\xff', b'[]', b'{}', b'{"want": []}',
    b'{"newer": {}}', b'{"want": 5, "newer": {}}',
    b'{"want": [[1]], "newer": {}}', b'{"want": [], "newer": []}',
    b'{"want": [], "newer": {"h": 5}}',
    b'{"want": [], "newer": {"h": ["1", false, 3]}}'])
def test_bad_check_answer_is_a_node_error(body):
    client, _node_client, sleeps, _rng = make(replies(Reply(200, body)))
    with pytest.raises(direct_client.NodeError, match='bad answer'):
        client.check(NODE, 7, ['abc'], {hash_of(1): (ts(1).normal, False)})
    assert sleeps.slept == []


# -- push -------------------------------------------------------------------

def verified(data, signature, direction=sync.PUSH_SEED, secret=SECRET):
    reader = syncstream.StreamReader(io.BytesIO(data).read,
                                     secret.encode(),
                                     sync.seed(direction, signature))
    frames = [(f.kind, f.metadata['name'], b''.join(f.chunks()))
              for f in reader]
    assert reader.verified
    return frames


def entries_of(*names):
    def entries():
        for name in names:
            if name.startswith('deleted'):
                yield {'name': '/a/c/' + name,
                       'X-Timestamp': ts().normal}, None, None
            else:
                body = name.encode()
                yield {'name': '/a/c/' + name,
                       'X-Timestamp': ts().normal}, len(body), [body]
    return entries


def test_push_sends_one_stream_seeded_with_its_signature():
    answer = Reply(200, json.dumps({'results': {'/a/c/o': 201,
                                                '/a/c/deleted': 409},
                                    'stored': 1}).encode())
    client, node_client, _sleeps, _rng = make(replies(answer))
    results = client.push(NODE, 7, entries_of('o', 'deleted'),
                          fence=FENCE)
    assert results == {'/a/c/o': 201, '/a/c/deleted': 409}
    (request,) = node_client.requests
    assert (request['method'], request['path']) == (
        'PUT', '/object-sync/sdb/7')
    assert request['streamed'] and request['replication']
    assert request['fence'] == FENCE
    assert verified(request['sent'], request['signature']) == [
        ('OBJ', '/a/c/o', b'o'), ('DEL', '/a/c/deleted', b'')]
    with pytest.raises(syncstream.StreamError):
        verified(request['sent'], request['signature'], sync.PULL_SEED)


def test_push_may_be_unmarked_and_uses_its_own_secret():
    answer = Reply(200, b'{"results": {}}')
    client, node_client, _sleeps, _rng = make(replies(answer),
                                              secret='other')
    assert client.push(NODE, 7, entries_of('o'), replication=False) == {}
    (request,) = node_client.requests
    assert not request['replication']
    assert verified(request['sent'], request['signature'],
                    secret='other') == [('OBJ', '/a/c/o', b'o')]


def test_busy_push_is_sent_again_with_a_new_stream():
    calls = []

    def entries():
        calls.append(True)
        return entries_of('o')()
    client, node_client, sleeps, _rng = make(replies(
        503, Reply(200, b'{"results": {"/a/c/o": 201}}')))
    assert client.push(NODE, 7, entries) == {'/a/c/o': 201}
    assert len(calls) == 2 and len(sleeps.slept) == 1
    first, second = node_client.requests
    assert first['signature'] != second['signature']
    assert verified(second['sent'], second['signature']) == [
        ('OBJ', '/a/c/o', b'o')]


@pytest.mark.parametrize('body', [
    b'nope', b'[]', b'{}', b'{"results": []}', b'{"results": "x"}',
    b'"results"'])
def test_bad_push_answer_is_a_node_error(body):
    client, _node_client, _sleeps, _rng = make(replies(Reply(200, body)))
    with pytest.raises(direct_client.NodeError, match='bad answer'):
        client.push(NODE, 7, entries_of('o'))


# -- pull -------------------------------------------------------------------

def test_pull_reads_a_stream_bound_to_its_request():
    def answer(request):
        body = b''.join(syncstream.encode(
            entries_of('o', 'deleted')(), SECRET.encode(),
            sync.seed(sync.PULL_SEED, request['signature'])))
        return Reply(200, body)
    client, node_client, _sleeps, _rng = make(answer)
    resp, reader = client.pull(NODE, 7, [hash_of(2), hash_of(1)],
                               fence=FENCE)
    frames = [(f.kind, f.metadata['name'], b''.join(f.chunks()))
              for f in reader]
    assert frames == [('OBJ', '/a/c/o', b'o'), ('DEL', '/a/c/deleted', b'')]
    assert reader.verified
    (request,) = node_client.requests
    assert (request['method'], request['path']) == (
        'POST', '/object-sync/sdb/7/pull')
    assert json.loads(request['sent']) == {
        'hashes': [hash_of(1), hash_of(2)]}
    assert request['fence'] == FENCE
    assert resp.signature == request['signature']


def test_pull_reply_of_another_request_does_not_verify():
    def answer(request):
        body = b''.join(syncstream.encode(
            entries_of('o')(), SECRET.encode(),
            sync.seed(sync.PULL_SEED, 'f' * 64)))
        return Reply(200, body)
    client, _node_client, _sleeps, _rng = make(answer)
    _resp, reader = client.pull(NODE, 7, [hash_of(1)])
    with pytest.raises(syncstream.StreamError, match='does not match'):
        list(reader)


def test_pull_refused_is_a_node_error():
    client, node_client, sleeps, _rng = make(replies(503, 400))
    with pytest.raises(direct_client.NodeError, match='pull on .* 400'):
        client.pull(NODE, 7, [hash_of(1)])
    assert len(node_client.requests) == 2 and len(sleeps.slept) == 1


# -- stream entries of stored objects ----------------------------------------

@pytest.fixture
def manager(tmp_path, clock):
    (tmp_path / 'sda').mkdir()
    return diskfile.DiskFileManager(str(tmp_path), reclaim_age=RECLAIM_AGE,
                                    hash_prefix='pre', hash_suffix='suf',
                                    clock=clock)


def test_object_entry_of_data_tombstone_and_nothing(manager):
    df = manager.diskfile('sda', 7, 'a', 'c', 'small')
    df.write([b'hello'], {'X-Timestamp': ts(1), 'Content-Type': 'text/x',
                          'X-Object-Meta-Color': 'blue'})
    metadata, length, chunks = sync.object_entry(manager, 'sda', 7,
                                                 df.obj_hash)
    assert metadata == {'name': '/a/c/small', 'X-Timestamp': ts(1).normal,
                        'Content-Type': 'text/x',
                        'ETag': df.read_metadata()['ETag'],
                        'X-Object-Meta-Color': 'blue'}
    assert (length, b''.join(chunks)) == (5, b'hello')

    gone = manager.diskfile('sda', 7, 'a', 'c', 'gone')
    gone.delete(ts(2))
    assert sync.object_entry(manager, 'sda', 7, gone.obj_hash) == (
        {'name': '/a/c/gone', 'X-Timestamp': ts(2).normal}, None, None)

    never = manager.diskfile('sda', 7, 'a', 'c', 'never')
    assert sync.object_entry(manager, 'sda', 7, never.obj_hash) is None


def test_object_entry_of_a_large_body_reads_it_as_sent(manager):
    body = os.urandom(3 * 65536 + 5)
    df = manager.diskfile('sda', 7, 'a', 'c', 'large')
    df.write([body], {'X-Timestamp': ts(1)})
    metadata, length, chunks = sync.object_entry(manager, 'sda', 7,
                                                 df.obj_hash)
    assert length == len(body)
    pieces = list(chunks)
    assert len(pieces) > 1
    assert b''.join(pieces) == body


def test_object_entries_keep_order_and_skip_the_missing(manager):
    names = ['o%d' % i for i in range(sync.ENTRY_BATCH * 2 + 3)]
    hashes = []
    for name in names:
        df = manager.diskfile('sda', 7, 'a', 'c', name)
        df.write([name.encode()], {'X-Timestamp': ts(1)})
        hashes.append(df.obj_hash)
    hashes.insert(5, manager.diskfile('sda', 7, 'a', 'c', 'x').obj_hash)
    got = list(sync.object_entries(manager, 'sda', 7, hashes))
    assert [m['name'] for m, _l, _c in got] == ['/a/c/' + n for n in names]
    assert all(b''.join(c) == m['name'][5:].encode() for m, _l, c in got)


def test_entries_make_a_stream_a_receiver_verifies(manager):
    df = manager.diskfile('sda', 7, 'a', 'c', 'o')
    df.write([b'payload'], {'X-Timestamp': ts(1)})
    data = b''.join(syncstream.encode(
        sync.object_entries(manager, 'sda', 7, [df.obj_hash]),
        SECRET.encode(), sync.seed(sync.PUSH_SEED, 'sig')))
    assert verified(data, 'sig') == [('OBJ', '/a/c/o', b'payload')]


def test_seed_binds_direction_and_signature():
    assert sync.seed(sync.PUSH_SEED, 'ab') == b'push\nab'
    assert sync.seed(sync.PULL_SEED, 'ab') == b'pull\nab'
    assert sync.seed(sync.PUSH_SEED, 'ab') != sync.seed(sync.PULL_SEED,
                                                        'ab')


def stored_hashes(manager, count):
    hashes = []
    for i in range(count):
        df = manager.diskfile('sda', 7, 'a', 'c', 'o%d' % i)
        df.write([b'body %d' % i], {'X-Timestamp': ts(1)})
        hashes.append(df.obj_hash)
    return hashes


def counting_reads(monkeypatch):
    reads = []
    real = sync.object_entry

    def object_entry(manager, device, partition, obj_hash, *args):
        reads.append(obj_hash)
        return real(manager, device, partition, obj_hash, *args)
    monkeypatch.setattr(sync, 'object_entry', object_entry)
    return reads


def names(entries):
    return [m['name'] for m, _length, _chunks in entries]


def test_streams_of_one_job_read_each_object_once(manager, monkeypatch):
    hashes = stored_hashes(manager, 10)
    reads = counting_reads(monkeypatch)
    loader = sync.EntryLoader(manager, 'sda', 7, [hashes, hashes,
                                                  hashes[:3]], batch=4)
    first = loader.entries(hashes)
    second = loader.entries(hashes)
    expected = ['/a/c/o%d' % i for i in range(10)]
    # Side by side, as the pushes to two peers run.
    got = [(next(first), next(second)) for _i in range(10)]
    assert names(g[0] for g in got) == names(g[1] for g in got) == expected
    assert list(first) == list(second) == []
    assert sorted(reads) == sorted(hashes)
    # A third list is read for itself only where it was planned so.
    assert names(loader.entries(hashes[:3])) == expected[:3]
    assert len(reads) == 13


def test_stream_that_stops_early_says_where(manager):
    hashes = stored_hashes(manager, 10)
    loader = sync.EntryLoader(manager, 'sda', 7, [hashes], batch=4)
    done = [0]
    stream = loader.entries(hashes, done)
    assert names([next(stream) for _i in range(5)]) == [
        '/a/c/o%d' % i for i in range(5)]
    assert done == [5]
    stream.close()
    rest = loader.entries(hashes[done[0]:])
    assert names(rest) == ['/a/c/o%d' % i for i in range(5, 10)]


def test_streams_sharing_unplanned_batches(manager):
    hashes = stored_hashes(manager, 10)
    loader = sync.EntryLoader(manager, 'sda', 7, [], batch=2)
    first = loader.entries(hashes)
    second = loader.entries(hashes)
    got = [(next(first), next(second)) for _i in range(10)]
    assert names(g[0] for g in got) == names(g[1] for g in got)
