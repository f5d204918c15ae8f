import time

import pytest
from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync.common import direct_client
from coordsync.common import fencing
from coordsync.common import signing

SECRET = 'cluster-secret'
NOW = 1700000000
PATH = '/sda/7/AUTH_a/c/o%20x'
TS = '1700000000.12345'


def verify(headers, method='PUT', path=PATH, query='', now=NOW,
           max_skew=300, secret=SECRET):
    lowered = {k.lower(): v for k, v in headers.items()}
    return signing.verify(secret, method, path, query,
                          lambda name: lowered.get(name.lower()),
                          max_skew, now=now)


def signed(method='PUT', path=PATH, query='', x_timestamp=TS, now=NOW,
           **extra):
    headers = {'X-Timestamp': x_timestamp} if x_timestamp else {}
    headers.update(extra)
    headers.update(signing.sign(SECRET, method, path, query, headers,
                                now=now))
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


WRITE = {'ETag': 'd41d8cd98f00b204e9800998ecf8427e', 'Content-Length': '0',
         signing.MEMBER_HEADER: 'n1@host.boot',
         'X-Coordsync-Item': 'coordsync/replicate/0/7',
         'X-Coordsync-Token': '17'}


def test_signed_headers_verify_in_any_case():
    headers = signed(**WRITE)
    assert verify(headers) is None
    assert verify({k.upper(): v for k, v in headers.items()}) is None


@pytest.mark.parametrize('header', sorted(signing.SIGNED_HEADERS))
@pytest.mark.parametrize('change', ['other', None])
def test_every_signed_header_is_covered(header, change):
    headers = signed(**WRITE)
    if change is None:
        del headers[header]
    else:
        headers[header] = change
    assert verify(headers) == 'bad signature'


def test_a_signed_header_cannot_be_added():
    for header in signing.SIGNED_HEADERS:
        headers = signed(x_timestamp='')
        headers[header] = '1'
        assert verify(headers) == 'bad signature', header


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
    ('-1700000000', 'bad ' + signing.DATE_HEADER),
    ('+1700000000', 'bad ' + signing.DATE_HEADER),
    ('9' * 13, 'bad ' + signing.DATE_HEADER),
    ('9' * 5000, 'bad ' + signing.DATE_HEADER),
    ('1e400', 'bad ' + signing.DATE_HEADER),
    ('\u0661\u0667', 'bad ' + signing.DATE_HEADER),
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


@pytest.mark.parametrize('signature', [
    'A' * 64, '0' * 63, '0' * 65, '\xff' * 64, '\u00e9' * 64])
def test_malformed_signature(signature):
    headers = signed()
    headers[signing.SIGNATURE_HEADER] = signature
    assert verify(headers) == 'bad signature'


def test_sign_uses_the_clock_by_default():
    headers = signing.sign(SECRET, 'GET', PATH)
    assert abs(int(headers[signing.DATE_HEADER]) - time.time()) < 5
    assert signing.verify(SECRET, 'GET', PATH, '', headers.get, 5) is None


@pytest.mark.parametrize('query', ['', 'a=1'])
def test_replication_pushes_sign_their_mark(query):
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('cluster_secret', SECRET)
    client = direct_client.NodeClient(conf, member_id='n1@host.boot')
    sent = []
    client._send = lambda node, method, path, query, headers, body: \
        sent.append((query, headers))
    client.request({'ip': '127.0.0.1', 'port': 1}, 'PUT', PATH,
                   headers={'X-Timestamp': TS}, body=b'', query=query,
                   replication=True)
    query, headers = sent[0]
    assert fencing.is_replication(query)
    assert verify(headers, query=query, now=time.time()) is None
    bare = '&'.join(p for p in query.split('&')
                    if p != fencing.REPLICATION_QUERY)
    assert verify(headers, query=bare, now=time.time()) == 'bad signature'
