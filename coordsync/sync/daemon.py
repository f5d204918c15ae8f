"""The container sync daemon: rows of a container sent to another
cluster, by exactly one sender per container.

A container with ``X-Container-Sync-To`` and ``X-Container-Sync-Key`` is
one **item**; its lock is ``coordsync/sync/<account>/<container>`` and
the nodes that may take it are those of its container replicas. Swift
splits a container's rows among its replicas (``hash % replicas``) and
has every replica send every row again past a second point "just in
case", so a row may be sent 1 + R times and a down replica holds its
third back. Here the lock holder, whichever replica it has, sends every
row once:

1. **Level.** It asks every other replica for its id, highest row and
   sync state (``GET /sync-state``) and pulls the rows it lacks, so it
   sends from the most complete copy it can reach.
2. **Resume.** The newest sync state of the replicas
   (:mod:`coordsync.sync.state`) says where the container stands: the
   point in ``(created_at, name)`` order up to which rows were sent, a
   batch perhaps in flight, failed rows to retry. The destination keeps
   a copy of the point too (``X-Container-Sync-Point``): if its copy is
   newer than any replica's (a state write was lost), the rows up to it
   are checked at the destination (HEAD) before anything is sent.
3. **Late rows.** The rows of this replica that arrived since its last
   check and sort before the point (a slow update, an async pending)
   are checked and sent if the destination lacks them.
4. **Retries.** Failed rows whose wait is over are tried again (after a
   HEAD at the destination: a timed-out PUT may have landed); a row
   whose newer version exists is dropped, as is a row whose object was
   deleted after it (as Swift: the tombstone's own row follows).
5. **New rows**, in batches of ``batch_size``: the state is written with
   the batch as in flight, to this replica, to the others (fenced with
   the lock's token) and to the destination; then the rows are sent
   (``row_concurrency`` at once): a PUT of the newest body read through
   the object ring, with the row's timestamp and the object's metadata,
   or a DELETE for a tombstone; then the point moves past the batch. A
   row that fails joins the retry set (backoff from ``retry_interval``
   up to ``max_retry_interval``) and does not hold the others back; a
   batch that fails whole (the destination is down) ends the
   container's pass. At most ``rows_per_pass`` rows and
   ``container_time`` seconds per container and pass.

No static rule: without coordination nothing is sent (two senders would
send rows twice); the rows wait and the lag shows it.

Lag per container (rows behind, age of the oldest unsent row, rows in
the retry set, rows failing longer than ``retry_report_after``, last
error) is published in the member's progress (``coordsync-status
--sync``) and written to the recon file.
"""

import dataclasses
import time
import urllib.parse

import urllib3
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
from coordsync.sync import realms as realms_mod
from coordsync.sync import state as sync_state

LOG = logging.getLogger(__name__)

# Object headers a PUT to the other cluster carries (and X-Object-Meta-*).
COPIED_HEADERS = ('content-type', 'etag', 'content-length')
POINT_HEADER = 'X-Container-Sync-Point'
# A check (HEAD) through the destination's listing would cost fewer
# requests for a large catch-up; a HEAD per row is what every holder
# can do whatever the destination is.
PUT, DELETE, PRESENT, SUPERSEDED, GONE, FAILED, MISPLACED = (
    'put', 'delete', 'present', 'superseded', 'gone', 'failed',
    'misplaced')
_MAX_KEY_CHAR = '\U0010ffff'


class SyncError(exceptions.CoordsyncError):
    """The container cannot be synced now (one line: why)."""


@dataclasses.dataclass
class Job:
    """One container with a sync target and a replica here."""

    account: str
    container: str
    device: str
    partition: int
    name_hash: str
    db_path: str
    nodes: list
    sync_to: str
    user_key: str = dataclasses.field(repr=False)
    own_id: int = 0
    handoff = False

    @property
    def key(self):
        return sync_state.lock_name(self.account, self.container)

    @property
    def eligible(self):
        return frozenset(n['node'] for n in self.nodes)

    @property
    def item_id(self):
        return urllib.parse.quote('%s/%s' % (self.account, self.container),
                                  safe='')

    @property
    def where(self):
        return self.device

    @property
    def peers(self):
        return [n for n in self.nodes if n['id'] != self.own_id]


@dataclasses.dataclass
class SyncStats(worker.Figures):
    """Figures of a pass (summed over containers)."""

    containers: int = 0
    puts: int = 0
    deletes: int = 0
    bytes: int = 0
    present: int = 0
    superseded: int = 0
    gone: int = 0
    misplaced: int = 0
    failures: int = 0
    retried: int = 0
    late: int = 0
    checks: int = 0
    rows_pulled: int = 0
    retry_left: int = 0
    rows_behind: int = 0

    @property
    def synced(self):
        return self.puts + self.deletes


class Destination:
    """Requests to the other cluster's Swift API for one container."""

    def __init__(self, pool, target, user_key, realms, timeout):
        self.pool = pool
        self.target = target
        self.user_key = user_key
        self.realms = realms
        self.timeout = timeout

    def _request(self, method, name=None, headers=None, body=None,
                 x_timestamp=None):
        path = self.target.path
        url = self.target.url
        if name is not None:
            quoted = urllib.parse.quote(name, safe='/')
            path += '/' + quoted
            url += '/' + quoted
        headers = dict(headers or {})
        if x_timestamp is not None:
            headers['X-Timestamp'] = x_timestamp
        try:
            headers.update(realms_mod.sync_headers(
                method, self.target, path, x_timestamp or '0',
                self.user_key, self.realms))
        except realms_mod.RealmsError as err:
            raise SyncError(str(err)) from None
        try:
            resp = self.pool.urlopen(
                method, url, headers=headers, body=body, redirect=False,
                retries=False, preload_content=True, decode_content=False,
                timeout=urllib3.Timeout(connect=min(self.timeout, 10.0),
                                        read=self.timeout))
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise SyncError('%s %s: %s' % (method, url[:200], err)) \
                from None
        return resp

    def point(self, source):
        """``(status, point dict or None)`` of the destination
        container's copy of this source's point."""
        resp = self._request('HEAD')
        if resp.status // 100 != 2:
            return resp.status, None
        value = resp.headers.get('%s-%s' % (POINT_HEADER, source))
        return resp.status, parse_point(value)

    def set_point(self, source, value):
        resp = self._request('POST', headers={
            POINT_HEADER: '%s %s' % (source, value)})
        return resp.status

    def head(self, name):
        """``(timestamp, deleted)`` of the destination's newest version
        of ``name`` (a tombstone's, if our proxy says so), or
        ``(None, None)``."""
        resp = self._request('HEAD', name)
        if resp.status not in (200, 404):
            raise SyncError('HEAD at destination: %d' % resp.status)
        header = 'X-Timestamp' if resp.status == 200 else \
            'X-Backend-Timestamp'
        try:
            when = timestamp.Timestamp(resp.headers.get(header))
        except (TypeError, ValueError):
            return None, None
        return when, resp.status == 404

    def put(self, name, headers, chunks, x_timestamp):
        return self._request('PUT', name, headers=headers, body=chunks,
                             x_timestamp=x_timestamp).status

    def delete(self, name, x_timestamp):
        return self._request('DELETE', name,
                             x_timestamp=x_timestamp).status


_FIGURE_OF = {PUT: 'puts', DELETE: 'deletes', PRESENT: 'present',
              SUPERSEDED: 'superseded', GONE: 'gone',
              MISPLACED: 'misplaced'}


def _close(chunks):
    close = getattr(chunks, 'close', None)
    if close is not None:
        close()


def format_point(st):
    point = st['point'][0] if st['point'] else '-'
    sending = st['sending'][0] if st['sending'] else '-'
    return 'v=%d p=%s s=%s' % (st['v'], point, sending)


def parse_point(value):
    """``{'v', 'p', 's'}`` of a destination point, None if malformed."""
    if not value:
        return None
    found = {}
    for part in value.split():
        key, _, text = part.partition('=')
        found[key] = text
    try:
        return {'v': int(found['v']),
                'p': None if found.get('p', '-') == '-' else found['p'],
                's': None if found.get('s', '-') == '-' else found['s']}
    except (KeyError, ValueError):
        return None


def _stored_state(broker):
    """``(state text, its timestamp)`` in the database's metadata."""
    return broker.metadata.get(sync_state.STATE_KEY, ('', None))


def _seconds(value):
    try:
        return float(timestamp.Timestamp(value))
    except (TypeError, ValueError):
        return 0.0


def _comparable(st):
    """What a state says, its version aside."""
    return sync_state.encode(dict(st, v=0))


def _key_of_ts(ts):
    return None if ts is None else (ts, _MAX_KEY_CHAR)


def _later(one, other):
    if one is None:
        return other
    if other is None:
        return one
    return max(tuple(one), tuple(other))


class ContainerSyncJob:
    """One container's pass, under its lock; see the module docstring."""

    def __init__(self, owner, job, grant):
        self.owner = owner
        self.job = job
        self.grant = grant
        self.wconf = owner.wconf
        self.log = owner.log
        self.stats = SyncStats(containers=1)
        self.broker = None
        self.dest = None
        self.source = sync_state.source_id(job.account, job.container,
                                           owner.conf.hash_path_suffix)
        self.last_error = ''
        self.policy = 0
        self._last_ts = 0.0
        # ROWIDs of the rows this pass sent in sync order.
        self.visited = set()

    def _call(self, func, *args, **kwargs):
        return concurrency.run_in_thread(func, *args, **kwargs)

    # -- the pass -----------------------------------------------------------

    def run(self):
        """True if the container's pass went without error."""
        job, owner = self.job, self.owner
        owner.realms.reload_if_changed()
        try:
            target = realms_mod.parse_sync_to(
                job.sync_to, owner.realms, owner.conf.allowed_sync_hosts)
        except ValueError as err:
            raise SyncError('bad X-Container-Sync-To: %s' % err) from None
        self.dest = Destination(owner.pool, target, job.user_key,
                                owner.realms, self.wconf.request_timeout)
        self.broker = backend.ContainerBroker(
            job.db_path, job.account, job.container, logger=self.log)
        try:
            return self._run()
        finally:
            self.broker.close()

    def _run(self):
        info = self._call(self.broker.get_info)
        if self._call(self.broker.is_deleted):
            return True
        self.policy = info['storage_policy_index']
        my_id = info['id']
        answers = worker.run_scoped(self._peer_state, self.job.peers,
                                    max(1, len(self.job.peers)))
        pulled = {}
        text, when = self._call(_stored_state, self.broker)
        states = [sync_state.decode(text)]
        # NOTE: the state is merged newest-timestamp-wins: a write must
        # be stamped past every one seen, even from a node whose clock
        # runs ahead of ours, or it would be lost.
        self._last_ts = max(self._last_ts, _seconds(when))
        for peer, answer in zip(self.job.peers, answers, strict=True):
            if answer is None or answer.get('deleted'):
                continue
            states.append(sync_state.decode(answer.get('state')))
            self._last_ts = max(self._last_ts,
                                _seconds(answer.get('state_timestamp')))
            if self._pull(peer, answer):
                pulled[answer['id']] = answer['max_row']
        st = sync_state.newest(states, self.job.sync_to)
        before = _comparable(st)
        last_row = self._call(self.broker.get_max_row)
        if not self._has_work(st, my_id, last_row, pulled):
            # NOTE: a pass that finds nothing to send costs the other
            # cluster nothing and writes no state.
            self._lag(st)
            return True
        check_through = st['sending']
        dest_point = self._dest_point()
        if dest_point is not None and dest_point['v'] > st['v']:
            # NOTE: the destination saw a newer state than any replica
            # here: rows up to it may be there already.
            check_through = _later(check_through, _later(
                _key_of_ts(dest_point['p']), _key_of_ts(dest_point['s'])))
            st['v'] = dest_point['v']
        deadline = time.monotonic() + self.wconf.container_time
        budget = [self.wconf.rows_per_pass]
        late_done = self._late_rows(st, my_id, last_row, deadline, budget)
        if late_done:
            # NOTE: every row of a replica pulled from now is here, up to
            # ``last_row``, and checked: its mark holds again (a replica
            # that was down gets it back, instead of a full check when it
            # next holds the lock).
            if st['point'] is not None:
                st['rows'].update(pulled)
            self._retries(st, deadline)
            self._new_rows(st, my_id, last_row, pulled, check_through,
                           deadline, budget)
            # NOTE: rows that arrived during the pass and sort before the
            # point, unless the pass sent them: checked now, not as late
            # rows of the next pass (which would ask the destination
            # about every row the pass sent).
            now_last = self._call(self.broker.get_max_row)
            if now_last > st['rows'].get(my_id, -1):
                self._late_rows(st, my_id, now_last, deadline, [
                    self.wconf.batch_size], skip=self.visited)
        st['sending'] = None
        if _comparable(st) != before:
            self._write_state(st)
        self._lag(st)
        return not self.last_error

    def _has_work(self, st, my_id, last_row, pulled):
        if st['sending'] is not None:
            return True
        if st['point'] is not None and (
                st['rows'].get(my_id, -1) < last_row
                or any(st['rows'].get(peer, -1) < mark
                       for peer, mark in pulled.items())):
            return True
        now = time.time()
        if any(entry[3] <= now for entry in st['retry']):
            return True
        return bool(self._call(self.broker.sync_rows_after, st['point'], 1))

    # -- the other replicas ---------------------------------------------------

    def _state_path(self, peer):
        return direct_client.sync_state_path(
            peer['device'], self.job.partition, self.job.account,
            self.job.container)

    def _peer_state(self, peer):
        path = self._state_path(peer)
        try:
            resp = self.owner.client.request(peer, 'GET', path)
            try:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise direct_client.NodeError('GET %s: %d' % (
                        path, resp.status))
                return resp.json()
            finally:
                resp.close()
        except (direct_client.NodeError, ValueError) as err:
            self.owner.peer_errors.record(direct_client.node_label(peer),
                                          err)
            return None

    def _pull(self, peer, answer):
        """Pull the rows ``peer`` has that this replica lacks; True when
        every row up to its highest is here."""
        try:
            since = self._call(self.broker.get_sync, answer['id'])
            target = answer['max_row']
            while since < target:
                self.grant.check()
                items = self.owner.dbsync.rows(
                    peer, self.job.partition, self.job.name_hash, since,
                    self.owner.per_diff)
                if not items:
                    break
                self.grant.admit_local()
                self._call(self.broker.merge_items, items,
                           source=answer['id'])
                self.stats.rows_pulled += len(items)
                since = items[-1]['ROWID']
            return since >= target
        except direct_client.NodeError as err:
            self.owner.peer_errors.record(direct_client.node_label(peer),
                                          err)
        except (backend.DatabaseError, ValueError, KeyError) as err:
            self.log.warning('%s: rows from %s not pulled: %s',
                             self.label, direct_client.node_label(peer),
                             err)
        return False

    @property
    def label(self):
        return '/%s/%s' % (self.job.account, self.job.container)

    # -- state ----------------------------------------------------------------

    def _dest_point(self):
        """The destination's copy of the point (None if it has none or
        cannot tell); SyncError when the target cannot be synced to."""
        try:
            status, point = self.dest.point(self.source)
        except SyncError as err:
            self._error('destination unreachable: %s' % err)
            return None
        if status == 404:
            raise SyncError('destination container %s does not exist'
                            % self.dest.target.url)
        if status == 401:
            raise SyncError('destination %s refused our sync '
                            'authentication (keys or realm differ)'
                            % self.dest.target.url)
        if status // 100 != 2:
            self._error('destination answered %d' % status)
        return point

    def _stamp(self):
        now = max(time.time(), self._last_ts + 1e-5)
        self._last_ts = now
        return timestamp.Timestamp(now).normal

    def _write_state(self, st):
        """Write ``st`` (version raised) here, to every other replica
        reachable and to the destination."""
        self.grant.check()
        st['v'] += 1
        text = sync_state.encode(st)
        when = self._stamp()
        self.grant.admit_local()
        self._call(self.broker.update_metadata,
                   {sync_state.STATE_KEY: (text, when)})
        body = sync_state.encode({'state': text, 'timestamp': when}
                                 ).encode('utf-8')

        def send(peer):
            path = self._state_path(peer)
            try:
                resp = self.owner.client.request(
                    peer, 'PUT', path, body=body, fence=self.grant.fence,
                    headers={'Content-Type': 'application/json'})
                resp.read()
                if direct_client.is_fenced(resp):
                    raise worker.LockLost('%s refused token %s' % (
                        direct_client.node_label(peer), self.grant.token))
                if resp.status not in (204, 404):
                    raise direct_client.NodeError('PUT %s: %d' % (
                        path, resp.status))
            except direct_client.NodeError as err:
                self.owner.peer_errors.record(
                    direct_client.node_label(peer), err)
        worker.run_scoped(send, self.job.peers,
                          max(1, len(self.job.peers)))
        try:
            status = self.dest.set_point(self.source, format_point(st))
            if status // 100 != 2:
                self.log.warning('%s: destination refused the sync point '
                                 '(%d)', self.label, status)
        except SyncError as err:
            self.log.warning('%s: sync point not written at the '
                             'destination: %s', self.label, err)

    # -- rows -----------------------------------------------------------------

    def _late_rows(self, st, my_id, last_row, deadline, budget,
                   skip=frozenset()):
        """Check the rows of this replica that arrived since its last
        check and sort before the point (but those in ``skip``, by
        ROWID); True once all are done."""
        if st['point'] is None:
            st['rows'][my_id] = last_row
            return True
        after = st['rows'].get(my_id, -1)
        point = tuple(st['point'])
        while after < last_row:
            if time.monotonic() > deadline or budget[0] <= 0:
                return False
            self.grant.check()
            items = self._call(self.broker.get_items_since, after,
                               self.wconf.batch_size)
            items = [i for i in items if i['ROWID'] <= last_row]
            if not items:
                break
            late = [i for i in items if sync_state.row_key(i) <= point
                    and i['ROWID'] not in skip]
            if late:
                self.stats.late += len(late)
                outcomes = self._send_rows(late, lambda row: True)
                for row, (outcome, reason) in zip(late, outcomes,
                                                  strict=True):
                    if outcome == FAILED:
                        self._add_retry(st, row, reason)
                budget[0] -= len(late)
            after = items[-1]['ROWID']
            st['rows'][my_id] = after
        st['rows'][my_id] = max(after, last_row)
        return True

    def _retries(self, st, deadline):
        now = time.time()
        due = [r for r in st['retry'] if r[3] <= now]
        if not due or time.monotonic() > deadline:
            return
        current = self._call(self.broker.get_rows, [r[0] for r in due],
                             self.policy)
        keep = [r for r in st['retry'] if r[3] > now]
        todo = []
        for entry in due:
            row = current.get(entry[0])
            if row is None or row['created_at'] != entry[1]:
                # NOTE: a newer version's row replaced it; that row is
                # sent in its turn (or was, if it sorts before the point).
                self.stats.superseded += 1
                continue
            todo.append((entry, row))
        outcomes = self._send_rows([row for _e, row in todo],
                                   lambda row: True)
        for (entry, _row), (outcome, reason) in zip(todo, outcomes,
                                                    strict=True):
            self.stats.retried += 1
            if outcome == FAILED:
                tries = entry[2] + 1
                wait = min(self.wconf.retry_interval * 2 ** (tries - 1),
                           self.wconf.max_retry_interval)
                keep.append([entry[0], entry[1], tries, now + wait,
                             entry[4], reason])
        st['retry'] = keep

    def _add_retry(self, st, row, reason):
        now = time.time()
        st['retry'] = [r for r in st['retry'] if r[0] != row['name']]
        st['retry'].append([row['name'], row['created_at'], 1,
                            now + self.wconf.retry_interval, now, reason])

    def _new_rows(self, st, my_id, last_row, pulled, check_through,
                  deadline, budget):
        first = True
        while budget[0] > 0 and time.monotonic() < deadline:
            if len(st['retry']) >= self.wconf.max_retry_rows:
                self._error('%d rows wait in the retry set '
                            '(max_retry_rows); new rows wait behind them'
                            % len(st['retry']))
                return
            batch = self._call(self.broker.sync_rows_after, st['point'],
                               min(self.wconf.batch_size, budget[0]))
            if not batch:
                return
            st['sending'] = sync_state.row_key(batch[-1])
            self._write_state(st)

            def check(row):
                return (check_through is not None
                        and sync_state.row_key(row) <= check_through)
            self.visited.update(row['ROWID'] for row in batch)
            outcomes = self._send_rows(batch, check)
            failed = 0
            for row, (outcome, reason) in zip(batch, outcomes, strict=True):
                if outcome == FAILED:
                    failed += 1
                    self._add_retry(st, row, reason)
            st['point'] = sync_state.row_key(batch[-1])
            if first:
                # NOTE: the point moves past rows a replica not reached
                # now may have and this one lacks: its late-row mark no
                # longer holds.
                st['rows'] = dict(pulled, **{my_id: last_row})
                first = False
            budget[0] -= len(batch)
            if failed == len(batch):
                self._error('every row of a batch failed (last: %s); the '
                            'rest waits for the next pass'
                            % outcomes[-1][1])
                return

    def _send_rows(self, rows, check):
        """``[(outcome, reason)]`` of sending ``rows``; ``check(row)``:
        ask the destination first."""
        def one(row):
            self.grant.check()
            try:
                return self._sync_row(row, check(row)), ''
            except worker.LockLost:
                raise
            except (SyncError, direct_client.NodeError,
                    object_client.QuorumError, OSError, ValueError) as err:
                self.stats.failures += 1
                return FAILED, ' '.join(str(err).split())[:200]
        outcomes = worker.run_scoped(one, rows, self.wconf.row_concurrency)
        for outcome, _reason in outcomes:
            figure = _FIGURE_OF.get(outcome)
            if figure is not None:
                setattr(self.stats, figure,
                        getattr(self.stats, figure) + 1)
        return outcomes

    def _sync_row(self, row, check):
        name, when = row['name'], row['created_at']
        if row['storage_policy_index'] != self.policy:
            # NOTE: a row of another storage policy (a split brain) is the
            # reconciler's: its move makes a row of this policy, sent in
            # its turn; its tombstone in the other policy must not
            # delete the object at the destination.
            return MISPLACED
        row_ts = timestamp.Timestamp(when)
        if check:
            self.stats.checks += 1
            there, _deleted = self.dest.head(name)
            if there is not None and there >= row_ts:
                return PRESENT
        if row['deleted']:
            status = self.dest.delete(name, when)
            if status // 100 == 2 or status in (404, 409):
                return DELETE
            raise SyncError('DELETE at destination: %d' % status)
        objects = self.owner.objects.get(self.policy)
        if objects is None:
            raise SyncError('storage policy %d is not configured here'
                            % self.policy)
        found, headers, chunks = objects.get_newest(
            self.job.account, self.job.container, name)
        if found is not None and found > row_ts:
            _close(chunks)
            # NOTE: a newer version (its own row follows) or, as in
            # Swift, a newer tombstone: nothing of this row to send.
            return SUPERSEDED if headers is not None else GONE
        if headers is None:
            raise SyncError('source object %s not found at its row\'s '
                            'timestamp %s' % (name[:100], when))
        if found < row_ts:
            raise SyncError('source object %s is older (%s) than its row '
                            '(%s)' % (name[:100], found.normal, when))
        out = {k: v for k, v in headers.items()
               if k.lower() in COPIED_HEADERS
               or k.lower().startswith('x-object-meta-')}
        try:
            status = self.dest.put(name, out, chunks, when)
        finally:
            _close(chunks)
        if status in (201, 202):
            self.stats.bytes += int(headers.get('content-length') or 0)
            return PUT
        raise SyncError('PUT at destination: %d' % status)

    # -- reporting ---------------------------------------------------------

    def _error(self, text):
        self.last_error = text

    def _lag(self, st):
        behind, oldest = self._call(self.broker.sync_lag, st['point'])
        retry = st['retry']
        now = time.time()
        unsent = [float(r[1]) for r in retry]
        if oldest:
            unsent.append(float(oldest))
        oldest_ts = min(unsent) if unsent else None
        failing = [r for r in retry
                   if now - r[4] > self.wconf.retry_report_after]
        if failing:
            worst = min(failing, key=lambda r: r[4])
            self.log.error('%s: %d rows failing for more than %ss (e.g. '
                           '%r since %s: %s)', self.label, len(failing),
                           self.wconf.retry_report_after, worst[0][:100],
                           time.strftime('%Y-%m-%d %H:%M:%S',
                                         time.gmtime(worst[4])), worst[5])
        self.stats.retry_left = len(retry)
        self.stats.rows_behind = behind + len(retry)
        self.owner.record_lag(self.job, {
            'rows_behind': behind + len(retry),
            'oldest_age': round(now - oldest_ts, 1)
            if oldest_ts is not None else 0.0,
            'retry': len(retry), 'failing': len(failing),
            'last_error': self.last_error or (
                retry[-1][5] if retry else ''),
            'point': st['point'][0] if st['point'] else None,
            'synced_at': round(now, 3)})


class ContainerSync(worker.RingWorker):
    """See the module docstring."""

    name = 'container-sync'
    conf_group = 'container-sync'
    item_noun = 'containers'
    pass_title = 'Sync pass'
    done_verb = 'synced'

    def __init__(self, conf, coordinator, ring=None, manager=None,
                 node_client=None, objects=None, logger=None):
        super().__init__(conf, coordinator, logger)
        self.ring = ring or ring_mod.Ring(
            conf.container_ring_file, conf.hash_path_prefix,
            conf.hash_path_suffix)
        self.manager = manager or diskfile.DiskFileManager.from_conf(
            conf, self.log)
        self.client = node_client or direct_client.NodeClient(
            conf, member_id=coordinator.member_id)
        self.dbsync = replication.DbSyncClient(self.client,
                                               backend.CONTAINER_DATADIR)
        # NOTE: {policy index: ObjectClient}; a container's objects are
        # read from its policy's ring.
        self.objects = objects or rings_mod.policy_clients(conf,
                                                           self.client)
        self.realms = realms_mod.Realms(conf.container_sync_realms_file)
        self.pool = urllib3.PoolManager(num_pools=64, maxsize=16,
                                        block=False, retries=False)
        self.per_diff = 1000
        # '/a/c' -> lag figures of the container, as last seen here.
        self.lag = {}

    # -- items ----------------------------------------------------------------

    def before_pass(self):
        if self.ring.has_changed():
            self.log.info('Container ring changed, reloading')
            self.ring.reload()
        rings_mod.reload_changed(self.objects)

    def collect_jobs(self, devices=None, partitions=None):
        jobs = []
        for dev in self.available_devices(devices):
            dev_path = self.manager.get_dev_path(dev['device'])
            primary = set(self.ring.partitions_for_device(dev['id']))
            if partitions:
                primary &= set(partitions)
            jobs.extend(concurrency.run_in_thread(
                self._device_jobs, dev, dev_path, sorted(primary)))
        return jobs

    def _device_jobs(self, dev, dev_path, parts):
        """Containers of this device's primary partitions with a sync
        target. Blocks: in a thread."""
        jobs = []
        for part in parts:
            nodes = None
            for name_hash, path in sorted(replication.list_dbs(
                    dev_path, backend.CONTAINER_DATADIR, part).items()):
                found = self._sync_config(path)
                if found is None:
                    continue
                account, container, sync_to, key = found
                if nodes is None:
                    nodes = self.ring.get_part_nodes(part)
                jobs.append(Job(account, container, dev['device'], part,
                                name_hash, path, nodes, sync_to, key,
                                own_id=dev['id']))
        return jobs

    def _sync_config(self, path):
        broker = backend.ContainerBroker(path, logger=self.log)
        try:
            meta = broker.live_metadata
            sync_to = meta.get('X-Container-Sync-To', ('', ''))[0]
            key = meta.get('X-Container-Sync-Key', ('', ''))[0]
            if not sync_to or not key or broker.is_deleted():
                return None
            info = broker.get_info()
            return info['account'], info['container'], sync_to, key
        except backend.DatabaseError as err:
            self.log.warning('Container database %s not read: %s', path,
                             err)
            return None
        finally:
            broker.close()

    # -- work --------------------------------------------------------------

    def work(self, job, grant):
        sync = ContainerSyncJob(self, job, grant)
        try:
            ok = sync.run()
        except SyncError as err:
            sync.last_error = str(err)
            ok = False
            self.log.error('Container sync /%s/%s: %s', job.account,
                           job.container, err)
            self.record_lag(job, {'last_error': str(err),
                                  'synced_at': round(time.time(), 3)})
        finally:
            self.stats.figures.add(sync.stats)
        if not ok and sync.last_error:
            self.log.warning('Container sync /%s/%s: %s', job.account,
                             job.container, sync.last_error)
        return ok

    def record_lag(self, job, figures):
        key = '/%s/%s' % (job.account, job.container)
        entry = self.lag.setdefault(key, {
            'account': job.account, 'container': job.container,
            'target': job.sync_to, 'rows_behind': None, 'oldest_age': None,
            'retry': 0, 'failing': 0, 'last_error': '', 'point': None})
        entry.update(figures)
        entry['target'] = job.sync_to
        entry['holder'] = self.conf.node_name

    def new_figures(self):
        return SyncStats()

    def figures_text(self, figures):
        return ('%d containers; %d rows sent (%d PUT, %d DELETE, %d bytes)'
                ', %d already there, %d superseded, %d gone, %d late, %d '
                'retried, %d failed; %d checks; %d rows behind, %d to '
                'retry' % (
                    figures.containers, figures.synced, figures.puts,
                    figures.deletes, figures.bytes, figures.present,
                    figures.superseded, figures.gone, figures.late,
                    figures.retried, figures.failures, figures.checks,
                    figures.rows_behind, figures.retry_left))

    def report_extra(self):
        """The most behind containers' lag, for the member's progress
        (all of them go to the recon file)."""
        ranked = sorted(self.lag.values(), key=lambda e: (
            -(e.get('rows_behind') or 0), -(e.get('oldest_age') or 0)))
        return {'sync': ranked[:self.wconf.max_lag_containers]}

    def levels(self):
        """Rows behind over the containers this member measured, and
        the oldest unsynced row's age."""
        entries = list(self.lag.values())
        return {'rows_behind': sum(e.get('rows_behind') or 0
                                   for e in entries),
                'oldest_unsynced_age': max(
                    (e.get('oldest_age') or 0 for e in entries),
                    default=0)}

    def recon_extra(self):
        return {'sync': sorted(self.lag.values(),
                               key=lambda e: (e['account'], e['container']))}
