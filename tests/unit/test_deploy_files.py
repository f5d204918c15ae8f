"""The deployment files in etc/ and the docs name what really exists.

systemd units, the logrotate file and the Sphinx sources are not
imported by anything, so nothing else notices when a command is renamed
or a daemon is added without a unit; these cheap checks do.
"""

import configparser
import os
import re
import shlex

import pytest

from coordsync.conf import worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SYSTEMD = os.path.join(ROOT, 'etc', 'systemd')
LOGROTATE = os.path.join(ROOT, 'etc', 'logrotate.d', 'coordsync')
DOC = os.path.join(ROOT, 'doc', 'source')

# Console scripts that run once and exit: no unit.
TOOLS = {'coordsync-status', 'coordsync-ring', 'coordsync-client',
         'coordsync-local-cluster', 'coordsync-fences', 'coordsync-recon'}


def _setup_cfg():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    return parser


def _entry_points(kind):
    text = _setup_cfg()['entry_points'][kind]
    points = {}
    for line in text.strip().splitlines():
        name, _, target = line.partition('=')
        points[name.strip()] = target.strip()
    return points


def _units():
    return sorted(name for name in os.listdir(SYSTEMD)
                  if name.endswith('.service'))


def _parse_unit(name):
    # strict: a key given twice in one section is an error here, so
    # a unit never relies on systemd's "later wins" or list semantics
    # by accident.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    with open(os.path.join(SYSTEMD, name)) as f:
        parser.read_file(f)
    return parser


def test_every_daemon_has_a_unit_and_every_unit_a_daemon():
    daemons = set(_entry_points('console_scripts')) - TOOLS
    units = {name[:-len('.service')] for name in _units()}
    assert daemons, 'no console scripts found in setup.cfg'
    assert units == daemons


def test_tools_are_console_scripts():
    # A renamed tool would otherwise make the daemon set above wrong.
    assert TOOLS <= set(_entry_points('console_scripts'))


@pytest.mark.parametrize('name', _units())
def test_unit_parses_and_runs_its_console_script(name):
    unit = _parse_unit(name)
    assert set(unit.sections()) == {'Unit', 'Service', 'Install'}
    service = unit['Service']
    argv = shlex.split(service['ExecStart'])
    command = os.path.basename(argv[0])
    assert command == name[:-len('.service')]
    assert command in _entry_points('console_scripts')
    assert argv[0] == '/usr/local/bin/' + command
    assert argv[1] == '--config-file'
    assert argv[2].startswith('/etc/coordsync/')
    assert argv[2].endswith('.conf')
    assert service['User'] == 'coordsync'
    assert service['Restart'] == 'on-failure'
    assert service['KillSignal'] == 'SIGTERM'
    # exit 2 is a bad config: restarting repeats it.
    assert service['RestartPreventExitStatus'] == '2'
    assert unit['Unit']['PartOf'] == 'coordsync.target'
    assert 'network-online.target' in unit['Unit']['After'].split()
    assert unit['Install']['WantedBy'] == 'coordsync.target'


@pytest.mark.parametrize('name', _units())
def test_stop_timeout_outlasts_an_orderly_stop(name):
    # SIGTERM: items get [server] stop_timeout, locks a grace of at most
    # 5 s; systemd must not SIGKILL before that.
    stop = next(opt for opt in worker.SERVER_WORKER_OPTS
                if opt.name == 'stop_timeout')
    timeout = float(_parse_unit(name)['Service']['TimeoutStopSec'])
    assert timeout > stop.default + 5


def test_proxy_unit_uses_its_own_config():
    unit = _parse_unit('coordsync-proxy.service')
    assert '/etc/coordsync/proxy.conf' in unit['Service']['ExecStart']


def test_target_parses():
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    with open(os.path.join(SYSTEMD, 'coordsync.target')) as f:
        parser.read_file(f)
    assert parser['Install']['WantedBy'] == 'multi-user.target'


def test_logrotate_names_the_log_dir_and_reopens_without_copy():
    with open(LOGROTATE) as f:
        text = f.read()
    body = '\n'.join(line for line in text.splitlines()
                     if not line.lstrip().startswith('#'))
    assert re.search(r'^/var/log/coordsync/\*\.log \{$', body, re.M)
    words = body.split()
    # oslo.log's WatchedFileHandler reopens a renamed file: create, not
    # copytruncate (which loses lines written during the copy).
    assert 'create' in words
    assert 'copytruncate' not in words
    for word in ('daily', 'compress', 'missingok'):
        assert word in words
    assert words[words.index('rotate') + 1] == '14'
    assert body.count('{') == body.count('}') == 1


def test_worker_names_are_documented_in_the_server_unit():
    with open(os.path.join(SYSTEMD, 'coordsync-server.service')) as f:
        text = f.read()
    for name in worker.WORKERS:
        assert name in text


def test_config_reference_uses_the_setup_cfg_namespace():
    namespaces = set(_entry_points('oslo.config.opts'))
    with open(os.path.join(DOC, 'configuration', 'index.rst')) as f:
        shown = re.findall(r'^\.\. show-options:: *(\S+)', f.read(), re.M)
    assert shown and set(shown) <= namespaces
    with open(os.path.join(DOC, 'conf.py')) as f:
        assert "'oslo_config.sphinxext'" in f.read()


def test_readme_links_stay_inside_the_repository():
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    targets = re.findall(r'\]\(([^)\s]+)\)', text)
    for target in targets:
        if re.match(r'[a-z]+://', target) or target.startswith('#'):
            continue
        path = os.path.normpath(os.path.join(ROOT, target.split('#')[0]))
        assert path.startswith(ROOT + os.sep), target
        assert os.path.exists(path), target
