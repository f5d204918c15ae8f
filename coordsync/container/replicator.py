"""The container and account replicators, on the worker engine.

Their items are partitions of the container ring (account ring): every
partition this node holds a primary replica of, plus the handoff
partitions found on its disks. The lock of partition P is
``coordsync/replicate-container/<P>`` (``coordsync/replicate-account/
<P>``); its holder levels every replica of every database in it through
the ``/db-sync`` routes (:mod:`coordsync.container.replication`):

1. **States**: it reads its own replicas and asks each peer for the
   state of its replicas of the partition (one request per peer). A
   database whose replicas all agree (rows hash, timestamps, metadata)
   needs nothing more: a no-change pass costs one small request per
   peer per partition.
2. **Whole copies**: a database this node lacks (new here, lost, or just
   quarantined as damaged) is fetched from a peer and linked into place;
   one a peer lacks is pushed whole to it.
3. **Rows**: from each peer, the rows after this replica's incoming sync
   point with it are pulled, in batches of ``per_diff``; to each peer,
   the rows after its sync point with this replica are sent, in batches,
   with this replica's timestamps and metadata and, with the last batch,
   the sync point reached. Merges are idempotent and commutative
   (:mod:`coordsync.container.backend`): a batch sent twice changes
   nothing.
4. **Reclaim**: deleted rows and metadata older than ``reclaim_age`` go
   on every replica; a database deleted (and empty) for longer is
   removed everywhere.
5. **Report** (containers): a container whose put/delete timestamps or
   counts changed since it last told its account replicas does so now
   (``PUT /account-rows/...``), and notes what it reported.

A **handoff** partition is pushed to every primary (whole or rows) and
each database is removed here once every primary took it and nothing
arrived meanwhile. Without coordination the static rule is this node's
own primaries, push-only: no pulls, no removals.

Every request carries the grant's fence; local writes are admitted
through this node's token store first. Errors talking to a peer are
counted per peer by the engine; any error fails the item.
"""

import dataclasses
import os
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import ring as ring_mod
from coordsync.common import worker
from coordsync.common.timestamp import Timestamp
from coordsync.container import backend
from coordsync.container import replication
from coordsync.obj import diskfile
from coordsync.reconciler import queue

LOG = logging.getLogger(__name__)
# NOTE: an outgoing sync point (never sent to other replicas), per
# storage policy: the highest row this replica has queued for the
# reconciler.
MISPLACED_POINT = '.misplaced'


@dataclasses.dataclass
class DbStats(worker.Figures):
    """What one or more partition jobs did; summed into a pass."""

    dbs_checked: int = 0
    dbs_in_sync: int = 0
    rows_pulled: int = 0
    rows_pushed: int = 0
    dbs_pushed: int = 0
    dbs_fetched: int = 0
    dbs_reclaimed: int = 0
    handoffs_removed: int = 0
    quarantined: int = 0
    reported: int = 0
    policies_settled: int = 0
    misplaced_queued: int = 0
    errors: int = 0


@dataclasses.dataclass
class Job:
    """One partition on one local device."""

    device: str
    partition: int
    peers: list
    eligible: frozenset
    datadir: str
    handoff: bool = False

    @property
    def key(self):
        return replication.lock_name(self.datadir, self.partition)

    @property
    def item_id(self):
        return self.partition

    @property
    def where(self):
        return self.device


def local_partitions(dev_path, datadir):
    """Partitions (ints) with a directory under ``datadir`` here."""
    try:
        names = os.listdir(os.path.join(dev_path, datadir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(n) for n in names if n.isdigit() and n.isascii())


def info_of(state):
    """The timestamps and metadata a replica sends with its rows; a
    container's also its storage policy and what the policy ranks by
    (:func:`coordsync.reconciler.queue.winning_policy`)."""
    info = {key: state[key] for key in (
        'created_at', 'put_timestamp', 'delete_timestamp', 'metadata')}
    if state.get('storage_policy_index') is not None:
        info.update((key, state[key]) for key in (
            'storage_policy_index', 'status_changed_at', 'deleted'))
    return info


class MisplacedQueue:
    """Writes misplaced rows into the reconciler's queue containers
    (``PUT /container-rows/...`` of ``.misplaced_objects/<hour>``; the
    container servers create queue containers on their first row)."""

    def __init__(self, ring, node_client):
        self.ring = ring
        self.client = node_client

    def __call__(self, account, container, rows, on_error=None):
        """True once a majority of each queue container's replicas took
        every row."""
        buckets = {}
        for row in rows:
            bucket, entry = queue.entry_row(
                row, row['storage_policy_index'], account, container)
            buckets.setdefault(bucket, []).append(entry)
        return all(self._send(bucket, entries, on_error)
                   for bucket, entries in sorted(buckets.items()))

    def _send(self, bucket, entries, on_error):
        part, nodes = self.ring.get_nodes(queue.MISPLACED_ACCOUNT, bucket)

        def one(node):
            for entry in entries:
                path = direct_client.container_row_path(
                    node['device'], part, queue.MISPLACED_ACCOUNT, bucket,
                    entry['name'])
                headers = {'X-Timestamp': entry['created_at'],
                           'X-Size': str(entry['size']),
                           'X-Content-Type': entry['content_type'],
                           'X-Etag': entry['etag'],
                           'X-Backend-Storage-Policy-Index': '0'}
                try:
                    status, _headers, body = self.client.call(
                        node, 'PUT', path, headers=headers)
                except direct_client.NodeError as err:
                    status, body = None, err
                if status is None or status // 100 != 2:
                    if on_error is not None:
                        on_error(direct_client.node_label(node),
                                 body if status is None else
                                 'PUT %s: %d %s' % (path, status,
                                                    body[:100]))
                    return False
            return True
        answers = worker.run_scoped(one, nodes, len(nodes))
        return sum(answers) > len(nodes) // 2


class AccountReporter:
    """Tells a container's account replicas its stats (``PUT
    /account-rows/...``); True once a majority took them."""

    def __init__(self, conf, node_client, logger=None):
        self.conf = conf
        self.client = node_client
        self.log = logger or LOG
        self._ring = None

    def ring(self):
        if self._ring is None:
            self._ring = ring_mod.Ring(self.conf.account_ring_file,
                                       self.conf.hash_path_prefix,
                                       self.conf.hash_path_suffix)
        elif self._ring.has_changed():
            self._ring.reload()
        return self._ring

    def __call__(self, account, container, info, on_error=None):
        part, nodes = self.ring().get_nodes(account)
        headers = {
            'X-Put-Timestamp': info['put_timestamp'],
            'X-Delete-Timestamp': info['delete_timestamp'],
            'X-Object-Count': str(info['object_count']),
            'X-Bytes-Used': str(info['bytes_used']),
            'X-Backend-Storage-Policy-Index': str(
                info.get('storage_policy_index', 0))}

        def one(node):
            path = direct_client.account_row_path(node['device'], part,
                                                  account, container)
            try:
                status, _headers, body = self.client.call(
                    node, 'PUT', path, headers=headers)
            except direct_client.NodeError as err:
                if on_error is not None:
                    on_error(direct_client.node_label(node), err)
                return False
            if status // 100 != 2:
                if on_error is not None:
                    on_error(direct_client.node_label(node),
                             'PUT %s: %d %s' % (path, status, body[:100]))
                return False
            return True
        answers = worker.run_scoped(one, nodes, len(nodes))
        return sum(answers) > len(nodes) // 2


class PartitionSync:
    """Levels the databases of one partition; see the module docstring.

    :param owner: the :class:`DbReplicator` (client, options, reporter).
    """

    def __init__(self, owner, job, grant):
        self.owner = owner
        self.job = job
        self.grant = grant
        self.fence = grant.fence
        self.datadir = job.datadir
        self.partition = job.partition
        self.dbsync = owner.dbsync
        self.log = owner.log
        self.per_diff = owner.wconf.per_diff
        self.coordinated = not grant.static
        # NOTE: pulls and removals only under a lock, never for a
        # handoff (it only pushes home).
        self.pull = self.coordinated and not job.handoff
        self.reclaim_before = (Timestamp(
            time.time() - owner.conf.reclaim_age).normal
            if self.coordinated else None)
        self.stats = DbStats()
        self.dev_path = None

    # -- errors ---------------------------------------------------------------

    def _failed(self, peer, err):
        if getattr(err, 'fenced', False):
            raise worker.LockLost('%s refused token %s: %s' % (
                peer, self.grant.token, err))
        self.stats.errors += 1
        self.owner.peer_errors.record(peer, err)

    def _local_failed(self, what, err):
        if isinstance(err, backend.DatabaseCorrupt):
            self.stats.quarantined += 1
        self.stats.errors += 1
        self.log.warning('%s partition %d on %s: %s: %s', self.datadir,
                         self.partition, self.job.device, what, err)

    # -- the job -----------------------------------------------------------

    def run(self):
        self.dev_path = self.owner.manager.get_dev_path(self.job.device)
        if self.dev_path is None:
            self._local_failed('device', 'unavailable')
            return
        if self.coordinated:
            self.grant.admit_local()
            self._call(self._reclaim_local_rows)
        local, quarantined = self._call(
            replication.partition_states, self.dev_path, self.datadir,
            self.partition, self.log)
        self.stats.quarantined += quarantined
        remote = dict(zip(
            [replication_label(p) for p in self.job.peers],
            worker.run_scoped(self._ask, self.job.peers,
                              len(self.job.peers)), strict=True))
        peers = [(p, remote[replication_label(p)])
                 for p in self.job.peers
                 if remote[replication_label(p)] is not None]
        names = set(local)
        if not self.job.handoff:
            for _peer, states in peers:
                names.update(states)
        all_answered = len(peers) == len(self.job.peers)

        def level(name_hash):
            try:
                self._level(name_hash, local.get(name_hash), peers,
                            all_answered)
            except _Skip:
                pass
            except backend.DatabaseError as err:
                self._local_failed(name_hash, err)
        worker.run_scoped(level, sorted(names),
                          self.owner.wconf.db_concurrency)

    @staticmethod
    def _call(func, *args, **kwargs):
        return concurrency.run_in_thread(func, *args, **kwargs)

    def _ask(self, peer):
        try:
            states, quarantined = self.dbsync.states(peer, self.partition,
                                                     fence=self.fence)
        except direct_client.NodeError as err:
            self._failed(replication_label(peer), err)
            return None
        self.stats.quarantined += quarantined
        return states

    def _reclaim_local_rows(self):
        for path in replication.list_dbs(self.dev_path, self.datadir,
                                         self.partition).values():
            broker = replication.broker_class(self.datadir)(
                path, logger=self.log)
            try:
                broker.reclaim(self.reclaim_before)
            except backend.DatabaseCorrupt:
                # NOTE: quarantined by the broker; rebuilt from a peer.
                self.stats.quarantined += 1
            except backend.DatabaseError as err:
                self.log.warning('Cannot reclaim %s: %s', path, err)
            finally:
                broker.close()

    def _broker(self, name_hash):
        return replication.db_broker(self.dev_path, self.datadir,
                                     self.partition, name_hash, self.log)

    # -- one database -------------------------------------------------------

    def _level(self, name_hash, lstate, peers, all_answered):
        self.stats.dbs_checked += 1
        theirs = [(peer, states.get(name_hash)) for peer, states in peers]
        present = [s for _p, s in theirs if s is not None]
        if lstate is not None and len(present) == len(theirs) and all(
                s['digest'] == lstate['digest'] for s in present):
            self.stats.dbs_in_sync += 1
            self._after_level(name_hash, lstate, theirs, all_answered,
                              pushed_to_all=True)
            return
        if lstate is None:
            if not self.pull or not present:
                return
            if all(replication.reclaimable(s, self.reclaim_before)
                   for s in present):
                self._reclaim_db(name_hash, None, theirs, all_answered)
                return
            lstate = self._fetch(name_hash, theirs)
            if lstate is None:
                return
        broker = self._broker(name_hash)
        try:
            before = [lstate] + present
            if self.pull:
                lstate = self._pull_all(name_hash, broker, lstate, theirs)
            lstate = self._settle_policy(name_hash, broker, before, lstate)
            pushed_to_all = self._push_all(name_hash, broker, lstate,
                                           theirs)
        finally:
            broker.close()
        self._after_level(name_hash, lstate, theirs, all_answered,
                          pushed_to_all)

    def _settle_policy(self, name_hash, broker, states, lstate):
        """Replicas of a container that disagree about its storage
        policy (a split brain) all take the winner's
        (:func:`~coordsync.reconciler.queue.winning_policy` over their
        states as they were before this pass merged them); the peers
        take it with the rows pushed next."""
        policies = {s['storage_policy_index'] for s in states}
        if None in policies or len(policies) < 2:
            return lstate
        winner = queue.winning_policy(states)
        self.stats.policies_settled += 1
        self.log.warning(
            'Container /%s/%s: replicas disagree on the storage policy '
            '(%s); policy %d wins', lstate['account'], lstate['container'],
            ', '.join(str(p) for p in sorted(policies)),
            winner['storage_policy_index'])
        if winner['storage_policy_index'] == lstate['storage_policy_index']:
            return lstate
        self.grant.admit_local()
        self._call(broker.set_storage_policy_index,
                   winner['storage_policy_index'],
                   winner['status_changed_at'])
        return self._call(replication.read_state, broker)

    def _fetch(self, name_hash, theirs):
        """Copy the replica of the peer with the most rows here."""
        candidates = sorted(((s['max_row'], i, peer) for i, (peer, s)
                             in enumerate(theirs) if s is not None),
                            reverse=True)
        for _rows, _i, peer in candidates:
            tmp = self._call(replication._tmp_path, self.dev_path)
            try:
                self.grant.check()
                self.dbsync.fetch_db(peer, self.partition, name_hash, tmp,
                                     fence=self.fence)
                self.grant.admit_local()
                state = replication.install(
                    self.dev_path, self.datadir, self.partition, name_hash,
                    tmp, self.owner.conf.hash_path_prefix,
                    self.owner.conf.hash_path_suffix, self.log,
                    before_link=self.grant.admit_local)
                self.stats.dbs_fetched += 1
                self.log.info('%s %s: copied whole from %s', self.datadir,
                              name_hash, replication_label(peer))
                return state
            except direct_client.NodeError as err:
                self._failed(replication_label(peer), err)
            except backend.DatabaseConflict:
                # NOTE: created here meanwhile (a user's PUT): level it.
                broker = self._broker(name_hash)
                try:
                    return self._call(replication.read_state, broker)
                except backend.DatabaseError as err:
                    self._local_failed(name_hash, err)
                    return None
                finally:
                    broker.close()
            except (backend.DatabaseError, ValueError, OSError) as err:
                self._failed(replication_label(peer), 'bad copy: %s' % err)
            finally:
                self._call(replication._remove_tmp, tmp)
        return None

    def _pull_all(self, name_hash, broker, lstate, theirs):
        changed = False
        for peer, pstate in theirs:
            if pstate is None or pstate['digest'] == lstate['digest']:
                continue
            try:
                changed |= self._pull_rows(peer, pstate, lstate, name_hash,
                                           broker)
            except direct_client.NodeError as err:
                self._failed(replication_label(peer), err)
            except backend.DatabaseError as err:
                self._local_failed(name_hash, err)
                raise _Skip() from None
        if changed:
            lstate = self._call(replication.read_state, broker)
        return lstate

    def _pull_rows(self, peer, pstate, lstate, name_hash, broker):
        point = lstate['syncs'].get(pstate['id'], -1)
        target = pstate['max_row']
        while point < target:
            self.grant.check()
            items = self.dbsync.rows(peer, self.partition, name_hash, point,
                                     self.per_diff, fence=self.fence)
            if not items:
                break
            self.grant.admit_local()
            self._call(broker.merge_items, items, source=pstate['id'])
            self.stats.rows_pulled += len(items)
            point = items[-1]['ROWID']
        self.grant.admit_local()
        # NOTE: rows reclaimed here may have come back from a peer that
        # has not reclaimed them yet: reclaimed again.
        self._call(replication.merge_into, broker, [], pstate['id'],
                   info_of(pstate), target, self.reclaim_before)
        return True

    def _push_all(self, name_hash, broker, lstate, theirs):
        """Send each peer what it lacks; True if every peer has it all."""
        copy = []

        def push(item):
            peer, pstate = item
            try:
                if pstate is None:
                    return self._push_whole(peer, name_hash, broker, copy,
                                            lstate)
                if pstate['digest'] == lstate['digest']:
                    return True
                self._push_rows(peer, pstate, lstate, name_hash, broker)
                return True
            except direct_client.NodeError as err:
                self._failed(replication_label(peer), err)
            except backend.DatabaseError as err:
                self._local_failed(name_hash, err)
            return False
        try:
            # NOTE: one at a time: a snapshot for whole pushes is made
            # once and shared.
            results = [push(item) for item in theirs]
        finally:
            if copy:
                self._call(replication._remove_tmp, copy[0][0])
        return all(results)

    def _push_whole(self, peer, name_hash, broker, copy, lstate):
        if not copy:
            copy.append(self._call(replication.snapshot, broker,
                                   self.dev_path))
        self.grant.check()
        path, md5, size = copy[0]
        state = self.dbsync.push_db(peer, self.partition, name_hash, path,
                                    md5, size, fence=self.fence)
        if state is None:
            # NOTE: created there meanwhile: its rows next pass.
            return False
        self.stats.dbs_pushed += 1
        self.log.info('%s %s: pushed whole to %s', self.datadir, name_hash,
                      replication_label(peer))
        return True

    def _push_rows(self, peer, pstate, lstate, name_hash, broker):
        point = pstate['syncs'].get(lstate['id'], -1)
        target = lstate['max_row']
        while True:
            self.grant.check()
            items = (self._call(broker.get_items_since, point,
                                self.per_diff) if point < target else [])
            last = len(items) < self.per_diff
            self.dbsync.merge(
                peer, self.partition, name_hash, lstate['id'], items,
                info=info_of(lstate) if last else None,
                point=target if last else None,
                reclaim_before=self.reclaim_before if last else None,
                fence=self.fence)
            self.stats.rows_pushed += len(items)
            if last:
                return
            point = items[-1]['ROWID']

    # -- after levelling -----------------------------------------------------

    def _after_level(self, name_hash, lstate, theirs, all_answered,
                     pushed_to_all):
        if self.job.handoff:
            if all_answered and pushed_to_all:
                self._remove_handoff(name_hash, lstate)
            return
        if (self.pull and lstate is not None
                and replication.reclaimable(lstate, self.reclaim_before)):
            self._reclaim_db(name_hash, lstate, theirs, all_answered)
            return
        if self.datadir == backend.CONTAINER_DATADIR:
            self._report(name_hash)
            self._enqueue_misplaced(name_hash)

    def _reclaim_db(self, name_hash, lstate, theirs, all_answered):
        """Remove a long-deleted database on every replica."""
        if not all_answered:
            return
        headers = {replication.RECLAIM_HEADER: self.reclaim_before}
        for peer, pstate in theirs:
            if pstate is None:
                continue
            try:
                self.dbsync.remove(peer, self.partition, name_hash, headers,
                                   fence=self.fence)
            except direct_client.NodeError as err:
                self._failed(replication_label(peer), err)
                return
        if lstate is not None:
            self.grant.admit_local()
            before = self.reclaim_before
            if not self._call(
                    replication.remove_db, self.dev_path,
                    self._broker(name_hash),
                    lambda s: replication.reclaimable(s, before)):
                return
        self.stats.dbs_reclaimed += 1
        self.log.info('%s %s: deleted before %s, reclaimed', self.datadir,
                      name_hash, self.reclaim_before)

    def _remove_handoff(self, name_hash, lstate):
        self.grant.admit_local()
        max_row, rows_hash = lstate['max_row'], lstate['hash']
        if self._call(replication.remove_db, self.dev_path,
                      self._broker(name_hash),
                      lambda s: (s['max_row'] <= max_row
                                 and s['hash'] == rows_hash)):
            self.stats.handoffs_removed += 1
        else:
            self.log.info('Handoff %s %s changed while pushed; kept for the '
                          'next pass', self.datadir, name_hash)

    def _report(self, name_hash):
        broker = self._broker(name_hash)
        try:
            info = self._call(broker.get_info)
        except backend.DatabaseError as err:
            self._local_failed(name_hash, err)
            return
        finally:
            broker.close()
        current = (info['put_timestamp'], info['delete_timestamp'],
                   info['object_count'], info['bytes_used'])
        if current == (info['reported_put_timestamp'],
                       info['reported_delete_timestamp'],
                       info['reported_object_count'],
                       info['reported_bytes_used']):
            return
        try:
            ok = self.owner.report(info['account'], info['container'],
                                   info, on_error=self._failed)
        except exceptions.CoordsyncError as err:
            self._local_failed('account report', err)
            return
        if not ok:
            return
        try:
            self._call(broker.reported, *current)
        except backend.DatabaseError as err:
            self._local_failed(name_hash, err)
            return
        finally:
            broker.close()
        self.stats.reported += 1


    def _enqueue_misplaced(self, name_hash):
        """Queue every row of another policy than the container's for
        the reconciler (:mod:`coordsync.reconciler.queue`), in batches,
        from where this replica's queueing point says the last pass
        ended; the point moves only past a batch a majority of every
        queue container's replicas took."""
        broker = self._broker(name_hash)
        try:
            info = self._call(broker.get_replication_info)
            # NOTE: one point per policy: rows already passed become
            # misplaced when the container's policy changes.
            key = '%s-%d' % (MISPLACED_POINT, info['storage_policy_index'])
            point = self._call(broker.get_sync, key, incoming=False)
            while point < info['max_row']:
                rows = self._call(broker.get_misplaced_since, point,
                                  self.per_diff)
                if rows:
                    self.grant.check()
                    if not self.owner.enqueue(info['account'],
                                              info['container'], rows,
                                              on_error=self._failed):
                        return
                    self.stats.misplaced_queued += len(rows)
                    point = rows[-1]['ROWID']
                if len(rows) < self.per_diff:
                    # NOTE: nothing else misplaced up to the highest row
                    # read first; later rows get higher ROWIDs.
                    point = max(point, info['max_row'])
                self._call(broker.merge_syncs, [
                    {'remote_id': key, 'sync_point': point}],
                    incoming=False)
        except backend.DatabaseError as err:
            self._local_failed(name_hash, err)
        finally:
            broker.close()


class _Skip(Exception):
    """The local replica went bad mid-way: leave this database."""


def replication_label(node):
    return direct_client.node_label(node)


class DbReplicator(worker.RingReplicator):
    """See the module docstring; subclasses name the datadir and ring."""

    item_noun = 'partitions'
    pass_title = 'Replication pass'
    done_verb = 'replicated'
    datadir = None
    ring_option = None

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, logger=None, reporter=None,
                 enqueue=None):
        super().__init__(conf, coordinator, logger)
        self.ring = ring or ring_mod.Ring(
            conf[self.ring_option], conf.hash_path_prefix,
            conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)
        self.dbsync = replication.DbSyncClient(self.client, self.datadir)
        self.report = reporter or AccountReporter(conf, self.client,
                                                  self.log)
        # NOTE: the container ring places the queue containers too.
        self.enqueue = enqueue or MisplacedQueue(self.ring, self.client)

    def collect_jobs(self, devices=None, partitions=None):
        jobs = []
        for dev in self.available_devices(devices):
            name = dev['device']
            dev_path = self.manager.get_dev_path(name)
            primary = set(self.ring.partitions_for_device(dev['id']))
            for part in sorted(primary):
                nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(name, part,
                                [d for d in nodes if d['id'] != dev['id']],
                                frozenset(d['node'] for d in nodes),
                                self.datadir))
            for part in local_partitions(dev_path, self.datadir):
                if part in primary or part >= self.ring.partition_count:
                    continue
                nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(name, part, nodes,
                                frozenset(d['node'] for d in nodes),
                                self.datadir, handoff=True))
        if partitions:
            jobs = [j for j in jobs if j.partition in partitions]
        return jobs

    def static_jobs(self, jobs):
        return [job for job in jobs if not job.handoff]

    def new_figures(self):
        return DbStats()

    def figures_text(self, figures):
        return ('%d DBs checked, %d in sync; %d rows pushed, %d pulled; '
                '%d DBs pushed whole, %d fetched; %d reclaimed, %d '
                'handoffs removed; %d quarantined; %d reported; %d '
                'policies settled, %d misplaced rows queued' % (
                    figures.dbs_checked, figures.dbs_in_sync,
                    figures.rows_pushed, figures.rows_pulled,
                    figures.dbs_pushed, figures.dbs_fetched,
                    figures.dbs_reclaimed, figures.handoffs_removed,
                    figures.quarantined, figures.reported,
                    figures.policies_settled, figures.misplaced_queued))

    def work(self, job, grant):
        sync = PartitionSync(self, job, grant)
        try:
            sync.run()
        finally:
            self.stats.figures.add(sync.stats)
        return sync.stats.errors == 0


class ContainerReplicator(DbReplicator):
    name = 'container-replicator'
    conf_group = 'container-replicator'
    datadir = backend.CONTAINER_DATADIR
    ring_option = 'container_ring_file'


class AccountReplicator(DbReplicator):
    name = 'account-replicator'
    conf_group = 'account-replicator'
    datadir = backend.ACCOUNT_DATADIR
    ring_option = 'account_ring_file'
