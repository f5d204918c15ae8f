"""Bringing the replicas of one partition level.

Swift makes every replica push to every other: ``R * (R - 1)`` REPLICATE
requests per partition per pass, and the same objects sent several times.
Here the one node holding the partition's lock repairs all replicas, with
a handful of requests per peer whatever the number of objects. An
example with three replicas A (this node), B and C of partition 17:

1. Hash: A computes its suffix hashes; B and C are asked for theirs
   (REPLICATE, 2 requests). If all three agree, the job is done.
2. Missing check: A lists its objects under the suffixes that differ
   and offers them to B and to C (one request each, side by side, see
   :mod:`coordsync.obj.sync`): each answers which it wants and what it
   has newer or that A lacks.
3. Pull: for every object, the newest version wins (a tombstone wins a
   tie). What A lacks it pulls, in one stream per peer that has it.
4. Push: to each peer, one stream of every object it lacks, with the
   original timestamps. The receiver publishes the batch durably after
   it verified the whole stream, and answers per object; a version it
   already has at least as new is skipped (409): newest wins
   everywhere, nothing is rolled back.
5. Nothing more: every write recorded its suffix as invalid on its
   node, so the next REPLICATE there recomputes the suffixes synced, and
   the next pass sees the replicas equal.

A **handoff** partition (held here though this node is not a primary)
is only pushed, to every primary; once enough primaries took everything
(their push answered with no error), and no write arrived meanwhile, the
local copy is deleted.

**Push-only** repair is the safe static rule used when the coordination
backend is unreachable: no lock, this node only pushes what it has.

Every request the job sends carries its grant's fence (item and token),
so a node server that accepted a newer holder's token refuses it, and a
receiver checks the fence again right before it publishes a stream;
before each stream the job checks that it still holds the lock, and
before writing to its own disks it consults this node's token store. A
job whose lock was lost stops at once (fencing, invariant I1), and the
green threads still running for it are cancelled with it.

A partition of storage policy N is repaired within that policy: its
local objects are the policy's (``objects-N/``), and every request goes
to the policy's routes (``/objects-N``, ``/object-sync-N``...) with a
fence naming it (``coordsync/replicate/N/<part>``).

Errors talking to a peer are reported to ``on_peer_error(peer, error)``
(the engine counts them per peer and logs one line per pass); any error
makes the job count as failed.
"""

import contextlib
import dataclasses
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client as client_mod
from coordsync.common import timestamp
from coordsync.common import worker
from coordsync.obj import receiver
from coordsync.obj import sync
from coordsync.obj import syncstream

LOG = logging.getLogger(__name__)

LockLost = worker.LockLost


@dataclasses.dataclass
class RepairStats(worker.Figures):
    """What one or more jobs did; summed into a pass's figures."""

    replicate_requests: int = 0
    suffixes_checked: int = 0
    suffixes_synced: int = 0
    objects_pulled: int = 0
    objects_pushed: int = 0
    bytes_pushed: int = 0
    handoffs_deleted: int = 0
    errors: int = 0


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
    :param policy: the storage policy index of the partition (the
        manager's when omitted; given, the manager is switched to it).
    """

    def __init__(self, manager, node_client, device, partition, peers,
                 grant=None, logger=None, suffix_concurrency=8,
                 on_peer_error=None, policy=None):
        own = getattr(manager, 'policy', 0)
        if policy is None:
            policy = own
        elif policy != own:
            manager = manager.for_policy(policy)
        self.manager = manager
        self.policy = policy
        self.client = node_client
        self.device = device
        self.partition = partition
        # How log lines name the partition.
        self.label = ('%s' % partition if not policy
                      else '%s of policy %d' % (partition, policy))
        self.local = Replica({'device': device, 'ip': 'local',
                              'port': 0, 'node': 'local'}, local=True)
        self.peers = [Replica(dict(node)) for node in peers]
        self.grant = grant or worker.Grant('static')
        self.fence = self.grant.fence
        self.sync = sync.SyncClient(node_client, policy=policy)
        # Peers holding everything this node has, after repair().
        self.level_peers = []
        # Seconds spent per phase (hash, list, check, pull, push).
        self.timings = {}
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
                        fence=self.fence, policy=self.policy)
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
            self.log.warning('Partition %s: %s: %s', self.label,
                             replica.label, err)
        else:
            self._on_peer_error(replica.label, err)

    @staticmethod
    def differing_suffixes(replicas):
        suffixes = set()
        for replica in replicas:
            suffixes.update(replica.hashes)
        return sorted(s for s in suffixes
                      if len({r.hashes.get(s) for r in replicas}) > 1)

    def _check_owner(self):
        self.grant.check()

    # -- listing this node's side ---------------------------------------------

    def _list_local(self, suffixes):
        """``{hash: (Timestamp, deleted)}`` of the local objects under
        ``suffixes`` (listed ``suffix_concurrency`` at a time)."""
        def one(group):
            found = {}
            for suffix in group:
                for obj_hash, entry in self.manager.list_suffix(
                        self.device, self.partition, suffix).items():
                    found[obj_hash] = (timestamp.Timestamp(
                        entry['timestamp']), entry['deleted'])
            return found
        size = max(1, -(-len(suffixes) // self.suffix_concurrency))
        groups = [suffixes[i:i + size]
                  for i in range(0, len(suffixes), size)]
        listing = {}
        for found in worker.run_scoped(
                lambda g: concurrency.run_in_thread(one, g), groups,
                self.suffix_concurrency):
            listing.update(found)
        return listing

    # -- the three exchanges -------------------------------------------------

    def _check(self, peer, local):
        """Ask ``peer`` what it wants of ``local`` and what it has newer,
        under the suffixes where it differs from this node."""
        suffixes = sorted(
            s for s in set(self.local.hashes) | set(peer.hashes)
            if self.local.hashes.get(s) != peer.hashes.get(s))
        if not suffixes:
            return PeerState(peer, set(), {}, ())
        wanted = set(suffixes)
        offer = {h: (when.normal, deleted)
                 for h, (when, deleted) in local.items()
                 if h[-3:] in wanted}
        want, newer = self.sync.check(peer.node, self.partition, suffixes,
                                      offer, fence=self.fence)
        return PeerState(peer, want, {
            h: (timestamp.Timestamp(when), deleted)
            for h, (when, deleted) in newer.items()}, suffixes)

    def _pull(self, source, hashes):
        """Store locally the newest versions ``source`` has of
        ``hashes``, one stream (published as one batch) per
        :data:`sync.PULL_HASHES` of them."""
        for start in range(0, len(hashes), sync.PULL_HASHES):
            self._check_owner()
            resp, reader = self.sync.pull(
                source.node, self.partition,
                hashes[start:start + sync.PULL_HASHES], fence=self.fence)
            try:
                received = receiver.receive(
                    self.manager, self.device, self.partition, reader,
                    admit=self.grant.admit_local)
            finally:
                resp.close()
            self.stats.objects_pulled += received.stored

    def _push(self, state, hashes):
        """Send the local versions of ``hashes`` to a peer, in as few
        streams as :data:`sync.STREAM_OBJECTS` and
        :data:`sync.STREAM_BYTES` allow; True if the peer has them all
        now (stored, or holds one at least as new)."""
        lengths = {}
        results = {}
        while hashes:
            self._check_owner()
            done = [0]

            def entries(todo=hashes, done=done):
                done[0] = 0
                count = size = 0
                for entry in self._loader.entries(todo, done):
                    lengths[entry[0]['name']] = entry[1] or 0
                    yield entry
                    count += 1
                    size += entry[1] or 0
                    if (count >= sync.STREAM_OBJECTS
                            or size >= sync.STREAM_BYTES):
                        return
            results.update(self.sync.push(
                state.peer.node, self.partition, entries, fence=self.fence,
                replication=True))
            hashes = hashes[max(1, done[0]):]
        stored = [n for n, code in results.items()
                  if code == receiver.STORED]
        self.stats.objects_pushed += len(stored)
        self.stats.bytes_pushed += sum(lengths.get(n, 0) for n in stored)
        bad = {n: code for n, code in results.items()
               if code not in (receiver.STORED, receiver.NOT_NEWER)}
        if bad:
            self._failed(state.peer, client_mod.NodeError(
                'push to %s: %d objects refused, e.g. %s' % (
                    state.peer.label, len(bad), sorted(bad.items())[:3])))
            return False
        return True

    # -- whole jobs ----------------------------------------------------------

    def _exchange(self, replicas, pull):
        """Check with every peer, pull what this node lacks (``pull``),
        push what each peer lacks; return the suffixes that differed and
        the peers that hold everything this node has."""
        peers = [r for r in replicas if not r.local]
        differing = sorted(
            s for s in set(self.local.hashes).union(
                *(p.hashes for p in peers))
            if any(p.hashes.get(s) != self.local.hashes.get(s)
                   for p in peers))
        if not differing:
            return [], peers
        with self._timed('list'):
            local = self._list_local(differing)

        def check(peer):
            try:
                return self._check(peer, local)
            except client_mod.NodeError as err:
                self._failed(peer, err)
                return None
        with self._timed('check'):
            states = [s for s in worker.run_scoped(check, peers,
                                                   len(peers))
                      if s is not None]
        newest = dict(local)
        source = {}
        for state in states:
            for obj_hash, version in state.newer.items():
                if obj_hash not in newest or version > newest[obj_hash]:
                    newest[obj_hash] = version
                    source[obj_hash] = state
        before = local
        if pull and source:
            with self._timed('pull'):
                self._pull_all(source)
                local = self._list_local(differing)
        level = []
        plans = [(state, sorted(
            h for h, version in newest.items()
            if local.get(h) == version
            and _lacks(state, before, h, version))) for state in states]
        self._loader = sync.EntryLoader(self.manager, self.device,
                                        self.partition,
                                        [hashes for _s, hashes in plans])

        def push(plan):
            state, hashes = plan
            if not hashes:
                return state
            try:
                return state if self._push(state, hashes) else None
            except client_mod.NodeError as err:
                self._failed(state.peer, err)
            except (exceptions.DiskFileError, syncstream.StreamError) as err:
                # NOTE: a local object went bad (quarantined) or changed
                # size while it was sent: the stream was cut, the peer
                # kept nothing of it; the next pass sends the rest.
                self._failed(self.local, err)
            return None
        with self._timed('push'):
            for state in worker.run_scoped(push, plans, len(plans)):
                if state is not None:
                    level.append(state.peer)
        return differing, level

    @contextlib.contextmanager
    def _timed(self, phase):
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = (self.timings.get(phase, 0.0)
                                   + time.monotonic() - started)

    def _pull_all(self, source):
        by_source = {}
        for obj_hash, state in source.items():
            by_source.setdefault(id(state), (state, []))[1].append(obj_hash)

        def pull(item):
            state, hashes = item
            self._check_owner()
            try:
                self._pull(state.peer, sorted(hashes))
            except (client_mod.NodeError, syncstream.StreamError) as err:
                self._failed(state.peer, err)
            except exceptions.DiskFileError as err:
                self._failed(self.local, err)
        worker.run_scoped(pull, list(by_source.values()), len(by_source))

    def repair(self, pull=True):
        """Level every replica; return the suffixes synced.

        ``pull=False`` is push-only (the static fallback and handoffs).
        """
        with self._timed('hash'):
            replicas = self._hash_all([self.local] + self.peers)
        if not any(r.local for r in replicas):
            return []
        self.stats.suffixes_checked += len(self.local.hashes)
        differing, self.level_peers = self._exchange(replicas, pull)
        if differing:
            # NOTE: no rehash here: every write recorded its suffix as
            # invalid on its node, and the next REPLICATE there
            # recomputes exactly those.
            self.stats.suffixes_synced += len(differing)
            self.log.debug('Partition %s: %d suffixes differed; %s',
                           self.label, len(differing), ', '.join(
                               '%s %.3fs' % item
                               for item in self.timings.items()))
        return differing

    def push_handoff(self, needed):
        """Push a handoff partition home; delete it if ``needed`` agree."""
        before = concurrency.run_in_thread(
            self.manager.get_hashes, self.device, self.partition)
        self.repair(pull=False)
        confirmed = [p for p in self.level_peers
                     if p.hashes is not None]
        if len(confirmed) < needed:
            self.log.info('Handoff partition %s on %s: %d of %d primaries '
                          'have it all, keeping it', self.label,
                          self.device, len(confirmed), needed)
            return False
        self.grant.admit_local()
        deleted = concurrency.run_in_thread(
            self.manager.delete_partition, self.device, self.partition,
            before)
        if not deleted:
            self.log.info('Handoff partition %s on %s changed while '
                          'pushing; keeping it for the next pass',
                          self.label, self.device)
        return deleted


@dataclasses.dataclass
class PeerState:
    """What one peer answered to the missing check."""

    peer: Replica
    want: set
    newer: dict
    suffixes: tuple


def _lacks(state, local_before, obj_hash, version):
    """Does the peer of ``state`` lack ``version`` of ``obj_hash``?

    The peer's version is known from its answer: newer than this
    node's offer (``newer``), older or absent (``want``), else the same
    as this node had (offered and not wanted, or under a suffix that did
    not differ) — or absent, when this node had none either.
    """
    if obj_hash in state.newer:
        return state.newer[obj_hash] < version
    if obj_hash in state.want:
        return True
    had = local_before.get(obj_hash)
    return had is None or had < version
