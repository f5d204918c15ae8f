"""coordsync-fences: list and reset a node's highest fencing tokens."""

import pytest

from coordsync.cmd import fences
from coordsync.common import fencing

ITEM = 'coordsync/replicate/0/17'
OTHER = 'coordsync/sync/AUTH_a/c'


@pytest.fixture
def store_conf(tmp_path):
    path = tmp_path / 'node.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n' % tmp_path)
    store = fencing.TokenStore(str(tmp_path / 'fencing.db'))
    assert store.admit(ITEM, 8600000000000)[0]
    assert store.admit(OTHER, 42)[0]
    yield str(path), store
    store.close()


def run(capsys, conf_path, *argv):
    code = fences.main(['--config-file', conf_path, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_item_with_its_token(store_conf, capsys):
    code, out, _err = run(capsys, store_conf[0], 'list')
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ['ITEM', 'TOKEN']
    assert [line.split()[:2] for line in lines[1:]] == [
        [ITEM, '8600000000000'], [OTHER, '42']]


def test_list_by_prefix(store_conf, capsys):
    code, out, _err = run(capsys, store_conf[0], 'list', '--prefix',
                          'coordsync/sync/')
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == [OTHER]


def test_reset_without_yes_changes_nothing(store_conf, capsys):
    conf_path, store = store_conf
    code, _out, err = run(capsys, conf_path, 'reset')
    assert code == 2
    assert 'would forget the tokens of 2 items' in err
    assert store.highest(ITEM) == 8600000000000


def test_reset_lets_a_new_backends_low_tokens_in(store_conf, capsys):
    conf_path, store = store_conf
    assert store.admit(ITEM, 100) == (False, 8600000000000)
    code, out, _err = run(capsys, conf_path, 'reset', '--yes', '--prefix',
                          'coordsync/replicate/')
    assert code == 0
    assert 'Forgot the highest tokens of 1 items' in out
    assert store.admit(ITEM, 100) == (True, 100)
    assert store.highest(OTHER) == 42


def test_unreadable_store_is_one_error_line(tmp_path, capsys):
    path = tmp_path / 'node.conf'
    blocker = tmp_path / 'file'
    blocker.write_text('')
    path.write_text('[server]\nfence_db = %s/fencing.db\n' % blocker)
    code, _out, err = run(capsys, str(path), 'list')
    assert code == 1
    assert err.startswith('coordsync-fences: error: token store ')
    assert len(err.splitlines()) == 1
