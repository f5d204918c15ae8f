"""The chaos checker (tools/chaos_check.py) on hand-made histories.

Object files are written with coordsync's own writer and names hashed
with coordsync's hashing, so these tests also show that the checker's
independent reader agrees with what coordsync writes.
"""

import hashlib
import importlib.util
import json
import os
import sqlite3

import pytest

from coordsync.common import hashing
from coordsync.obj import fileformat

_PATH = os.path.join(os.path.dirname(__file__), '..', '..', 'tools',
                     'chaos_check.py')
_SPEC = importlib.util.spec_from_file_location('chaos_check', _PATH)
chaos_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(chaos_check)

NODES = ('n1', 'n2', 'n3', 'n4')
PREFIX = 'pre'
SUFFIX = 'suf'
ACCOUNT = 'AUTH_test'
CONTAINER = 'c'
PART_POWER = 1


class Cluster:
    """A cluster directory in the local cluster's layout: 4 nodes of
    one device, rings of 2 partitions x 3 replicas."""

    def __init__(self, root):
        self.root = str(root)
        devices = [{'id': i, 'region': 1, 'zone': i + 1, 'node': name,
                    'ip': '127.0.0.%d' % (i + 1), 'port': 6200 + i,
                    'device': 'd1', 'weight': 1.0}
                   for i, name in enumerate(NODES)]
        ring = {'format': 'coordsync-ring', 'version': 1,
                'part_power': PART_POWER, 'replicas': 3,
                'devices': devices,
                # partition 0 on n1 n2 n3, partition 1 on n2 n3 n4
                'assignment': [[0, 1], [1, 2], [2, 3]]}
        for name in ('object.ring.json', 'container.ring.json'):
            with open(os.path.join(self.root, name), 'w') as fh:
                json.dump(ring, fh)
        for name in NODES:
            os.makedirs(os.path.join(self.root, name, 'devices', 'd1'))
            with open(os.path.join(self.root, name, 'coordsync.conf'),
                      'w') as fh:
                fh.write('[DEFAULT]\nnode_name = %s\ndevices = %s\n'
                         'ring_file = %s\ncontainer_ring_file = %s\n'
                         'hash_path_prefix = %s\nhash_path_suffix = %s\n'
                         % (name, os.path.join(self.root, name, 'devices'),
                            os.path.join(self.root, 'object.ring.json'),
                            os.path.join(self.root, 'container.ring.json'),
                            PREFIX, SUFFIX))
        self.ops = []
        self.lines = {name: [] for name in NODES}

    def primaries(self, *parts):
        name_hash = hashing.hash_path(*parts, prefix=PREFIX, suffix=SUFFIX)
        part = hashing.partition_of(name_hash, PART_POWER)
        return name_hash, part, [NODES[part + r] for r in range(3)]

    def write_file(self, node, obj, ts, body=None, part=None):
        """A ``.data`` (``body``) or ``.ts`` (None) of ``obj`` on
        ``node``, written with coordsync's own file format."""
        name_hash, own_part, _ = self.primaries(ACCOUNT, CONTAINER, obj)
        part = own_part if part is None else part
        hash_dir = os.path.join(self.root, node, 'devices', 'd1', 'objects',
                                str(part), name_hash[-3:], name_hash)
        os.makedirs(hash_dir, exist_ok=True)
        metadata = {'name': '/%s/%s/%s' % (ACCOUNT, CONTAINER, obj),
                    'X-Timestamp': ts}
        if body is not None:
            metadata.update({'ETag': hashlib.md5(body).hexdigest(),
                             'Content-Length': str(len(body))})
        path = os.path.join(hash_dir, '%s.%s' % (
            ts, 'ts' if body is None else 'data'))
        with open(path, 'wb') as fh:
            fh.write(fileformat.encode_header(metadata) + (body or b''))
        return path

    def everywhere(self, obj, ts, body=None):
        for node in self.primaries(ACCOUNT, CONTAINER, obj)[2]:
            self.write_file(node, obj, ts, body)

    def op(self, kind, obj, ts, body=None, acked=True):
        entry = {'id': 'op%d' % len(self.ops), 'op': kind,
                 'account': ACCOUNT, 'container': CONTAINER, 'object': obj,
                 'acked': acked, 'ts': ts if acked else None,
                 'start': float(ts) - 0.5, 'end': float(ts) + 0.5}
        if body is not None:
            entry['etag'] = hashlib.md5(body).hexdigest()
        self.ops.append(entry)

    def listing(self, rows, nodes=None):
        """Every container replica (or those on ``nodes``) lists
        ``rows``: ``[(name, ts, body)]``."""
        c_hash, part, primaries = self.primaries(ACCOUNT, CONTAINER)
        for node in nodes or primaries:
            db_dir = os.path.join(self.root, node, 'devices', 'd1',
                                  'containers', str(part), c_hash[-3:],
                                  c_hash)
            os.makedirs(db_dir, exist_ok=True)
            conn = sqlite3.connect(os.path.join(db_dir, c_hash + '.db'))
            conn.execute('CREATE TABLE IF NOT EXISTS object (ROWID INTEGER '
                         'PRIMARY KEY AUTOINCREMENT, name TEXT, created_at '
                         'TEXT, size INTEGER, content_type TEXT, etag TEXT, '
                         'deleted INTEGER, storage_policy_index INTEGER)')
            conn.execute('DELETE FROM object')
            conn.executemany(
                'INSERT INTO object (name, created_at, size, content_type, '
                'etag, deleted, storage_policy_index) VALUES (?, ?, ?, '
                '\'x\', ?, 0, 0)',
                [(n, ts, len(b), hashlib.md5(b).hexdigest())
                 for n, ts, b in rows])
            conn.commit()
            conn.close()

    def access(self, node, arrival, item, token, member, status=201,
               duration=5.0):
        self.lines[node].append(
            '2024-01-01 00:00:00.000 1 INFO coordsync.access [-] '
            '%.3f PUT "/objects/d1/0/%s/c/o" %d 0 %.1f %s %s %d 127.0.0.1'
            % (arrival, ACCOUNT, status, duration, member,
               item.replace('/', '%2F'), token))

    def check(self, locks=None):
        history = os.path.join(self.root, 'history.jsonl')
        with open(history, 'w') as fh:
            fh.writelines(json.dumps(op) + '\n' for op in self.ops)
        for node, lines in self.lines.items():
            with open(os.path.join(self.root, node, 'server.log'),
                      'w') as fh:
                fh.writelines(line + '\n' for line in lines)
        locks_path = None
        if locks is not None:
            locks_path = os.path.join(self.root, 'locks.json')
            with open(locks_path, 'w') as fh:
                json.dump({'holdings': locks}, fh)
        counts, _details = chaos_check.check(self.root, history, locks_path)
        return counts


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def nonzero(counts):
    return {k: v for k, v in counts.items() if v}


def test_a_level_cluster_is_clean(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.everywhere('a', '1700000001.00000', b'one')
    cluster.op('put', 'b', '1700000001.00000', b'b1')
    cluster.op('delete', 'b', '1700000002.00000')
    cluster.everywhere('b', '1700000002.00000')
    cluster.listing([('a', '1700000001.00000', b'one')])
    assert nonzero(cluster.check()) == {}


def test_a_missing_acked_write_is_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.listing([])
    counts = cluster.check()
    assert counts['acked_missing'] == 1
    assert counts['stale_copies'] == 3


def test_a_resurrected_delete_is_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.op('delete', 'a', '1700000002.00000')
    cluster.everywhere('a', '1700000001.00000', b'one')
    cluster.listing([('a', '1700000001.00000', b'one')])
    counts = cluster.check()
    assert nonzero(counts) == {'resurrected_deletes': 1}


def test_a_rolled_back_version_is_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.op('put', 'a', '1700000002.00000', b'two')
    cluster.everywhere('a', '1700000001.00000', b'one')
    cluster.listing([('a', '1700000001.00000', b'one')])
    assert nonzero(cluster.check()) == {'rolled_back': 1}


def test_a_version_nobody_wrote_is_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.everywhere('a', '1700000001.00000', b'forged')
    cluster.listing([('a', '1700000001.00000', b'forged')])
    assert cluster.check()['rolled_back'] == 1


def test_a_maybe_write_explains_a_newer_version(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.op('put', 'a', '1700000005.00000', b'maybe', acked=False)
    cluster.everywhere('a', '1700000005.00000', b'maybe')
    cluster.listing([('a', '1700000005.00000', b'maybe')])
    assert nonzero(cluster.check()) == {}


def test_stale_corrupt_and_handoff_copies_are_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.op('put', 'a', '1700000002.00000', b'two')
    _, part, primaries = cluster.primaries(ACCOUNT, CONTAINER, 'a')
    cluster.write_file(primaries[0], 'a', '1700000002.00000', b'two')
    cluster.write_file(primaries[1], 'a', '1700000001.00000', b'one')
    path = cluster.write_file(primaries[2], 'a', '1700000002.00000',
                              b'two')
    with open(path, 'r+b') as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b'X')
    handoff = next(n for n in NODES if n not in primaries)
    cluster.write_file(handoff, 'a', '1700000002.00000', b'two', part=part)
    cluster.listing([('a', '1700000002.00000', b'two')])
    assert nonzero(cluster.check()) == {'stale_copies': 2,
                                        'handoffs_left': 1}


def test_a_listing_mismatch_is_counted(cluster):
    cluster.op('put', 'a', '1700000001.00000', b'one')
    cluster.op('put', 'a', '1700000002.00000', b'two')
    cluster.everywhere('a', '1700000002.00000', b'two')
    primaries = cluster.primaries(ACCOUNT, CONTAINER)[2]
    cluster.listing([('a', '1700000002.00000', b'two')], primaries[:2])
    cluster.listing([('a', '1700000001.00000', b'one'),
                     ('ghost', '1700000001.00000', b'x')], primaries[2:])
    counts = cluster.check()
    # One replica: an old version of a, and ghost, which is on no disk.
    assert nonzero(counts) == {'listing_mismatch': 2}


def test_a_lower_token_accepted_after_a_higher_one_is_an_overlap(cluster):
    item = 'coordsync/replicate/0/0'
    cluster.access('n1', 100.0, item, 50, 'n2@h.1')
    cluster.access('n1', 101.0, item, 60, 'n3@h.2')
    cluster.access('n1', 102.0, item, 50, 'n2@h.1')
    assert nonzero(cluster.check()) == {'overlaps': 1}


def test_refused_and_ordered_tokens_are_no_overlap(cluster):
    item = 'coordsync/replicate/0/0'
    cluster.access('n1', 100.0, item, 50, 'n2@h.1')
    cluster.access('n1', 101.0, item, 60, 'n3@h.2')
    cluster.access('n1', 102.0, item, 50, 'n2@h.1', status=409)
    cluster.access('n1', 103.0, item, 70, 'n2@h.1')
    assert nonzero(cluster.check()) == {}


def test_two_holders_in_flight_at_once_are_an_overlap(cluster):
    item = 'coordsync/replicate/0/0'
    cluster.access('n1', 100.0, item, 60, 'n3@h.2', duration=2000.0)
    cluster.access('n1', 101.0, item, 50, 'n2@h.1')
    assert nonzero(cluster.check()) == {'overlaps': 1}


def test_two_lock_holders_at_once_are_an_overlap(cluster):
    name = 'coordsync/replicate/0/0'
    locks = [{'name': name, 'czxid': 5, 'member': 'n1', 'first': 10.0,
              'last': 20.0},
             {'name': name, 'czxid': 9, 'member': 'n2', 'first': 15.0,
              'last': 25.0},
             {'name': name, 'czxid': 12, 'member': 'n3', 'first': 26.0,
              'last': 30.0}]
    assert nonzero(cluster.check(locks)) == {'overlaps': 1}


def test_a_write_after_the_lock_moved_on_is_an_overlap(cluster):
    item = 'coordsync/replicate/0/0'
    locks = [{'name': item, 'czxid': 5, 'member': 'n2@h.1', 'first': 10.0,
              'last': 20.0},
             {'name': item, 'czxid': 9, 'member': 'n3@h.2', 'first': 21.0,
              'last': 30.0}]
    cluster.access('n1', 15.0, item, 5, 'n2@h.1')
    cluster.access('n4', 25.0, item, 5, 'n2@h.1')
    assert nonzero(cluster.check(locks)) == {'overlaps': 1}


def test_bad_input_is_one_error(cluster, tmp_path):
    with pytest.raises(chaos_check.CheckError):
        chaos_check.check(str(tmp_path / 'nowhere'), 'missing.jsonl')
    assert chaos_check.main(['--workdir', cluster.root, '--history',
                             str(tmp_path / 'missing.jsonl')]) == 2


def static_push(cluster, node, arrival, member, part=0, status=200,
                policy=''):
    cluster.lines[node].append(
        '2024-01-01 00:00:00.000 1 INFO coordsync.access [-] '
        '%.3f PUT "/object-sync%s/d1/%d?replication=true" %d 0 3.0 %s - - '
        '127.0.0.1' % (arrival, policy, part, status, member))


def test_a_static_push_under_another_members_lock_is_an_overlap(cluster):
    item = 'coordsync/replicate/0/0'
    locks = [{'name': item, 'czxid': 9, 'member': 'n3@h.2', 'first': 21.0,
              'last': 30.0}]
    # Before the lock, by the holder itself, refused, another partition
    # or another policy: no overlap.
    static_push(cluster, 'n1', 20.0, 'n2@h.1')
    static_push(cluster, 'n1', 25.0, 'n3@h.2')
    static_push(cluster, 'n1', 25.0, 'n2@h.1', status=409)
    static_push(cluster, 'n1', 25.0, 'n2@h.1', part=1)
    static_push(cluster, 'n1', 25.0, 'n2@h.1', policy='-1')
    assert nonzero(cluster.check(locks)) == {}
    static_push(cluster, 'n4', 25.0, 'n2@h.1')
    assert nonzero(cluster.check(locks)) == {'overlaps': 1}


def test_a_lock_restored_after_an_outage_is_no_holder(cluster):
    # The same znode (czxid 5) seen before and after a ZooKeeper outage:
    # its member stopped working when it lost the backend.
    item = 'coordsync/replicate/0/0'
    locks = [{'name': item, 'czxid': 5, 'member': 'n3@h.2', 'first': 10.0,
              'last': 12.0},
             {'name': item, 'czxid': 5, 'member': 'n3@h.2', 'first': 30.0,
              'last': 31.0}]
    static_push(cluster, 'n1', 30.5, 'n2@h.1')
    assert nonzero(cluster.check(locks)) == {}
    static_push(cluster, 'n1', 11.0, 'n2@h.1')
    assert nonzero(cluster.check(locks)) == {'overlaps': 1}
