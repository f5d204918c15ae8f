"""/metrics of the node API, and what the app counts in it."""

import pytest

from coordsync.common import fencing
from coordsync.common import metrics
from coordsync.obj import server
from tests.unit.test_server import call
from tests.unit.test_server import put


@pytest.fixture
def app(conf, manager):
    metrics.reset()
    yield server.NodeServer(conf, manager)
    metrics.reset()


def samples(body):
    return metrics.parse(body.decode('utf-8'))


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(app):
    reply = call(app, 'GET', '/metrics', signed=False)
    assert reply.status == 200
    assert reply.headers['Content-Type'] == metrics.CONTENT_TYPE
    return samples(reply.body)


def test_metrics_need_no_signature_and_parse(app):
    found = scrape(app)
    # The families are there before anything happened (with no samples
    # for labelled ones), and the scrape itself is counted afterwards.
    assert value(found, 'coordsync_coordination_outages_total') == 0.0
    found = scrape(app)
    assert value(found, 'coordsync_http_requests_total', route='/metrics',
                 method='GET', status='200') == 1.0
    assert call(app, 'POST', '/metrics', signed=False).status == 405


def test_requests_are_counted_by_route_method_and_status(app):
    assert put(app).status == 201
    assert call(app, 'GET', '/objects/sda/7/AUTH_a/c/o').status == 200
    assert call(app, 'GET', '/objects/sda/7/AUTH_a/c/x').status == 404
    assert call(app, 'GET', '/objects/sda/7/AUTH_a/c/o',
                signed=False).status == 401
    assert call(app, 'GET', '/no/such/thing').status == 404
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200
    found = scrape(app)
    counted = {labels: v for (name, labels), v in found.items()
               if name == 'coordsync_http_requests_total'}
    assert counted == {
        frozenset({'route': '/objects', 'method': 'PUT',
                   'status': '201'}.items()): 1.0,
        frozenset({'route': '/objects', 'method': 'GET',
                   'status': '200'}.items()): 1.0,
        frozenset({'route': '/objects', 'method': 'GET',
                   'status': '404'}.items()): 1.0,
        frozenset({'route': '/objects', 'method': 'GET',
                   'status': '401'}.items()): 1.0,
        frozenset({'route': 'unknown', 'method': 'GET',
                   'status': '404'}.items()): 1.0,
        frozenset({'route': '/healthcheck', 'method': 'GET',
                   'status': '200'}.items()): 1.0,
    }
    assert value(found, 'coordsync_http_request_duration_seconds_count',
                 route='/objects') == 4.0


def test_odd_methods_and_paths_add_no_series(app):
    for i in range(5):
        call(app, 'BREW%d' % i, '/random-%d' % i)
    found = scrape(app)
    assert value(found, 'coordsync_http_requests_total', route='unknown',
                 method='other', status='404') == 5.0


def test_stale_token_refusals_are_counted_on_the_server_side(app):
    item = 'coordsync/replicate/0/7'

    def replicate(token):
        return call(app, 'REPLICATE', '/objects/sda/7',
                    fencing.Fence(item, token).headers())
    assert replicate(9).status == 200
    assert replicate(5).status == 409
    assert replicate(4).status == 409
    found = scrape(app)
    assert value(found, 'coordsync_fencing_refusals_total',
                 side='server') == 2.0
    assert value(found, 'coordsync_fencing_refusals_total',
                 side='worker') == 0.0
    assert value(found, 'coordsync_http_requests_total', route='/objects',
                 method='REPLICATE', status='409') == 2.0


def test_lease_refusals_are_counted_too(app, conf):
    conf.set_override('fence_lease', 60, group='server')
    item = 'coordsync/replicate/0/7'
    assert call(app, 'REPLICATE', '/objects/sda/7',
                fencing.Fence(item, 3).headers()).status == 200
    reply = call(app, 'PUT', '/objects/sda/7/AUTH_a/c/o',
                 {'X-Timestamp': '1700000000.00000',
                  'Content-Length': '1'}, body=b'x',
                 query='replication=true')
    assert reply.status == 409
    assert value(scrape(app), 'coordsync_fencing_refusals_total',
                 side='server') == 1.0
