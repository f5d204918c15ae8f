"""The three requests of partition sync, as a lock holder sends them.

For one partition and one peer (all signed, all carrying the item's
fence)::

    POST /object-sync/<dev>/<part>/check   the missing check
    PUT  /object-sync/<dev>/<part>         push: a sync stream of objects
    POST /object-sync/<dev>/<part>/pull    pull: ask for a sync stream

(``/object-sync-N/...`` for a partition of storage policy N > 0.)

**Check.** The holder offers ``{hash: [timestamp, deleted]}`` of its
objects under the suffixes that differ (JSON, bound to the signature by
its ``ETag``); the peer answers which of them it wants (newer than what
it has, not superseded by a tombstone) and what it has that is newer
than the offer or not in it, so the holder learns in one round trip per
peer what to push and what to pull.

**Push and pull.** A stream (:mod:`coordsync.obj.syncstream`) is signed
as a whole with the cluster secret, seeded with the request's own
signature and the direction (``push``/``pull``), so a stream cannot be
replayed under another request nor passed off as the other direction.
The receiver publishes nothing before it verified the whole stream (see
:mod:`coordsync.obj.receiver`), then answers a push with a status per
object.

A node busy with ``[replicator] max_incoming`` sync requests answers
503; the sender waits a jittered, growing delay and tries again a few
times, then counts the peer as failed for this job.
"""

import collections
import json
import random

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import timestamp
from coordsync.obj import streams
from coordsync.obj import syncstream

PUSH_SEED, PULL_SEED = b'push\n', b'pull\n'
STREAM_TYPE = 'application/x-coordsync-stream'
# What of an object's metadata travels in a stream (Content-Length is
# the frame's own).
STREAM_KEYS = ('name', 'X-Timestamp', 'Content-Type', 'ETag')
META_PREFIX = 'X-Object-Meta-'
# Seconds between tries of a busy (503) peer, each times 0.5..1.5.
BUSY_DELAYS = (0.5, 1.0, 2.0)
# NOTE: an offer bigger than this is split across several checks; the
# node refuses larger bodies.
MAX_CHECK_ENTRIES = 50000
MAX_CHECK_BODY = 16 * 1024 * 1024
# Objects read per thread hop when a stream is sent.
ENTRY_BATCH = 64
# Batches kept for streams that will send them too (memory bound).
SHARED_BATCHES = 32
# Hashes asked for in one pull request.
PULL_HASHES = 20000
# A push stream ends after this many objects or bytes and the next one
# goes on: the receiver publishes (syncs) a stream's batch before it
# answers, within the sender's node_timeout.
STREAM_OBJECTS = 10000
STREAM_BYTES = 256 * 1024 * 1024


def seed(direction, signature):
    """The seed of a stream's signature: its direction and request."""
    return direction + signature.encode('ascii')


def check_body(suffixes, offer):
    """The JSON body of a missing check."""
    return json.dumps({'suffixes': sorted(suffixes),
                       'offer': {h: [ts, deleted] for h, (ts, deleted)
                                 in sorted(offer.items())}},
                      separators=(',', ':')).encode('utf-8')


class Busy(direct_client.NodeError):
    """The peer is at its ``max_incoming`` sync requests."""


class SyncClient:
    """Sends a partition's sync requests to peers (see module doc).

    :param node_client: a :class:`~coordsync.common.direct_client.
        NodeClient` (signatures, fences, connection pools).
    :param secret: the cluster secret, which signs streams (the node
        client's when omitted).
    :param policy: the storage policy of the partitions synced (every
        request goes to that policy's routes).
    """

    def __init__(self, node_client, secret=None, busy_delays=BUSY_DELAYS,
                 sleep=concurrency.sleep, rng=random, policy=0):
        self.client = node_client
        self.policy = policy
        self.secret = (node_client.secret if secret is None
                       else secret).encode('utf-8')
        self.busy_delays = busy_delays
        self._sleep = sleep
        self._rng = rng

    def _retrying(self, send):
        """``send()`` again after a growing delay while the peer is
        busy; the last Busy is raised."""
        for delay in self.busy_delays + (None,):
            try:
                return send()
            except Busy:
                if delay is None:
                    raise
                self._sleep(delay * self._rng.uniform(0.5, 1.5))

    @staticmethod
    def _error(node, what, resp):
        body = resp.read()[:200].decode('utf-8', 'replace').strip()
        cls = Busy if resp.status == 503 else direct_client.NodeError
        return cls('%s on %s: %s %s' % (
            what, direct_client.node_label(node), resp.status, body),
            fenced=direct_client.is_fenced(resp))

    # -- check ----------------------------------------------------------

    def check(self, node, partition, suffixes, offer, fence=None):
        """``(want, newer)`` from ``node``: the offered hashes it wants,
        and ``{hash: (timestamp, deleted)}`` of what it has newer than
        the offer or outside it, under ``suffixes``."""
        want, newer = set(), {}
        hashes = sorted(offer)
        by_suffix = {}
        for obj_hash in hashes:
            by_suffix.setdefault(obj_hash[-3:], []).append(obj_hash)
        for group in _groups(sorted(suffixes), by_suffix):
            part = {h: offer[h] for s in group for h in by_suffix.get(s, ())}
            got_want, got_newer = self._retrying(
                lambda g=group, p=part: self._check(node, partition, g, p,
                                                    fence))
            want.update(got_want)
            newer.update(got_newer)
        return want, newer

    def _check(self, node, partition, suffixes, offer, fence):
        path = direct_client.sync_path(node['device'], partition, 'check',
                                       policy=self.policy)
        resp = self.client.request(node, 'POST', path,
                                   body=check_body(suffixes, offer),
                                   fence=fence)
        if resp.status != 200:
            raise self._error(node, 'check', resp)
        try:
            answer = resp.json()
            want = set(answer['want'])
            newer = {h: (timestamp.Timestamp(ts).normal, bool(deleted))
                     for h, (ts, deleted) in answer['newer'].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise direct_client.NodeError('check on %s: bad answer: %s' % (
                direct_client.node_label(node), err)) from None
        return want & set(offer), newer

    # -- push -------------------------------------------------------------

    def push(self, node, partition, entries, fence=None, replication=True):
        """Send the objects of ``entries()`` (a fresh iterable of
        ``(metadata, length, chunks or None)`` at each call) in one
        stream; return ``{name: status}`` from the peer."""
        return self._retrying(lambda: self._push(
            node, partition, entries, fence, replication))

    def _push(self, node, partition, entries, fence, replication):
        path = direct_client.sync_path(node['device'], partition,
                                       policy=self.policy)

        def stream(signature):
            return syncstream.encode(entries(), self.secret,
                                     seed(PUSH_SEED, signature))
        resp = self.client.request(node, 'PUT', path, fence=fence,
                                   replication=replication, stream=stream)
        if resp.status != 200:
            raise self._error(node, 'push', resp)
        try:
            results = resp.json()['results']
            if not isinstance(results, dict):
                raise TypeError('results is not an object')
        except (ValueError, KeyError, TypeError) as err:
            raise direct_client.NodeError('push to %s: bad answer: %s' % (
                direct_client.node_label(node), err)) from None
        return results

    # -- pull ---------------------------------------------------------------

    def pull(self, node, partition, hashes, fence=None):
        """``(response, reader)``: a StreamReader over the newest
        versions ``node`` has of ``hashes``. Close the response after."""
        return self._retrying(lambda: self._pull(node, partition, hashes,
                                                 fence))

    def _pull(self, node, partition, hashes, fence):
        path = direct_client.sync_path(node['device'], partition, 'pull',
                                       policy=self.policy)
        body = json.dumps({'hashes': sorted(hashes)}).encode('utf-8')
        resp = self.client.request(node, 'POST', path, body=body,
                                   fence=fence)
        if resp.status != 200:
            raise self._error(node, 'pull', resp)
        # NOTE: the reply's stream is seeded with this request's
        # signature: it cannot be a reply to another request.
        return resp, syncstream.StreamReader(
            resp.read_some, self.secret, seed(PULL_SEED, resp.signature))


def object_entry(manager, device, partition, obj_hash,
                 small=streams.CHUNK_SIZE):
    """The newest version of an object as a stream entry: ``(metadata,
    length, chunks)``, ``(metadata, None, None)`` for a tombstone, None
    if there is none (gone, or quarantined as corrupt just now).

    A small body is read whole with the open; a larger one is read
    chunk by chunk as the stream is sent. Reads the disk: call it in
    the thread pool.
    """
    df = manager.diskfile_by_hash(device, partition, obj_hash)
    try:
        reader = df.reader()
    except exceptions.DiskFileDeleted as err:
        return {'name': err.metadata['name'],
                'X-Timestamp': err.timestamp.normal}, None, None
    except (exceptions.DiskFileNotFound, exceptions.DiskFileCorrupt):
        return None
    metadata = {k: str(v) for k, v in reader.metadata.items()
                if k in STREAM_KEYS or k.startswith(META_PREFIX)}
    length = int(reader.metadata['Content-Length'])
    if length > small:
        return metadata, length, _closing(reader)
    try:
        with reader:
            return metadata, length, [b''.join(reader)]
    except exceptions.DiskFileCorrupt:
        return None  # NOTE: quarantined as it was read: not sent.


def _load_entries(manager, device, partition, hashes, small):
    """Entries of ``hashes``; a large object is left as its hash (each
    stream opens it on its own, when it gets there)."""
    loaded = []
    for obj_hash in hashes:
        entry = object_entry(manager, device, partition, obj_hash, small)
        if entry is not None:
            metadata, length, chunks = entry
            if length is not None and length > small:
                chunks.close()
                entry = obj_hash
        loaded.append(entry)
    return loaded


class EntryLoader:
    """Reads the objects a job sends, once for all its streams.

    The streams of a job (one per peer, each sending one of ``lists``)
    usually send the same objects in the same order; each batch of small
    objects is read from disk once and kept until every stream planned
    to send it took it. At most :data:`SHARED_BATCHES` batches are kept
    at a time: past that (one stream far ahead of another), a stream
    reads its batch for itself. Large bodies are read by each stream
    itself, chunk by chunk.
    """

    def __init__(self, manager, device, partition, lists=(),
                 batch=ENTRY_BATCH, small=streams.CHUNK_SIZE):
        self._args = (manager, device, partition)
        self._batch = batch
        self._small = small
        self._loads = {}
        self._wanted = collections.Counter(
            tuple(group) for hashes in lists for group in self._groups(
                hashes))

    def _groups(self, hashes):
        return [hashes[i:i + self._batch]
                for i in range(0, len(hashes), self._batch)]

    def _start(self, group):
        """``(key, load)``: a load of ``group`` (shared if planned)."""
        key = tuple(group)
        load = self._loads.get(key)
        if load is None:
            load = _Load(concurrency.spawn(
                concurrency.run_in_thread, _load_entries, *self._args,
                group, self._small), self._wanted.pop(key, 1))
            if load.takers > 1 and len(self._loads) < SHARED_BATCHES:
                self._loads[key] = load
        return key, load

    def _done_with(self, key, load, kill=False):
        load.takers -= 1
        if load.takers <= 0:
            if self._loads.get(key) is load:
                del self._loads[key]
            if kill:
                concurrency.kill(load.thread)

    def entries(self, hashes, done=None):
        """Stream entries of the newest versions of ``hashes`` (those
        that still exist); the next batch is read while one is sent.

        ``done[0]``, if given, counts the hashes dealt with so far (a
        stream that stops early goes on from there in the next).
        """
        groups = self._groups(hashes)
        loads = []
        position = 0
        try:
            for index, group in enumerate(groups):
                if not loads:
                    loads.append(self._start(group))
                if index + 1 < len(groups):
                    loads.append(self._start(groups[index + 1]))
                key, load = loads.pop(0)
                self._done_with(key, load)
                for item in load.thread.wait():
                    position += 1
                    if isinstance(item, str):
                        item = concurrency.run_in_thread(
                            object_entry, *self._args, item, self._small)
                    if done is not None:
                        done[0] = position
                    if item is not None:
                        yield item
        finally:
            for key, load in loads:
                self._done_with(key, load, kill=True)


class _Load:
    """One batch being read, and how many streams will still take it."""

    __slots__ = ('thread', 'takers')

    def __init__(self, thread, takers):
        self.thread = thread
        self.takers = takers


def object_entries(manager, device, partition, hashes, batch=ENTRY_BATCH):
    """Stream entries of ``hashes`` for one stream (see EntryLoader)."""
    return EntryLoader(manager, device, partition,
                       batch=batch).entries(hashes)


def _closing(reader):
    with reader:
        yield from reader


def _groups(suffixes, by_suffix):
    """Suffixes split so that each check carries at most
    MAX_CHECK_ENTRIES offered hashes (at least one suffix each)."""
    group, count = [], 0
    for suffix in suffixes:
        size = len(by_suffix.get(suffix, ()))
        if group and count + size > MAX_CHECK_ENTRIES:
            yield group
            group, count = [], 0
        group.append(suffix)
        count += size
    if group:
        yield group

