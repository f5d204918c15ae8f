"""The misplaced-object queue, and which storage policy a container has
when its replicas disagree.

**How a container's replicas come to disagree.** A container is deleted
and created again with another policy while one of its replicas cannot
be reached; that replica still has the old policy, and writes that meet
it first place their objects in the old policy's ring. When the
replicas meet again, :func:`winning_policy` decides, and the container
replicator writes the winner on every replica.

**The rule** (:func:`winning_policy`), over the replicas' states as
reported (policy index, put, delete and status-changed timestamps,
deleted or not). Let D be the newest delete timestamp any of them has
seen. Each replica ranks, best first:

1. live, recreated (its delete timestamp is set) and put after D: the
   container as it was created after the last delete;
2. live and put after D, never deleted;
3. live, but put at or before D (it missed a later delete);
4. deleted.

Within ranks 1-3 the oldest status change wins (the first creation
holds: a later create of another policy would have been refused had it
reached that replica); within rank 4 the newest. Ties go to the lower
policy index. The rule is a sort key, so every replica and every holder
that sees the same states reaches the same policy, whatever the order.
The winner's policy and status-changed time are then written on every
replica, so later passes agree with it.

**The queue.** A row of a container whose policy is not the container's
is misplaced. The container replicator enqueues it into the
``.misplaced_objects`` account: the queue container is the row's
timestamp rounded down to the hour (:func:`queue_container`), the entry's
name is ``<policy>:/<account>/<container>/<object>`` and its timestamp is
the row's, its content type says whether it was a write or a delete.
Enqueueing the same row twice changes nothing (one row per name, newest
wins); a newer misplaced write replaces its entry.
"""

import dataclasses
import re

from coordsync.common import timestamp

MISPLACED_ACCOUNT = '.misplaced_objects'
BUCKET_SECONDS = 3600
PUT_TYPE = 'application/x-put'
DELETE_TYPE = 'application/x-delete'
LOCK_PREFIX = 'coordsync/reconcile/'
_ENTRY_RE = re.compile(r'(0|[1-9][0-9]{0,8}):/([^/]+)/([^/]+)/(.+)\Z',
                       re.DOTALL)
_QUEUE_RE = re.compile(r'(0|[1-9][0-9]{0,9})\Z')


def queue_container(when):
    """The queue container of a row written at ``when``."""
    seconds = timestamp.Timestamp(when).ticks // timestamp.TICKS_PER_SECOND
    return str(seconds // BUCKET_SECONDS * BUCKET_SECONDS)


def is_queue_container(name):
    return bool(_QUEUE_RE.match(name))


def lock_name(queue):
    """The lock a reconciler holds while it works a queue container."""
    return LOCK_PREFIX + queue


def entry_name(policy, account, container, obj):
    return '%d:/%s/%s/%s' % (policy, account, container, obj)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One queued misplaced row."""

    name: str            # the entry's own name in the queue container
    policy: int          # the policy the object was written under
    account: str
    container: str
    obj: str
    when: timestamp.Timestamp   # the misplaced row's timestamp (q_ts)
    op: str              # 'PUT' or 'DELETE'

    @property
    def path(self):
        return '/%s/%s/%s' % (self.account, self.container, self.obj)


def parse_entry(row):
    """The :class:`Entry` of a queue container's listing row (a dict
    with ``name``, ``created_at`` and ``content_type``); ValueError with
    a one-line reason if it is not one."""
    name = row.get('name')
    match = _ENTRY_RE.match(name or '')
    if match is None:
        raise ValueError('not a queue entry name: %r' % (name or '')[:100])
    kind = row.get('content_type')
    if kind not in (PUT_TYPE, DELETE_TYPE):
        raise ValueError('queue entry %r: content type %r is neither %s '
                         'nor %s' % (name[:100], kind, PUT_TYPE,
                                     DELETE_TYPE))
    return Entry(name, int(match.group(1)), match.group(2),
                 match.group(3), match.group(4),
                 timestamp.Timestamp(row['created_at']),
                 'PUT' if kind == PUT_TYPE else 'DELETE')


def entry_row(row, policy, account, container):
    """The queue row (``(queue container, {name, created_at, size,
    content_type, etag})``) of a misplaced container row."""
    when = timestamp.Timestamp(row['created_at'])
    return queue_container(when), {
        'name': entry_name(policy, account, container, row['name']),
        'created_at': when.normal, 'size': 0,
        'content_type': DELETE_TYPE if row.get('deleted') else PUT_TYPE,
        'etag': when.normal}


def _rank(state, newest_delete):
    put = timestamp.Timestamp(state['put_timestamp'])
    delete = timestamp.Timestamp(state['delete_timestamp'])
    changed = timestamp.Timestamp(state['status_changed_at']).ticks
    index = int(state.get('storage_policy_index') or 0)
    if state.get('deleted'):
        return (4, -changed, index)
    if put > newest_delete:
        return (1 if delete.ticks else 2, changed, index)
    return (3, changed, index)


def winning_policy(states):
    """The state (one of ``states``) whose policy every replica must
    take; see the module docstring. ``states`` need ``put_timestamp``,
    ``delete_timestamp``, ``status_changed_at``, ``deleted`` and
    ``storage_policy_index``."""
    states = list(states)
    if not states:
        raise ValueError('no container states to choose a policy from')
    newest_delete = max(timestamp.Timestamp(s['delete_timestamp'])
                        for s in states)
    return min(states, key=lambda s: _rank(s, newest_delete))
