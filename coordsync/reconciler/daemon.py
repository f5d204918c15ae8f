"""The misplaced-object reconciler: objects written under a storage
policy their container does not have are moved into the one it has.

The container replicator queues each misplaced object row in the
``.misplaced_objects`` account (:mod:`coordsync.reconciler.queue`). A
queue container (one per hour of row timestamps) is one **item** of
this daemon: its lock is ``coordsync/reconcile/<queue container>`` and
the nodes that may take it are those of its container replicas. Swift
divides the queue among its reconcilers with a static ``processes`` /
``process`` split; here whichever live node owns the queue container
takes it, and the lock makes sure only one works it at a time.

Under the lock, a pass over one queue container lists its entries (the
union of every replica's listing, newest row per name, the first
``entries_per_pass`` by name) and reconciles them,
``entry_concurrency`` at a time, each in these steps:

1. **Which policy.** The container's replicas are asked (HEAD) for
   their policy and timestamps; :func:`~coordsync.reconciler.queue.
   winning_policy` picks the one every replica ends up with. No replica
   answering: the entry stays (``retried``). The entry's policy is the
   winner: nothing to move, the entry is popped (``already_right``).
2. **Already there?** If the right policy's newest version (or
   tombstone) is at least as new as the entry, the right policy has it
   or something newer: tombstones, pop (``already_right``).
3. **Copy** (a write, or a delete whose object was written again
   since): the newest version in the wrong policy is copied into the
   right one, with its content type, ETag (checked by the node) and
   user metadata, stamped ``max(source, entry).later(2)``: it wins over
   the older data the entry stands for and loses to any real later
   write. The copy names the container's replicas, so the container
   gets its row under the right policy. (The body is read whole before
   it is written: the object client writes bytes.) If the source has
   no version at or after the entry, the entry stays (``retried``)
   until it is older than ``reclaim_age``, when it is given up as lost
   (a CRITICAL line, popped, ``errors``); if the source's newest is a
   tombstone at or after the entry, that delete has an entry of its
   own and this one is popped. A right policy refusing the copy
   because it holds a newer version (409s) is "already right".
4. **Delete** (a delete whose object is gone from the wrong policy): a
   tombstone in the right policy at ``entry.later(2)``, which loses to
   anything newer.
5. **Tombstones** (a write's entry): a DELETE of the object in the
   wrong policy at ``entry.later(2)``, naming the container's replicas
   so the misplaced row goes too; a newer misplaced write there refuses
   it, which is fine (it has its own entry). Counted in
   ``tombstones``. That tombstone's row is queued in turn as a delete,
   which finds the right policy's copy at least as new and is popped;
   a delete's entry throws no tombstone of its own (the wrong policy
   has one), or each would queue the next, until one was newer than
   the copy and deleted it.
6. **Pop**: the entry's row deleted at ``entry.later(1)`` on every
   replica of the queue container (fenced with the lock's token); done
   when a majority took it. A row queued again since, with a newer
   timestamp, survives the pop.

Every step is idempotent and ordered by timestamps, so a reconciler
killed between any two steps leaves a state the next pass finishes:
the entry is still queued, and a copy already made takes the
already-there path. Any error on an entry is one line in the log (no
traceback for a node or quorum error) and an ``errors`` count; the entry
stays and the pass goes on.

A queue container is an item on the nodes whose replica of it has
rows (read from the local databases, each database's name once): rows
that reached only other replicas are listed once the container
replicator brings them, and an empty queue container costs no request.
Empty queue containers are left in place (Swift deletes those older
than ``reclaim_age``).

Queue depth (entries left after each pass, per queue container) and
the pass's figures are published in the member's progress
(``coordsync-status --reconciler``) and written to the recon file.

Test-only fault hook: the environment variable
``COORDSYNC_RECONCILER_PAUSE_AFTER`` = ``copy`` or ``tombstones``,
read once when the daemon is made, stops the whole process
(``SIGSTOP``) right after that step of the first entry that reaches
it, after a WARNING ``pausing after <step> of <object path>``; the
functional tests then kill it to check that the next pass finishes
the work. Never set it in production.
"""

import dataclasses
import datetime
import os
import signal
import time
import urllib.parse

from oslo_log import log as logging

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import direct_client
from coordsync.common import ring as ring_mod
from coordsync.common import timestamp
from coordsync.common import worker
from coordsync.container import backend
from coordsync.container import replication
from coordsync.obj import client as object_client
from coordsync.obj import diskfile
from coordsync.obj import rings as rings_mod
from coordsync.reconciler import queue

LOG = logging.getLogger(__name__)

PAUSE_ENV = 'COORDSYNC_RECONCILER_PAUSE_AFTER'
COPY, TOMBSTONES = 'copy', 'tombstones'
PAUSE_STEPS = (COPY, TOMBSTONES)
# Rows asked of a replica per listing request (the node's maximum).
LISTING_PAGE = 10000
# Database name hashes whose queue container (or None: not one) is
# remembered, so a scan opens only new databases (a database's name
# never changes with its path); past it, all are forgotten.
MAX_NAME_CACHE = 1 << 20
META_PREFIX = 'x-object-meta-'
STATE_HEADERS = ('x-backend-storage-policy-index', 'x-backend-put-timestamp',
                 'x-backend-delete-timestamp',
                 'x-backend-status-changed-at')
MOVED, ALREADY_RIGHT, DELETED, RETRIED, ERROR, LOST = (
    'moved', 'already_right', 'deleted', 'retried', 'error', 'lost')
INVALID, INVALID_POPPED = 'invalid', 'invalid-popped'
# Outcomes after which the entry is no longer queued.
POPPED = (MOVED, ALREADY_RIGHT, DELETED, LOST, INVALID_POPPED)
_NOT_READ = object()


class ReconcileError(exceptions.CoordsyncError):
    """An entry cannot be reconciled now (one line: why)."""


@dataclasses.dataclass
class Job:
    """One queue container with a replica here."""

    queue: str
    device: str
    partition: int
    db_path: str
    nodes: list
    own_id: int = 0
    handoff = False

    @property
    def key(self):
        return queue.lock_name(self.queue)

    @property
    def eligible(self):
        return frozenset(n['node'] for n in self.nodes)

    @property
    def item_id(self):
        return urllib.parse.quote('%s/%s' % (queue.MISPLACED_ACCOUNT,
                                             self.queue), safe='')

    @property
    def where(self):
        return self.device


@dataclasses.dataclass
class ReconcileStats(worker.Figures):
    """Figures of a pass (summed over queue containers)."""

    queues: int = 0
    entries: int = 0
    moved: int = 0
    already_right: int = 0
    tombstones: int = 0
    retried: int = 0
    invalid: int = 0
    errors: int = 0
    left: int = 0


def pause_step(environ=None):
    """The step after which the test-only fault hook stops the process
    (see the module docstring), or None; ConfigError if unknown."""
    value = (os.environ if environ is None else environ).get(PAUSE_ENV)
    if not value:
        return None
    if value not in PAUSE_STEPS:
        raise exceptions.ConfigError('%s=%r: use %s' % (
            PAUSE_ENV, value[:50], ' or '.join(PAUSE_STEPS)))
    return value


def _close(chunks):
    close = getattr(chunks, 'close', None)
    if close is not None:
        close()


def _conflicts(err):
    """Did some node refuse a write of a QuorumError for holding a
    version at least as new (409)?"""
    return getattr(err, 'conflicts', 0) > 0


def _one_line(err):
    return ' '.join(str(err).split())[:300]


def _timestamp_or_none(value):
    try:
        return timestamp.Timestamp(value)
    except (TypeError, ValueError):
        return None


def _last_modified(value):
    """The Timestamp of a listing's ``last_modified`` (UTC, ISO), or
    None."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return _timestamp_or_none(
        moment.replace(tzinfo=datetime.timezone.utc).timestamp())


def listing_row(item):
    """The queue row of a JSON listing item: ``created_at`` is the
    item's ``hash`` (a queue row's ETag is its timestamp, as in Swift:
    the listing carries no exact timestamp of its own)."""
    return {'name': item.get('name'),
            'created_at': item.get('created_at') or item.get('hash'),
            'content_type': item.get('content_type'),
            'last_modified': item.get('last_modified')}


def container_state(status, headers):
    """The state a container replica's HEAD tells (for
    :func:`~coordsync.reconciler.queue.winning_policy`), or None when
    it tells none (no database there, an error, a header missing)."""
    if status not in (200, 204, 404):
        return None
    if any(headers.get(name) is None for name in STATE_HEADERS):
        return None
    index = headers['x-backend-storage-policy-index'].strip()
    if not index.isdigit() or len(index) > 9:
        return None
    stamps = [_timestamp_or_none(headers[name]) for name in STATE_HEADERS[1:]]
    if None in stamps:
        return None
    return {'storage_policy_index': int(index),
            'put_timestamp': stamps[0].normal,
            'delete_timestamp': stamps[1].normal,
            'status_changed_at': stamps[2].normal,
            'deleted': status == 404
            or headers.get('x-backend-deleted') == 'true'}


class QueueJob:
    """One queue container's pass, under its lock; see the module
    docstring."""

    def __init__(self, owner, job, grant):
        self.owner = owner
        self.job = job
        self.grant = grant
        self.wconf = owner.wconf
        self.log = owner.log
        self.client = owner.client
        self.stats = ReconcileStats(queues=1)
        # (account, container) -> the policy its replicas settle on,
        # for this pass.
        self.policies = {}

    @property
    def label(self):
        return '/%s/%s' % (queue.MISPLACED_ACCOUNT, self.job.queue)

    def run(self):
        """True if no entry failed."""
        rows, more = self.list_entries()
        self.stats.entries = len(rows)
        outcomes = worker.run_scoped(self.reconcile_row, rows,
                                     self.wconf.entry_concurrency)
        popped = sum(1 for outcome in outcomes if outcome in POPPED)
        self.stats.left = len(rows) - popped
        self.owner.record_depth(self.job, len(rows), self.stats.left, more)
        return self.stats.errors == 0

    # -- the listing ---------------------------------------------------------

    def list_entries(self):
        """``(rows, more)``: the first ``entries_per_pass`` entries of
        the union of the replicas' listings (a name's newest row), and
        whether there may be more."""
        want = self.wconf.entries_per_pass
        answers = worker.run_scoped(self._list_replica, self.job.nodes,
                                    len(self.job.nodes))
        answered = [a for a in answers if a is not None]
        if not answered:
            raise ReconcileError('%s: no replica could be listed'
                                 % self.label)
        union = {}
        for items, _full in answered:
            for item in items:
                row = listing_row(item)
                if not isinstance(row['name'], str) or not row['name']:
                    continue
                known = union.get(row['name'])
                if known is None or self._row_rank(row) > \
                        self._row_rank(known):
                    union[row['name']] = row
        names = sorted(union)
        more = len(names) > want or any(full for _i, full in answered)
        return [union[name] for name in names[:want]], more

    @staticmethod
    def _row_rank(row):
        found = _timestamp_or_none(row['created_at'])
        return found.ticks if found is not None else -1

    def _list_replica(self, node):
        """``(items, full)`` of one replica (``full``: it may have more),
        or None if it could not be listed."""
        want = self.wconf.entries_per_pass
        path = direct_client.container_path(
            node['device'], self.job.partition, queue.MISPLACED_ACCOUNT,
            self.job.queue)
        items, marker = [], ''
        while len(items) < want:
            limit = min(want - len(items), LISTING_PAGE)
            args = {'format': 'json', 'limit': str(limit)}
            if marker:
                args['marker'] = marker
            try:
                resp = self.client.request(node, 'GET', path,
                                           query=urllib.parse.urlencode(
                                               args))
                if resp.status == 404:
                    # NOTE: no database (or a deleted one) there: no
                    # entries, which is an answer.
                    resp.read()
                    return items, False
                if resp.status != 200:
                    reason = resp.read()[:200].decode('utf-8', 'replace')
                    raise ReconcileError('GET %s on %s: %d %s' % (
                        self.label, direct_client.node_label(node),
                        resp.status, reason.strip()))
                page = resp.json()
            except (direct_client.NodeError, ReconcileError,
                    ValueError) as err:
                self.owner.peer_errors.record(
                    direct_client.node_label(node), _one_line(err))
                return None
            if not isinstance(page, list) or not all(
                    isinstance(item, dict) for item in page):
                self.owner.peer_errors.record(
                    direct_client.node_label(node),
                    'listing of %s is not a JSON list of rows' % self.label)
                return None
            items.extend(page)
            if len(page) < limit or not isinstance(page[-1].get('name'),
                                                   str):
                return items, False
            marker = page[-1]['name']
        return items, True

    # -- one entry -----------------------------------------------------------

    def reconcile_row(self, row):
        """The outcome of one listed row (see the module docstring)."""
        self.grant.check()
        try:
            entry = queue.parse_entry(row)
        except ValueError as err:
            return self._invalid(row, err)
        timer = concurrency.Timeout(self.wconf.request_timeout)
        try:
            outcome = self._reconcile(entry)
        except worker.LockLost:
            raise
        except concurrency.Timeout as err:
            if err is not timer:
                raise
            outcome = self._failed(entry, 'not done within request_timeout '
                                   '(%ss)' % self.wconf.request_timeout)
        except (ReconcileError, direct_client.NodeError,
                object_client.QuorumError, ValueError) as err:
            outcome = self._failed(entry, _one_line(err))
        except Exception:
            self.log.exception('Reconciler %s: %s failed', self.label,
                               entry.name[:200])
            outcome = ERROR
            self.stats.errors += 1
        finally:
            timer.cancel()
        if outcome == MOVED:
            self.stats.moved += 1
        elif outcome == ALREADY_RIGHT:
            self.stats.already_right += 1
        elif outcome == RETRIED:
            self.stats.retried += 1
        elif outcome == LOST:
            self.stats.errors += 1
        return outcome

    def _failed(self, entry, reason):
        self.log.error('Reconciler %s: %s (policy %d, %s at %s): %s; kept '
                       'for the next pass', self.label, entry.path[:200],
                       entry.policy, entry.op, entry.when.normal, reason)
        self.stats.errors += 1
        return ERROR

    def _invalid(self, row, err):
        """A row that is not an entry is logged and popped (at its own
        timestamp, or its listing time's, a little later)."""
        self.stats.invalid += 1
        name = row.get('name') or ''
        exact = _timestamp_or_none(row.get('created_at'))
        when = exact.later(1) if exact is not None else None
        if when is None:
            listed = _last_modified(row.get('last_modified'))
            when = listed.later(2) if listed is not None else None
        if when is None:
            self.log.error('Reconciler %s: invalid entry (%s) without a '
                           'usable timestamp; left queued', self.label,
                           _one_line(err))
            return INVALID
        self.log.warning('Reconciler %s: invalid entry popped: %s',
                         self.label, _one_line(err))
        try:
            self._pop_row(name, when)
        except (ReconcileError, direct_client.NodeError) as pop_err:
            self.log.error('Reconciler %s: invalid entry %r not popped: %s',
                           self.label, name[:100], _one_line(pop_err))
            return INVALID
        return INVALID_POPPED

    def _reconcile(self, entry):
        right = self.container_policy(entry)
        if right is None:
            self.log.warning('Reconciler %s: no replica of /%s/%s told '
                             'its storage policy; %s kept', self.label,
                             entry.account, entry.container,
                             entry.path[:200])
            return RETRIED
        if right == entry.policy:
            self.pop(entry)
            return ALREADY_RIGHT
        dest = self.owner.objects_of(right)
        source = self.owner.objects_of(entry.policy)
        there, _headers = dest.head_newest(entry.account, entry.container,
                                           entry.obj)
        if there is not None and there >= entry.when:
            self.tombstones(entry, source)
            self.pop(entry)
            return ALREADY_RIGHT
        if entry.op == 'DELETE':
            found, headers = source.head_newest(
                entry.account, entry.container, entry.obj)
            if headers is None or found < entry.when:
                self._delete_right(entry, dest, right)
                self.tombstones(entry, source)
                self.pop(entry)
                return DELETED
        return self._move(entry, source, dest, right)

    def _move(self, entry, source, dest, right):
        found, headers, chunks = source.get_newest(
            entry.account, entry.container, entry.obj)
        if headers is None and found is not None and found >= entry.when:
            # NOTE: get_newest cannot tell a tombstone from a version no
            # replica could send; HEAD can.
            newest, live = source.head_newest(entry.account,
                                              entry.container, entry.obj)
            if live is not None and newest == found:
                raise ReconcileError('the newest version (%s) in policy %d '
                                     'could not be read' % (found.normal,
                                                            entry.policy))
            # NOTE: deleted in the wrong policy since: that delete is an
            # entry of its own, which carries it to the right policy.
            self.log.info('Reconciler %s: %s was deleted in policy %d '
                          'at or after the entry (%s); popped', self.label,
                          entry.path[:200], entry.policy, found.normal)
            self.pop(entry)
            return ALREADY_RIGHT
        if headers is None or found < entry.when:
            _close(chunks)
            return self._source_missing(entry, found)
        when = max(found, entry.when).later(2)
        try:
            body = b''.join(chunks)
        finally:
            _close(chunks)
        metadata = {key: value for key, value in headers.items()
                    if key.lower().startswith(META_PREFIX)}
        etag = headers.get('etag')
        if etag:
            metadata['ETag'] = etag
        self.grant.check()
        try:
            dest.put(entry.account, entry.container, entry.obj, body,
                     content_type=headers.get('content-type'),
                     metadata=metadata, when=when)
        except object_client.QuorumError as err:
            if not _conflicts(err):
                raise
            newest, _headers = dest.head_newest(
                entry.account, entry.container, entry.obj)
            if newest is None or newest <= when:
                raise
            # NOTE: the right policy refused it for a newer version.
            self.tombstones(entry, source)
            self.pop(entry)
            return ALREADY_RIGHT
        self.log.info('Reconciler %s: %s copied from policy %d (%s) to '
                      'policy %d at %s', self.label, entry.path[:200],
                      entry.policy, found.normal, right, when.normal)
        self.owner.pause_if(COPY, entry)
        self.tombstones(entry, source)
        self.pop(entry)
        return MOVED

    def _source_missing(self, entry, found):
        age = time.time() - float(entry.when)
        if age > self.owner.conf.reclaim_age:
            self.log.critical(
                'Reconciler %s: %s lost: no version at or after %s in '
                'policy %d (newest: %s) and the entry is older than '
                'reclaim_age; popped', self.label, entry.path[:200],
                entry.when.normal, entry.policy,
                found.normal if found is not None else 'none')
            self.pop(entry)
            return LOST
        self.log.warning('Reconciler %s: %s not yet in policy %d at %s '
                         '(newest: %s); kept', self.label,
                         entry.path[:200], entry.policy, entry.when.normal,
                         found.normal if found is not None else 'none')
        return RETRIED

    def _delete_right(self, entry, dest, right):
        when = entry.when.later(2)
        self.grant.check()
        self._delete_unless_newer(dest, entry, when)
        self.stats.tombstones += 1
        self.log.info('Reconciler %s: %s deleted in policy %d at %s',
                      self.label, entry.path[:200], right, when.normal)

    def _delete_unless_newer(self, objects, entry, when):
        """A tombstone at ``when``; a version at or after it there
        already (a newer write, or this tombstone from an earlier pass)
        is as good."""
        try:
            objects.delete(entry.account, entry.container, entry.obj,
                           when=when)
        except object_client.QuorumError as err:
            if not _conflicts(err):
                raise
            newest, _headers = objects.head_newest(
                entry.account, entry.container, entry.obj)
            if newest is None or newest < when:
                raise

    def tombstones(self, entry, source):
        """DELETE the object in the entry's (wrong) policy at
        ``entry.later(2)`` -- for a write's entry only.

        A delete's entry stands for a tombstone the wrong policy holds
        already. A second one, later, would be queued in turn as a
        delete newer than the copy made into the right policy, and
        that entry would delete the copy: each cleanup tombstone is
        queued once, found already right, and ends there.
        """
        if entry.op == 'DELETE':
            return
        self.grant.check()
        self._delete_unless_newer(source, entry, entry.when.later(2))
        self.stats.tombstones += 1
        self.owner.pause_if(TOMBSTONES, entry)

    # -- the container's policy ------------------------------------------

    def container_policy(self, entry):
        """The policy the container's replicas settle on, or None when
        none of them told."""
        key = (entry.account, entry.container)
        if key in self.policies:
            return self.policies[key]
        part, nodes = self.owner.ring.get_nodes(entry.account,
                                                entry.container)

        def head(node):
            path = direct_client.container_path(
                node['device'], part, entry.account, entry.container)
            try:
                status, headers, _body = self.client.call(node, 'HEAD',
                                                          path)
            except direct_client.NodeError as err:
                self.owner.peer_errors.record(
                    direct_client.node_label(node), _one_line(err))
                return None
            return container_state(status, headers)
        states = [s for s in worker.run_scoped(head, nodes, len(nodes))
                  if s is not None]
        if not states:
            return None
        policy = queue.winning_policy(states)['storage_policy_index']
        self.policies[key] = policy
        return policy

    # -- the queue -----------------------------------------------------------

    def pop(self, entry):
        self._pop_row(entry.name, entry.when.later(1))

    def _pop_row(self, name, when):
        """Delete a queue row at ``when`` on a majority of the queue
        container's replicas (404: not there, as good)."""
        self.grant.check()
        headers = {'X-Timestamp': when.normal,
                   'X-Backend-Storage-Policy-Index': '0'}
        fence = self.grant.fence

        def one(node):
            path = direct_client.container_row_path(
                node['device'], self.job.partition, queue.MISPLACED_ACCOUNT,
                self.job.queue, name)
            try:
                resp = self.client.request(node, 'DELETE', path,
                                           headers=headers, fence=fence)
                fenced = direct_client.is_fenced(resp)
                status = resp.status
                resp.read()
            except direct_client.NodeError as err:
                self.owner.peer_errors.record(
                    direct_client.node_label(node), _one_line(err))
                return False
            if fenced:
                return 'fenced'
            return status // 100 == 2 or status == 404
        results = worker.run_scoped(one, self.job.nodes,
                                    len(self.job.nodes))
        if 'fenced' in results:
            raise worker.LockLost('a newer holder of %s popped entries'
                                  % self.job.key)
        acks = sum(1 for ok in results if ok is True)
        needed = object_client.quorum_size(len(self.job.nodes))
        if acks < needed:
            raise ReconcileError('pop of %r: %d of %d queue replicas took '
                                 'it, %d needed' % (
                                     name[:100], acks, len(self.job.nodes),
                                     needed))


class Reconciler(worker.RingWorker):
    """See the module docstring.

    :param objects: ``{policy index: ObjectClient}`` (default: one per
        storage policy of the config, its ring loaded now, so a missing
        ring fails at start).
    """

    name = 'reconciler'
    conf_group = 'reconciler'
    level_figures = ('left',)
    item_noun = 'queue containers'
    pass_title = 'Reconciler pass'
    done_verb = 'reconciled'

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, objects=None, logger=None):
        super().__init__(conf, coordinator, logger)
        self.pause_after = pause_step()
        # NOTE: the policies' rings first: one missing is the error.
        rings = None if objects else rings_mod.policy_rings(conf)
        self.ring = ring or ring_mod.Ring(
            conf.container_ring_file, conf.hash_path_prefix,
            conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)
        self.objects = objects or rings_mod.policy_clients(
            conf, self.client, container_ring=self.ring, rings=rings)
        # queue container -> its depth, as last seen here.
        self.depth = {}
        # database name hash -> its queue container name, or None.
        self._names = {}

    # -- items ----------------------------------------------------------------

    def before_pass(self):
        if self.ring.has_changed():
            self.log.info('Container ring changed, reloading')
            self.ring.reload()
        rings_mod.reload_changed(self.objects)
        # NOTE: a queue container not worked here in the last pass
        # (emptied, or another member's now) is no longer reported.
        self.depth = {q: e for q, e in self.depth.items()
                      if e['pass'] >= self.passes}

    def collect_jobs(self, devices=None, partitions=None):
        jobs = {}
        for dev in self.available_devices(devices):
            dev_path = self.manager.get_dev_path(dev['device'])
            primary = set(self.ring.partitions_for_device(dev['id']))
            if partitions:
                primary &= set(partitions)
            for job in concurrency.run_in_thread(
                    self._device_jobs, dev, dev_path, sorted(primary)):
                # NOTE: the listing is every replica's: one job per queue
                # container, whichever of its devices here.
                jobs.setdefault(job.queue, job)
        return sorted(jobs.values(), key=lambda j: int(j.queue))

    def _device_jobs(self, dev, dev_path, parts):
        """Queue containers of this device's primary partitions whose
        replica here has rows. Blocks: in a thread."""
        jobs = []
        for part in parts:
            nodes = None
            for name_hash, path in sorted(replication.list_dbs(
                    dev_path, backend.CONTAINER_DATADIR, part).items()):
                name = self._queue_name(name_hash, path)
                if name is None or not self._has_rows(path):
                    continue
                if nodes is None:
                    nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(name, dev['device'], part, path, nodes,
                                own_id=dev['id']))
        return jobs

    def _queue_name(self, name_hash, path):
        """The queue container a database is, or None (remembered: a
        database's name is its path's)."""
        known = self._names.get(name_hash, _NOT_READ)
        if known is not _NOT_READ:
            return known
        broker = backend.ContainerBroker(path, logger=self.log)
        try:
            info = broker.get_info()
        except backend.DatabaseError as err:
            self.log.warning('Container database %s not read: %s', path,
                             err)
            return None
        finally:
            broker.close()
        name = info['container']
        if info['account'] != queue.MISPLACED_ACCOUNT or \
                not queue.is_queue_container(name):
            name = None
        if len(self._names) >= MAX_NAME_CACHE:
            self._names.clear()
        self._names[name_hash] = name
        return name

    def _has_rows(self, path):
        broker = backend.ContainerBroker(path, logger=self.log)
        try:
            return not broker.empty()
        except backend.DatabaseError as err:
            self.log.warning('Queue database %s not read: %s', path, err)
            return False
        finally:
            broker.close()

    def objects_of(self, policy):
        """The object client of storage policy ``policy``."""
        found = self.objects.get(policy)
        if found is None:
            raise ReconcileError('storage policy %d is not configured here'
                                 % policy)
        return found

    # -- work --------------------------------------------------------------

    def work(self, job, grant):
        run = QueueJob(self, job, grant)
        try:
            return run.run()
        except ReconcileError as err:
            self.log.error('Reconciler %s: %s', run.label, err)
            return False
        finally:
            self.stats.figures.add(run.stats)

    def pause_if(self, step, entry):
        """The test-only fault hook (see the module docstring)."""
        if self.pause_after != step:
            return
        self.log.warning('pausing after %s of %s', step, entry.path)
        os.kill(os.getpid(), signal.SIGSTOP)

    def record_depth(self, job, entries, left, more):
        self.depth[job.queue] = {
            'queue': job.queue, 'entries': entries, 'left': left,
            'more': bool(more), 'holder': self.conf.node_name,
            'checked_at': round(time.time(), 3), 'pass': self.passes}

    # -- reporting ---------------------------------------------------------

    def new_figures(self):
        return ReconcileStats()

    def figures_text(self, figures):
        return ('%d queue containers, %d entries: %d moved, %d already '
                'right, %d tombstones, %d retried, %d invalid, %d errors; '
                '%d left' % (
                    figures.queues, figures.entries, figures.moved,
                    figures.already_right, figures.tombstones,
                    figures.retried, figures.invalid, figures.errors,
                    figures.left))

    def _depth_total(self):
        entries = self.depth.values()
        return (sum(e['left'] for e in entries),
                any(e['more'] for e in entries))

    def report_extra(self):
        """The queue depth (entries left, summed and for the deepest
        queue containers) and this pass's figures so far, for the
        member's progress."""
        depth, more = self._depth_total()
        ranked = sorted(self.depth.values(),
                        key=lambda e: (-e['left'], int(e['queue'])))
        figures = getattr(self.stats, 'figures', None)
        return {'queue_depth': depth, 'queue_depth_more': more,
                'queues': ranked[:self.wconf.max_report_queues],
                'figures': (dataclasses.asdict(figures)
                            if figures is not None else {})}

    def levels(self):
        return {'queue_depth': self._depth_total()[0]}

    def recon_extra(self):
        depth, more = self._depth_total()
        return {'queue_depth': depth, 'queue_depth_more': more,
                'queues': sorted(self.depth.values(),
                                 key=lambda e: int(e['queue']))}
