import os
import subprocess
import sys

import pytest

from coordsync import service
from coordsync.cmd import local_cluster
from coordsync.conf import opts


def prepare(tmp_path, text):
    path = tmp_path / 'c.conf'
    path.write_text(text)
    return service.prepare_service(['--config-file', str(path)],
                                   prog='test', default_config_files=[])


def test_good_config_parses(tmp_path):
    conf = prepare(tmp_path, '[DEFAULT]\nnode_name = n7\n'
                             '[coordination]\nheartbeat = 0.5\n')
    assert conf.node_name == 'n7'
    assert conf.coordination.heartbeat == 0.5


@pytest.mark.parametrize('text, message', [
    ('[coordination]\nheartbeat = abc\n', '[coordination] heartbeat'),
    ('[coordination]\nheartbeat = 0\n', '[coordination] heartbeat'),
    ('[DEFAULT]\nbind_port = 70000\n', '[DEFAULT] bind_port'),
    ('[DEFAULT]\nnode_name = ../x\n', '[DEFAULT] node_name'),
    ('[coordination]\ninitial_reconnect_backoff = 9\n'
     'max_reconnect_backoff = 1\n', 'initial_reconnect_backoff'),
])
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exc:
        prepare(tmp_path, text)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert err.startswith('test: error: ') and message in err


def test_missing_config_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        service.prepare_service(['--config-file', str(tmp_path / 'nope')],
                                prog='test')
    assert exc.value.code == 2
    assert 'config file not found' in capsys.readouterr().err


def test_backend_url_is_secret_and_every_area_listed():
    listed = dict((str(group), options) for group, options in
                  opts.list_opts())
    assert set(listed) == {'DEFAULT', 'coordination', 'status', 'server',
                           'client', 'replicator',
                           'object-updater',
                           'container-replicator', 'account-replicator',
                           'proxy', 'container-sync', 'reconciler',
                           'object-auditor',
                           'storage-policy:0'}
    backend = [o for o in listed['coordination'] if o.name == 'backend_url']
    assert backend[0].secret


UNKNOWN_CONF = """\
[DEFAULT]
node_name = n1
verbosee = 1
[coordination]
heartbeet = 1
heartbeat = 0.5
[replicatr]
concurrency = 2
[replicator]
concurrency = 2
[server]
max_clients = 5
[storage-policy:0]
name = gold
colour = red
[Reconciler]
concurrency = 1
"""


def prepare_logged(tmp_path, text, capfd):
    """prepare_service; returns (conf, its log lines)."""
    path = tmp_path / 'coordsync.conf'
    path.write_text(text)
    conf = service.prepare_service(
        ['--config-file', str(path)],
        prog='test', default_config_files=[])
    # oslo.log writes to stdout without a log file.
    out, err = capfd.readouterr()
    return conf, str(path), [line for line in (out + err).splitlines()
                             if 'coordsync.service' in line]


def test_unknown_options_and_sections_are_warned_about(tmp_path, capfd):
    conf, path, lines = prepare_logged(tmp_path, UNKNOWN_CONF, capfd)
    warnings = [line.split('coordsync.service [-] ', 1)[1] for line in lines
                if ' WARNING ' in line]
    assert warnings == [
        'unknown option [DEFAULT] verbosee in %s (ignored)' % path,
        'unknown option [coordination] heartbeet in %s (ignored; did you '
        'mean heartbeat?)' % path,
        'unknown section [replicatr] in %s (ignored; did you mean '
        'replicator?)' % path,
        'unknown option [storage-policy:0] colour in %s (ignored)' % path,
    ]
    # Known ones (deprecated names and any case of a section included)
    # are read as before.
    assert conf.coordination.heartbeat == 0.5
    assert conf.server.max_connections == 5
    assert conf.reconciler.concurrency == 1
    assert service.unknown_options(conf) == [
        line.split('coordsync.service [-] ', 1)[1] for line in lines]


def test_a_clean_config_warns_about_nothing(tmp_path, capfd):
    _conf, _path, lines = prepare_logged(
        tmp_path, '[DEFAULT]\nnode_name = n1\ndebug = false\n'
                  'log_file = %s\n[coordination]\nheartbeat = 0.5\n'
                  '[storage-policy:0]\nname = gold\ndefault = true\n'
                  '[server]\nmax_connections = 10\n'
                  % (tmp_path / 'x.log'), capfd)
    assert lines == []


def test_config_dir_files_are_checked_too(tmp_path):
    conf_dir = tmp_path / 'conf.d'
    conf_dir.mkdir()
    (conf_dir / 'extra.conf').write_text('[coordination]\nbakend_url = x\n')
    conf = service.prepare_service(
        ['--config-dir', str(conf_dir)], prog='test',
        default_config_files=[])
    assert service.unknown_options(conf) == [
        'unknown option [coordination] bakend_url in %s (ignored; did you '
        'mean backend_url?)' % (conf_dir / 'extra.conf')]


def test_local_cluster_configs_have_no_unknown_options(tmp_path):
    # What coordsync-local-cluster and the functional tests write must
    # not make every command warn.
    args = local_cluster.parse_args(['--workdir', str(tmp_path), 'up',
                                     '--nodes', '2', '--replicas', '2',
                                     '--part-power', '2'])
    meta = local_cluster.create(str(tmp_path), args)
    local_cluster._write_proxy_config(str(tmp_path), meta)
    for path in (local_cluster.node_config_path(str(tmp_path), 'n1'),
                 local_cluster.proxy_config_path(str(tmp_path))):
        conf = service.prepare_service(['--config-file', path],
                                       prog='test', default_config_files=[])
        assert service.unknown_options(conf) == []


def test_help_starts_with_the_description(capsys):
    with pytest.raises(SystemExit) as exc:
        service.prepare_service(['--help'], prog='test',
                                description='Does one thing well.')
    assert exc.value.code == 0
    out = capsys.readouterr().out
    blocks = out.split('\n\n')
    assert blocks[0].startswith('usage: test [-h] [--config-file PATH]')
    assert '[general options] [logging options]' in blocks[0]
    assert blocks[1] == 'Does one thing well.'
    # The command's own options first, oslo.log's after, no --noX.
    assert out.index('logging options:') > out.index('--config-file')
    assert out.index('--debug') > out.index('logging options:')
    assert '--nodebug' not in out and '--nouse-syslog' not in out


def test_hidden_negations_still_work(tmp_path):
    conf = service.prepare_service(['--debug', '--nodebug'], prog='test',
                                   default_config_files=[])
    assert conf.debug is False


def test_a_real_command_warns_once_per_misspelling(tmp_path):
    conf = tmp_path / 'coordsync.conf'
    conf.write_text('[DEFAULT]\nstate_path = %s\nuse_stderr = true\n'
                    '[coordination]\nheartbeet = 1\n[replicatr]\n'
                    'concurrency = 2\n' % tmp_path)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    result = subprocess.run(
        [sys.executable, '-m', 'coordsync.cmd.fences', '--config-file',
         str(conf), 'list'], capture_output=True, text=True, env=env,
        check=False, timeout=60)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines()
                if 'WARNING coordsync.service' in line]
    assert len(warnings) == 2
    assert warnings[0].endswith(
        'unknown option [coordination] heartbeet in %s (ignored; did you '
        'mean heartbeat?)' % conf)
    assert warnings[1].endswith(
        'unknown section [replicatr] in %s (ignored; did you mean '
        'replicator?)' % conf)
