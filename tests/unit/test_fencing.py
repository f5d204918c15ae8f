"""Fences and the token store: order, durability, sharing, corruption."""

import glob
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from coordsync.common import fencing

ITEM = 'coordsync/replicate/0/17'


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'state' / 'fencing.db')


@pytest.fixture
def store(path):
    return fencing.TokenStore(path)


# -- Fence and its headers ---------------------------------------------------

def test_fence_headers_round_trip():
    fence = fencing.Fence('coordsync/sync/AUTH_é/c d', 2 ** 63 - 1)
    headers = fence.headers()
    assert headers == {
        'X-Coordsync-Item': 'coordsync/sync/AUTH_%C3%A9/c%20d',
        'X-Coordsync-Token': '9223372036854775807'}
    assert fencing.from_headers(headers.get) == fence


def test_no_headers_is_no_fence():
    assert fencing.from_headers({}.get) is None


def test_replicate_target():
    assert fencing.Fence(ITEM, 1).replicate_target() == ('0', '17')
    assert fencing.Fence('coordsync/sync/a/c', 1).replicate_target() is None


@pytest.mark.parametrize('item', [
    '', 'coordsync', 'coordsync/replicate', 'other/replicate/0/1',
    'coordsync//0/1', 'coordsync/replicate/0/', 'coordsync/./0/1',
    'coordsync/replicate/../1', 'coordsync/Replicate/0/1',
    'coordsync/replicate/0/1\n', 'coordsync/replicate/0/\x7f',
    'coordsync/replicate/0/\x85', 'coordsync/sync/' + 'a' * 498,
    'coordsync/sync/' + '\u00e9' * 250, 7, None])
def test_bad_items(item):
    with pytest.raises(ValueError):
        fencing.check_item(item)
    with pytest.raises((ValueError, TypeError)):
        fencing.Fence(item, 1)


def test_item_of_512_bytes_is_fine():
    item = 'coordsync/sync/' + 'a' * 497
    assert len(item) == 512
    assert fencing.Fence(item, 1).item == item


@pytest.mark.parametrize('token', [0, -1, 2 ** 63, True, 1.0, '5', None])
def test_bad_tokens(token):
    with pytest.raises(ValueError):
        fencing.Fence(ITEM, token)


@pytest.mark.parametrize('item, token', [
    (ITEM, None), (None, '5'), (ITEM, '0'), (ITEM, '05'), (ITEM, '+5'),
    (ITEM, ' 5'), (ITEM, '5 '), (ITEM, '\u0665'), (ITEM, str(2 ** 63)),
    (ITEM, '9' * 5000), ('coordsync/replicate/%ZZ', '5'),
    ('coordsync/replicate/%ff', '5'), ('coordsync/x/%0a', '5'),
    ('coordsync/x/\u00e9', '5'), ('coordsync/x/' + 'a' * 2000, '5')])
def test_bad_headers(item, token):
    headers = {'X-Coordsync-Item': item, 'X-Coordsync-Token': token}
    with pytest.raises(ValueError) as err:
        fencing.from_headers(lambda name: headers.get(name))
    assert '\n' not in str(err.value)


# -- TokenStore --------------------------------------------------------------

def test_admit_in_order(store):
    assert store.highest(ITEM) == 0
    assert store.admit(ITEM, 5) == (True, 5)
    assert store.admit(ITEM, 5) == (True, 5)
    assert store.admit(ITEM, 4) == (False, 5)
    assert store.admit(ITEM, 9) == (True, 9)
    assert store.admit(ITEM, 5) == (False, 9)
    assert store.admit('coordsync/replicate/0/18', 1) == (True, 1)
    assert store.highest(ITEM) == 9


def test_admit_refuses_bad_arguments(store):
    with pytest.raises(ValueError):
        store.admit('nope', 1)
    with pytest.raises(ValueError):
        store.admit(ITEM, 0)


def test_tokens_survive_restarts(path):
    fencing.TokenStore(path).admit(ITEM, 2 ** 63 - 1)
    fencing.TokenStore(path).admit('coordsync/sync/a/c', 3)
    again = fencing.TokenStore(path)
    assert again.admit(ITEM, 2 ** 63 - 2) == (False, 2 ** 63 - 1)
    assert again.highest('coordsync/sync/a/c') == 3


def test_only_a_growing_token_writes(store, path):
    store.clock = lambda: 1000.0
    store.admit(ITEM, 5)
    before = os.stat(path + '-wal').st_size, _rows_updated(path)
    for _ in range(3):
        store.admit(ITEM, 5)
        store.admit(ITEM, 4)
    assert (os.stat(path + '-wal').st_size, _rows_updated(path)) == before


def test_admitted_at_is_refreshed_every_touch_after(store, path, clock):
    store.clock = clock
    assert store.admitted_at(ITEM) is None
    store.admit(ITEM, 5)
    assert store.admitted_at(ITEM) == clock.now
    first = clock.now
    clock.now += fencing.TOUCH_AFTER / 2
    store.admit(ITEM, 5)
    assert store.admitted_at(ITEM) == first
    clock.now += fencing.TOUCH_AFTER
    assert store.admit(ITEM, 5) == (True, 5)
    assert store.admitted_at(ITEM) == clock.now
    clock.now += 10
    assert store.admit(ITEM, 4) == (False, 5)
    assert store.admitted_at(ITEM) == clock.now - 10
    assert store.admit(ITEM, 6) == (True, 6)
    assert store.admitted_at(ITEM) == clock.now


def test_admitted_at_after_the_clock_stepped_back(store, clock):
    store.clock = clock
    store.admit(ITEM, 5)
    clock.now -= 3600
    store.admit(ITEM, 5)
    assert store.admitted_at(ITEM) == clock.now


def test_replication_query():
    assert fencing.replicate_item(0, 17) == ITEM
    assert not fencing.is_replication('')
    assert not fencing.is_replication(None)
    assert not fencing.is_replication('replication=truest')
    assert fencing.is_replication('a=1&replication=true')
    assert fencing.with_replication('') == 'replication=true'
    assert fencing.with_replication('a=1') == 'a=1&replication=true'
    assert fencing.with_replication('replication=true') == \
        'replication=true'


def _rows_updated(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute('SELECT item, token, updated FROM tokens'
                            ).fetchall()
    finally:
        conn.close()


def test_file_is_wal_and_made_by_open(path):
    store = fencing.TokenStore(path)
    assert not os.path.exists(path)
    store.open()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    finally:
        conn.close()


SHARER = textwrap.dedent('''
    import json, sys
    from coordsync.common import fencing
    store = fencing.TokenStore(sys.argv[1])
    seen = []
    for token in range(int(sys.argv[2]), 400, 2):
        seen.append(store.admit(sys.argv[3], token))
    print(json.dumps(seen))
''')


def test_two_processes_share_the_file(path, store):
    """Odd tokens from one process, even from another, at once: each
    token is admitted exactly when it is the highest, no process sees
    the highest go down, and the end is the max."""
    store.open()
    starts = (1, 2)
    procs = [subprocess.Popen([sys.executable, '-c', SHARER, path,
                               str(start), ITEM],
                              stdout=subprocess.PIPE, text=True)
             for start in starts]
    for start, proc in zip(starts, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        seen = json.loads(out)
        highests = [highest for _ok, highest in seen]
        assert highests == sorted(highests)
        tokens = range(start, 400, 2)
        for (ok, highest), token in zip(seen, tokens, strict=True):
            assert highest >= token
            assert ok == (highest == token)
    assert store.highest(ITEM) == 399
    # And nothing is cached: this process sees the other processes' mark.
    assert store.admit(ITEM, 398) == (False, 399)


def test_another_process_raising_the_mark_is_seen(path, store):
    assert store.admit(ITEM, 5) == (True, 5)
    subprocess.run([sys.executable, '-c', SHARER, path, '11', ITEM],
                   check=True, capture_output=True, timeout=120)
    assert store.admit(ITEM, 5) == (False, 399)


@pytest.mark.parametrize('damage', ['garbage', 'truncated header'])
def test_corrupt_file_is_quarantined_and_replaced(path, store, caplog,
                                                  damage):
    store.admit(ITEM, 9)
    store.close()  # NOTE: as after a crash: no connection open.
    with open(path, 'r+b') as fh:
        if damage == 'garbage':
            fh.write(b'this is not a database at all' * 200)
        else:
            fh.write(b'\0' * 100)
    for suffix in ('-wal', '-shm'):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    with caplog.at_level(logging.ERROR):
        assert store.admit(ITEM, 3) == (True, 3)
        assert store.admit(ITEM, 2) == (False, 3)
    moved = glob.glob(path + '.corrupt-*')
    assert len([m for m in moved if not m.endswith(('-wal', '-shm'))]) == 1
    errors = [r for r in caplog.records if 'damaged' in r.getMessage()]
    assert len(errors) == 1


def test_an_unusable_path_is_an_error_not_a_crash(tmp_path):
    os.makedirs(tmp_path / 'adir.db')
    store = fencing.TokenStore(str(tmp_path / 'adir.db'))
    with pytest.raises(fencing.TokenStoreError) as err:
        store.admit(ITEM, 1)
    assert 'adir.db' in str(err.value)
    assert os.path.isdir(tmp_path / 'adir.db')
