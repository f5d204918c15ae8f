"""Recon: a node's facts, its /recon route, and the cluster view."""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from coordsync import daemons
from coordsync import exceptions
from coordsync.cmd import recon as recon_cmd
from coordsync.common import recon
from coordsync.common.ring import builder as ring_builder
from coordsync.container import updater
from coordsync.obj import diskfile
from coordsync.obj import server
from coordsync.obj import updates
from tests.unit import fakes
from tests.unit import test_updater as updater_tests
from tests.unit.test_server import call

HASH = 'a' * 29 + 'abc'


@pytest.fixture
def app(conf, manager):
    return server.NodeServer(conf, manager)


def touch(path, data=b'x', mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as fh:
        fh.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_worker_groups_are_the_daemons_option_groups():
    assert recon.WORKER_GROUPS == {
        name: cls.conf_group for name, cls in
        daemons.WORKER_CLASSES.items()}
    assert set(recon.WORKERS) == set(daemons.WORKER_CLASSES)


# -- facts on a node ----------------------------------------------------------

def test_worker_recon_file_is_served_or_not_found(conf):
    facts = recon.NodeFacts(conf)
    with pytest.raises(recon.NotFound, match='no object-replicator pass'):
        facts.get('object-replicator')
    path = os.path.join(conf.replicator.recon_cache_path,
                        'object-replicator.json')
    touch(path, json.dumps({'pass': 3, 'done': 4}).encode())
    assert facts.get('object-replicator') == {'pass': 3, 'done': 4}
    touch(path, b'[1]')
    with pytest.raises(ValueError):
        facts.get('object-replicator')


def test_unknown_kind_is_not_found(conf):
    with pytest.raises(recon.NotFound, match='no recon kind'):
        recon.NodeFacts(conf).get('nope')


def test_disk_facts(conf, manager):
    os.makedirs(os.path.join(conf.devices, 'sdb'))
    touch(os.path.join(conf.devices, 'not-a-device'))
    found = recon.NodeFacts(conf).get('disk')
    assert found['mount_check'] is False
    assert [d['device'] for d in found['devices']] == ['sda', 'sdb']
    sda = found['devices'][0]
    st = os.statvfs(os.path.join(conf.devices, 'sda'))
    assert sda['mounted'] is False and sda['usable'] is True
    assert sda['size'] == st.f_blocks * st.f_frsize
    assert 0 < sda['used'] <= sda['size'] and sda['avail'] > 0
    conf.set_override('mount_check', True)
    found = recon.NodeFacts(conf).get('disk')
    assert [(d['usable'], d['size']) for d in found['devices']] == [
        (False, None), (False, None)]
    assert recon.NodeFacts(conf).unmounted() == ['sda', 'sdb']


def test_quarantined_counts(conf, manager):
    sda = os.path.join(conf.devices, 'sda')
    os.makedirs(os.path.join(conf.devices, 'sdb'))
    sdb = os.path.join(conf.devices, 'sdb')
    for dev, kind, names in ((sda, 'objects', ['h1', 'h2']),
                             (sdb, 'objects', ['h3']),
                             (sda, 'objects-1', ['h4']),
                             (sda, 'containers', ['c1']),
                             (sdb, 'accounts', ['a1', 'a2']),
                             (sda, 'async_pending-2', ['p1']),
                             (sdb, 'weird', ['w'])):
        for name in names:
            touch(os.path.join(dev, 'quarantined', kind, name))
    found = recon.NodeFacts(conf).get('quarantined')
    assert found['objects'] == {'0': 3, '1': 1}
    assert found['async_pending'] == {'2': 1}
    assert (found['containers'], found['accounts'], found['other']) == (
        1, 2, 1)
    assert found['devices']['sdb'] == {'objects': 1, 'accounts': 2,
                                       'weird': 1}


def test_async_facts_count_pendings_and_the_oldest_by_mtime(conf, manager):
    now = time.time()
    sda = os.path.join(conf.devices, 'sda')
    name = updates.pending_name(HASH, now)
    touch(os.path.join(sda, 'async_pending', 'abc', name), mtime=now - 100)
    touch(os.path.join(sda, 'async_pending', 'abc', 'b' * 29 + 'abc-'
                       '1700000000.00000'), mtime=now - 10)
    touch(os.path.join(sda, 'async_pending', 'abc', '.tmp-x'),
          mtime=now - 5000)
    touch(os.path.join(sda, 'async_pending-1', 'abc', name), mtime=now - 7)
    found = recon.NodeFacts(conf, clock=lambda: now).get('async')
    assert found['async_pending'] == 3
    assert found['oldest_age'] == 100.0
    assert found['policies'] == {'0': {'count': 2, 'oldest_age': 100.0},
                                 '1': {'count': 1, 'oldest_age': 7.0}}


def make_ring(path, nodes=(1, 2)):
    builder = ring_builder.RingBuilder(2, 2)
    for i in nodes:
        builder.add_device('n%d' % i, '127.0.0.%d' % i, 6200 + i, 'd1',
                           1.0, zone=i)
    builder.rebalance(seed=0)
    builder.save(str(path))


def test_ringmd5_names_each_ring(conf, tmp_path):
    conf.set_override('ring_file', str(tmp_path / 'object.ring.json'))
    conf.set_override('container_ring_file', str(tmp_path / 'c.ring.json'))
    conf.set_override('account_ring_file', str(tmp_path / 'missing.json'))
    make_ring(tmp_path / 'object.ring.json')
    make_ring(tmp_path / 'c.ring.json', nodes=(1, 3))
    rings = recon.NodeFacts(conf).get('ringmd5')['rings']
    with open(tmp_path / 'object.ring.json', 'rb') as fh:
        expected = hashlib.md5(fh.read()).hexdigest()
    assert rings['object'] == {'file': str(tmp_path / 'object.ring.json'),
                               'md5': expected}
    assert rings['account']['md5'] is None
    assert set(rings) == {'object', 'container', 'account'}
    endpoints = recon.ring_endpoints(conf)
    assert [(e['node'], e['port']) for e in endpoints] == [
        ('n1', 6201), ('n2', 6202), ('n3', 6203)]


def test_ring_endpoints_without_rings_is_a_config_error(conf, tmp_path):
    conf.set_override('ring_file', str(tmp_path / 'none.json'))
    with pytest.raises(exceptions.ConfigError, match='no node found'):
        recon.ring_endpoints(conf)


def test_server_facts(conf):
    found = recon.NodeFacts(conf, started_at=100.0,
                            clock=lambda: 160.0).get('server')
    assert found['uptime'] == 60.0 and found['pid'] == os.getpid()
    assert found['node'] == conf.node_name and found['version']


# -- the route ----------------------------------------------------------------

def test_recon_route_is_signed(app):
    reply = call(app, 'GET', '/recon/server', signed=False)
    assert reply.status == 401
    reply = call(app, 'GET', '/recon/server')
    assert reply.status == 200
    assert json.loads(reply.body)['node'] == app.conf.node_name
    assert reply.headers['Content-Type'] == 'application/json'


@pytest.mark.parametrize('path', ['/recon/..', '/recon/../../etc/passwd',
                                  '/recon', '/recon/', '/recon/Disk',
                                  '/recon/disk/x', '/recon/' + 'a' * 65])
def test_bad_recon_paths_are_400_and_read_nothing(app, path):
    reply = call(app, 'GET', path)
    assert reply.status == 400, reply
    assert reply.body.startswith(b'expected /recon/<kind>')
    assert reply.body.count(b'\n') == 1


def test_unknown_or_missing_kind_is_404_with_a_clear_body(app):
    reply = call(app, 'GET', '/recon/nothing')
    assert reply.status == 404
    assert reply.body.startswith(b"no recon kind 'nothing'; known: ")
    reply = call(app, 'GET', '/recon/reconciler')
    assert reply.status == 404
    assert reply.body.startswith(b'no reconciler pass ended on this node')


def test_every_fact_kind_answers(app):
    for kind in recon.FACT_KINDS:
        reply = call(app, 'GET', '/recon/%s' % kind)
        assert reply.status == 200, (kind, reply)
        assert isinstance(json.loads(reply.body), dict)


def test_a_broken_recon_file_is_a_one_line_500(app, conf):
    touch(os.path.join(conf.reconciler.recon_cache_path,
                       'reconciler.json'), b'{not json')
    reply = call(app, 'GET', '/recon/reconciler')
    assert reply.status == 500 and reply.body.count(b'\n') == 1


# -- the cluster view ---------------------------------------------------------

EP1 = {'node': 'n1', 'ip': '127.0.0.1', 'port': 6201}
EP2 = {'node': 'n2', 'ip': '127.0.0.2', 'port': 6202}


def pass_of(started, duration, done=8, failed=0):
    return {'pass': 2, 'mode': 'coordinated', 'started_at': started,
            'duration': duration, 'done': done, 'total': 8,
            'succeeded': done - failed, 'failed': failed, 'errors': failed,
            'skipped_locked': 0, 'fenced': 0}


def test_gather_and_report(tmp_path):
    answers = {
        ('n1', 'object-replicator'): pass_of(1000.0, 10.0, failed=1),
        ('n1', 'ringmd5'): {'rings': {'object': {'md5': 'aa'}}},
        ('n1', 'disk'): {'devices': [
            {'device': 'd1', 'usable': True, 'size': 100, 'used': 25,
             'avail': 75},
            {'device': 'd2', 'usable': False, 'size': None}]},
    }

    def fetch(endpoint, kind):
        if endpoint['node'] == 'n2':
            raise exceptions.CoordsyncError('GET /recon/%s: refused' % kind)
        found = answers.get((endpoint['node'], kind))
        return (200, found) if found is not None else (404, None)
    sections = ['replication', 'md5', 'disk']
    hosts = recon.gather([EP1, EP2], recon.kinds_of(sections), fetch)
    report = recon.build_report(hosts, sections, {'object': 'aa',
                                                  'container': None},
                                now=1100.0)
    assert report['hosts'] == {
        'total': 2, 'answered': 1,
        'unanswered': {'n2 (127.0.0.2:6202)':
                       'GET /recon/object-replicator: refused'}}
    view = report['replication']['object-replicator']
    assert view['reported'] == 1 and view['failed'] == 1
    assert view['oldest'] == {'node': 'n1 (127.0.0.1:6201)', 'age': 90.0}
    assert view['duration'] == {'min': 10.0, 'max': 10.0, 'avg': 10.0,
                                'total': 10.0}
    assert report['replication']['container-replicator']['reported'] == 0
    assert (report['md5']['matched'], report['md5']['hosts']) == (1, 1)
    assert report['disk']['usage']['max'] == 25.0
    assert report['disk']['unmounted'] == ['n1/d2']
    assert report['problems'] == [
        'n2 (127.0.0.2:6202) did not answer: GET /recon/object-replicator:'
        ' refused', 'device n1/d2 is not usable (unmounted)']
    text = recon.format_text(report)
    assert text.startswith('1/2 hosts answered\n  not answering: n2 ')
    assert '[ring md5] 1/1 hosts matched, 0 error(s)' in text
    assert 'oldest completion: 90s ago (n1 (127.0.0.1:6201))' in text
    json.dumps(report)


def test_md5_mismatch_is_a_problem():
    hosts = {'a': {'answered': True, 'error': None, 'kinds': {
        'ringmd5': {'rings': {'object': {'md5': 'bb'},
                              'container': {'md5': 'cc'}}}}},
             'b': {'answered': True, 'error': None, 'kinds': {
                 'ringmd5': None}}}
    report = recon.build_report(hosts, ['md5'], {'object': 'aa',
                                                 'container': 'cc'})
    assert report['md5']['matched'] == 0 and report['md5']['errors'] == 1
    assert report['problems'] == ['a: ring differs: object',
                                  'b: ring differs: (no answer)']


def test_updater_and_sync_views():
    hosts = {'a': {'answered': True, 'error': None, 'kinds': {
        'object-updater': {'pass': 1, 'successes': 4, 'failures': 2,
                           'left': 1, 'duration': 0.5},
        'async': {'async_pending': 3, 'oldest_age': 42.0},
        'container-sync': {'errors': 1, 'sync': [
            {'rows_behind': 5, 'failing': 1, 'oldest_age': 9.0,
             'last_error': 'boom'},
            {'rows_behind': 0, 'failing': 0, 'oldest_age': 0}]}}}}
    report = recon.build_report(hosts, ['updater', 'sync'])
    assert report['updater']['async_pending']['total'] == 3
    assert report['updater']['oldest_async_age'] == 42.0
    assert report['updater']['failures'] == 2
    assert report['sync']['rows_behind'] == 5
    assert report['sync']['nodes']['a']['last_errors'] == ['boom']
    assert report['problems'] == []
    text = recon.format_text(report)
    assert ('[container-sync] 1/1 hosts reported a pass: 2 containers, '
            '5 rows behind, 1 failing') in text
    assert 'boom' in text


def run_command(*args):
    """coordsync-recon in a process of its own (it monkey-patches)."""
    return subprocess.run([sys.executable, '-m', 'coordsync.cmd.recon',
                           *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_command_refuses_bad_usage_with_one_line():
    done = run_command('--format', 'xml')
    assert done.returncode == 2
    assert done.stderr.count('\n') == 1 and done.stdout == ''


def test_command_without_rings_exits_2(tmp_path):
    config = tmp_path / 'c.conf'
    config.write_text('[DEFAULT]\ncluster_secret = s\nring_file = %s\n'
                      'container_ring_file = %s\naccount_ring_file = %s\n'
                      % ((tmp_path / 'none.json',) * 3))
    done = run_command('--config-file', str(config), '--md5')
    assert done.returncode == 2
    assert done.stderr.startswith('coordsync-recon: error: no node found')
    assert done.stderr.count('\n') == 1


def test_sections_default_to_all():
    class Conf:
        replication = updater = show_sync = md5 = quarantined = False
        disk = all = False
    conf = Conf()
    assert recon_cmd.chosen_sections(conf) == list(recon.SECTIONS)
    conf.md5 = conf.disk = True
    assert recon_cmd.chosen_sections(conf) == ['md5', 'disk']
    conf.all = True
    assert recon_cmd.chosen_sections(conf) == list(recon.SECTIONS)


# -- the object updater's levels ----------------------------------------------

class RefusingClient:
    def call(self, node, method, path, headers=None):
        return 503, {}, b''


def test_updater_levels_are_what_its_sweeps_left(conf):
    conf.set_override('node_name', 'n1')
    for device in ('d1', 'd2'):
        os.makedirs(os.path.join(conf.devices, device))
    old = time.time() - 500
    kept = updater_tests.write(os.path.join(conf.devices, 'd1'))
    os.utime(kept, (old, old))
    updater_tests.write(os.path.join(conf.devices, 'd2'),
                        obj_hash=updater_tests.OTHER)
    worker = updater.ObjectUpdater(
        conf, updater_tests.Coordinator(healthy=True),
        ring=fakes.DeviceRing(),
        container_ring=updater_tests.FakeRing(),
        manager=diskfile.DiskFileManager(conf.devices),
        node_client=RefusingClient())
    assert worker.levels() == {'async_pending': 0, 'oldest_async_age': 0.0}
    summary = worker.run_once()
    assert summary['left'] == 2 and summary['failures'] == 6, summary
    levels = worker.levels()
    assert levels['async_pending'] == 2
    assert 500 <= levels['oldest_async_age'] < 560
    with open(os.path.join(conf['object-updater'].recon_cache_path,
                           'object-updater.json')) as fh:
        dumped = json.load(fh)
    assert dumped['levels']['async_pending'] == 2
    assert dumped['devices_left'] == {'d1': 1, 'd2': 1}
    # What the node itself finds on its disks agrees.
    found = recon.NodeFacts(conf).get('async')
    assert found['async_pending'] == 2 and found['oldest_age'] >= 500
