#!/usr/bin/env python3
"""The chaos suite's independent checker: what is on the disks, against
what the clients were told.

It shares no code with coordsync on purpose (it imports nothing from it):
a bug in coordsync's own reader of its files cannot hide a loss here.
Everything is re-derived from the documented formats:

* node configs (``<workdir>/<node>/coordsync.conf``, INI): ``node_name``,
  ``devices``, ``ring_file``, ``container_ring_file``,
  ``hash_path_prefix`` and ``hash_path_suffix``;
* rings (JSON): ``part_power``, ``devices`` (``id``, ``node``,
  ``device``), ``assignment`` (one row of device ids per replica,
  indexed by partition); a name's hash is the md5 hex of
  ``prefix + "/a/c/o" + suffix``, its partition the top ``part_power``
  bits of the digest's first four bytes (big endian);
* objects: ``<dev>/objects/<part>/<hash[-3:]>/<hash>/<ts>.data|.ts``,
  each file ``COORDSYNC-OBJ 1 <n>\\n``, ``n`` bytes of JSON metadata
  (``name``, ``X-Timestamp``, ``ETag``, ``Content-Length``), the body;
* container databases: ``<dev>/containers/<part>/<hash[-3:]>/<hash>/
  <hash>.db``, SQLite, table ``object`` (name, created_at, size, etag,
  deleted, storage_policy_index);
* access logs: the node servers' logs (``<workdir>/<node>/server.log``),
  lines ending in the ten access fields (``arrival method "path" status
  bytes ms member item token client``);
* the lock history a :class:`LockRecorder` wrote (its own kazoo client
  polling ``/coordsync/locks/<group>/<quoted item>``, each znode's data
  ``{"member": ...}``, its creation zxid the fencing token).

The client history is JSON lines, one per operation: ``{"id", "op":
"put"|"delete", "account", "container", "object", "acked": bool,
"ts": X-Timestamp or null, "etag": md5 of the body (put), "start",
"end"}``. An unacknowledged operation may or may not have happened
("maybe"): it explains a newer version found on disk, never a missing
one.

Counts (every one must be 0 for a clean run): ``acked_missing`` (the
newest acknowledged write of an object is on no primary, nor anything
newer), ``stale_copies`` (primaries whose newest good file is not the
newest found on the primaries: missing, older or damaged),
``resurrected_deletes`` (an acknowledged delete overtaken by an older
body), ``rolled_back`` (an older version stands where a newer
acknowledged one was written, or a version nobody wrote), ``listing_
mismatch`` (container replicas whose listing differs from the disks),
``handoffs_left`` (object files on devices that are not primaries of
their partition), ``overlaps`` (two holders of one item at one moment:
from the lock history and the access logs: two lock holders seen at
once, a lower token accepted after a higher one or two holders' requests
in flight at once on a node, a holder's write after its lock was seen
taken by another, and a static pass's token-less push accepted while
another member held the partition's lock).

    tools/chaos_check.py --workdir DIR --history FILE [--locks FILE]
                         [--json]

Exit 0 when every count is 0, 1 otherwise, 2 on bad input.
"""

import argparse
import collections
import configparser
import glob
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.parse

from kazoo import client as kazoo_client

COUNTS = ('acked_missing', 'stale_copies', 'resurrected_deletes',
          'rolled_back', 'listing_mismatch', 'handoffs_left', 'overlaps')
MAGIC = b'COORDSYNC-OBJ'
FILE_RE = re.compile(r'([0-9]{10}\.[0-9]{5})\.(data|ts)\Z')
HASH_RE = re.compile(r'[0-9a-f]{32}\Z')
ACCESS_RE = re.compile(
    r'(\d+\.\d{3}) (\S+) "(\S*)" (\d{3}) (\S+) ([\d.]+) (\S+) (\S+) '
    r'(\S+) (\S+)\s*$')
LOCK_ROOT = '/coordsync/locks'
WRITE_METHODS = ('PUT', 'POST', 'DELETE', 'REPLICATE', 'SYNC', 'MERGE')


class CheckError(Exception):
    """Input the checker cannot read (one line)."""


# -- timestamps ---------------------------------------------------------------

def ticks(text):
    """A timestamp (``'1700000000.12345'``) as 10 microsecond ticks."""
    whole, _, frac = str(text).partition('.')
    frac = (frac + '00000')[:5]
    return int(whole) * 100000 + int(frac)


# -- cluster layout -----------------------------------------------------------

class Ring:
    """A ring file, read from its JSON."""

    def __init__(self, path):
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as err:
            raise CheckError('cannot read ring %s: %s' % (path, err)) from None
        self.part_power = data['part_power']
        self.devices = {d['id']: d for d in data['devices']}
        self.assignment = data['assignment']

    def partition(self, name_hash):
        top = int.from_bytes(bytes.fromhex(name_hash)[:4], 'big')
        return top >> (32 - self.part_power)

    def primaries(self, part):
        """``[(node, device)]`` of the partition's primaries."""
        return [(self.devices[row[part]]['node'],
                 self.devices[row[part]]['device'])
                for row in self.assignment]


class Cluster:
    """The nodes of a local cluster directory, from their configs."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.nodes = {}
        paths = sorted(glob.glob(os.path.join(workdir, '*',
                                              'coordsync.conf')))
        if not paths:
            raise CheckError('no node configs in %s' % workdir)
        for path in paths:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path)
            default = parser['DEFAULT']
            self.nodes[default['node_name']] = {
                'devices': default['devices'],
                'dir': os.path.dirname(path),
            }
            self.prefix = default.get('hash_path_prefix', '')
            self.suffix = default.get('hash_path_suffix', '')
            self.object_ring = Ring(default['ring_file'])
            self.container_ring = Ring(default['container_ring_file'])

    def name_hash(self, *parts):
        raw = self.prefix + '/' + '/'.join(parts) + self.suffix
        return hashlib.md5(raw.encode('utf-8')).hexdigest()

    def device_path(self, node, device):
        return os.path.join(self.nodes[node]['devices'], device)

    def device_dirs(self):
        for node, info in sorted(self.nodes.items()):
            try:
                names = sorted(os.listdir(info['devices']))
            except FileNotFoundError:
                continue
            for device in names:
                yield node, device, os.path.join(info['devices'], device)


# -- object files -------------------------------------------------------------

def read_object_file(path):
    """``(metadata, error)`` of one object file: error is None for a file
    whose header, metadata and body agree, else a short reason."""
    try:
        with open(path, 'rb') as fh:
            line = fh.readline(65)
            fields = line.split(b' ')
            if (len(fields) != 3 or fields[0] != MAGIC
                    or fields[1] != b'1' or not line.endswith(b'\n')
                    or not fields[2][:-1].isdigit()):
                return None, 'bad header'
            length = int(fields[2][:-1])
            raw = fh.read(length)
            if len(raw) != length:
                return None, 'metadata truncated'
            try:
                metadata = json.loads(raw)
            except ValueError:
                return None, 'metadata not JSON'
            if not isinstance(metadata, dict):
                return None, 'metadata not an object'
            body = fh.read()
    except OSError as err:
        return None, 'unreadable: %s' % err
    name = os.path.basename(path)
    match = FILE_RE.match(name)
    if match is None or metadata.get('X-Timestamp') is None:
        return metadata, 'no timestamp'
    try:
        if ticks(metadata['X-Timestamp']) != ticks(match.group(1)):
            return metadata, 'X-Timestamp differs from the file name'
    except ValueError:
        return metadata, 'bad X-Timestamp'
    if match.group(2) == 'ts':
        return metadata, ('tombstone with a body' if body else None)
    if metadata.get('Content-Length') != str(len(body)):
        return metadata, 'length mismatch'
    if metadata.get('ETag') != hashlib.md5(body).hexdigest():
        return metadata, 'etag mismatch'
    return metadata, None


Copy = collections.namedtuple('Copy', 'ts kind etag error path')


def newest_copy(hash_dir):
    """The newest file of an object directory as a :class:`Copy` (a
    tombstone wins a tie), or None."""
    files = []
    for name in os.listdir(hash_dir):
        match = FILE_RE.match(name)
        if match:
            files.append((ticks(match.group(1)), match.group(2) == 'ts',
                          name))
    if not files:
        return None
    tick, is_ts, name = max(files)
    path = os.path.join(hash_dir, name)
    metadata, error = read_object_file(path)
    etag = (metadata or {}).get('ETag')
    return Copy(tick, 'ts' if is_ts else 'data', etag, error, path)


def scan_objects(cluster):
    """``({hash: {(node, device): Copy}}, {hash: name}, handoffs)``:
    every object directory of policy 0 on every device, the object's
    name from its metadata, and the count of object directories on
    devices that are not primaries of their partition."""
    copies = collections.defaultdict(dict)
    names = {}
    handoffs = 0
    ring = cluster.object_ring
    for node, device, dev_path in cluster.device_dirs():
        pattern = os.path.join(dev_path, 'objects', '*', '*', '*')
        for hash_dir in glob.glob(pattern):
            obj_hash = os.path.basename(hash_dir)
            if not HASH_RE.match(obj_hash) or not os.path.isdir(hash_dir):
                continue
            copy = newest_copy(hash_dir)
            if copy is None:
                continue
            part = ring.partition(obj_hash)
            if (node, device) not in ring.primaries(part):
                handoffs += 1
                continue
            copies[obj_hash][node, device] = copy
            if copy.error is None:
                metadata, _ = read_object_file(copy.path)
                names.setdefault(obj_hash, (metadata or {}).get('name'))
    return copies, names, handoffs


# -- the client history -------------------------------------------------------

def load_history(path):
    ops = []
    try:
        with open(path) as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    ops.append(json.loads(line))
                except ValueError:
                    raise CheckError('%s line %d: not JSON'
                                     % (path, number)) from None
    except OSError as err:
        raise CheckError('cannot read history %s: %s' % (path, err)) \
            from None
    return ops


def _explained(copy, ops):
    """Did some operation (acknowledged or maybe) write this file?"""
    for op in ops:
        if op.get('ts') is not None:
            if ticks(op['ts']) != copy.ts:
                continue
            if op['op'] == 'put':
                return copy.kind == 'data' and copy.etag == op.get('etag')
            return copy.kind == 'ts'
        # A maybe with no timestamp: its window and its body.
        start = int(op['start'] * 100000) - 100
        end = int(op['end'] * 100000) + 100
        if not start <= copy.ts <= end:
            continue
        if op['op'] == 'put' and copy.kind == 'data' \
                and copy.etag == op.get('etag'):
            return True
        if op['op'] == 'delete' and copy.kind == 'ts':
            return True
    return False


def check_objects(cluster, ops, counts, details):
    """Every object of the history against the primaries' disks; returns
    ``{(account, container): {object: Copy or None}}`` (the newest good
    copy on the primaries) for the listing check."""
    copies, names, handoffs = scan_objects(cluster)
    counts['handoffs_left'] += handoffs
    by_object = collections.defaultdict(list)
    for op in ops:
        by_object[op['account'], op['container'], op['object']].append(op)
    state = collections.defaultdict(dict)
    for (account, container, obj), obj_ops in sorted(by_object.items()):
        obj_hash = cluster.name_hash(account, container, obj)
        part = cluster.object_ring.partition(obj_hash)
        primaries = cluster.object_ring.primaries(part)
        found = copies.get(obj_hash, {})
        good = [c for c in found.values() if c.error is None]
        newest = max(good, key=lambda c: (c.ts, c.kind == 'ts'),
                     default=None)
        state[account, container][obj] = newest
        label = '/%s/%s/%s' % (account, container, obj)
        for primary in primaries:
            copy = found.get(primary)
            if (copy is None or copy.error is not None or newest is None
                    or (copy.ts, copy.kind) != (newest.ts, newest.kind)):
                counts['stale_copies'] += 1
                details.append('stale %s on %s/%s: %s' % (
                    label, primary[0], primary[1],
                    'missing' if copy is None else copy.error or
                    'older (%s %s)' % (copy.ts, copy.kind)))
        acked = [op for op in obj_ops if op.get('acked')]
        last = max(acked, key=lambda op: ticks(op['ts']), default=None)
        if newest is not None and not _explained(newest, obj_ops):
            counts['rolled_back'] += 1
            details.append('unexplained version %s %s %s' % (
                label, newest.ts, newest.kind))
            continue
        if last is None:
            continue
        last_ts = ticks(last['ts'])
        if newest is None:
            if last['op'] == 'put':
                counts['acked_missing'] += 1
                details.append('acked put of %s (%s) missing' % (
                    label, last['ts']))
            continue
        if newest.ts < last_ts:
            if last['op'] == 'delete' and newest.kind == 'data':
                counts['resurrected_deletes'] += 1
                details.append('delete of %s at %s resurrected by %s'
                               % (label, last['ts'], newest.ts))
            elif last['op'] == 'put' and newest.kind == 'data':
                counts['rolled_back'] += 1
                details.append('%s rolled back from %s to %s' % (
                    label, last['ts'], newest.ts))
            elif last['op'] == 'put':
                counts['acked_missing'] += 1
                details.append('acked put of %s (%s) missing behind an '
                               'older delete' % (label, last['ts']))
    return state


# -- container listings -------------------------------------------------------

def read_listing(db_path):
    """``{name: (created_at ticks, etag)}`` of the live rows of policy 0,
    or None if the database cannot be read."""
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % db_path, uri=True,
                               timeout=10)
        try:
            rows = conn.execute(
                'SELECT name, created_at, etag FROM object WHERE '
                'deleted = 0 AND storage_policy_index = 0').fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return {name: (ticks(created), etag) for name, created, etag in rows}


def check_listings(cluster, state, counts, details):
    ring = cluster.container_ring
    for (account, container), objects in sorted(state.items()):
        expected = {name: (c.ts, c.etag) for name, c in objects.items()
                    if c is not None and c.kind == 'data'}
        c_hash = cluster.name_hash(account, container)
        part = ring.partition(c_hash)
        for node, device in ring.primaries(part):
            db_path = os.path.join(
                cluster.device_path(node, device), 'containers', str(part),
                c_hash[-3:], c_hash, c_hash + '.db')
            listing = read_listing(db_path) if os.path.exists(db_path) \
                else None
            where = '/%s/%s on %s/%s' % (account, container, node, device)
            if listing is None:
                counts['listing_mismatch'] += 1
                details.append('listing of %s: no readable database'
                               % where)
                continue
            for name in sorted(set(objects) | set(listing)):
                want, have = expected.get(name), listing.get(name)
                if want is None and have is None:
                    continue
                if want is None or have is None or want[0] != have[0]:
                    counts['listing_mismatch'] += 1
                    details.append('listing of %s: %s listed %s, disk %s'
                                   % (where, name, have, want))


# -- overlaps -----------------------------------------------------------------

def access_records(path):
    """The fields of every access line of one node's log (none if the
    log is not there): ``(arrival, method, path, status, sent, duration,
    member, item, token, client)``, as text."""
    try:
        fh = open(path, errors='replace')
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            match = ACCESS_RE.search(line)
            if match is not None:
                yield match.groups()


def parse_access_log(path):
    """Accepted (2xx) fenced requests of one node's log: ``[(arrival,
    end, item, token, member, method)]`` in log order."""
    found = []
    for (arrival, method, _path, status, _sent, duration, member, item,
         token, _client) in access_records(path):
        if item == '-' or token == '-' or not status.startswith('2'):
            continue
        if not token.isdigit():
            continue
        arrival = float(arrival)
        found.append((arrival, arrival + float(duration) / 1000.0,
                      urllib.parse.unquote(item), int(token),
                      urllib.parse.unquote(member), method))
    return found


# A replication write's path: its policy (none: 0) and partition.
REPLICATION_PATH_RE = re.compile(
    r'^/(?:objects|object-sync)(?:-(\d+))?/[^/?]+/(\d+)(?:[/?]|$)')


def parse_static_writes(path):
    """Accepted (2xx) replication writes without a token of one node's
    log (a static pass's pushes, ``?replication=true``): ``[(arrival,
    item, member, method, path)]``, the item being the partition's lock
    ``coordsync/replicate/<policy>/<partition>``."""
    found = []
    for (arrival, method, req_path, status, _sent, _duration, member,
         item, token, _client) in access_records(path):
        if item != '-' or token != '-' or not status.startswith('2') \
                or method not in ('PUT', 'POST', 'DELETE'):
            continue
        req_path, _, query = req_path.partition('?')
        target = REPLICATION_PATH_RE.match(req_path)
        if target is None or 'replication=true' not in query.split('&'):
            continue
        found.append((float(arrival), 'coordsync/replicate/%s/%d' % (
            target.group(1) or '0', int(target.group(2))),
            urllib.parse.unquote(member), method, req_path))
    return found


def static_overlaps(writes, history, details, where='', slack=0.2):
    """Static writes accepted while another member held the partition's
    lock, taken (first seen) before the write arrived.

    A holding seen again after a ZooKeeper outage with the creation
    zxid of an earlier one is a lock znode restored with its session:
    its member stopped working on the item when it lost the backend and
    releases it once back, so nobody works under it (the node servers
    still refuse static pushes into it once they see it)."""
    holdings = collections.defaultdict(list)
    seen = set()
    for holding in sorted(history.get('holdings', []),
                          key=lambda h: h['first']):
        key = (holding.get('group'), holding['name'], holding['czxid'])
        if key not in seen:
            seen.add(key)
            holdings[holding['name']].append(holding)
    count = 0
    for arrival, item, member, method, req_path in writes:
        for holding in holdings.get(item, ()):
            if holding['member'] != member and \
                    holding['first'] + slack < arrival <= holding['last']:
                count += 1
                details.append('%s %s: static %s %s from %s at %.3f while '
                               '%s held it (since %.3f)' % (
                                   where, item, method, req_path, member,
                                   arrival, holding['member'],
                                   holding['first']))
                break
    return count


def access_overlaps(requests, details, where=''):
    """Overlaps among one node's accepted fenced requests: a lower token
    arriving after a higher one had been answered, or two holders'
    (different tokens) requests in flight at once."""
    count = 0
    by_item = collections.defaultdict(list)
    for request in requests:
        by_item[request[2]].append(request)
    for item, reqs in sorted(by_item.items()):
        reqs.sort()
        answered_max = None   # (end, token) of the highest token answered
        flagged = False
        for i, (arrival, end, _item, token, member, _m) in enumerate(reqs):
            if answered_max is not None and token < answered_max[1] \
                    and arrival > answered_max[0]:
                flagged = True
                details.append('%s %s: token %d (%s) accepted at %.3f after '
                               'token %d' % (where, item, token, member,
                                             arrival, answered_max[1]))
            for other in reqs[i + 1:]:
                if other[0] >= end:
                    break
                if other[3] != token and other[4] != member:
                    flagged = True
                    details.append('%s %s: %s (token %d) and %s (token %d) '
                                   'in flight at %.3f' % (
                                       where, item, member, token,
                                       other[4], other[3], other[0]))
                    break
            if answered_max is None or token > answered_max[1]:
                answered_max = (end, token)
            elif token == answered_max[1]:
                answered_max = (max(end, answered_max[0]), token)
        count += flagged
    return count


def lock_overlaps(history, details):
    """Two different holders of one lock seen at one moment."""
    count = 0
    by_name = collections.defaultdict(list)
    for holding in history.get('holdings', []):
        by_name[holding.get('group'), holding['name']].append(holding)
    for (_group, name), holdings in sorted(by_name.items(),
                                           key=lambda kv: str(kv[0])):
        holdings.sort(key=lambda h: h['first'])
        for a, b in zip(holdings, holdings[1:], strict=False):
            if b['first'] <= a['last'] and b['czxid'] != a['czxid']:
                count += 1
                details.append('lock %s: %s and %s both held at %.3f' % (
                    name, a['member'], b['member'], b['first']))
    return count


def stale_holder_requests(requests, history, details, where='', slack=0.2):
    """Accepted requests with token T for an item whose lock had, before
    the request arrived, been seen held under a higher token (another
    grant): the old holder was still working while the new one held."""
    first_seen = collections.defaultdict(list)
    for holding in history.get('holdings', []):
        first_seen[holding['name']].append((holding['czxid'],
                                            holding['first']))
    count = 0
    flagged = set()
    for arrival, _end, item, token, member, _method in requests:
        for czxid, first in first_seen.get(item, ()):
            if czxid > token and first + slack < arrival \
                    and (item, token) not in flagged:
                flagged.add((item, token))
                count += 1
                details.append('%s %s: %s wrote with token %d at %.3f; '
                               'token %d held since %.3f' % (
                                   where, item, member, token, arrival,
                                   czxid, first))
                break
    return count


def check_overlaps(cluster, history, counts, details, evidence=None):
    evidence = {} if evidence is None else evidence
    evidence['fenced_requests'] = 0
    evidence['static_writes'] = 0
    evidence['holdings'] = len((history or {}).get('holdings', ()))
    for node, info in sorted(cluster.nodes.items()):
        requests = parse_access_log(os.path.join(info['dir'],
                                                 'server.log'))
        evidence['fenced_requests'] += len(requests)
        counts['overlaps'] += access_overlaps(requests, details, node)
        static = parse_static_writes(os.path.join(info['dir'],
                                                  'server.log'))
        evidence['static_writes'] += len(static)
        if history is not None:
            counts['overlaps'] += stale_holder_requests(
                requests, history, details, node)
            counts['overlaps'] += static_overlaps(static, history,
                                                  details, node)
    if history is not None:
        counts['overlaps'] += lock_overlaps(history, details)


# -- the lock history recorder ------------------------------------------------

class LockRecorder:
    """A kazoo client of its own that lists every lock znode under
    ``/coordsync/locks/<group>`` every ``interval`` seconds and records
    each holding (name, holder, creation zxid, first and last sighting).

    A poll that fails (ZooKeeper out of reach) records nothing; the
    holdings open then are closed at their last sighting.
    """

    def __init__(self, hosts, interval=0.05):
        self.client = kazoo_client.KazooClient(
            hosts=hosts, timeout=10.0,
            connection_retry={'max_tries': -1, 'max_delay': 0.5},
            command_retry={'max_tries': 0})
        self.interval = interval
        self.holdings = []
        self.open = {}
        self.polls = 0
        self.failed_polls = 0
        self._pzxid = {}
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def of_url(cls, url, interval=0.05):
        parsed = urllib.parse.urlsplit(url)
        hosts = [parsed.netloc] + urllib.parse.parse_qs(
            parsed.query).get('hosts', [])
        return cls(','.join(hosts), interval)

    def start(self):
        self.client.start(timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='lock-recorder')
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._close_all()
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # noqa: BLE001 - best effort at the end
            pass

    def _close_all(self):
        for (name, czxid, root), (member, first, last) in sorted(
                self.open.items()):
            self.holdings.append({'name': name, 'czxid': czxid,
                                  'group': root,
                                  'member': member, 'first': first,
                                  'last': last})
        self.open = {}
        self._pzxid = {}

    def _run(self):
        while not self._stop.is_set():
            try:
                self._poll(time.time())
                self.polls += 1
            except Exception:  # noqa: BLE001 - any failure: an outage
                self.failed_polls += 1
                self._close_all()
            self._stop.wait(self.interval)

    def _poll(self, now):
        if not self.client.connected:
            raise RuntimeError('not connected')
        if self.client.exists(LOCK_ROOT) is None:
            return
        seen = set()
        for group in self.client.get_children(LOCK_ROOT):
            root = '%s/%s' % (LOCK_ROOT, group)
            stat = self.client.exists(root)
            if stat is None:
                continue
            if self._pzxid.get(root) == stat.pzxid:
                # No child created or deleted since the last poll.
                seen.update(k for k in self.open if k[2] == root)
                continue
            children = self.client.get_children(root)
            asyncs = [(child, self.client.get_async('%s/%s' % (root, child)))
                      for child in children]
            for child, result in asyncs:
                try:
                    data, znode = result.get(timeout=10)
                except Exception as err:  # noqa: BLE001
                    if type(err).__name__ == 'NoNodeError':
                        continue
                    raise
                try:
                    member = json.loads(data.decode('utf-8')).get('member')
                except (ValueError, AttributeError, UnicodeDecodeError):
                    member = None
                seen.add((urllib.parse.unquote(child), znode.czxid, root))
                key = (urllib.parse.unquote(child), znode.czxid, root)
                if key not in self.open:
                    self.open[key] = [member, now, now]
            self._pzxid[root] = stat.pzxid
        for key in list(self.open):
            if key in seen:
                self.open[key][2] = now
            else:
                member, first, last = self.open.pop(key)
                self.holdings.append({'name': key[0], 'czxid': key[1],
                                      'group': key[2],
                                      'member': member, 'first': first,
                                      'last': last})

    def dump(self, path):
        snapshot = list(self.holdings) + [
            {'name': k[0], 'czxid': k[1], 'group': k[2], 'member': v[0],
             'first': v[1], 'last': v[2]} for k, v in list(self.open.items())]
        with open(path, 'w') as fh:
            json.dump({'holdings': snapshot, 'polls': self.polls,
                       'failed_polls': self.failed_polls}, fh)


# -- the whole check ----------------------------------------------------------

def check(workdir, history_path, locks_path=None, evidence=None):
    """``(counts, details)`` of a cluster directory and its history;
    ``evidence`` (a dict) gets how much was looked at: objects, accepted
    fenced requests, lock holdings (a check of nothing proves nothing).
    """
    cluster = Cluster(workdir)
    ops = load_history(history_path)
    history = None
    if locks_path:
        try:
            with open(locks_path) as fh:
                history = json.load(fh)
        except (OSError, ValueError) as err:
            raise CheckError('cannot read lock history %s: %s'
                             % (locks_path, err)) from None
    counts = dict.fromkeys(COUNTS, 0)
    details = []
    state = check_objects(cluster, ops, counts, details)
    if evidence is not None:
        evidence['objects'] = sum(len(o) for o in state.values())
    check_listings(cluster, state, counts, details)
    check_overlaps(cluster, history, counts, details, evidence)
    return counts, details


def figure(counts):
    return ('acked_missing=%(acked_missing)d stale=%(stale_copies)d '
            'resurrected=%(resurrected_deletes)d '
            'rolled_back=%(rolled_back)d '
            'listing_mismatch=%(listing_mismatch)d '
            'handoffs_left=%(handoffs_left)d overlaps=%(overlaps)d'
            % counts)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chaos_check', description='Check a chaos run\'s cluster '
        'against its client history, independently of coordsync.')
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--history', required=True)
    parser.add_argument('--locks')
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--details', type=int, default=20, metavar='N',
                        help='print at most N findings (default 20)')
    args = parser.parse_args(argv)
    evidence = {}
    try:
        counts, details = check(args.workdir, args.history, args.locks,
                                evidence)
    except CheckError as err:
        print('chaos_check: error: %s' % err, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({'counts': counts, 'evidence': evidence,
                          'details': details[:1000]}))
    else:
        for line in details[:args.details]:
            print(line)
        print('checked %s' % ' '.join('%s=%d' % kv
                                      for kv in sorted(evidence.items())))
        print(figure(counts))
    return 0 if not any(counts.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
