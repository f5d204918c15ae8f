"""Container and account database replication: the node side.

The holder of a partition's lock (``coordsync/replicate-container/<P>``
or ``coordsync/replicate-account/<P>``, see
:mod:`coordsync.container.replicator`) levels every replica of each
database in it through these routes of every node holding one::

    POST   /db-sync/<datadir>/<dev>/<part>         {"op": "states"}
    POST   /db-sync/<datadir>/<dev>/<part>/<hash>  {"op": "rows", ...}
    POST   /db-sync/<datadir>/<dev>/<part>/<hash>  {"op": "merge", ...}
    PUT    /db-sync/<datadir>/<dev>/<part>/<hash>  (a whole database)
    GET    /db-sync/<datadir>/<dev>/<part>/<hash>  (a whole database)
    DELETE /db-sync/<datadir>/<dev>/<part>/<hash>  (reclaim or handoff)

``<datadir>`` is ``containers`` or ``accounts``. All are signed and, from
a coordinated holder, fenced with its token for the partition's item
(:attr:`coordsync.common.wsgi.Route.lock_item`); a static holder's
writes say ``?replication=true`` and wait for a coordinated holder's
lease.

* **states** answers, for every database of the partition on that
  device, what the holder needs to tell whether it is level: its id,
  highest row id, rolling hash of the rows, timestamps, metadata and its
  incoming sync points (the highest row id it took from each replica).
  A no-change pass costs this one request per peer per partition.
  Damaged databases met while reading are quarantined and counted.
* **rows** returns up to ``limit`` rows after a row id (the holder pulls
  what it lacks); **merge** takes a batch of rows with the sender's id
  (its incoming sync point with the sender rises in the same
  transaction), and the sender's timestamps, metadata and, with the last
  batch, the sync point it reached.
* **PUT** of a whole database (a replica has none: new, lost or
  quarantined): the body is written to a temporary file on the device,
  checked (our schema, ``PRAGMA quick_check``, its names hash to the
  path), given an id of its own, then hard-linked into place only where
  no database exists (409 otherwise): a database that may be open is
  never replaced (see :mod:`coordsync.container.backend`). **GET**
  sends a consistent snapshot (SQLite's online backup), the same way.
* **DELETE** removes a replica the holder reclaimed (deleted longer than
  ``reclaim_age``: ``X-Db-Reclaim-Before``) or a handoff copy pushed
  home (``X-Db-Max-Row`` and ``X-Db-Hash``: only if unchanged since).

Bodies of writes are bound to their signature (``ETag`` and
``Content-Length`` are signed; the server checks the body against
both). Every disk and SQLite call runs off the hub.
"""

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import uuid

from oslo_log import log as logging

from coordsync import concurrency
from coordsync.common import direct_client
from coordsync.common import fsutil
from coordsync.common import hashing
from coordsync.common import timestamp
from coordsync.common import wsgi
from coordsync.common.wsgi import HTTPError
from coordsync.container import backend
from coordsync.obj import layout
from coordsync.reconciler import queue

LOG = logging.getLogger(__name__)

DATADIRS = (backend.CONTAINER_DATADIR, backend.ACCOUNT_DATADIR)
LOCK_KINDS = {backend.CONTAINER_DATADIR: 'replicate-container',
              backend.ACCOUNT_DATADIR: 'replicate-account'}
# A merge batch of 1,000 rows is ~200 KB; this bounds a JSON request.
MAX_JSON_BODY = 32 * 2 ** 20
MAX_ROWS = 10000
# Bounds a whole-database PUT (SQLite's own limit is far above).
MAX_DB_BODY = 64 * 2 ** 30
CHUNK_SIZE = 65536
RECLAIM_HEADER = 'X-Db-Reclaim-Before'
MAX_ROW_HEADER = 'X-Db-Max-Row'
HASH_HEADER = 'X-Db-Hash'
_HASH_RE = re.compile(r'[0-9a-f]{32}\Z')
_INT_RE = re.compile(r'-?[0-9]{1,19}\Z')
_MD5_RE = re.compile(r'[0-9a-f]{32}\Z')


def lock_name(datadir, partition):
    """The lock (item) of a partition of container or account DBs."""
    return 'coordsync/%s/%d' % (LOCK_KINDS[datadir], partition)


def broker_class(datadir):
    return (backend.ContainerBroker if datadir == backend.CONTAINER_DATADIR
            else backend.AccountBroker)


# -- reading replicas (blocking: run in a thread) ----------------------------

def list_dbs(dev_path, datadir, partition):
    """``{hash: db file}`` of the databases of a partition on a device."""
    part_dir = os.path.join(dev_path, datadir, str(partition))
    found = {}
    try:
        suffixes = os.listdir(part_dir)
    except (FileNotFoundError, NotADirectoryError):
        return found
    for suffix in suffixes:
        if not layout.is_suffix(suffix):
            continue
        try:
            hashes = os.listdir(os.path.join(part_dir, suffix))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name_hash in hashes:
            if not _HASH_RE.match(name_hash) or name_hash[-3:] != suffix:
                continue
            path = backend.db_path(dev_path, datadir, partition, name_hash)
            if os.path.exists(path):
                found[name_hash] = path
    return found


def digest(state):
    """What must be equal on two replicas for them to be level."""
    text = json.dumps([state['hash'], state['created_at'],
                       state['put_timestamp'], state['delete_timestamp'],
                       state['metadata'],
                       state.get('storage_policy_index')], sort_keys=True)
    return hashlib.md5(text.encode('utf-8'),
                       usedforsecurity=False).hexdigest()


def read_state(broker):
    """The replication state of one replica (see the module docstring);
    raises :class:`~coordsync.container.backend.DatabaseError`."""
    info = broker.get_replication_info()
    syncs = broker.get_syncs(incoming=True)
    state = {
        'id': info['id'], 'max_row': info['max_row'], 'hash': info['hash'],
        'created_at': info['created_at'],
        'put_timestamp': info['put_timestamp'],
        'delete_timestamp': info['delete_timestamp'],
        'status_changed_at': info['status_changed_at'],
        'metadata': json.loads(info['metadata']),
        'deleted': bool(broker._deleted(info)),
        'syncs': {s['remote_id']: s['sync_point'] for s in syncs},
        'account': info['account'], 'container': info.get('container'),
        # NOTE: containers only (None for accounts): replicas that
        # disagree about it are not level.
        'storage_policy_index': info.get('storage_policy_index'),
    }
    state['digest'] = digest(state)
    return state


def partition_states(dev_path, datadir, partition, logger=LOG):
    """``(states by hash, quarantined count)`` of a partition's DBs on
    a device; a damaged DB is quarantined (by the broker) and left out,
    one that cannot be read now is left out and logged."""
    cls = broker_class(datadir)
    states, quarantined = {}, 0
    for name_hash, path in sorted(list_dbs(dev_path, datadir,
                                           partition).items()):
        broker = cls(path, logger=logger)
        try:
            states[name_hash] = read_state(broker)
        except backend.DatabaseCorrupt:
            quarantined += 1
        except backend.DatabaseNotFound:
            continue
        except backend.DatabaseError as err:
            logger.warning('Cannot read %s: %s', path, err)
        finally:
            broker.close()
    return states, quarantined


def db_broker(dev_path, datadir, partition, name_hash, logger=LOG):
    return broker_class(datadir)(
        backend.db_path(dev_path, datadir, partition, name_hash),
        logger=logger)


def _tmp_path(dev_path):
    """A new temporary file name in the device's ``tmp`` (cleaned of
    crashed writes' leftovers by the node server and the replicators)."""
    tmp_dir = os.path.join(dev_path, layout.TMPDIR)
    os.makedirs(tmp_dir, exist_ok=True)
    return os.path.join(tmp_dir, 'db-%s.tmp' % uuid.uuid4().hex)


def _remove_tmp(path):
    for suffix in ('', '-journal', '-wal', '-shm'):
        with contextlib.suppress(OSError):
            os.unlink(path + suffix)
    # NOTE: a damaged copy the broker moved aside.
    for name in glob.glob(glob.escape(path) + '.corrupt-*'):
        with contextlib.suppress(OSError):
            os.unlink(name)


def snapshot(broker, dev_path):
    """``(path, md5, size)`` of a consistent copy of ``broker``'s
    database in the device's ``tmp`` (SQLite's online backup: writers
    go on meanwhile). The caller removes the file."""
    broker.get_info()  # NOTE: a damaged file is quarantined here.
    tmp = _tmp_path(dev_path)
    src = dst = None
    try:
        src = sqlite3.connect('file:%s?mode=ro' % os.path.abspath(
            broker.db_file), uri=True, timeout=broker.timeout)
        dst = sqlite3.connect(tmp)
        src.backup(dst)
        dst.close()
        dst = None
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with open(tmp, 'rb') as fp:
            while chunk := fp.read(CHUNK_SIZE):
                md5.update(chunk)
                size += len(chunk)
        return tmp, md5.hexdigest(), size
    except (sqlite3.Error, OSError) as err:
        _remove_tmp(tmp)
        raise backend.DatabaseError('cannot copy %s: %s' % (
            broker.db_file, ' '.join(str(err).split()))) from err
    finally:
        for conn in (src, dst):
            if conn is not None:
                conn.close()


def install(dev_path, datadir, partition, name_hash, tmp, hash_prefix='',
            hash_suffix='', logger=LOG, before_link=None):
    """Put the database copy ``tmp`` (on the same device) in place as the
    replica of ``name_hash``, only if none exists there; return its
    state.

    Raises ValueError if the copy is not a sound database of this
    datadir whose names hash to ``name_hash``, and
    :class:`~coordsync.container.backend.DatabaseConflict` if a
    database exists there already (the caller merges rows instead).
    ``before_link()`` runs (in the caller's green thread) right before
    the link: a fence check.
    """
    concurrency.run_in_thread(prepare_copy, dev_path, datadir, name_hash,
                              tmp, hash_prefix, hash_suffix, logger)
    if before_link is not None:
        before_link()
    return concurrency.run_in_thread(publish_copy, dev_path, datadir,
                                     partition, name_hash, tmp, logger)


def prepare_copy(dev_path, datadir, name_hash, tmp, hash_prefix='',
                 hash_suffix='', logger=LOG):
    """Check a received copy and give it an id of its own (see
    :func:`install`)."""
    cls = broker_class(datadir)
    _check_file(tmp, cls)
    device = os.path.basename(dev_path)
    copy = cls(tmp, logger=logger)
    # NOTE: the copy is not at its place yet: name the id's device here.
    copy._new_db_id = lambda: '%s-%s' % (uuid.uuid4(), device)
    try:
        try:
            info = copy.get_replication_info()
        except backend.DatabaseError as err:
            raise ValueError('not a sound %s database: %s'
                             % (cls.db_type, err)) from None
        names = (info['account'],) if datadir == backend.ACCOUNT_DATADIR \
            else (info['account'], info['container'])
        if hashing.hash_path(*names, prefix=hash_prefix,
                             suffix=hash_suffix) != name_hash:
            raise ValueError('its names do not hash to %s' % name_hash)
        copy.newid(info['id'])
    finally:
        copy.close()
    conn = sqlite3.connect(tmp)
    try:
        # NOTE: the rows newid wrote go into the file itself: nothing of
        # the copy may stay in a -wal beside a name about to change.
        conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    finally:
        conn.close()
    for suffix in ('-wal', '-shm'):
        with contextlib.suppress(OSError):
            os.unlink(tmp + suffix)


def _check_file(tmp, cls):
    """ValueError unless ``tmp`` is a sound SQLite file of ``cls``'s
    kind (checked before a broker opens it: a broker would quarantine
    a damaged one)."""
    conn = None
    try:
        conn = sqlite3.connect('file:%s?mode=ro' % os.path.abspath(tmp),
                               uri=True)
        check = conn.execute('PRAGMA quick_check').fetchone()[0]
        app_id = conn.execute('PRAGMA application_id').fetchone()[0]
    except sqlite3.Error as err:
        raise ValueError('not a sound database: %s' % ' '.join(
            str(err).split())) from None
    finally:
        if conn is not None:
            conn.close()
    if check != 'ok':
        raise ValueError('quick_check: %s' % ' '.join(check.split())[:200])
    if app_id != cls.application_id:
        raise ValueError('not a %s database' % cls.db_type)


def publish_copy(dev_path, datadir, partition, name_hash, tmp, logger=LOG):
    """Link a prepared copy into place (see :func:`install`)."""
    target = db_broker(dev_path, datadir, partition, name_hash, logger)
    fsutil.makedirs_durable(target.db_dir)
    # NOTE: the backend's own publish: under the directory lock, link
    # only where no database is, after removing side files a deleted
    # one left.
    target._publish(tmp)
    try:
        return read_state(target)
    finally:
        target.close()


def remove_db(dev_path, broker, check):
    """Remove a replica's whole ``<hash>`` directory if ``check(state)``
    still holds for it; True if removed.

    The directory is renamed aside first (to the device's ``tmp``) and
    removed there: a later write or copy starts a fresh directory.
    """
    try:
        state = read_state(broker)
    except backend.DatabaseNotFound:
        return False
    finally:
        broker.close()
    if not check(state):
        return False
    doomed = _tmp_path(dev_path) + '.deleting'
    try:
        os.rename(broker.db_dir, doomed)
    except FileNotFoundError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    _remove_empty_parents(broker.db_dir)
    return True


def _remove_empty_parents(db_dir):
    """Remove the suffix and partition directories ``db_dir`` leaves
    empty, so a handoff partition pushed home stops being one.

    NOTE: rmdir refuses a directory that is not empty, and a database
    being created meanwhile makes its directories again.
    """
    suffix_dir = os.path.dirname(db_dir)
    for path in (suffix_dir, os.path.dirname(suffix_dir)):
        try:
            os.rmdir(path)
        except OSError:
            return


def reclaimable(state, reclaim_before):
    """A replica deleted (and empty) before ``reclaim_before``."""
    return (state['deleted']
            and state['delete_timestamp'] < reclaim_before
            and state['status_changed_at'] < reclaim_before)


def merge_into(broker, items, source, info, point, reclaim_before):
    """Apply one merge batch to a replica (see the module docstring);
    return its state after."""
    if items:
        broker.merge_items(items, source=source)
    if info:
        # NOTE: before the timestamps merge: the rule ranks each
        # replica's own put and delete times.
        _take_policy(broker, info)
        broker.merge_timestamps(info['created_at'], info['put_timestamp'],
                                info['delete_timestamp'])
        metadata = info.get('metadata') or {}
        if metadata:
            broker.update_metadata({k: tuple(v)
                                    for k, v in metadata.items()})
    if source and point is not None:
        broker.merge_syncs([{'remote_id': source, 'sync_point': point}])
    if reclaim_before:
        broker.reclaim(reclaim_before)
    return read_state(broker)


def _take_policy(broker, info):
    """Take the sender's storage policy if it wins over this replica's
    (:func:`coordsync.reconciler.queue.winning_policy`)."""
    policy = info.get('storage_policy_index')
    if policy is None or not hasattr(broker, 'set_storage_policy_index'):
        return
    local = read_state(broker)
    if policy == local['storage_policy_index']:
        return
    if queue.winning_policy([local, info]) is info:
        broker.set_storage_policy_index(policy, info['status_changed_at'])


# -- the routes ---------------------------------------------------------------

def body_frame(req, limit):
    """``(length, etag)`` a signed write's body must match: 411 without
    a Content-Length, 413 past ``limit``, 400 without an md5 ETag."""
    length = req.header('Content-Length')
    if length is None or not length.isdigit():
        raise HTTPError(411, 'Content-Length required')
    if int(length) > limit:
        raise HTTPError(413, 'body larger than %d bytes' % limit)
    etag = (req.header('ETag') or '').strip('"').lower()
    if not _MD5_RE.match(etag):
        raise HTTPError(400, 'ETag (md5 of the body) required')
    return int(length), etag


def json_body(req, limit=MAX_JSON_BODY):
    """The JSON object in a request's body, checked against its
    Content-Length and ETag (4xx otherwise)."""
    length, etag = body_frame(req, limit)
    data = b''.join(req.body_chunks())
    if len(data) != length:
        raise HTTPError(499, 'body shorter than Content-Length')
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != etag:
        raise HTTPError(422, 'body does not match its ETag')
    try:
        op = json.loads(data.decode('utf-8'))
    except ValueError:
        raise HTTPError(400, 'body is not JSON') from None
    if not isinstance(op, dict):
        raise HTTPError(400, 'body must be a JSON object')
    return op


def parse_db_sync(parts):
    shape = '/<datadir>/<device>/<partition>[/<hash>]'
    if len(parts) not in (3, 4):
        raise HTTPError(400, 'expected %s' % shape)
    if parts[0] not in DATADIRS:
        raise HTTPError(400, 'bad datadir: one of %s' % ', '.join(DATADIRS))
    try:
        args = {'datadir': parts[0], 'device': layout.check_device(parts[1]),
                'partition': int(layout.check_partition(parts[2]))}
    except ValueError as err:
        raise HTTPError(400, str(err)) from None
    args['hash'] = None
    if len(parts) == 4:
        if not _HASH_RE.match(parts[3]):
            raise HTTPError(400, 'bad database hash')
        args['hash'] = parts[3]
    return args


def route_lock_item(args):
    return lock_name(args['datadir'], args['partition'])


def _check_policy_info(info):
    """A merge's storage policy fields (containers): all or none, each
    well formed (400 otherwise)."""
    if info.get('storage_policy_index') is None:
        return
    policy = info['storage_policy_index']
    if (not isinstance(policy, int) or isinstance(policy, bool)
            or policy < 0 or not isinstance(info.get('deleted'), bool)):
        raise HTTPError(400, 'bad info: storage_policy_index and deleted')
    for key in ('put_timestamp', 'delete_timestamp', 'status_changed_at'):
        try:
            timestamp.Timestamp(info.get(key))
        except (TypeError, ValueError):
            raise HTTPError(400, 'bad info: %s' % key) from None


def _int(value, what, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int) or (
            minimum is not None and value < minimum):
        raise HTTPError(400, 'bad %s' % what)
    return value


def _db_error(err):
    if isinstance(err, backend.DatabaseNotFound):
        return HTTPError(404, 'no such database')
    if isinstance(err, backend.DatabaseCorrupt):
        return HTTPError(404, 'database damaged (quarantined)')
    if isinstance(err, backend.DatabaseConflict):
        return HTTPError(409, 'a database exists there')
    if isinstance(err, ValueError):
        return HTTPError(400, ' '.join(str(err).split())[:200])
    return HTTPError(500, 'database error: %s' % ' '.join(
        str(err).split())[:200])


class DbSyncRoutes:
    """The ``/db-sync`` handlers of a node.

    :param manager: anything with ``get_dev_path(device)`` (None when
        the device is unavailable): the node's DiskFileManager.
    """

    def __init__(self, manager, logger=None, hash_prefix='',
                 hash_suffix=''):
        self.manager = manager
        self.log = logger or LOG
        self.hash_prefix = hash_prefix
        self.hash_suffix = hash_suffix
        # Damaged databases this server quarantined while answering.
        self.quarantined = 0

    def routes(self):
        return [wsgi.Route(('POST', 'PUT', 'GET', 'DELETE'),
                           direct_client.DB_SYNC, self.handle,
                           parse_db_sync, lock_item=route_lock_item)]

    def _call(self, func, *args, **kwargs):
        try:
            return concurrency.run_in_thread(func, *args, **kwargs)
        except backend.DatabaseCorrupt as err:
            self.quarantined += 1
            raise _db_error(err) from None
        except (backend.DatabaseError, ValueError) as err:
            raise _db_error(err) from None
        except OSError as err:
            raise HTTPError(507 if err.errno == 28 else 500,
                            'disk error: %s' % err.strerror) from None

    def _dev_path(self, args):
        try:
            path = self.manager.get_dev_path(args['device'])
        except ValueError:
            path = None
        if path is None:
            raise HTTPError(507, 'device %s unavailable' % args['device'])
        return path

    def handle(self, req, args):
        dev_path = self._dev_path(args)
        if args['hash'] is None:
            if req.method != 'POST':
                raise HTTPError(405, 'a partition takes POST only',
                                {'Allow': 'POST'})
            op = json_body(req)
            if op.get('op') != 'states':
                raise HTTPError(400, 'unknown partition op')
            return self.states(dev_path, args)
        if req.method == 'POST':
            op = json_body(req)
            if op.get('op') == 'rows':
                return self.rows(dev_path, args, op)
            if op.get('op') == 'merge':
                return self.merge(req, dev_path, args, op)
            raise HTTPError(400, 'unknown database op')
        if req.method == 'PUT':
            return self.receive(req, dev_path, args)
        if req.method == 'GET':
            return self.send(dev_path, args)
        return self.delete(req, dev_path, args)

    # -- handlers -----------------------------------------------------------

    def states(self, dev_path, args):
        states, quarantined = self._call(
            partition_states, dev_path, args['datadir'], args['partition'],
            self.log)
        self.quarantined += quarantined
        return wsgi.json_response(200, {'dbs': states,
                                        'quarantined': quarantined})

    def _broker(self, dev_path, args):
        return db_broker(dev_path, args['datadir'], args['partition'],
                         args['hash'], self.log)

    def rows(self, dev_path, args, op):
        since = _int(op.get('since'), 'since', -1)
        limit = _int(op.get('limit'), 'limit', 1)
        broker = self._broker(dev_path, args)
        try:
            items = self._call(broker.get_items_since, since,
                               min(limit, MAX_ROWS))
        finally:
            broker.close()
        return wsgi.json_response(200, {'items': items})

    def merge(self, req, dev_path, args, op):
        items = op.get('items') or []
        source = op.get('source')
        info = op.get('info')
        point = op.get('point')
        reclaim_before = op.get('reclaim_before')
        if not isinstance(items, list) or len(items) > MAX_ROWS or not all(
                isinstance(item, dict) for item in items):
            raise HTTPError(400, 'items must be a list of at most %d rows'
                            % MAX_ROWS)
        if not isinstance(source, str) or not source:
            raise HTTPError(400, 'source (the sender\'s id) required')
        if info is not None and not (
                isinstance(info, dict) and all(
                    isinstance(info.get(key), str) for key in (
                        'created_at', 'put_timestamp', 'delete_timestamp'))
                and isinstance(info.get('metadata', {}), dict)):
            raise HTTPError(400, 'bad info')
        if info is not None:
            _check_policy_info(info)
        if point is not None:
            _int(point, 'point', -1)
        if reclaim_before is not None:
            try:
                reclaim_before = timestamp.Timestamp(reclaim_before).normal
            except (TypeError, ValueError):
                raise HTTPError(400, 'bad reclaim_before') from None
        broker = self._broker(dev_path, args)
        try:
            if not self._call(broker.exists):
                raise HTTPError(404, 'no such database')
            req.recheck_fence()
            state = self._call(merge_into, broker, items, source, info,
                               point, reclaim_before)
        finally:
            broker.close()
        return wsgi.json_response(200, state)

    def receive(self, req, dev_path, args):
        length, etag = body_frame(req, MAX_DB_BODY)
        target = self._broker(dev_path, args)
        if self._call(target.exists):
            # NOTE: refused before the body is read: the sender merges
            # rows instead.
            raise HTTPError(409, 'a database exists there')
        tmp = self._call(_tmp_path, dev_path)
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            size = 0
            with open(tmp, 'wb') as fp:
                for chunk in req.body_chunks():
                    size += len(chunk)
                    if size > length:
                        raise HTTPError(400, 'body longer than '
                                             'Content-Length')
                    md5.update(chunk)
                    self._call(fp.write, chunk)
            if size != length:
                raise HTTPError(499, 'body shorter than Content-Length')
            if md5.hexdigest() != etag:
                raise HTTPError(422, 'body does not match its ETag')
            state = self._install(req, dev_path, args, tmp)
        finally:
            concurrency.run_in_thread(_remove_tmp, tmp)
        self.log.info('Received %s database %s on %s, partition %d',
                      args['datadir'], args['hash'], args['device'],
                      args['partition'])
        return wsgi.json_response(201, state)

    def _install(self, req, dev_path, args, tmp):
        try:
            return install(dev_path, args['datadir'], args['partition'],
                           args['hash'], tmp, self.hash_prefix,
                           self.hash_suffix, self.log,
                           before_link=req.recheck_fence)
        except (backend.DatabaseError, ValueError) as err:
            raise _db_error(err) from None
        except OSError as err:
            raise HTTPError(500, 'disk error: %s' % err.strerror) from None

    def send(self, dev_path, args):
        broker = self._broker(dev_path, args)
        try:
            tmp, md5, size = self._call(snapshot, broker, dev_path)
        finally:
            broker.close()
        return 200, {'Content-Type': 'application/octet-stream',
                     'Content-Length': str(size), 'ETag': md5}, \
            _FileBody(tmp)

    def delete(self, req, dev_path, args):
        reclaim = req.header(RECLAIM_HEADER)
        max_row = req.header(MAX_ROW_HEADER)
        expect_hash = req.header(HASH_HEADER)
        if reclaim is not None:
            try:
                reclaim = timestamp.Timestamp(reclaim).normal
            except ValueError:
                raise HTTPError(400, 'bad %s' % RECLAIM_HEADER) from None

            def check(state):
                return reclaimable(state, reclaim)
        elif max_row is not None and expect_hash is not None:
            if not _INT_RE.match(max_row) or not _HASH_RE.match(
                    expect_hash):
                raise HTTPError(400, 'bad %s or %s' % (MAX_ROW_HEADER,
                                                       HASH_HEADER))

            def check(state):
                return (state['max_row'] <= int(max_row)
                        and state['hash'] == expect_hash)
        else:
            raise HTTPError(400, '%s, or %s and %s, required' % (
                RECLAIM_HEADER, MAX_ROW_HEADER, HASH_HEADER))
        broker = self._broker(dev_path, args)
        req.recheck_fence()
        if not self._call(broker.exists):
            raise HTTPError(404, 'no such database')
        if not self._call(remove_db, dev_path, broker, check):
            raise HTTPError(409, 'database changed or not reclaimable')
        self.log.info('Removed %s database %s on %s, partition %d',
                      args['datadir'], args['hash'], args['device'],
                      args['partition'])
        return 204, {}, []


class _FileBody:
    """A response body read from a temporary file, removed once sent."""

    def __init__(self, path):
        self.path = path
        self._fp = open(path, 'rb')

    def __iter__(self):
        while True:
            chunk = concurrency.run_in_thread(self._fp.read, CHUNK_SIZE)
            if not chunk:
                return
            yield chunk

    def close(self):
        self._fp.close()
        _remove_tmp(self.path)


# -- the holder's side ----------------------------------------------------

class DbSyncClient:
    """The requests a holder sends to the ``/db-sync`` routes.

    Every method raises :class:`~coordsync.common.direct_client.NodeError`
    (``fenced`` set if the node refused the fence) on failure.
    """

    def __init__(self, node_client, datadir):
        self.client = node_client
        self.datadir = datadir

    def _path(self, node, partition, name_hash=None):
        return direct_client.db_sync_path(self.datadir, node['device'],
                                          partition, name_hash)

    def _post(self, node, path, op, fence, replication=False,
              ok=(200,)):
        body = json.dumps(op, sort_keys=True).encode('utf-8')
        resp = self.client.request(
            node, 'POST', path, body=body, fence=fence,
            replication=replication,
            headers={'Content-Type': 'application/json'})
        return self._answer(resp, 'POST', path, node, ok)

    @staticmethod
    def _answer(resp, method, path, node, ok):
        if resp.status not in ok:
            reason = resp.read()[:200].decode('utf-8', 'replace').strip()
            raise direct_client.NodeError('%s %s on %s: %s %s' % (
                method, path, direct_client.node_label(node), resp.status,
                reason), fenced=direct_client.is_fenced(resp))
        try:
            return resp.json()
        except ValueError as err:
            raise direct_client.NodeError('%s %s on %s: bad JSON: %s' % (
                method, path, direct_client.node_label(node), err)) from None

    def states(self, node, partition, fence=None):
        """``(states by hash, quarantined)`` of the partition on node."""
        answer = self._post(node, self._path(node, partition),
                            {'op': 'states'}, fence)
        return answer['dbs'], answer.get('quarantined', 0)

    def rows(self, node, partition, name_hash, since, limit, fence=None):
        return self._post(node, self._path(node, partition, name_hash),
                          {'op': 'rows', 'since': since, 'limit': limit},
                          fence)['items']

    def merge(self, node, partition, name_hash, source, items, info=None,
              point=None, reclaim_before=None, fence=None):
        op = {'op': 'merge', 'source': source, 'items': items}
        if info is not None:
            op['info'] = info
        if point is not None:
            op['point'] = point
        if reclaim_before is not None:
            op['reclaim_before'] = reclaim_before
        return self._post(node, self._path(node, partition, name_hash), op,
                          fence, replication=fence is None)

    def push_db(self, node, partition, name_hash, path, md5, size,
                fence=None):
        """Send a whole database; its state there, or None if one
        exists there already (409, not fenced)."""
        url = self._path(node, partition, name_hash)

        def body():
            with open(path, 'rb') as fp:
                while chunk := fp.read(CHUNK_SIZE):
                    yield chunk
        resp = self.client.request(
            node, 'PUT', url, body=body(), fence=fence,
            replication=fence is None,
            headers={'Content-Length': str(size), 'ETag': md5,
                     'Content-Type': 'application/octet-stream'})
        if resp.status == 409 and not direct_client.is_fenced(resp):
            resp.close()
            return None
        return self._answer(resp, 'PUT', url, node, (201,))

    def fetch_db(self, node, partition, name_hash, dest, fence=None):
        """Write a snapshot of the node's replica to ``dest``."""
        url = self._path(node, partition, name_hash)
        resp = self.client.request(node, 'GET', url, fence=fence)
        if resp.status != 200:
            self._answer(resp, 'GET', url, node, (200,))
        md5 = hashlib.md5(usedforsecurity=False)
        with open(dest, 'wb') as fp:
            for chunk in resp.iter_body():
                md5.update(chunk)
                fp.write(chunk)
        if md5.hexdigest() != resp.headers.get('etag'):
            raise direct_client.NodeError('GET %s on %s: body does not '
                                          'match its ETag' % (
                                              url, direct_client.node_label(
                                                  node)))

    def remove(self, node, partition, name_hash, headers, fence=None):
        """DELETE a replica; True if removed, False if kept (409/404)."""
        url = self._path(node, partition, name_hash)
        resp = self.client.request(node, 'DELETE', url, headers=headers,
                                   fence=fence, replication=fence is None)
        status = resp.status
        if status in (404, 409) and not direct_client.is_fenced(resp):
            resp.close()
            return False
        if status != 204:
            self._answer(resp, 'DELETE', url, node, (204,))
        resp.close()
        return True
