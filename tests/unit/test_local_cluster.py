"""coordsync-local-cluster without starting nodes: layout and --set."""

import os

import pytest

from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.cmd import local_cluster


def up_args(workdir, *extra):
    return local_cluster.parse_args(['--workdir', str(workdir), 'up',
                                     '--nodes', '2', '--replicas', '2',
                                     '--part-power', '2', *extra])


def node_conf(workdir, name):
    return service.prepare_service(
        ['--config-file', local_cluster.node_config_path(str(workdir), name)],
        prog='test', default_config_files=[])


SETS = ['--set', 'replicator.concurrency=2', '--set',
        'server.fence_lease = 5', '--set', 'DEFAULT.debug=true',
        '--set', 'server.workers=']


def test_settings_land_in_every_node_config(tmp_path):
    args = up_args(tmp_path, *SETS)
    local_cluster.create(str(tmp_path), args,
                         local_cluster.parse_settings(args.set))
    for name in ('n1', 'n2'):
        conf = node_conf(tmp_path, name)
        assert conf.replicator.concurrency == 2
        assert conf.server.fence_lease == 5.0
        assert conf.debug is True
        assert conf.server.workers == []
        # What the cluster sets itself is still there.
        assert conf.node_name == name
        assert conf.coordination.heartbeat == 1.0


def test_up_again_with_set_adds_to_the_settings(tmp_path):
    args = up_args(tmp_path, '--set', 'replicator.concurrency=2')
    local_cluster.create(str(tmp_path), args,
                         local_cluster.parse_settings(args.set))
    meta = local_cluster.load(str(tmp_path))
    local_cluster.apply_settings(str(tmp_path), meta,
                                 local_cluster.parse_settings(
                                     ['replicator.concurrency=3',
                                      'server.fence_lease=0']))
    assert local_cluster.load(str(tmp_path))['settings'] == {
        'replicator.concurrency': '3', 'server.fence_lease': '0'}
    conf = node_conf(tmp_path, 'n2')
    assert (conf.replicator.concurrency, conf.server.fence_lease) == (3, 0)


@pytest.mark.parametrize('text, message', [
    ('concurrency=2', 'expected GROUP.OPTION=VALUE'),
    ('replicator.concurrency', 'expected GROUP.OPTION=VALUE'),
    ('.concurrency=2', 'expected GROUP.OPTION=VALUE'),
    ('replicator.=2', 'expected GROUP.OPTION=VALUE'),
    ('nope.concurrency=2', 'no option group [nope]'),
    ('replicator.nope=2', 'no option nope in [replicator]'),
    ('DEFAULT.nope=2', 'no option nope in [DEFAULT]'),
    ('replicator.concurrency=many', 'bad value'),
    ('server.fence_lease=-1', 'bad value'),
    ('DEFAULT.node_name=a\nb', 'a value is one line'),
])
def test_bad_settings_are_refused(text, message):
    with pytest.raises(exceptions.ConfigError) as err:
        local_cluster.parse_settings([text])
    assert message in str(err.value)
    assert '\n' not in str(err.value)


def test_bad_setting_exits_2_and_starts_nothing(tmp_path, capsys,
                                                 monkeypatch):
    def no_start(*args):
        raise AssertionError('nothing may start')
    monkeypatch.setattr(local_cluster, 'start_node', no_start)
    workdir = tmp_path / 'cluster'
    code = local_cluster.main(['--workdir', str(workdir), 'up', '--set',
                               'replicator.concurrency=2', '--set',
                               'replicator.concurency=2'])
    assert code == 2
    err = capsys.readouterr().err
    assert err == ('coordsync-local-cluster: error: --set '
                   'replicator.concurency=2: no option concurency in '
                   '[replicator]\n')
    assert not os.path.exists(workdir)


def test_proxy_config_has_rings_and_test_user(tmp_path):
    args = up_args(tmp_path, '--set', 'proxy.token_ttl=60')
    meta = local_cluster.create(str(tmp_path), args,
                                local_cluster.parse_settings(args.set))
    local_cluster._write_proxy_config(str(tmp_path), meta)
    conf = service.prepare_service(
        ['--config-file', local_cluster.proxy_config_path(str(tmp_path))],
        prog='test', default_config_files=[])
    assert conf.proxy.bind_port == meta['base_port'] + 2
    assert conf.proxy.users == ['test:tester testing .admin']
    assert conf.proxy.token_ttl == 60
    assert conf.cluster_secret == meta['cluster_secret']
    assert conf.container_ring_file.endswith('container.ring.json')
    assert local_cluster.proxy_auth_url(meta) == (
        'http://127.0.0.1:%d/auth/v1.0' % (meta['base_port'] + 2))


def test_nodes_run_every_background_worker(tmp_path):
    args = up_args(tmp_path, '--replicate-every', '3')
    local_cluster.create(str(tmp_path), args)
    conf = node_conf(tmp_path, 'n1')
    assert sorted(conf.server.workers) == sorted(daemons.WORKER_CLASSES)
    for group in ('replicator', 'object-updater', 'container-replicator',
                  'account-replicator'):
        assert conf[group].run_pause == 3.0


def test_replicate_every_0_runs_no_worker(tmp_path):
    args = up_args(tmp_path / 'quiet', '--replicate-every', '0')
    local_cluster.create(str(tmp_path / 'quiet'), args)
    assert node_conf(tmp_path / 'quiet', 'n2').server.workers == []
