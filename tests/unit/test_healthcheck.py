"""The node's /healthcheck: drain file, coordination, unmounted devices."""

import os
import socket

import pytest

from coordsync.common import wsgi
from coordsync.obj import server
from tests.unit.test_server import call


@pytest.fixture
def app(conf, manager):
    return server.NodeServer(conf, manager)


def drain_path(conf):
    return conf.server.drain_file


def test_healthy_node_answers_ok(app, conf):
    assert drain_path(conf) == os.path.join(conf.state_path, 'drain')
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert (reply.status, reply.body) == (200, b'OK\n')


def test_drain_file_makes_it_503_naming_the_file(app, conf):
    os.makedirs(conf.state_path, exist_ok=True)
    with open(drain_path(conf), 'w'):
        pass
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert reply.status == 503
    assert drain_path(conf).encode() in reply.body
    assert reply.body.count(b'\n') == 1
    head = call(app, 'HEAD', '/healthcheck', signed=False)
    assert (head.status, head.body) == (503, b'')
    # NOTE: draining takes the node out of balancers, not out of service.
    assert call(app, 'GET', '/recon/server').status == 200
    os.unlink(drain_path(conf))
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200


def test_empty_drain_file_option_checks_nothing(app, conf, tmp_path):
    conf.set_override('drain_file', '', group='server')
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200


class Coordinator:
    def __init__(self, seconds):
        self.seconds = seconds

    def unreachable_for(self):
        return self.seconds


def test_coordination_down_past_the_limit_is_503(app, conf):
    conf.set_override('healthcheck_coordination_limit', 60,
                      group='server')
    app.coordinator = Coordinator(59.0)
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200
    app.coordinator.seconds = 61.0
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert reply.status == 503
    assert b'coordination backend unreachable for 61s' in reply.body
    # A limit of 0: the backend is not checked.
    conf.set_override('healthcheck_coordination_limit', 0, group='server')
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200


def test_coordination_state_callable_wins(app, conf):
    app.coordinator = Coordinator(0.0)
    app.coordination_state = lambda: 1000.0
    assert app.unreachable_for() == 1000.0
    assert call(app, 'GET', '/healthcheck', signed=False).status == 503


def test_a_broken_coordination_state_does_not_break_the_check(app):
    def broken():
        raise RuntimeError('kaboom')
    app.coordination_state = broken
    assert app.unreachable_for() is None
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200


def test_no_coordinator_is_unknown(app):
    assert app.unreachable_for() is None


def test_unmounted_device_with_mount_check_is_503(app, conf):
    # NOTE: a tmp directory is never a mount point.
    assert call(app, 'GET', '/healthcheck', signed=False).status == 200
    conf.set_override('mount_check', True)
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert reply.status == 503
    assert reply.body == b'device(s) not mounted: sda\n'


def test_every_reason_on_one_line(app, conf):
    conf.set_override('mount_check', True)
    os.makedirs(conf.state_path, exist_ok=True)
    open(drain_path(conf), 'w').close()
    app.coordination_state = lambda: 3600.0
    reply = call(app, 'GET', '/healthcheck', signed=False)
    assert reply.status == 503 and reply.body.count(b'\n') == 1
    assert reply.body.count(b'; ') == 2


def _when_full(monkeypatch, request, health):
    monkeypatch.setattr(wsgi, 'WHEN_FULL_TIMEOUT', 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(request)
        wsgi.answer_when_full(ours, health=health)
        ours.close()
        return b''.join(iter(lambda: theirs.recv(65536), b''))


def test_a_full_server_still_tells_it_is_draining(app, conf, monkeypatch):
    os.makedirs(conf.state_path, exist_ok=True)
    open(drain_path(conf), 'w').close()
    answer = _when_full(monkeypatch, b'GET /healthcheck HTTP/1.1\r\n\r\n',
                        app.health)
    assert answer.startswith(b'HTTP/1.1 503 ')
    assert answer.endswith(b'draining: drain file %s exists\n'
                           % drain_path(conf).encode())
