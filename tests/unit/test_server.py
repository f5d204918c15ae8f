"""The node server's WSGI app, called in-process with hand-made environs."""

import hashlib
import io
import json
import logging
import os
import socket
import time
import urllib.parse

import pytest

from coordsync import exceptions
from coordsync.common import direct_client as client
from coordsync.common import fencing
from coordsync.common import hashing
from coordsync.common import signing
from coordsync.common import wsgi
from coordsync.common.timestamp import Timestamp
from coordsync.obj import server
from coordsync.obj import sync
from coordsync.obj import syncstream
from tests.unit.node_fixtures import SECRET

NOW = float(int(time.time()))
OBJ = '/objects/sda/7/AUTH_a/c/o'


def ts(offset=0):
    return Timestamp(NOW + offset).normal




@pytest.fixture
def app(conf, manager):
    return server.NodeServer(conf, manager)


class Reply:
    def __init__(self, status, headers, body):
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def __repr__(self):
        return '<Reply %d %r>' % (self.status, self.body[:80])


def environ(method, raw_path, headers=None, body=b'', query='',
            signed=True, secret=SECRET, now=None, raw_path_info=True):
    """A WSGI environ as eventlet.wsgi makes it, signed by default.

    ``raw_path`` is the path as sent (quoted); ``PATH_INFO`` is it
    unquoted, as latin-1-decoded bytes (PEP 3333).
    """
    headers = dict(headers or {})
    if signed:
        headers.update(signing.sign(secret, method, raw_path, query, headers,
                                    now=now))
    env = {'REQUEST_METHOD': method,
           'PATH_INFO': urllib.parse.unquote_to_bytes(raw_path)
           .decode('latin-1'),
           'QUERY_STRING': query,
           'wsgi.input': io.BytesIO(body)}
    if raw_path_info:
        env['RAW_PATH_INFO'] = raw_path
    for name, value in headers.items():
        key = name.upper().replace('-', '_')
        if key in ('CONTENT_LENGTH', 'CONTENT_TYPE'):
            env[key] = value
        else:
            env['HTTP_' + key] = value
    return env


def run_app(app, env):
    """Call the app the way a WSGI server does; return a :class:`Reply`."""
    captured = []
    chunks = app(env, lambda status, headers: captured.append(
        (status, headers)))
    try:
        body = b''.join(chunks)
    finally:
        # NOTE: as a WSGI server does (PEP 3333); the access line is
        # written then.
        if hasattr(chunks, 'close'):
            chunks.close()
    return Reply(captured[0][0], captured[0][1], body)


def call(app, method, raw_path, headers=None, body=b'', **kw):
    return run_app(app, environ(method, raw_path, headers, body, **kw))


def put(app, path=OBJ, body=b'hello', when=None, **headers):
    headers = {'X-Timestamp': when or ts(), 'Content-Length':
               str(len(body)), **headers}
    return call(app, 'PUT', path, headers, body)


def delete(app, path=OBJ, when=None):
    return call(app, 'DELETE', path, {'X-Timestamp': when or ts()})


# -- set-up and the health check -------------------------------------------

def test_secret_is_required(conf, manager):
    conf.set_override('cluster_secret', None)
    with pytest.raises(exceptions.ConfigError):
        server.NodeServer(conf, manager)


def test_manager_is_made_from_conf(conf, manager):
    app = server.NodeServer(conf)
    assert app.manager.devices() == ['sda']
    assert put(app).status == 201


def test_healthcheck_needs_no_signature(app):
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert (reply.status, reply.body) == (200, b'OK\n')
    assert call(app, 'HEAD', '/healthcheck', signed=False).body == b''
    assert call(app, 'PUT', '/healthcheck').status == 405


# -- signatures ------------------------------------------------------------

@pytest.mark.parametrize('method', ['GET', 'HEAD', 'PUT', 'DELETE',
                                    'REPLICATE'])
def test_unsigned_request_is_refused(app, method):
    path = '/objects/sda/7' if method == 'REPLICATE' else OBJ
    reply = call(app, method, path, {'X-Timestamp': ts(),
                                     'Content-Length': '0'}, signed=False)
    assert reply.status == 401
    assert app.manager.partitions('sda') == []


def test_signature_with_another_secret_is_refused(app):
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(),
                                   'Content-Length': '5'}, b'hello',
                 secret='not-the-secret')
    assert (reply.status, reply.body) == (401, b'bad signature\n')
    assert app.manager.partitions('sda') == []


@pytest.mark.parametrize('header, value', [
    ('X-Timestamp', ts(1)), ('Content-Length', '4'),
    ('ETag', hashlib.md5(b'hell').hexdigest()),
    ('X-Coordsync-Member', 'someone-else')])
def test_signature_covers_the_write_headers(app, header, value):
    headers = {'X-Timestamp': ts(), 'Content-Length': '5',
               'ETag': hashlib.md5(b'hello').hexdigest(),
               'X-Coordsync-Member': 'n1@host.boot'}
    headers.update(signing.sign(SECRET, 'PUT', OBJ, '', headers))
    headers[header] = value
    env = environ('PUT', OBJ, headers, b'hello'[:int(headers[
        'Content-Length'])], signed=False)
    reply = run_app(app, env)
    assert (reply.status, reply.body) == (401, b'bad signature\n')
    assert app.manager.partitions('sda') == []


def test_signature_covers_the_query(app):
    env = environ('GET', OBJ)
    env['QUERY_STRING'] = 'multipart=1'
    assert run_app(app, env).status == 401


@pytest.mark.parametrize('offset, expected', [
    (-200, 404), (200, 404), (-400, 401), (400, 401)])
def test_request_date_must_be_within_clock_skew(app, offset, expected):
    reply = call(app, 'GET', OBJ, now=time.time() + offset)
    assert reply.status == expected


def test_unquoted_path_signed_like_the_client_quotes_it(app):
    """Without RAW_PATH_INFO the path is re-quoted as the client does."""
    path = client.object_path('sda', 7, 'AUTH_a', 'c', 'dir/é x?')
    assert path.startswith('/objects/sda/7/AUTH_a/c/dir/')
    assert '%C3%A9%20x%3F' in path
    body = b'quoted'
    reply = call(app, 'PUT', path, {'X-Timestamp': ts(),
                                    'Content-Length': str(len(body))},
                 body, raw_path_info=False)
    assert reply.status == 201
    assert call(app, 'GET', path, raw_path_info=False).body == body


# -- validation ------------------------------------------------------------

@pytest.mark.parametrize('path', ['/objects' + p for p in [
    '/sda/7/AUTH_a/../o', '/sda/7/AUTH_a/%2e%2e/o', '/sda/7/AUTH_a/c/a/../b',
    '/sda/7/AUTH_a/c/./b', '/sda/7/AUTH_a//o', '/sda/7/AUTH_a/c/',
    '/sda/7/AUTH_a/c/a//b', '/sda/7//c/o', '/sda/abc/AUTH_a/c/o',
    '/sda/-1/AUTH_a/c/o', '/sda/+7/AUTH_a/c/o', '/sda/12345678901/a/c/o',
    '/../7/AUTH_a/c/o', '/%2e%2e/7/AUTH_a/c/o', '/sd%00a/7/AUTH_a/c/o',
    '/sda/7/AUTH_a/c/o%01', '/sda/7/AUTH_a/c/o%7f', '/sda/7/AUTH_a/c/o%ff',
    '/sda/7/AUTH_a/c/' + 'o' * 1025, '/sda/7/AUTH_a/' + 'c' * 257 + '/o',
    '/sda/7/' + 'a' * 257 + '/c/o', '/sda/7/AUTH_a/c', '', '/sda', '/sda/7',
]] + ['sda/7/AUTH_a/c/o', '/%ff/sda/7/AUTH_a/c/o'])
def test_bad_path_is_400_and_stores_nothing(app, path):
    reply = put(app, path)
    assert reply.status == 400, path
    assert reply.body.endswith(b'\n') and reply.body.count(b'\n') == 1
    assert app.manager.partitions('sda') == []


def test_object_name_of_1024_bytes_is_fine(app):
    assert put(app, '/objects/sda/7/AUTH_a/c/' + 'o' * 1024).status == 201


@pytest.mark.parametrize('headers, expected', [
    ({'X-Timestamp': None}, 400),
    ({'X-Timestamp': 'nan'}, 400),
    ({'X-Timestamp': '-1'}, 400),
    ({'X-Timestamp': 'abc'}, 400),
    ({'X-Timestamp': 'inf'}, 400),
    ({'X-Timestamp': '1' * 11}, 400),
    ({'Content-Length': 'abc'}, 400),
    ({'Content-Length': '-5'}, 400),
    ({'Content-Length': None}, 411),
    ({'ETag': 'z' * 32}, 400),
    ({'ETag': '0' * 31}, 400),
])
def test_bad_put_headers(app, headers, expected):
    full = {'X-Timestamp': ts(), 'Content-Length': '5'}
    full.update(headers)
    full = {k: v for k, v in full.items() if v is not None}
    reply = call(app, 'PUT', OBJ, full, b'hello')
    assert reply.status == expected, reply
    assert app.manager.partitions('sda') == []


@pytest.mark.parametrize('headers', [{}, {'X-Timestamp': 'nan'}])
def test_bad_delete_timestamp(app, headers):
    assert call(app, 'DELETE', OBJ, headers).status == 400
    assert app.manager.partitions('sda') == []


def test_unknown_device_is_507(app):
    assert put(app, '/objects/sdz/7/AUTH_a/c/o').status == 507
    assert call(app, 'GET', '/objects/sdz/7/AUTH_a/c/o').status == 507
    assert call(app, 'REPLICATE', '/objects/sdz/7').status == 507
    assert call(app, 'GET', '/object-suffixes/sdz/7/abc').status == 507
    assert check(app, [], {}, path='/object-sync/sdz/7/check')[0] \
        .status == 507
    assert pull(app, [], path='/object-sync/sdz/7/pull')[0].status == 507
    assert push_stream(app, [entry('o', b'x')],
                       path='/object-sync/sdz/7')[0].status == 507


@pytest.mark.parametrize('method', ['POST', 'COPY', 'FOO'])
def test_unknown_method_is_405(app, method):
    assert call(app, method, OBJ).status == 405


# -- objects ---------------------------------------------------------------

def test_put_get_head_delete(app):
    body = b'hello world'
    etag = hashlib.md5(body).hexdigest()
    reply = put(app, body=body, when=ts(), ETag=etag,
                **{'Content-Type': 'text/plain', 'X-Object-Meta-Color':
                   'blue'})
    assert (reply.status, reply.headers['ETag']) == (201, etag)

    got = call(app, 'GET', OBJ)
    assert (got.status, got.body) == (200, body)
    assert got.headers['X-Timestamp'] == ts()
    assert got.headers['Content-Type'] == 'text/plain'
    assert got.headers['ETag'] == etag
    assert got.headers['Content-Length'] == str(len(body))
    assert got.headers['X-Object-Meta-Color'] == 'blue'

    head = call(app, 'HEAD', OBJ)
    assert (head.status, head.body) == (200, b'')
    assert head.headers['Content-Length'] == str(len(body))

    assert delete(app, when=ts(1)).status == 204
    for method in ('GET', 'HEAD'):
        gone = call(app, method, OBJ)
        assert gone.status == 404
        assert gone.headers['X-Backend-Timestamp'] == ts(1)


def test_missing_object_is_404_without_backend_timestamp(app):
    reply = call(app, 'GET', OBJ)
    assert reply.status == 404
    assert 'X-Backend-Timestamp' not in reply.headers


def test_delete_of_missing_object_is_404_but_stores_a_tombstone(app):
    assert delete(app, when=ts(1)).status == 404
    assert call(app, 'GET', OBJ).headers['X-Backend-Timestamp'] == ts(1)
    assert put(app, when=ts()).status == 409


def test_stale_put_is_409_with_backend_timestamp(app):
    assert put(app, body=b'new', when=ts(10)).status == 201
    for when in (ts(10), ts(5)):
        reply = put(app, body=b'old', when=when)
        assert reply.status == 409
        assert reply.headers['X-Backend-Timestamp'] == ts(10)
    assert call(app, 'GET', OBJ).body == b'new'


def test_stale_put_after_delete_is_409(app):
    assert put(app, when=ts()).status == 201
    assert delete(app, when=ts(10)).status == 204
    reply = put(app, when=ts(5))
    assert (reply.status, reply.headers['X-Backend-Timestamp']) == (
        409, ts(10))
    assert put(app, body=b'again', when=ts(11)).status == 201
    assert call(app, 'GET', OBJ).body == b'again'


def test_stale_delete_is_409_and_writes_nothing(app, conf):
    assert put(app, when=ts(10)).status == 201
    tmp_dir = os.path.join(conf.devices, 'sda', 'tmp')
    before = os.stat(tmp_dir).st_mtime_ns
    reply = delete(app, when=ts(5))
    assert (reply.status, reply.headers['X-Backend-Timestamp']) == (
        409, ts(10))
    assert os.stat(tmp_dir).st_mtime_ns == before
    assert call(app, 'GET', OBJ).status == 200


def test_etag_mismatch_is_422_and_stores_nothing(app):
    reply = put(app, ETag=hashlib.md5(b'other').hexdigest())
    assert reply.status == 422
    assert call(app, 'GET', OBJ).status == 404


def test_short_body_is_499_and_stores_nothing(app):
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(),
                                   'Content-Length': '10'}, b'short')
    assert reply.status == 499
    assert call(app, 'GET', OBJ).status == 404


def test_chunked_put(app):
    body = os.urandom(200000)
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(),
                                   'Transfer-Encoding': 'chunked'}, body)
    assert reply.status == 201
    assert call(app, 'GET', OBJ).body == body


def test_full_disk_is_507(app, monkeypatch):
    def no_space(self, chunk):
        raise exceptions.DiskFileNoSpace('device full')
    monkeypatch.setattr('coordsync.obj.streams.DiskFileWriter.write',
                        no_space)
    assert put(app).status == 507


# -- replication -----------------------------------------------------------

def _obj_hash(name='o'):
    return hashing.hash_path('AUTH_a', 'c', name, prefix='pre', suffix='suf')


def test_replicate_and_listing(app):
    assert call(app, 'REPLICATE', '/objects/sda/7').status == 200
    assert json.loads(call(app, 'REPLICATE', '/objects/sda/7').body) == {}
    assert put(app, when=ts()).status == 201
    obj_hash = _obj_hash()
    suffix = hashing.suffix_of(obj_hash)
    expected = hashlib.md5(('%s/%s.data\n' % (obj_hash, ts()))
                           .encode()).hexdigest()

    reply = call(app, 'REPLICATE', client.replicate_path('sda', 7))
    assert reply.headers['Content-Type'] == 'application/json'
    assert json.loads(reply.body) == {suffix: expected}
    again = call(app, 'REPLICATE', client.replicate_path(
        'sda', 7, [suffix, 'fff']))
    assert json.loads(again.body) == {suffix: expected}

    listing = call(app, 'GET', client.suffix_path('sda', 7, suffix))
    assert json.loads(listing.body) == {
        obj_hash: {'timestamp': ts(), 'deleted': False}}
    assert delete(app, when=ts(1)).status == 204
    listing = call(app, 'GET', '/object-suffixes/sda/7/' + suffix)
    assert json.loads(listing.body) == {
        obj_hash: {'timestamp': ts(1), 'deleted': True}}


@pytest.mark.parametrize('method, path', [
    ('REPLICATE', '/objects/sda/7/zzz'),
    ('REPLICATE', '/objects/sda/7/abc-abcd'),
    ('REPLICATE', '/objects/sda/7/abc-'),
    ('REPLICATE', '/objects/sda/7/abc/def'),
    ('REPLICATE', '/objects/sda'), ('REPLICATE', '/objects/sda/x'),
    ('REPLICATE', '/objects'),
    ('GET', '/object-suffixes/sda/7/zzz'),
    ('GET', '/object-suffixes/sda/7/abc-def'),
    ('GET', '/object-suffixes/sda/7'),
    ('GET', '/object-suffixes/sda/7/abc/def'),
    ('POST', '/object-sync/sda/7/foo'),
    ('POST', '/object-sync/sda/7/check/x'),
    ('POST', '/object-sync/sda/x/check'),
    ('POST', '/object-sync/sda'),
    ('POST', '/object-sync/sda/7'),
    ('PUT', '/object-sync/sda/7/check'),
    ('PUT', '/object-sync/sda/7/pull'),
    ('PUT', '/object-sync/../7'),
    ('GET', '/healthcheck/x'),
])
def test_bad_replication_paths(app, method, path):
    reply = call(app, method, path)
    assert reply.status == 400, reply
    assert reply.body.count(b'\n') == 1
    assert app.manager.partitions('sda') == []


# -- routing ---------------------------------------------------------------

@pytest.mark.parametrize('path', [
    '/sda/7/AUTH_a/c/o', '/', '/object', '/objectsx/sda/7/a/c/o',
    '/containerz/sda/7/a/c', '/object-hashes/sda/7/abc/' + 'f' * 29 + 'abc'])
def test_unknown_prefix_is_404_with_one_line(app, path):
    reply = call(app, 'GET', path)
    assert reply.status == 404
    assert reply.body.startswith(b'no such path') \
        and reply.body.count(b'\n') == 1


@pytest.mark.parametrize('method, path, allow', [
    ('POST', OBJ, 'DELETE, GET, HEAD, PUT, REPLICATE'),
    ('GET', '/object-sync/sda/7', 'POST, PUT'),
    ('DELETE', '/object-sync/sda/7/check', 'POST, PUT'),
    ('DELETE', '/object-suffixes/sda/7/abc', 'GET'),
    ('REPLICATE', '/healthcheck', 'GET, HEAD'),
])
def test_wrong_method_is_405_with_allow(app, method, path, allow):
    reply = call(app, method, path)
    assert (reply.status, reply.headers['Allow']) == (405, allow)


def test_route_sets_are_added_and_checked():
    router = wsgi.Router()
    router.add(wsgi.Route(('GET',), '/things', None))
    with pytest.raises(ValueError):
        router.add(wsgi.Route(('GET', 'PUT'), '/things', None))
    with pytest.raises(ValueError):
        router.add(wsgi.Route(('GET',), '/two/segments', None))
    router.add(wsgi.Route(('PUT',), '/things', None))
    route, parts = router.match('PUT', '/things/a/b')
    assert (route.methods, parts) == (('PUT',), ['a', 'b'])


# -- bad clients -----------------------------------------------------------

@pytest.mark.parametrize('date', [
    '9' * 30, '1' * 400, '-5', '1e400', '１７００', '+1700000000', ' 1'])
def test_absurd_date_is_401_one_line(app, date):
    headers = {'X-Timestamp': ts(), 'Content-Length': '5'}
    headers.update(signing.sign(SECRET, 'PUT', OBJ, '', headers))
    headers[signing.DATE_HEADER] = date
    reply = run_app(app, environ('PUT', OBJ, headers, b'hello',
                                 signed=False))
    assert reply.status == 401
    assert reply.body == b'bad X-Coordsync-Date\n'
    assert app.manager.partitions('sda') == []


@pytest.mark.parametrize('signature', ['\xff' * 64, 'A' * 64, 'é', '0' * 65])
def test_odd_signature_is_401(app, signature):
    headers = {'X-Timestamp': ts(), 'Content-Length': '5'}
    headers.update(signing.sign(SECRET, 'PUT', OBJ, '', headers))
    headers[signing.SIGNATURE_HEADER] = signature
    reply = run_app(app, environ('PUT', OBJ, headers, b'hello',
                                 signed=False))
    assert (reply.status, reply.body) == (401, b'bad signature\n')


@pytest.mark.parametrize('length', ['²', '9' * 5000, '1' * 20, '0x10'])
def test_odd_content_length_is_400(app, length):
    reply = call(app, 'PUT', OBJ, {'X-Timestamp': ts(),
                                   'Content-Length': length}, b'hello')
    assert (reply.status, reply.body) == (400, b'bad Content-Length\n')


@pytest.mark.parametrize('member', ['x' * 300, 'é', 'a\tb'])
def test_bad_member_header_is_400(app, member):
    reply = call(app, 'GET', OBJ, {'X-Coordsync-Member': member})
    assert reply.status == 400


def test_unexpected_error_is_a_logged_one_line_500(app, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError('kaboom\nsecond line')
    monkeypatch.setattr(app.manager, 'get_hashes', broken)
    reply = call(app, 'REPLICATE', '/objects/sda/7')
    assert (reply.status, reply.body) == (500, b'internal error (logged)\n')
    assert 'Traceback' in caplog.text and 'kaboom' in caplog.text


# -- fencing -----------------------------------------------------------------

ITEM = 'coordsync/replicate/0/7'


def fenced(app, method='REPLICATE', path='/objects/sda/7', token=5,
           item=ITEM, **kw):
    headers = dict(kw.pop('headers', {}))
    headers.update(fencing.Fence(item, token).headers())
    return call(app, method, path, headers, **kw)


def test_fence_admits_newer_and_refuses_older(app):
    assert fenced(app, token=5).status == 200
    assert fenced(app, token=5).status == 200
    assert fenced(app, token=9).status == 200
    reply = fenced(app, token=5)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert reply.body == (b'fenced: token 5 for coordsync/replicate/0/7 '
                          b'is older than 9\n')
    assert app.token_store.highest(ITEM) == 9


def test_fenced_write_changes_nothing(app):
    assert fenced(app, token=9).status == 200
    reply = fenced(app, 'PUT', OBJ, token=8, headers={
        'X-Timestamp': ts(), 'Content-Length': '5'}, body=b'hello')
    assert reply.status == 409
    assert app.manager.partitions('sda') == []
    reply = fenced(app, 'PUT', OBJ, token=9, headers={
        'X-Timestamp': ts(), 'Content-Length': '5'}, body=b'hello')
    assert reply.status == 201


class SlowBody(io.BytesIO):
    """A request body during which ``meanwhile()`` happens (the sender
    was paused and another holder took the item)."""

    def __init__(self, body, meanwhile):
        super().__init__(body)
        self.meanwhile = meanwhile

    def read(self, size=-1):
        chunk = super().read(size)
        if not chunk and self.meanwhile:
            self.meanwhile, meanwhile = None, self.meanwhile
            meanwhile()
        return chunk


def test_fence_is_checked_again_before_a_slow_put_commits(app):
    env = environ('PUT', OBJ, dict(fencing.Fence(ITEM, 8).headers(), **{
        'X-Timestamp': ts(), 'Content-Length': '5'}), b'hello')
    env['wsgi.input'] = SlowBody(b'hello', lambda: fenced(app, token=9))
    reply = run_app(app, env)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {}


def test_fence_is_checked_on_reads_too(app):
    assert fenced(app, 'GET', OBJ, token=9).status == 404
    assert fenced(app, 'GET', OBJ, token=3).status == 409
    assert fenced(app, 'GET', '/object-suffixes/sda/7/abc',
                  token=3).status == 409


def test_other_items_do_not_interfere(app):
    assert fenced(app, token=9).status == 200
    assert fenced(app, item='coordsync/sync/a/c', token=1).status == 200
    assert fenced(app, item='coordsync/replicate/0/8', token=1,
                  path='/objects/sda/8').status == 200


@pytest.mark.parametrize('item, path', [
    ('coordsync/replicate/0/8', '/objects/sda/7'),
    ('coordsync/replicate/1/7', '/objects/sda/7'),
    ('coordsync/replicate/0/x', '/objects/sda/7'),
    ('coordsync/replicate/0/8', OBJ),
])
def test_replicate_item_must_match_the_partition(app, item, path):
    reply = fenced(app, 'GET' if path == OBJ else 'REPLICATE', path,
                   item=item, token=5)
    assert reply.status == 400
    assert app.token_store.highest(item) == 0


@pytest.mark.parametrize('headers', [
    {'X-Coordsync-Item': ITEM},
    {'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': '0'},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': '-5'},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': '05'},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': '5.0'},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': str(2 ** 63)},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': '9' * 5000},
    {'X-Coordsync-Item': ITEM, 'X-Coordsync-Token': ''},
    {'X-Coordsync-Item': 'other/replicate/0/7', 'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/replicate', 'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/../0/7', 'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync//0/7', 'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/replicate/0/7%0a',
     'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/replicate/%ff', 'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/sync/' + 'a' * 600,
     'X-Coordsync-Token': '5'},
    {'X-Coordsync-Item': 'coordsync/sync/' + '%41' * 5000,
     'X-Coordsync-Token': '5'},
])
def test_bad_fence_headers_are_400_and_change_nothing(app, headers):
    headers = dict(headers, **{'X-Timestamp': ts(), 'Content-Length': '5'})
    reply = call(app, 'PUT', OBJ, headers, b'hello')
    assert reply.status == 400, reply
    assert reply.body.count(b'\n') == 1
    assert app.manager.partitions('sda') == []
    assert not os.path.exists(app.token_store.path)


def test_unsigned_fence_is_401_and_changes_nothing(app):
    reply = fenced(app, token=5, signed=False)
    assert reply.status == 401
    assert not os.path.exists(app.token_store.path)


def test_fence_headers_are_signed(app):
    headers = fencing.Fence(ITEM, 5).headers()
    headers.update(signing.sign(SECRET, 'REPLICATE', '/objects/sda/7', '',
                                headers))
    headers['X-Coordsync-Token'] = '6'
    reply = run_app(app, environ('REPLICATE', '/objects/sda/7', headers,
                                 signed=False))
    assert (reply.status, reply.body) == (401, b'bad signature\n')


def test_fence_store_failure_is_503(app, monkeypatch):
    def unavailable(item, token):
        raise fencing.TokenStoreError('disk I/O error')
    monkeypatch.setattr(app.token_store, 'admit', unavailable)
    reply = fenced(app, 'PUT', OBJ, headers={
        'X-Timestamp': ts(), 'Content-Length': '5'}, body=b'hello')
    assert reply.status == 503
    assert app.manager.partitions('sda') == []


def test_healthcheck_ignores_fence_headers(app):
    reply = fenced(app, 'GET', '/healthcheck', signed=False)
    assert reply.status == 200
    assert not os.path.exists(app.token_store.path)


# -- leases: no token-less replication write into a held partition ----------

def push(app, method='PUT', path=OBJ, body=b'hello', when=None,
         replication=True, member='n2@host.boot'):
    """A write as a static replication pass sends it: no token."""
    headers = {'X-Timestamp': when or ts(), 'X-Coordsync-Member': member}
    if method == 'PUT':
        headers['Content-Length'] = str(len(body))
    else:
        body = b''
    return call(app, method, path, headers, body,
                query=fencing.REPLICATION_QUERY if replication else '')


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _hold(app):
    """A coordinated holder of partition 7 talks to this node now."""
    assert fenced(app, token=9).status == 200
    app.clock = Clock(time.time())
    return app.clock


def test_static_push_inside_the_lease_is_refused_and_writes_nothing(app):
    _hold(app)
    reply = push(app)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert reply.body.startswith(b'fenced: coordsync/replicate/0/7 had a '
                                 b'tokened request ')
    assert reply.body.count(b'\n') == 1
    assert push(app, 'DELETE').status == 409
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {}
    assert call(app, 'GET', OBJ).status == 404


def test_static_push_after_the_lease_is_accepted(app, conf):
    clock = _hold(app)
    clock.now += fencing.fence_lease(conf) - 1
    assert push(app).status == 409
    clock.now += 1
    assert push(app).status == 201
    assert push(app, 'DELETE', when=ts(1)).status == 204


def test_holder_requests_keep_the_lease(app, conf):
    clock = _hold(app)
    app.token_store.clock = clock
    clock.now += fencing.fence_lease(conf) - 1
    assert fenced(app, token=9).status == 200
    clock.now += 2
    assert push(app).status == 409


def test_user_writes_inside_the_lease_are_accepted(app):
    _hold(app)
    assert put(app, body=b'users').status == 201
    assert call(app, 'GET', OBJ).body == b'users'
    assert delete(app, when=ts(1)).status == 204
    # A member's write that is no replication push is a user's too.
    assert push(app, when=ts(2), replication=False).status == 201


def test_reads_and_other_partitions_are_not_held(app):
    _hold(app)
    assert push(app, path='/objects/sda/8/AUTH_a/c/o').status == 201
    assert call(app, 'GET', OBJ, query=fencing.REPLICATION_QUERY
                ).status == 404
    assert call(app, 'REPLICATE', '/objects/sda/7',
                query=fencing.REPLICATION_QUERY).status == 200


def test_tokened_pushes_are_fenced_not_leased(app):
    _hold(app)
    reply = fenced(app, 'PUT', OBJ, token=9, headers={
        'X-Timestamp': ts(), 'Content-Length': '5'}, body=b'hello',
        query=fencing.REPLICATION_QUERY)
    assert reply.status == 201


def test_lease_follows_the_session_timeout_unless_set(conf):
    conf.set_override('session_timeout', 7, group='coordination')
    assert fencing.fence_lease(conf) == 21.0
    conf.set_override('fence_lease', 2.5, group='server')
    assert fencing.fence_lease(conf) == 2.5


def test_a_zero_lease_holds_nothing(app, conf):
    conf.set_override('fence_lease', 0, group='server')
    _hold(app)
    assert push(app).status == 201


def _holders(app, holders):
    """The node's coordinator, as far as the lease asks: ``holders``
    maps an item to its lock holder; an absent item is unknown."""
    asked = []

    def lock_holder(item):
        asked.append(item)
        if item not in holders:
            raise exceptions.CoordinationUnavailable('not joined')
        return holders[item]
    app.lock_holder = lock_holder
    return asked


def test_static_push_into_a_partition_locked_by_another_is_refused(app):
    asked = _holders(app, {ITEM: 'n1@host.boot'})
    reply = push(app)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert reply.body == (b'fenced: coordsync/replicate/0/7 is locked by '
                          b'n1@host.boot\n')
    assert asked == [ITEM]
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {}


def test_lock_is_checked_even_without_a_lease(app, conf):
    conf.set_override('fence_lease', 0, group='server')
    _holders(app, {ITEM: 'n1@host.boot'})
    assert push(app).status == 409


@pytest.mark.parametrize('holders', [{ITEM: None},
                                     {ITEM: 'n2@host.boot'}, {}])
def test_static_push_is_accepted_when_free_own_or_unknown(app, holders):
    _holders(app, holders)
    assert push(app).status == 201


def test_users_writes_never_ask_who_holds_the_lock(app):
    asked = _holders(app, {ITEM: 'n1@host.boot'})
    assert push(app, replication=False).status == 201
    assert asked == []


def test_lease_is_checked_again_before_a_slow_push_commits(app):
    env = environ('PUT', OBJ, {'X-Timestamp': ts(), 'Content-Length': '5'},
                  b'hello', query=fencing.REPLICATION_QUERY)
    env['wsgi.input'] = SlowBody(b'hello', lambda: fenced(app, token=9))
    reply = run_app(app, env)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {}


def test_the_replication_mark_is_signed(app):
    _hold(app)
    headers = {'X-Timestamp': ts(), 'Content-Length': '5'}
    env = environ('PUT', OBJ, headers, b'hello',
                  query=fencing.REPLICATION_QUERY)
    env['QUERY_STRING'] = ''
    assert run_app(app, env).status == 401
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {}


def test_lease_store_failure_is_503(app, monkeypatch):
    def unavailable(item):
        raise fencing.TokenStoreError('disk I/O error')
    monkeypatch.setattr(app.token_store, 'admitted_at', unavailable)
    assert push(app).status == 503
    assert app.manager.partitions('sda') == []


# -- partition sync: check, push, pull ----------------------------------------

SYNC = client.sync_path('sda', 7)


def etag(body):
    return hashlib.md5(body).hexdigest()


def json_call(app, path, payload, headers=None, body=None, **kw):
    """A signed POST of a JSON body bound to it by its ETag."""
    raw = json.dumps(payload).encode('utf-8') if body is None else body
    headers = dict({'ETag': etag(raw), 'Content-Length': str(len(raw))},
                   **(headers or {}))
    env = environ('POST', path, headers, raw, **kw)
    return run_app(app, env), env


def check(app, suffixes, offer, path=SYNC + '/check', **kw):
    """A missing check; ``offer`` maps hash -> [timestamp, deleted]."""
    return json_call(app, path, {'suffixes': suffixes, 'offer': offer},
                     **kw)


def pull(app, hashes, path=SYNC + '/pull', **kw):
    return json_call(app, path, {'hashes': hashes}, **kw)


def entry(name, body, when=None, **metadata):
    """A stream entry of object ``/AUTH_a/c/<name>``."""
    meta = dict({'name': '/AUTH_a/c/' + name, 'X-Timestamp': when or ts(),
                 'ETag': etag(body)}, **metadata)
    return meta, len(body), [body]


def tombstone(name, when=None):
    return {'name': '/AUTH_a/c/' + name, 'X-Timestamp': when or ts()}, \
        None, None


def stream_env(entries, path=SYNC, fence=None, query='', key=SECRET,
               headers=None, cut=None):
    """The environ of a signed push of a sync stream, as NodeClient
    sends one (chunked; the stream seeded with the request signature),
    and its body."""
    headers = dict(headers or {})
    if fence is not None:
        headers.update(fence.headers())
    headers.update(signing.sign(SECRET, 'PUT', path, query, headers))
    body = b''.join(syncstream.encode(
        entries, key.encode(), sync.seed(sync.PUSH_SEED,
                                         headers[signing.SIGNATURE_HEADER])))
    if cut is not None:
        body = body[:cut]
    headers['Transfer-Encoding'] = 'chunked'
    return environ('PUT', path, headers, body, query=query,
                   signed=False), body


def push_stream(app, entries, **kw):
    env, body = stream_env(entries, **kw)
    return run_app(app, env), env, body


def results(reply):
    assert reply.status == 200, reply
    return json.loads(reply.body)


def tmp_left(conf):
    tmp_dir = os.path.join(conf.devices, 'sda', 'tmp')
    return os.listdir(tmp_dir) if os.path.isdir(tmp_dir) else []


def routes_of(app):
    """The app's ObjectRoutes (the sync routes' handler's owner)."""
    route, _parts = app.router.match('PUT', SYNC)
    return route.handler.__self__


def _newest(app, name='o'):
    """What is stored of ``/AUTH_a/c/<name>``: (status, timestamp, body)."""
    reply = call(app, 'GET', '/objects/sda/7/AUTH_a/c/' + name)
    when = reply.headers.get('X-Timestamp') or reply.headers.get(
        'X-Backend-Timestamp')
    return reply.status, when, reply.body


def test_check_wants_what_is_missing_or_older_here(app):
    names = ['missing', 'older', 'newer', 'same', 'tomb-here',
             'data-here', 'only-here']
    hashes = {n: _obj_hash('o/' + n) for n in names}
    assert put(app, OBJ + '/older', when=ts(1)).status == 201
    assert put(app, OBJ + '/newer', when=ts(3)).status == 201
    assert put(app, OBJ + '/same', when=ts(1)).status == 201
    assert delete(app, OBJ + '/tomb-here', when=ts(5)).status == 404
    assert put(app, OBJ + '/data-here', when=ts(5)).status == 201
    assert put(app, OBJ + '/only-here', when=ts(1)).status == 201
    offer = {hashes['missing']: [ts(1), False],
             hashes['older']: [ts(2), False],
             hashes['newer']: [ts(2), False],
             hashes['same']: [ts(1), False],
             # Data offered at the tombstone's timestamp: the tombstone
             # wins the tie, so it is not wanted, and offered back.
             hashes['tomb-here']: [ts(5), False],
             # A tombstone offered at the data's timestamp wins.
             hashes['data-here']: [ts(5), True]}
    suffixes = sorted({h[-3:] for h in hashes.values()})
    reply, _env = check(app, suffixes, offer)
    assert reply.status == 200, reply
    assert reply.headers['Content-Type'] == 'application/json'
    answer = json.loads(reply.body)
    assert sorted(answer['want']) == sorted(
        hashes[n] for n in ('missing', 'older', 'data-here'))
    assert answer['newer'] == {
        hashes['newer']: [ts(3), False],
        hashes['tomb-here']: [ts(5), True],
        hashes['only-here']: [ts(1), False]}


def test_check_answers_only_for_the_listed_suffixes(app):
    assert put(app, when=ts(1)).status == 201
    suffix = _obj_hash()[-3:]
    other = 'fff' if suffix != 'fff' else 'ffe'
    reply, _env = check(app, [other], {})
    assert json.loads(reply.body) == {'want': [], 'newer': {}}
    reply, _env = check(app, [suffix], {})
    assert json.loads(reply.body) == {
        'want': [], 'newer': {_obj_hash(): [ts(1), False]}}


def test_check_changes_nothing_and_takes_no_incoming_slot(app):
    routes_of(app).incoming = routes_of(app).max_incoming
    reply, _env = check(app, ['abc'], {'f' * 29 + 'abc': [ts(), False]})
    assert json.loads(reply.body)['want'] == ['f' * 29 + 'abc']
    assert app.manager.partitions('sda') == []


@pytest.mark.parametrize('payload, body, reason', [
    (None, b'not json', b'bad JSON body'),
    (None, b'\xff\xfe', b'bad JSON body'),
    ([], None, b'bad check'),
    ({'offer': {}}, None, b'bad check'),
    ({'suffixes': 'abc', 'offer': {}}, None, b'bad check'),
    ({'suffixes': ['abc', 'xyz'], 'offer': {}}, None, b'bad check'),
    ({'suffixes': ['abc'], 'offer': []}, None, b'bad check'),
    ({'suffixes': ['abc'], 'offer': {'f' * 29 + 'abc': [ts()]}}, None,
     b'bad check'),
    ({'suffixes': ['abc'], 'offer': {'f' * 29 + 'abc': [ts(), 'no']}},
     None, b'bad check'),
    ({'suffixes': ['abc'], 'offer': {'f' * 29 + 'abc': [1.5, False]}},
     None, b'bad check'),
    ({'suffixes': ['abc'], 'offer': {'f' * 29 + 'abc': ['nan', False]}},
     None, b'bad check'),
    ({'suffixes': ['abc'], 'offer': {'F' * 29 + 'ABC': [ts(), False]}},
     None, b'bad check'),
    # An offered hash must be under one of the listed suffixes.
    ({'suffixes': ['abc'], 'offer': {'f' * 29 + 'abd': [ts(), False]}},
     None, b'bad check: offered hash'),
])
def test_bad_check_is_400(app, payload, body, reason):
    """Each a one-line 400, no 500."""
    reply, _env = json_call(app, SYNC + '/check', payload, body=body)
    assert reply.status == 400, reply
    assert reply.body.startswith(reason), reply
    assert reply.body.count(b'\n') == 1


def test_check_body_must_match_its_signed_etag(app):
    body = json.dumps({'suffixes': ['abc'], 'offer': {}}).encode()
    other = json.dumps({'suffixes': ['abd'], 'offer': {}}).encode()
    headers = {'ETag': etag(other), 'Content-Length': str(len(body))}
    reply = call(app, 'POST', SYNC + '/check', headers, body)
    assert (reply.status, reply.body) == (
        422, b'body does not match its ETag\n')
    reply = call(app, 'POST', SYNC + '/check',
                 {'Content-Length': str(len(body))}, body)
    assert (reply.status, reply.body) == (
        400, b'a JSON body needs its ETag\n')


def test_check_body_is_bounded(app):
    body = b' ' * (sync.MAX_CHECK_BODY + 1)
    reply, _env = json_call(app, SYNC + '/check', None, body=body)
    assert reply.status == 413


def test_push_stores_every_object_of_the_stream(app, conf):
    large = os.urandom(200000)
    reply, _env, _body = push_stream(app, [
        entry('o', b'hello', when=ts(1), **{
            'Content-Type': 'text/plain', 'X-Object-Meta-Color': 'blue'}),
        entry('big', large, when=ts(2)),
        entry('empty', b'', when=ts(3)),
        tombstone('gone', when=ts(4))])
    answer = results(reply)
    assert answer == {'results': {'/AUTH_a/c/o': 201, '/AUTH_a/c/big': 201,
                                  '/AUTH_a/c/empty': 201,
                                  '/AUTH_a/c/gone': 201},
                      'stored': 4, 'bytes': 5 + len(large)}
    got = call(app, 'GET', OBJ)
    assert (got.status, got.body) == (200, b'hello')
    assert got.headers['X-Timestamp'] == ts(1)
    assert got.headers['Content-Type'] == 'text/plain'
    assert got.headers['X-Object-Meta-Color'] == 'blue'
    assert got.headers['ETag'] == etag(b'hello')
    assert _newest(app, 'big') == (200, ts(2), large)
    assert _newest(app, 'empty') == (200, ts(3), b'')
    assert _newest(app, 'gone') == (404, ts(4), b'deleted\n')
    assert tmp_left(conf) == []
    assert routes_of(app).incoming == 0


def test_push_skips_what_is_not_newer(app):
    assert put(app, body=b'stored', when=ts(5)).status == 201
    assert put(app, OBJ + '2', body=b'stored', when=ts(5)).status == 201
    assert delete(app, OBJ + '3', when=ts(5)).status == 404
    reply, _env, _body = push_stream(app, [
        entry('o', b'older', when=ts(4)),
        entry('o2', b'same time', when=ts(5)),
        entry('o3', b'data at the tombstone time', when=ts(5)),
        entry('o4', b'new', when=ts(1))])
    assert results(reply)['results'] == {
        '/AUTH_a/c/o': 409, '/AUTH_a/c/o2': 409, '/AUTH_a/c/o3': 409,
        '/AUTH_a/c/o4': 201}
    assert _newest(app, 'o') == (200, ts(5), b'stored')
    assert _newest(app, 'o2') == (200, ts(5), b'stored')
    assert _newest(app, 'o3') == (404, ts(5), b'deleted\n')


def test_push_tombstone_wins_a_tie_with_data(app):
    assert put(app, body=b'stored', when=ts(5)).status == 201
    reply, _env, _body = push_stream(app, [tombstone('o', when=ts(5))])
    assert results(reply)['results'] == {'/AUTH_a/c/o': 201}
    assert _newest(app) == (404, ts(5), b'deleted\n')


def test_push_body_not_matching_its_etag_is_422_for_it_alone(app, conf):
    bad_large = entry('big', b'y' * 100000)
    bad_large[0]['ETag'] = etag(b'something else')
    reply, _env, _body = push_stream(app, [
        entry('o', b'good', when=ts(1)),
        (dict(entry('bad', b'body')[0], ETag=etag(b'other')), 4,
         [b'body']),
        bad_large,
        entry('o2', b'good too', when=ts(1))])
    answer = results(reply)
    assert answer['results'] == {'/AUTH_a/c/o': 201, '/AUTH_a/c/bad': 422,
                                 '/AUTH_a/c/big': 422, '/AUTH_a/c/o2': 201}
    assert answer['stored'] == 2
    assert _newest(app, 'bad')[0] == _newest(app, 'big')[0] == 404
    assert _newest(app, 'o2') == (200, ts(1), b'good too')
    assert tmp_left(conf) == []


@pytest.mark.parametrize('name', ['/a/c', '/AUTH_a/../o', '/AUTH_a/c/o\x01',
                                  'AUTH_a/c/o', '/AUTH_a//o'])
def test_push_bad_object_name_is_400_for_it_alone(app, name):
    reply, _env, _body = push_stream(app, [
        ({'name': name, 'X-Timestamp': ts(), 'ETag': etag(b'x')}, 1,
         [b'x']),
        entry('o', b'fine')])
    assert results(reply)['results'] == {name: 400, '/AUTH_a/c/o': 201}
    assert app.manager.list_suffix('sda', 7, _obj_hash()[-3:]) == {
        _obj_hash(): {'timestamp': ts(), 'deleted': False}}


def _nothing_stored(app, conf, names=('o', 'big'), incoming=0):
    for name in names:
        assert call(app, 'GET', '/objects/sda/7/AUTH_a/c/' + name).status \
            == 404
        assert app.manager.list_suffix('sda', 7,
                                       _obj_hash(name)[-3:]) == {}
    assert tmp_left(conf) == []
    assert routes_of(app).incoming == incoming


def two_objects():
    return [entry('o', b'hello'), entry('big', b'z' * 150000)]


def test_push_signed_with_another_key_stores_nothing(app, conf):
    reply, _env, _body = push_stream(app, two_objects(), key='not-it')
    assert reply.status == 400
    assert reply.body == (b'bad sync stream: stream signature does not '
                          b'match\n')
    _nothing_stored(app, conf)


@pytest.mark.parametrize('cut', [-1, -66, -200, -150100, 30])
def test_truncated_push_stores_nothing(app, conf, cut):
    reply, _env, _body = push_stream(app, two_objects(), cut=cut)
    assert reply.status == 400
    assert reply.body.startswith(b'bad sync stream: ')
    _nothing_stored(app, conf)


def test_push_stream_with_a_pull_seed_is_refused(app, conf):
    """A pull's reply passed off as a push does not verify."""
    headers = signing.sign(SECRET, 'PUT', SYNC, '', {})
    body = b''.join(syncstream.encode(
        two_objects(), SECRET.encode(),
        sync.seed(sync.PULL_SEED, headers[signing.SIGNATURE_HEADER])))
    reply = run_app(app, environ('PUT', SYNC, headers, body, signed=False))
    assert reply.status == 400
    _nothing_stored(app, conf)


def test_push_stream_of_another_request_is_refused(app, conf):
    _env, body = stream_env(two_objects())
    # The same stream under a request signed one second later.
    headers = signing.sign(SECRET, 'PUT', SYNC, '', {},
                           now=time.time() + 1)
    reply = run_app(app, environ('PUT', SYNC, headers, body, signed=False))
    assert reply.status == 400
    _nothing_stored(app, conf)


def test_replayed_push_is_401_and_stores_nothing(app, conf):
    env, body = stream_env([entry('o', b'hello', when=ts(1))])
    assert results(run_app(app, dict(env)))['stored'] == 1
    # The partition moves away (a handoff deleted after its push).
    assert app.manager.delete_partition('sda', 7)
    again = dict(env, **{'wsgi.input': io.BytesIO(body)})
    reply = run_app(app, again)
    assert (reply.status, reply.body) == (401, b'replayed sync request\n')
    _nothing_stored(app, conf, names=['o'])


def test_request_signed_alike_with_another_stream_is_no_replay(app):
    """Two pushes in one second sign their requests alike; their streams
    (seeded with that signature) differ."""
    headers = signing.sign(SECRET, 'PUT', SYNC, '', {})
    seed = sync.seed(sync.PUSH_SEED, headers[signing.SIGNATURE_HEADER])
    for name in ('first', 'second'):
        body = b''.join(syncstream.encode([entry(name, b'x')],
                                          SECRET.encode(), seed))
        reply = run_app(app, environ('PUT', SYNC, headers, body,
                                     signed=False))
        assert results(reply)['results'] == {'/AUTH_a/c/' + name: 201}


def test_push_with_an_old_fence_is_409_and_stores_nothing(app, conf):
    assert fenced(app, token=9).status == 200
    reply, _env, _body = push_stream(app, two_objects(),
                                     fence=fencing.Fence(ITEM, 8))
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    _nothing_stored(app, conf)
    reply, _env, _body = push_stream(app, two_objects(),
                                     fence=fencing.Fence(ITEM, 9))
    assert results(reply)['stored'] == 2


def test_fence_going_stale_during_a_push_publishes_nothing(app, conf):
    env, body = stream_env(two_objects(), fence=fencing.Fence(ITEM, 8))
    env['wsgi.input'] = SlowBody(body, lambda: fenced(app, token=9))
    reply = run_app(app, env)
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert env['wsgi.input'].meanwhile is None  # read to its end
    _nothing_stored(app, conf)


def test_push_fence_must_name_the_partition(app, conf):
    reply, _env, _body = push_stream(
        app, two_objects(), fence=fencing.Fence('coordsync/replicate/0/8',
                                                5))
    assert reply.status == 400
    _nothing_stored(app, conf)


def test_static_push_into_a_locked_partition_is_409(app, conf):
    asked = _holders(app, {ITEM: 'n1@host.boot'})
    reply, _env, _body = push_stream(
        app, two_objects(), query=fencing.REPLICATION_QUERY,
        headers={'X-Coordsync-Member': 'n2@host.boot'})
    assert reply.status == 409
    assert reply.headers['X-Coordsync-Fenced'] == 'true'
    assert asked == [ITEM]
    _nothing_stored(app, conf)
    # The holder itself may push without a token.
    reply, _env, _body = push_stream(
        app, two_objects(), query=fencing.REPLICATION_QUERY,
        headers={'X-Coordsync-Member': 'n1@host.boot'})
    assert results(reply)['stored'] == 2


def test_static_push_refused_when_the_lock_is_taken_meanwhile(app, conf):
    holders = {}
    _holders(app, holders)
    env, body = stream_env(two_objects(), query=fencing.REPLICATION_QUERY,
                           headers={'X-Coordsync-Member': 'n2@host.boot'})
    env['wsgi.input'] = SlowBody(
        body, lambda: holders.update({ITEM: 'n1@host.boot'}))
    reply = run_app(app, env)
    assert reply.status == 409
    _nothing_stored(app, conf)


@pytest.mark.parametrize('action', ['push', 'pull'])
def test_sync_beyond_max_incoming_is_503(app, conf, action):
    routes = routes_of(app)
    assert routes.max_incoming == conf.replicator.max_incoming
    routes.incoming = routes.max_incoming
    if action == 'push':
        reply = push_stream(app, two_objects())[0]
    else:
        reply = pull(app, [_obj_hash()])[0]
    assert reply.status == 503
    assert reply.headers['Retry-After'] == '1'
    assert reply.body.startswith(b'busy: ')
    _nothing_stored(app, conf, incoming=routes.max_incoming)
    routes.incoming -= 1
    if action == 'push':
        reply = push_stream(app, two_objects())[0]
        assert results(reply)['stored'] == 2
    else:
        assert pull(app, [_obj_hash()])[0].status == 200
    assert routes.incoming == routes.max_incoming - 1


def test_incoming_slot_is_held_while_a_pull_is_sent(app):
    routes = routes_of(app)
    assert put(app, body=b'x' * 200000).status == 201
    reply_chunks = []
    env = environ('POST', SYNC + '/pull', {
        'ETag': etag(b'{"hashes": ["%s"]}' % _obj_hash().encode())},
        b'{"hashes": ["%s"]}' % _obj_hash().encode())
    body = app(env, lambda status, headers: reply_chunks.append(status))
    assert reply_chunks == ['200 OK']
    assert routes.incoming == 1
    next(iter(body))
    assert routes.incoming == 1
    body.close()
    assert routes.incoming == 0


@pytest.mark.parametrize('status_of', [
    lambda app: push_stream(app, two_objects(), key='bad')[0],
    lambda app: pull(app, ['bad'])[0],
    lambda app: pull(app, [], body=b'nope')[0]])
def test_incoming_slot_is_released_after_a_refusal(app, status_of):
    assert status_of(app).status == 400
    assert routes_of(app).incoming == 0


def read_stream(reply, env, key=SECRET, direction=sync.PULL_SEED):
    """[(kind, metadata, body)] of a verified pull reply."""
    reader = syncstream.StreamReader(
        io.BytesIO(reply.body).read, key.encode(),
        sync.seed(direction, env['HTTP_X_COORDSYNC_SIGNATURE']))
    frames = [(f.kind, f.metadata, b''.join(f.chunks())) for f in reader]
    assert reader.verified
    return frames


def test_pull_streams_the_newest_versions_asked_for(app):
    large = os.urandom(150000)
    assert put(app, body=b'old', when=ts(1)).status == 201
    assert put(app, body=b'hello', when=ts(2), ETag=etag(b'hello'), **{
        'Content-Type': 'text/plain', 'X-Object-Meta-Color': 'blue'}
        ).status == 201
    assert put(app, OBJ + '-big', body=large, when=ts(3)).status == 201
    assert delete(app, OBJ + '-gone', when=ts(4)).status == 404
    asked = [_obj_hash('o-gone'), _obj_hash(), _obj_hash('never'),
             _obj_hash('o-big')]
    reply, env = pull(app, asked)
    assert reply.status == 200, reply
    assert reply.headers['Content-Type'] == sync.STREAM_TYPE
    frames = read_stream(reply, env)
    assert [(k, m['name']) for k, m, _b in frames] == [
        ('DEL', '/AUTH_a/c/o-gone'), ('OBJ', '/AUTH_a/c/o'),
        ('OBJ', '/AUTH_a/c/o-big')]
    assert frames[0][1] == {'name': '/AUTH_a/c/o-gone',
                            'X-Timestamp': ts(4)}
    assert frames[1][1] == {'name': '/AUTH_a/c/o', 'X-Timestamp': ts(2),
                            'Content-Type': 'text/plain',
                            'ETag': etag(b'hello'), 'Content-Length': '5',
                            'X-Object-Meta-Color': 'blue'}
    assert frames[1][2] == b'hello'
    assert frames[2][2] == large
    assert routes_of(app).incoming == 0


def test_pull_of_nothing_is_an_empty_verified_stream(app):
    reply, env = pull(app, [])
    assert read_stream(reply, env) == []


@pytest.mark.parametrize('direction, key', [
    (sync.PUSH_SEED, SECRET), (sync.PULL_SEED, 'another-secret')])
def test_pull_reply_verifies_only_as_that_pull(app, direction, key):
    assert put(app).status == 201
    reply, env = pull(app, [_obj_hash()])
    with pytest.raises(syncstream.StreamError, match='does not match'):
        read_stream(reply, env, key=key, direction=direction)


@pytest.mark.parametrize('payload', [
    {'hashes': ['xyz']}, {'hashes': ['F' * 32]}, {'hashes': 'f' * 32},
    {'hashes': [5]}, {}, [], {'hashes': ['f' * 31]}])
def test_bad_pull_is_400(app, payload):
    reply, _env = json_call(app, SYNC + '/pull', payload)
    assert reply.status == 400
    assert reply.body.startswith(b'bad pull')
    assert routes_of(app).incoming == 0


def test_pull_body_must_match_its_signed_etag(app):
    body = b'{"hashes": []}'
    reply = call(app, 'POST', SYNC + '/pull', {'ETag': etag(b'{}')}, body)
    assert reply.status == 422


# -- the access log ----------------------------------------------------------

def access_lines(caplog):
    return [r.getMessage().split(' ') for r in caplog.records
            if r.name == wsgi.ACCESS_LOGGER]


@pytest.fixture
def access(caplog):
    caplog.set_level('INFO', logger=wsgi.ACCESS_LOGGER)
    return caplog


def test_access_line_of_a_fenced_put(app, access):
    headers = {'X-Timestamp': ts(), 'Content-Length': '5',
               'X-Coordsync-Member': 'n1@host.b00t'}
    before = time.time()
    assert fenced(app, 'PUT', OBJ, token=9, headers=headers,
                  body=b'hello').status == 201
    assert fenced(app, 'PUT', OBJ, token=8, headers=headers,
                  body=b'hello').status == 409
    (ok, refused) = access_lines(access)
    assert len(ok) == 10
    assert before - 1 <= float(ok[0]) <= time.time()
    assert len(ok[0].split('.')[1]) == 3
    assert ok[1:3] == ['PUT', '"%s"' % OBJ]
    assert ok[3:5] == ['201', '0']
    assert float(ok[5]) >= 0
    assert ok[6:] == ['n1@host.b00t', ITEM, '9', '-']
    refusal = (b'fenced: token 8 for coordsync/replicate/0/7 is older than '
               b'9\n')
    assert refused[3:5] == ['409', str(len(refusal))]
    assert refused[6:9] == ['n1@host.b00t', ITEM, '8']


def test_access_line_of_an_unsigned_request(app, access):
    env = environ('DELETE', OBJ, {'X-Timestamp': ts(),
                                  'X-Coordsync-Member': 'liar@x.1'},
                  signed=False)
    env['REMOTE_ADDR'] = '10.0.0.9'
    assert run_app(app, env).status == 401
    (line,) = access_lines(access)
    assert line[1:] == ['DELETE', '"%s"' % OBJ, '401',
                        str(len(b'request is not signed\n')), line[5],
                        '-', '-', '-', '10.0.0.9']


def test_access_line_of_a_healthcheck(app, access):
    env = environ('GET', '/healthcheck', signed=False)
    env['REMOTE_ADDR'] = '127.0.0.1'
    assert run_app(app, env).status == 200
    assert call(app, 'HEAD', '/healthcheck', signed=False).status == 200
    (get, head) = access_lines(access)
    assert get[1:5] == ['GET', '"/healthcheck"', '200', '3']
    assert get[6:] == ['-', '-', '-', '127.0.0.1']
    assert head[1:5] == ['HEAD', '"/healthcheck"', '200', '0']


def test_access_line_of_a_refused_static_push(app, access):
    _hold(app)
    assert push(app).status == 409
    line = access_lines(access)[-1]
    assert line[1:4] == ['PUT', '"%s?replication=true"' % OBJ, '409']
    assert line[6:9] == ['n2@host.boot', '-', '-']


def test_access_line_counts_a_streamed_body(app, access):
    assert put(app, body=b'x' * 100000).status == 201
    assert call(app, 'GET', OBJ).status == 200
    assert access_lines(access)[-1][3:5] == ['200', '100000']


@pytest.mark.parametrize('raw, logged', [
    ('/objects/sda/7/a/c/' + 'o' * 300,
     '"/objects/sda/7/a/c/' + 'o' * 237 + '..."'),
    ('/nope/a%20b/"x y"', '"/nope/a%20b/%22x%20y%22"'),
])
def test_access_line_path_is_quoted_and_cut(app, access, raw, logged):
    env = environ('GET', '/nope', signed=False)
    env['RAW_PATH_INFO'] = raw
    run_app(app, env)
    (line,) = access_lines(access)
    assert line[2] == logged


def test_access_line_fields_hold_no_space(app, access):
    member = urllib.parse.quote('n 1@host\n', safe='@')
    fenced(app, 'GET', OBJ, item='coordsync/sync/a b/c', token=3,
           headers={'X-Coordsync-Member': member})
    (line,) = access_lines(access)
    assert line[6:9] == ['n%201@host%0A', 'coordsync/sync/a%20b/c', '3']


def test_access_log_can_be_turned_off(app, conf, access):
    conf.set_override('access_log', False, group='server')
    assert put(app).status == 201
    assert access_lines(access) == []


# -- beyond [server] max_connections -----------------------------------------

def _when_full(request, monkeypatch, access_log=None):
    monkeypatch.setattr(wsgi, 'WHEN_FULL_TIMEOUT', 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(request)
        wsgi.answer_when_full(ours, access_log)
        ours.close()
        return b''.join(iter(lambda: theirs.recv(65536), b''))


@pytest.mark.parametrize('request_line, status, body', [
    (b'GET /healthcheck HTTP/1.1', b'200 OK', b'OK\n'),
    (b'GET /healthcheck?x=1 HTTP/1.1', b'200 OK', b'OK\n'),
    (b'HEAD /healthcheck HTTP/1.1', b'200 OK', b''),
    (b'GET /objects/sda/7/a/c/o HTTP/1.1', b'503 Service Unavailable',
     b'too many connections\n'),
    (b'PUT /healthcheck HTTP/1.1', b'503 Service Unavailable',
     b'too many connections\n'),
    (b'', b'503 Service Unavailable', b'too many connections\n'),
])
def test_answer_when_full(monkeypatch, request_line, status, body):
    request = request_line + b'\r\nHost: x\r\n\r\n' if request_line else b''
    answer = _when_full(request + b'x' * 30000, monkeypatch)
    assert answer.startswith(b'HTTP/1.1 ' + status + b'\r\n')
    assert b'\r\nConnection: close\r\n' in answer
    assert answer.endswith(b'\r\n\r\n' + body)


def test_answer_when_full_is_logged(monkeypatch, access):
    logger = logging.getLogger(wsgi.ACCESS_LOGGER)
    _when_full(b'PUT /objects/sda/7/a/c/o?x=1 HTTP/1.1\r\n\r\n',
               monkeypatch, logger)
    (line,) = access_lines(access)
    assert line[1:5] == ['PUT', '"/objects/sda/7/a/c/o?x=1"', '503',
                         str(len(b'too many connections\n'))]
    assert line[6:9] == ['-', '-', '-']
