"""Container sync realms, signatures, targets and nonces."""

import hashlib
import hmac
import logging
import os

import pytest

from coordsync.sync import realms

KEY = '9ff3b71c849749dbaec4ccdd3cbab62b'
KEY2 = '1a0a5a0cbd66448084089304442d6776'
GOOD = """\
[US]
key = %s
key2 = %s
cluster_dfw1 = http://127.0.0.1:8080/v1/

[eu]
key = abc
cluster_Lon = https://lon.example.com/v1
""" % (KEY, KEY2)
NONCE = '1700000000-00112233445566778899aabbccddeeff'


@pytest.fixture
def realms_file(tmp_path):
    path = tmp_path / 'container-sync-realms.conf'
    path.write_text(GOOD)
    return path


@pytest.fixture
def good(realms_file):
    return realms.Realms(str(realms_file))


# -- the realms file ----------------------------------------------------------

def test_good_file(good):
    assert good.error is None
    assert good.realms() == ['EU', 'US']
    assert good.keys('us') == (KEY, KEY2)
    assert good.keys('EU') == ('abc',)
    assert good.keys('asia') is None
    assert good.endpoint('Us', 'DFW1') == 'http://127.0.0.1:8080/v1/'
    assert good.endpoint('eu', 'lon') == 'https://lon.example.com/v1'
    assert good.endpoint('us', 'lon') is None
    assert good.endpoint('asia', 'dfw1') is None


def test_missing_file_is_no_realms(tmp_path):
    found = realms.Realms(str(tmp_path / 'nope.conf'))
    assert (found.realms(), found.error) == ([], None)


@pytest.mark.parametrize('text,problem', [
    ('key = x\n', 'cannot read'),
    ('[US]\nkey = a\n[US]\nkey = b\n', 'cannot read'),
    ('[US]\nkey = a\n[us]\nkey = b\n', 'realm us given twice'),
    ('[US]\ncluster_a = http://h/v1/\n', 'realm US has no key'),
    ('[US]\nkey =\n', 'realm US has no key'),
    ('[US]\nkey = k\ncluster_a = ftp://h/v1/\n', 'cluster_a must be an'),
    ('[US]\nkey = k\ncluster_a = h:8080/v1/\n', 'cluster_a must be an'),
    ('[US]\nkey = k\ncluster_ = http://h/v1/\n', 'cluster_ must be an'),
])
def test_bad_file_one_line_error_no_realms(tmp_path, caplog, text,
                                           problem):
    path = tmp_path / 'realms.conf'
    path.write_text(text)
    with caplog.at_level(logging.ERROR):
        found = realms.Realms(str(path))
    assert found.realms() == []
    assert found.keys('US') is None
    assert problem in found.error
    assert found.error.startswith(str(path) + ': ')
    assert '\n' not in found.error
    assert [r.getMessage() for r in caplog.records] == [found.error]
    found.reload_if_changed()
    assert len(caplog.records) == 1


def test_reload_on_change(realms_file, good):
    realms_file.write_text('[ASIA]\nkey = k\ncluster_x = http://x/v1/\n')
    good.reload_if_changed()
    assert good.realms() == ['ASIA']
    realms_file.write_text('[ASIA]\n')
    good.reload_if_changed()
    assert (good.realms(), 'has no key' in good.error) == ([], True)
    os.unlink(realms_file)
    good.reload_if_changed()
    assert (good.realms(), good.error) == ([], None)


def test_reload_checks_at_most_every_interval(realms_file):
    now = [100.0]
    found = realms.Realms(str(realms_file), clock=lambda: now[0],
                          check_interval=10)
    os.unlink(realms_file)
    found.reload_if_changed()
    assert found.realms() == ['EU', 'US']
    now[0] += 10
    found.reload_if_changed()
    assert found.realms() == []


# -- signatures and nonces ----------------------------------------------------

def test_get_sig_fixed_vector():
    message = (b'PUT\n/v1/AUTH_b/c2/o%20x\n1700000000.00000\n' +
               NONCE.encode() + b'\nsecret')
    expected = hmac.new(KEY.encode(), message, hashlib.sha1).hexdigest()
    assert expected == 'b52f6a8ff10fe6b62150ebbaa6d57ae6164b6fa0'
    assert realms.get_sig('put', '/v1/AUTH_b/c2/o%20x', '1700000000.00000',
                          NONCE, KEY, 'secret') == expected


def test_nonce_form():
    nonce = realms.new_nonce(clock=lambda: 1700000000.9)
    assert nonce.startswith('1700000000-') and len(nonce) == 43
    assert realms.nonce_time(nonce) == 1700000000
    assert realms.new_nonce() != realms.new_nonce()
    for bad in (None, '', 'abc', '17-xyz', '-' + 'a' * 32, '17-' + 'A' * 32,
                '1700000000-%s ' % ('a' * 32), '1.5-' + 'a' * 32):
        assert realms.nonce_time(bad) is None, bad


# -- X-Container-Sync-To ------------------------------------------------------

def test_realm_target(good):
    target = realms.parse_sync_to('//us/dfw1/AUTH_b/c%202', good, [])
    assert target == realms.SyncTarget(
        'http://127.0.0.1:8080/v1/AUTH_b/c%202', '/v1/AUTH_b/c%202', 'US',
        'DFW1', 'AUTH_b', 'c 2')
    target = realms.parse_sync_to('//EU/LON/a/c', good, [])
    assert target.url == 'https://lon.example.com/v1/a/c'
    assert target.path == '/v1/a/c'


def test_plain_target_allowed_host(good):
    target = realms.parse_sync_to('https://Backup.Example:8443/v1/AUTH_b/'
                                  'caf%C3%A9', good, ['backup.example'])
    assert target == realms.SyncTarget(
        'https://Backup.Example:8443/v1/AUTH_b/caf%C3%A9',
        '/v1/AUTH_b/caf%C3%A9', None, None, 'AUTH_b', 'caf\xe9')


@pytest.mark.parametrize('value,reason', [
    ('//asia/dfw1/a/c', "unknown realm 'asia'"),
    ('//us/lon/a/c', "unknown cluster 'lon' in realm 'us'"),
    ('//us/dfw1/a/..', '".." segment in container name'),
    ('//us/dfw1/a/c%00', 'control character in container name'),
    ('//us/dfw1/a/c%FF', 'not UTF-8'),
    ('http://evil:8080/v1/a/c', 'host evil is not in allowed_sync_hosts'),
    ('http://127.0.0.1/v1/a/%2E%2E', '".." segment in container name'),
    ('//us/dfw1/a', 'must be //realm/cluster/account/container or'),
    ('//us/dfw1/a/c/o', 'must be //realm/cluster/account/container or'),
    ('//us//a/c', 'must be //realm/cluster/account/container or'),
    ('http://127.0.0.1/v1/a', 'must be //realm'),
    ('http://127.0.0.1/v1/a/c/', 'must be //realm'),
    ('http://127.0.0.1/v2/a/c', 'must be //realm'),
    ('http://127.0.0.1/x/v1/a/c', 'must be //realm'),
    ('http://127.0.0.1/v1/a/c?x=1', 'must be //realm'),
    ('http://127.0.0.1/v1/a/c#f', 'must be //realm'),
    ('http://u:p@127.0.0.1/v1/a/c', 'must be //realm'),
    ('http://127.0.0.1:99999/v1/a/c', 'must be //realm'),
    ('ftp://127.0.0.1/v1/a/c', 'must be //realm'),
    ('/v1/a/c', 'must be //realm'),
    ('', 'must be //realm'),
])
def test_bad_targets(good, value, reason):
    with pytest.raises(ValueError) as err:
        realms.parse_sync_to(value, good, ['127.0.0.1'])
    assert reason in str(err.value)
    assert '\n' not in str(err.value)


def test_realm_target_with_bad_realms_file(tmp_path):
    path = tmp_path / 'realms.conf'
    path.write_text('[US]\n')
    with pytest.raises(ValueError) as err:
        realms.parse_sync_to('//us/dfw1/a/c', realms.Realms(str(path)), [])
    assert str(err.value) == '%s: realm US has no key' % path


# -- the headers of a sync request --------------------------------------------

def test_sync_headers_realm_signed_with_first_key(good):
    target = realms.parse_sync_to('//us/dfw1/AUTH_b/c2', good, [])
    headers = realms.sync_headers('PUT', target, '/v1/AUTH_b/c2/o%20x',
                                  '1700000000.00000', 'secret', good,
                                  clock=lambda: 1700000000.0)
    realm, nonce, sig = headers['X-Container-Sync-Auth'].split(' ')
    assert list(headers) == ['X-Container-Sync-Auth']
    assert realm == 'US' and realms.nonce_time(nonce) == 1700000000
    assert sig == realms.get_sig('PUT', '/v1/AUTH_b/c2/o%20x',
                                 '1700000000.00000', nonce, KEY, 'secret')


def test_sync_headers_plain_carries_key(good):
    target = realms.parse_sync_to('http://127.0.0.1:8080/v1/a/c', good,
                                  ['127.0.0.1'])
    assert realms.sync_headers('DELETE', target, '/v1/a/c/o', '0', 'secret',
                               good) == {'X-Container-Sync-Key': 'secret'}


def test_sync_headers_realm_gone(realms_file, good):
    target = realms.parse_sync_to('//us/dfw1/a/c', good, [])
    realms_file.write_text('[EU]\nkey = k\n')
    good.reload_if_changed()
    with pytest.raises(realms.RealmsError) as err:
        realms.sync_headers('PUT', target, '/v1/a/c/o', '0', 's', good)
    assert str(err.value) == "unknown realm 'US'"


# -- nonces seen --------------------------------------------------------------

def _nonce(when, n=0):
    return '%d-%032x' % (when, n)


def test_nonce_cache_fresh_then_replayed():
    cache = realms.NonceCache(300)
    assert cache.admit(_nonce(1000), 1000.5) is None
    assert cache.admit(_nonce(1000, 1), 1001) is None
    assert cache.admit(_nonce(1000), 1200) == realms.REPLAYED
    # Still refused at the very edge of the window, then too old.
    assert cache.admit(_nonce(1000), 1300) == realms.REPLAYED
    assert 'older than 300s' in cache.admit(_nonce(1000), 1300.5)


@pytest.mark.parametrize('nonce,reason', [
    (_nonce(600), 'older than 300s or from the future'),
    (_nonce(1400), 'older than 300s or from the future'),
    ('abc', 'not of the form <time>-<hex>'),
    ('', 'not of the form <time>-<hex>'),
])
def test_nonce_cache_refuses(nonce, reason):
    cache = realms.NonceCache(300)
    assert reason in cache.admit(nonce, 1000)
    assert len(cache) == 0


def test_nonce_cache_bounded():
    cache = realms.NonceCache(10, max_entries=3)
    for n in range(3):
        assert cache.admit(_nonce(100, n), 100) is None
    assert cache.admit(_nonce(105, 9), 105) == realms.TOO_MANY
    assert len(cache) == 3
    # Once the first ones expire, room again; expired ones are gone.
    assert cache.admit(_nonce(105, 9), 110.5) is None
    assert len(cache) == 1
