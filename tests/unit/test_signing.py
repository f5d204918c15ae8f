import time

import pytest

from coordsync.common import signing

SECRET = 'cluster-secret'
NOW = 1700000000
PATH = '/sda/7/AUTH_a/c/o%20x'
TS = '1700000000.12345'


def verify(headers, method='PUT', path=PATH, query='', now=NOW,
           max_skew=300, secret=SECRET):
    return signing.verify(secret, method, path, query, headers.get,
                          max_skew, now=now)


def signed(method='PUT', path=PATH, query='', x_timestamp=TS, now=NOW):
    headers = signing.sign(SECRET, method, path, query, x_timestamp,
                           now=now)
    if x_timestamp:
        headers['X-Timestamp'] = x_timestamp
    return headers


def test_good_signature_verifies():
    headers = signed()
    assert set(headers) == {signing.DATE_HEADER, signing.SIGNATURE_HEADER,
                            'X-Timestamp'}
    assert headers[signing.DATE_HEADER] == str(NOW)
    assert len(headers[signing.SIGNATURE_HEADER]) == 64
    assert verify(headers) is None


def test_without_timestamp_and_with_query():
    headers = signed('REPLICATE', '/sda/7', query='a=1', x_timestamp='')
    assert verify(headers, 'REPLICATE', '/sda/7', 'a=1') is None
    assert verify(headers, 'REPLICATE', '/sda/7', 'a=2') == 'bad signature'


def test_method_case_does_not_matter():
    assert verify(signed('put')) is None


@pytest.mark.parametrize('change', [
    {'method': 'DELETE'}, {'path': '/sda/7/AUTH_a/c/o x'},
    {'path': '/sda/8/AUTH_a/c/o%20x'}, {'query': 'x=1'},
    {'secret': 'other-secret'},
])
def test_tampered_request_fails(change):
    assert verify(signed(), **change) == 'bad signature'


@pytest.mark.parametrize('header, value', [
    ('X-Timestamp', '1700000000.12346'),
    ('X-Timestamp', None),
    (signing.DATE_HEADER, str(NOW + 1)),
    (signing.SIGNATURE_HEADER, '0' * 64),
    (signing.SIGNATURE_HEADER, 'not hex'),
])
def test_tampered_header_fails(header, value):
    headers = signed()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    assert verify(headers) == 'bad signature'


@pytest.mark.parametrize('missing', [signing.DATE_HEADER,
                                     signing.SIGNATURE_HEADER])
def test_unsigned_request(missing):
    headers = signed()
    del headers[missing]
    assert verify(headers) == 'request is not signed'
    assert verify({}) == 'request is not signed'


@pytest.mark.parametrize('date, reason', [
    ('yesterday', 'bad ' + signing.DATE_HEADER),
    ('1.5', 'bad ' + signing.DATE_HEADER),
    ('', 'request is not signed')])
def test_bad_date(date, reason):
    headers = signed()
    headers[signing.DATE_HEADER] = date
    assert verify(headers) == reason


@pytest.mark.parametrize('offset, ok', [
    (0, True), (300, True), (-300, True), (301, False), (-301, False),
    (10 ** 6, False)])
def test_clock_skew(offset, ok):
    headers = signed(now=NOW + offset)
    reason = verify(headers, now=NOW)
    if ok:
        assert reason is None
    else:
        assert 'off this node' in reason


def test_sign_uses_the_clock_by_default():
    headers = signing.sign(SECRET, 'GET', PATH)
    assert abs(int(headers[signing.DATE_HEADER]) - time.time()) < 5
    assert signing.verify(SECRET, 'GET', PATH, '', headers.get, 5) is None
