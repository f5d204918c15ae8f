"""A container's sync state: where its sync to another cluster stands.

Kept as JSON in the container database's metadata (``STATE_KEY``, merged
newest-timestamp-wins like all metadata, so every replica learns it) and
written by the container's lock holder to every replica it reaches
after each batch of rows. A holder on any replica resumes from it.

Rows are sent in **sync order**: by ``(created_at, name)``. That order
is the same on every replica (a row's ROWID is not: each replica numbers
rows as they arrive), so one point serves them all::

    {"v": 12,                          # version: +1 at every write
     "target": "//realm/cluster/a/c",  # the state belongs to this target
     "point": ["1700000000.12345", "name"],  # rows up to here are synced
     "sending": ["1700000001.00000", "x"],   # a batch in flight up to here
     "rows": {"<db id>": 4711},        # late rows: see below
     "retry": [[name, created_at, tries, next_try, first_failed, error]]}

**Late rows.** A row may arrive at a replica after the point moved past
its ``(created_at, name)`` (a slow container update, an async pending,
a replica that was down). ``rows[id]`` = R says: every row of the
replica ``id`` with ROWID <= R and at or before the point was synced.
A holder checks its own replica's rows after its R (a short list in a
steady cluster) before it moves the point; the replicas it pulled rows
from get R = the highest row it pulled, and the others lose their entry
(the point moved past rows they may have that the holder did not see),
so their next holder checks all of them against the destination once.

``sending`` is an intent: rows up to it may have reached the destination
already (the holder died before it wrote the point), so the next holder
asks the destination (HEAD) before sending those again.
"""

import hashlib
import json

STATE_KEY = 'X-Container-Sysmeta-Sync-State'
LOCK_KIND = 'sync'
# NOTE: fence items are at most 512 bytes; longer names are hashed.
MAX_LOCK_NAME = 480


def lock_name(account, container):
    """``coordsync/sync/<account>/<container>``."""
    name = 'coordsync/%s/%s/%s' % (LOCK_KIND, account, container)
    if len(name.encode('utf-8', 'surrogatepass')) > MAX_LOCK_NAME:
        digest = hashlib.sha256(('%s/%s' % (account, container)).encode(
            'utf-8', 'surrogatepass')).hexdigest()
        name = 'coordsync/%s/%s/%s' % (LOCK_KIND, '.hashed', digest)
    return name


def source_id(account, container, suffix=''):
    """A stable id of a source container (named at the destination
    without revealing its name)."""
    return hashlib.sha256(('/%s/%s/%s' % (account, container, suffix)
                           ).encode('utf-8', 'surrogatepass')).hexdigest()[:16]


def row_key(row):
    return (row['created_at'], row['name'])


def new_state(target, version=0):
    return {'v': version, 'target': target, 'point': None,
            'sending': None, 'rows': {}, 'retry': []}


def decode(text):
    """The state in ``text`` (JSON), or None if it is not one."""
    if not text:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get('v'), int):
        return None
    fresh = new_state(state.get('target'), state['v'])
    for key in ('point', 'sending'):
        value = state.get(key)
        if (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, str) for v in value)):
            fresh[key] = tuple(value)
    rows = state.get('rows')
    if isinstance(rows, dict):
        fresh['rows'] = {k: v for k, v in rows.items()
                         if isinstance(k, str) and isinstance(v, int)}
    retry = state.get('retry')
    if isinstance(retry, list):
        fresh['retry'] = [list(r) for r in retry
                          if isinstance(r, list) and len(r) == 6]
    return fresh


def encode(state):
    return json.dumps(state, sort_keys=True, separators=(',', ':'))


def newest(states, target):
    """The newest state (highest version) of ``target`` among
    ``states`` (None entries skipped), or a new one numbered past all."""
    found = [s for s in states if s is not None]
    top = max((s['v'] for s in found), default=0)
    mine = [s for s in found if s.get('target') == target]
    if not mine:
        return new_state(target, top)
    best = max(mine, key=lambda s: s['v'])
    best['v'] = max(best['v'], top)
    return best
