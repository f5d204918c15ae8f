"""Container sync's state (coordsync.sync.state), the rows it reads in
sync order (the container broker) and the node route that keeps it
(``/sync-state``)."""

import hashlib
import json

from coordsync.common import direct_client as client
from coordsync.common import fencing
from coordsync.sync import daemon
from coordsync.sync import state
from tests.unit.test_container_backend import make_container
from tests.unit.test_container_server import CONT
from tests.unit.test_container_server import accounts_client  # noqa: F401
from tests.unit.test_container_server import app  # noqa: F401
from tests.unit.test_container_server import put_container
from tests.unit.test_container_server import put_row
from tests.unit.test_container_server import ts
from tests.unit.test_server import call

STATE_PATH = client.sync_state_path('sda', 3, 'AUTH_a', 'c')


def framed(body):
    """The headers that bind a signed write to its body."""
    return {'Content-Length': str(len(body)),
            'ETag': hashlib.md5(body).hexdigest()}


def test_lock_name_and_long_names_hashed():
    assert state.lock_name('AUTH_a', 'c') == 'coordsync/sync/AUTH_a/c'
    assert state.lock_name('A' * 256, 'x' * 200).startswith(
        'coordsync/sync/A')
    long = state.lock_name('A' * 256, 'x' * 256)
    assert long.startswith('coordsync/sync/.hashed/')
    fencing.check_item(long)
    assert state.lock_name('A' * 256, 'x' * 256) == long


def test_encode_decode_round_trip_and_garbage():
    st = state.new_state('//r/c/a/c', 3)
    st['point'] = ('0000000001.00000', 'o1')
    st['rows'] = {'id1': 7}
    st['retry'] = [['o', '0000000001.00000', 1, 5.0, 1.0, 'boom']]
    back = state.decode(state.encode(st))
    assert back == st
    for bad in ('', 'not json', '[]', '{"v": "x"}'):
        assert state.decode(bad) is None
    # Malformed parts are dropped, not trusted.
    odd = state.decode(json.dumps({'v': 2, 'point': [1, 2], 'rows': {
        'a': 'x'}, 'retry': [['short']]}))
    assert odd['point'] is None and odd['rows'] == {} and not odd['retry']


def test_newest_of_the_target_wins_and_versions_only_grow():
    one = dict(state.new_state('t', 4), point=('1', 'a'))
    two = dict(state.new_state('t', 6), point=('2', 'b'))
    other = state.new_state('other-target', 9)
    best = state.newest([one, None, two, other], 't')
    assert best['point'] == ('2', 'b')
    # NOTE: a newer state of another target numbers past it.
    assert best['v'] == 9
    fresh = state.newest([other], 't')
    assert fresh['point'] is None and fresh['v'] == 9


def test_destination_point_text():
    st = dict(state.new_state('t', 5), point=('0000000002.00000', 'x'))
    text = daemon.format_point(st)
    assert daemon.parse_point(text) == {'v': 5, 'p': '0000000002.00000',
                                        's': None}
    assert daemon.parse_point('garbage') is None
    assert daemon.parse_point(None) is None


def test_rows_in_sync_order_and_lag(tmp_path, clock):
    broker = make_container(str(tmp_path / 'sda'), clock)
    broker.put_object('b', ts(3), 1, 'text/plain', 'e')
    broker.put_object('a', ts(3), 1, 'text/plain', 'e')
    broker.put_object('z', ts(1), 1, 'text/plain', 'e')
    broker.delete_object('m', ts(2))
    rows = broker.sync_rows_after(None, 10)
    assert [r['name'] for r in rows] == ['z', 'm', 'a', 'b']
    assert all('ROWID' in r for r in rows)
    after = broker.sync_rows_after(state.row_key(rows[1]), 10)
    assert [r['name'] for r in after] == ['a', 'b']
    assert [r['name'] for r in broker.sync_rows_after(
        state.row_key(rows[1]), 1)] == ['a']
    assert broker.sync_lag(state.row_key(rows[1])) == (2, ts(3))
    assert broker.sync_lag(state.row_key(rows[3])) == (0, None)
    assert broker.sync_lag(None)[0] == 4
    got = broker.get_rows(['a', 'm', 'nope'])
    assert set(got) == {'a', 'm'} and got['m']['deleted'] == 1


def test_sync_state_route(app):  # noqa: F811
    assert call(app, 'GET', STATE_PATH).status == 404
    assert put_container(app).status == 201
    put_row(app, 'o1')
    found = json.loads(call(app, 'GET', STATE_PATH).body)
    assert found['state'] is None and found['max_row'] >= 1
    assert found['id'] and found['deleted'] is False
    st = dict(state.new_state('t', 2), point=(ts(), 'o1'))
    body = json.dumps({'state': state.encode(st),
                       'timestamp': ts(1)}).encode()
    reply = call(app, 'PUT', STATE_PATH, framed(body), body)
    assert reply.status == 204, reply
    found = json.loads(call(app, 'GET', STATE_PATH).body)
    assert state.decode(found['state'])['point'] == (ts(), 'o1')
    # An older write loses (metadata: newest timestamp wins).
    old = json.dumps({'state': state.encode(state.new_state('t', 1)),
                      'timestamp': ts(0)}).encode()
    assert call(app, 'PUT', STATE_PATH, framed(old), old).status == 204
    found = json.loads(call(app, 'GET', STATE_PATH).body)
    assert state.decode(found['state'])['v'] == 2
    # Kept in the container's metadata, but never sent as a header (it
    # may be larger than a header can be).
    head = call(app, 'HEAD', CONT)
    assert head.status == 204
    assert state.STATE_KEY.lower() not in {k.lower() for k in head.headers}


def test_sync_state_route_refuses_bad_bodies_and_old_tokens(app):  # noqa
    assert put_container(app).status == 201
    for body in (b'nope', b'{}', json.dumps({'state': 'x', 'timestamp':
                                             ts()}).encode()):
        reply = call(app, 'PUT', STATE_PATH, framed(body), body)
        assert reply.status == 400, (body, reply)
    good = json.dumps({'state': state.encode(state.new_state('t', 1)),
                       'timestamp': ts(1)}).encode()
    item = state.lock_name('AUTH_a', 'c')
    newer = fencing.Fence(item, 20).headers()
    assert call(app, 'PUT', STATE_PATH, dict(newer, **framed(good)),
                good).status == 204
    older = fencing.Fence(item, 10).headers()
    reply = call(app, 'PUT', STATE_PATH, dict(older, **framed(good)), good)
    assert reply.status == 409
    wrong = fencing.Fence('coordsync/sync/AUTH_a/other', 30).headers()
    assert call(app, 'PUT', STATE_PATH, dict(wrong, **framed(good)),
                good).status == 400
