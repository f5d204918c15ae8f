import pytest

from coordsync import service
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
                           'storage-policy:0'}
    backend = [o for o in listed['coordination'] if o.name == 'backend_url']
    assert backend[0].secret
