"""The node server's WSGI app, called in-process with hand-made environs."""

import hashlib
import io
import json
import os
import time
import urllib.parse

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common import direct_client as client
from coordsync.common import hashing
from coordsync.common import signing
from coordsync.common.timestamp import Timestamp
from coordsync.obj import diskfile
from coordsync.obj import server

SECRET = 'unit-secret'
NOW = float(int(time.time()))
OBJ = '/sda/7/AUTH_a/c/o'


def ts(offset=0):
    return Timestamp(NOW + offset).normal


@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('cluster_secret', SECRET)
    conf.set_override('devices', str(tmp_path / 'devices'))
    conf.set_override('hash_path_prefix', 'pre')
    conf.set_override('hash_path_suffix', 'suf')
    return conf


@pytest.fixture
def manager(conf):
    os.makedirs(os.path.join(conf.devices, 'sda'))
    return diskfile.DiskFileManager(conf.devices, hash_prefix='pre',
                                    hash_suffix='suf')


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
        headers.update(signing.sign(secret, method, raw_path, query,
                                    headers.get('X-Timestamp', ''), now=now))
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
    body = b''.join(chunks)
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
    path = '/sda/7' if method == 'REPLICATE' else OBJ
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


def test_signature_covers_the_timestamp(app):
    headers = {'X-Timestamp': ts(1), 'Content-Length': '5',
               **signing.sign(SECRET, 'PUT', OBJ, '', ts())}
    env = environ('PUT', OBJ, headers, b'hello', signed=False)
    assert run_app(app, env).status == 401


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
    assert '%C3%A9%20x%3F' in path
    body = b'quoted'
    reply = call(app, 'PUT', path, {'X-Timestamp': ts(),
                                    'Content-Length': str(len(body))},
                 body, raw_path_info=False)
    assert reply.status == 201
    assert call(app, 'GET', path, raw_path_info=False).body == body


# -- validation ------------------------------------------------------------

@pytest.mark.parametrize('path', [
    '/sda/7/AUTH_a/../o', '/sda/7/AUTH_a/%2e%2e/o', '/sda/7/AUTH_a/c/a/../b',
    '/sda/7/AUTH_a/c/./b', '/sda/7/AUTH_a//o', '/sda/7/AUTH_a/c/',
    '/sda/7/AUTH_a/c/a//b', '/sda/7//c/o', '/sda/abc/AUTH_a/c/o',
    '/sda/-1/AUTH_a/c/o', '/sda/+7/AUTH_a/c/o', '/sda/12345678901/a/c/o',
    '/../7/AUTH_a/c/o', '/%2e%2e/7/AUTH_a/c/o', '/sd%00a/7/AUTH_a/c/o',
    '/sda/7/AUTH_a/c/o%01', '/sda/7/AUTH_a/c/o%7f', '/sda/7/AUTH_a/c/o%ff',
    '/sda/7/AUTH_a/c/' + 'o' * 1025, '/sda/7/AUTH_a/' + 'c' * 257 + '/o',
    '/sda/7/' + 'a' * 257 + '/c/o', '/sda/7/AUTH_a/c', 'sda/7/AUTH_a/c/o',
])
def test_bad_path_is_400_and_stores_nothing(app, path):
    reply = put(app, path)
    assert reply.status == 400, path
    assert reply.body.endswith(b'\n') and reply.body.count(b'\n') == 1
    assert app.manager.partitions('sda') == []


def test_object_name_of_1024_bytes_is_fine(app):
    assert put(app, '/sda/7/AUTH_a/c/' + 'o' * 1024).status == 201


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
    assert put(app, '/sdz/7/AUTH_a/c/o').status == 507
    assert call(app, 'GET', '/sdz/7/AUTH_a/c/o').status == 507
    assert call(app, 'REPLICATE', '/sdz/7').status == 507
    assert call(app, 'GET', '/sdz/7/abc').status == 507


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
    assert call(app, 'REPLICATE', '/sda/7').status == 200
    assert json.loads(call(app, 'REPLICATE', '/sda/7').body) == {}
    assert put(app, when=ts()).status == 201
    obj_hash = _obj_hash()
    suffix = hashing.suffix_of(obj_hash)
    expected = hashlib.md5(('%s/%s.data\n' % (obj_hash, ts()))
                           .encode()).hexdigest()

    reply = call(app, 'REPLICATE', '/sda/7')
    assert reply.headers['Content-Type'] == 'application/json'
    assert json.loads(reply.body) == {suffix: expected}
    again = call(app, 'REPLICATE', '/sda/7/%s-fff' % suffix)
    assert json.loads(again.body) == {suffix: expected}

    listing = call(app, 'GET', '/sda/7/' + suffix)
    assert json.loads(listing.body) == {
        obj_hash: {'timestamp': ts(), 'deleted': False}}
    assert delete(app, when=ts(1)).status == 204
    listing = call(app, 'GET', '/sda/7/' + suffix)
    assert json.loads(listing.body) == {
        obj_hash: {'timestamp': ts(1), 'deleted': True}}


@pytest.mark.parametrize('method, path', [
    ('REPLICATE', '/sda/7/zzz'), ('REPLICATE', '/sda/7/abc-abcd'),
    ('REPLICATE', '/sda/7/abc-'), ('REPLICATE', '/sda/7/abc/def'),
    ('REPLICATE', '/sda'), ('REPLICATE', '/sda/x'), ('GET', '/sda/7/zzz'),
    ('GET', '/sda/7/abc-def'),
])
def test_bad_replication_paths(app, method, path):
    assert call(app, method, path).status == 400
    assert app.manager.partitions('sda') == []
