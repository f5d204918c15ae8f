"""Every command's --help: what it does first, its own options next."""

import configparser
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def console_scripts():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    scripts = {}
    for line in parser['entry_points']['console_scripts'].splitlines():
        if line.strip():
            name, target = (part.strip() for part in line.split('='))
            scripts[name] = target.split(':')[0]
    return scripts


SCRIPTS = console_scripts()


@pytest.fixture(scope='module')
def helps():
    """``{script: (status, stdout, stderr)}`` of ``--help``, run in
    parallel: one process per command."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = {}
    for name, module in SCRIPTS.items():
        if importlib.util.find_spec(module) is None:
            continue  # not written yet (coordsync-recon for a while)
        procs[name] = subprocess.Popen(
            [sys.executable, '-m', module, '--help'], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = (proc.returncode, out, err)
    return results


def test_every_console_script_is_covered(helps):
    assert set(SCRIPTS) - set(helps) <= {'coordsync-recon'}
    assert 'coordsync-server' in helps and 'coordsync-ring' in helps


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_help_says_what_the_command_does_first(helps, name):
    if name not in helps:
        pytest.skip('%s is not written yet' % name)
    status, out, err = helps[name]
    assert (status, err) == (0, '')
    blocks = out.split('\n\n')
    assert blocks[0].startswith('usage: %s ' % name)
    # Right after the usage: one sentence (maybe wrapped) of what it
    # does, not a list of options.
    description = ' '.join(blocks[1].split())
    assert description[0].isupper() and description.endswith('.')
    assert not description.startswith(('options:', '-'))
    # oslo.config commands: the logging flags grouped after the
    # command's own options, and no --noX negations shown.
    if 'logging options:' in out:
        assert out.index('logging options:') > out.index('options:')
        assert out.index('--debug') > out.index('logging options:')
        assert '--no' not in out


def test_worker_flags_are_explained(helps):
    _status, out, _err = helps['coordsync-replicator']
    assert '--devices DEV[,DEV...]' in out
    assert '--partitions PART[,PART...]' in out
    assert 'OVERRIDE_DEVICES' not in out and '--noonce' not in out


def test_client_lists_its_commands(helps):
    _status, out, _err = helps['coordsync-client']
    for command in ('put', 'get', 'head', 'delete'):
        assert '\n    %s ' % command in out


def test_hidden_negation_still_parses(tmp_path):
    # --noonce is left out of --help, not out of the parser.
    from coordsync import service
    from coordsync.cmd import replicator
    conf = service.prepare_service(['--once', '--noonce'], prog='t',
                                   cli_opts=replicator.CLI_OPTS,
                                   default_config_files=[])
    assert conf.once is False
