"""Bringing the replicas of one partition level.

Swift makes every replica push to every other: ``R * (R - 1)`` REPLICATE
requests per partition per pass, and the same objects sent several times.
Here the one node holding the partition's lock repairs all replicas. An
example with three replicas A (this node), B and C of partition 17:

1. Hash: A computes its suffix hashes; B and C are asked for theirs
   (REPLICATE, 2 requests). If all three agree, the job is done.
2. Diff: say suffix ``a3f`` differs. A lists the objects under it on A,
   B and C (object hash -> newest timestamp, data or tombstone).
3. Level: for each object, the newest version wins (a tombstone wins a
   tie). If A lacks it, A pulls it from a replica that has it; then A
   pushes it, with its original timestamp, to every replica lacking it.
   A write newer than the listing makes the receiver answer 409, which is
   fine: newest wins everywhere, nothing is rolled back.
4. Rehash: B and C recompute the suffixes that were synced (REPLICATE
   with the suffix list), A likewise, so the next pass sees them equal.

A **handoff** partition (held here though this node is not a primary)
is only pushed, to every primary; once enough primaries confirmed they
have everything, and no write arrived meanwhile, the local copy is
deleted.

**Push-only** repair is the safe static rule used when the coordination
backend is unreachable: no lock, this node only pushes what it has.

Every request the job sends carries its grant's fence (item and token),
so a node server that accepted a newer holder's token refuses it; before
each write the job checks that it still holds the lock, and before
writing to its own disks it consults this node's token store. A job
whose lock was lost stops at once (fencing, invariant I1), and the
suffix workers still running for it are cancelled with it.

Errors talking to a peer are reported to ``on_peer_error(peer, error)``
(the engine counts them per peer and logs one line per pass); any error
makes the job count as failed.
"""

import dataclasses
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client as client_mod
from coordsync.common import timestamp
from coordsync.common import worker

LOG = logging.getLogger(__name__)
COPY_HEADERS = ('Content-Type', 'Content-Length', 'ETag')
META_PREFIX = 'X-Object-Meta-'


LockLost = worker.LockLost
FENCED_HEADER = 'x-coordsync-fenced'


@dataclasses.dataclass
class RepairStats:
    """What one or more jobs did; summed into a pass's figures."""

    replicate_requests: int = 0
    suffixes_checked: int = 0
    suffixes_synced: int = 0
    objects_pulled: int = 0
    objects_pushed: int = 0
    bytes_pushed: int = 0
    handoffs_deleted: int = 0
    errors: int = 0

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name)
                    + getattr(other, field.name))


def _version_key(entry):
    """Order versions: newer timestamp first, a tombstone wins a tie."""
    return (timestamp.Timestamp(entry['timestamp']), entry['deleted'])


def _split_name(name):
    """``/a/c/o`` -> (a, c, o)."""
    _empty, account, container, obj = name.split('/', 3)
    return account, container, obj


@dataclasses.dataclass
class Replica:
    """One copy of the partition: this node's device or a remote one."""

    node: dict
    local: bool = False
    hashes: dict = None
    listing: dict = None

    @property
    def label(self):
        return client_mod.node_label(self.node)


class PartitionRepair:
    """Repairs one partition; see the module docstring.

    :param device: the local device name holding (or to hold) the
        partition.
    :param partition: the partition number.
    :param peers: ring device dicts of the other replicas.
    :param grant: the job's :class:`~coordsync.common.worker.Grant`
        (a static one, without a token, when omitted).
    :param on_peer_error: ``f(peer_label, error)`` for each failed
        request to a peer.
    :param suffix_concurrency: suffixes levelled at the same time.
    """

    def __init__(self, manager, node_client, device, partition, peers,
                 grant=None, logger=None, suffix_concurrency=8,
                 on_peer_error=None):
        self.manager = manager
        self.client = node_client
        self.device = device
        self.partition = partition
        self.local = Replica({'device': device, 'ip': 'local',
                              'port': 0, 'node': 'local'}, local=True)
        self.peers = [Replica(dict(node)) for node in peers]
        self.grant = grant or worker.Grant('static')
        self.fence = self.grant.fence
        self._on_peer_error = on_peer_error
        self.suffix_concurrency = suffix_concurrency
        self.log = logger or LOG
        self.stats = RepairStats()

    # -- hashing and listing -----------------------------------------------

    def _hash_all(self, replicas, recalculate=()):
        """Fill ``.hashes`` of each replica; drop those that fail."""
        def one(replica):
            try:
                if replica.local:
                    replica.hashes = concurrency.run_in_thread(
                        self.manager.get_hashes, self.device,
                        self.partition, tuple(recalculate))
                else:
                    self.stats.replicate_requests += 1
                    replica.hashes = self.client.replicate(
                        replica.node, self.partition, tuple(recalculate),
                        fence=self.fence)
                return replica
            except (client_mod.NodeError, exceptions.DiskFileError,
                    ValueError) as err:
                return err
        answers = worker.run_scoped(one, replicas, len(replicas))
        for replica, answer in zip(replicas, answers, strict=True):
            if isinstance(answer, Exception):
                self._failed(replica, answer)
        return [r for r in answers if isinstance(r, Replica)]

    def _failed(self, replica, err):
        """Count an error with ``replica``; stop the job if fenced."""
        if getattr(err, 'fenced', False):
            raise LockLost('%s refused token %s: %s' % (
                replica.label, self.grant.token, err))
        self.stats.errors += 1
        if replica.local or self._on_peer_error is None:
            self.log.warning('Partition %s: %s: %s', self.partition,
                             replica.label, err)
        else:
            self._on_peer_error(replica.label, err)

    def _list(self, replica, suffix):
        if replica.local:
            return concurrency.run_in_thread(
                self.manager.list_suffix, self.device, self.partition,
                suffix)
        return self.client.list_suffix(replica.node, self.partition,
                                       suffix, fence=self.fence)

    @staticmethod
    def differing_suffixes(replicas):
        suffixes = set()
        for replica in replicas:
            suffixes.update(replica.hashes)
        return sorted(s for s in suffixes
                      if len({r.hashes.get(s) for r in replicas}) > 1)

    # -- moving one object ---------------------------------------------------

    def _check_owner(self):
        self.grant.check()

    def _pull(self, source, obj_hash):
        """Store locally the newest version ``source`` has of obj_hash."""
        resp = self.client.get_by_hash(source.node, self.partition,
                                       obj_hash, fence=self.fence)
        try:
            name = urllib.parse.unquote(resp.headers.get('x-object-name',
                                                         ''))
            if resp.status == 404 and 'x-backend-timestamp' in resp.headers:
                when = timestamp.Timestamp(resp.headers['x-backend-timestamp'])
                self._store_tombstone(name, when)
                return
            if resp.status != 200:
                raise client_mod.NodeError('pull %s from %s: %s'
                                           % (obj_hash, source.label,
                                              resp.status))
            metadata = {'X-Timestamp': resp.headers['x-timestamp']}
            for key, value in resp.headers.items():
                if key.title() in COPY_HEADERS or key.title().startswith(
                        META_PREFIX):
                    metadata[key.title()] = value
            df = self.manager.diskfile(self.device, self.partition,
                                       *_split_name(name))
            self.grant.admit_local()
            with df.writer(metadata) as writer:
                for chunk in resp.iter_body():
                    concurrency.run_in_thread(writer.write, chunk)
                concurrency.run_in_thread(writer.commit)
            self.stats.objects_pulled += 1
        except exceptions.DiskFileConflict:
            pass  # NOTE: a newer write landed here meanwhile: newest wins.
        finally:
            resp.close()

    def _store_tombstone(self, name, when):
        df = self.manager.diskfile(self.device, self.partition,
                                   *_split_name(name))
        self.grant.admit_local()
        try:
            concurrency.run_in_thread(df.delete, when)
            self.stats.objects_pulled += 1
        except exceptions.DiskFileConflict:
            pass

    def _push(self, obj_hash, targets):
        """Send the local newest version of obj_hash to ``targets``.

        NOTE: the lock is checked again before each target: a holder
        paused between two targets must not write to the second.
        """
        df = self.manager.diskfile_by_hash(self.device, self.partition,
                                           obj_hash)
        try:
            reader = concurrency.run_in_thread(df.reader)
            with reader:
                metadata = reader.metadata
            send = self._send_data
        except exceptions.DiskFileDeleted as err:
            metadata, send = err.metadata, self._send_tombstone
        for target in targets:
            self._check_owner()
            try:
                send(target, df, metadata)
            except (client_mod.NodeError, ValueError) as err:
                self._failed(target, err)

    def _target_path(self, target, name):
        return client_mod.object_path(target.node['device'], self.partition,
                                      *_split_name(name))

    def _send_tombstone(self, target, _df, metadata):
        status, headers, body = self.client.call(
            target.node, 'DELETE', self._target_path(target,
                                                     metadata['name']),
            headers={'X-Timestamp': metadata['X-Timestamp']},
            fence=self.fence, replication=True)
        self._check_sent(target, 'DELETE', status, headers, body,
                         (204, 404, 409))

    def _send_data(self, target, df, metadata):
        headers = {'X-Timestamp': metadata['X-Timestamp']}
        for key, value in metadata.items():
            if key in COPY_HEADERS or key.startswith(META_PREFIX):
                headers[key] = str(value)
        reader = concurrency.run_in_thread(df.reader)
        with reader:
            if reader.metadata['X-Timestamp'] != metadata['X-Timestamp']:
                return  # NOTE: replaced meanwhile; the next pass sends it.
            status, reply, body = self.client.call(
                target.node, 'PUT', self._target_path(target,
                                                      metadata['name']),
                headers=headers, body=iter(reader), fence=self.fence,
                replication=True)
        if self._check_sent(target, 'PUT', status, reply, body, (201, 409)):
            self.stats.bytes_pushed += int(metadata['Content-Length'])

    def _check_sent(self, target, method, status, headers, body, good):
        if status == 409 and headers.get(FENCED_HEADER):
            raise LockLost('%s to %s refused: %s' % (
                method, target.label, body[:200].decode('utf-8',
                                                        'replace').strip()))
        if status in good:
            self.stats.objects_pushed += 1
            return True
        raise client_mod.NodeError('%s to %s: %s %s' % (
            method, target.label, status, body[:200]))

    # -- whole jobs ----------------------------------------------------------

    def _level_suffix(self, suffix, replicas, pull=True):
        """Make every replica hold the newest version of each object."""
        listings = {}
        for replica in replicas:
            try:
                listings[id(replica)] = self._list(replica, suffix)
            except (client_mod.NodeError, exceptions.DiskFileError) as err:
                self._failed(replica, err)
        reachable = [r for r in replicas if id(r) in listings]
        newest = {}
        for replica in reachable:
            for obj_hash, entry in listings[id(replica)].items():
                best = newest.get(obj_hash)
                if best is None or _version_key(entry) > _version_key(best):
                    newest[obj_hash] = entry
        for obj_hash, entry in sorted(newest.items()):
            want = _version_key(entry)
            lacking = [r for r in reachable
                       if obj_hash not in listings[id(r)]
                       or _version_key(listings[id(r)][obj_hash]) < want]
            if not lacking:
                continue
            self._check_owner()
            self._level_object(obj_hash, want, lacking, reachable,
                               listings, pull)

    def _level_object(self, obj_hash, want, lacking, reachable, listings,
                      pull):
        if any(r.local for r in lacking):
            if not pull:
                return
            source = next(r for r in reachable
                          if obj_hash in listings[id(r)]
                          and _version_key(listings[id(r)][obj_hash])
                          == want)
            try:
                self._pull(source, obj_hash)
            except (client_mod.NodeError, ValueError) as err:
                self._failed(source, err)
                return
            except exceptions.DiskFileError as err:
                self._failed(self.local, err)
                return
        try:
            self._push(obj_hash, [r for r in lacking if not r.local])
        except exceptions.DiskFileError as err:
            self._failed(self.local, err)

    def repair(self, pull=True):
        """Level every replica; return the suffixes synced.

        ``pull=False`` is push-only (the static fallback and handoffs).
        """
        replicas = self._hash_all([self.local] + self.peers)
        if not any(r.local for r in replicas):
            return []
        self.stats.suffixes_checked += len(self.local.hashes)
        if pull:
            differing = self.differing_suffixes(replicas)
        else:
            differing = sorted(s for s, h in self.local.hashes.items()
                               if any(r.hashes.get(s) != h
                                      for r in replicas))
        # NOTE: suffixes are levelled side by side: one object at a time
        # waits on the receivers' fsyncs, one after another. They belong
        # to this job: one that raises (fenced) cancels the others.
        worker.run_scoped(
            lambda suffix: self._level_suffix(suffix, replicas, pull),
            differing, self.suffix_concurrency)
        if differing:
            self._check_owner()
            self.stats.suffixes_synced += len(differing)
            self._hash_all(replicas, recalculate=differing)
        return differing

    def _peer_has_all(self, peer, local_hashes):
        """True if ``peer`` holds every local object at least as new."""
        for suffix, value in sorted(local_hashes.items()):
            if peer.hashes.get(suffix) == value:
                continue
            try:
                mine = self._list(self.local, suffix)
                theirs = self._list(peer, suffix)
            except (client_mod.NodeError, exceptions.DiskFileError):
                return False
            if any(obj_hash not in theirs
                   or _version_key(theirs[obj_hash]) < _version_key(entry)
                   for obj_hash, entry in mine.items()):
                return False
        return True

    def push_handoff(self, needed):
        """Push a handoff partition home; delete it if ``needed`` agree."""
        before = concurrency.run_in_thread(
            self.manager.get_hashes, self.device, self.partition)
        self.repair(pull=False)
        confirmed = [p for p in self.peers if p.hashes is not None
                     and self._peer_has_all(p, before)]
        if len(confirmed) < needed:
            self.log.info('Handoff partition %s on %s: %d of %d primaries '
                          'have it all, keeping it', self.partition,
                          self.device, len(confirmed), needed)
            return False
        self.grant.admit_local()
        deleted = concurrency.run_in_thread(
            self.manager.delete_partition, self.device, self.partition,
            before)
        if not deleted:
            self.log.info('Handoff partition %s on %s changed while '
                          'pushing; keeping it for the next pass',
                          self.partition, self.device)
        return deleted
