"""Suffix hashes: how replicas of a partition find where they differ.

A suffix's hash is the md5 of ``<object hash>/<file name>\\n`` for the
newest file of every object under it, in object hash order, after cleanup
(older files and reclaimable tombstones removed). It changes exactly when
an object under the suffix appears, disappears or gets a newer file, and
two replicas holding the same versions have the same hash however they
got them. A suffix without objects has no hash and is not reported.

Hashing reads every directory of a suffix, so results are cached per
partition in ``<part>/hashes.json``::

    {"version": 1, "token": "<random>",
     "hashes": {"a3f": "<md5>", "07c": null},
     "tombstones": {"a3f": "1700000000.12345"}}

``null`` marks a suffix to recompute. ``tombstones`` holds each suffix's
oldest tombstone, so a hash is recomputed once time alone has made that
tombstone reclaimable.

Writers do not rewrite that file: under the partition lock
(``<part>/.lock``) they append the suffix to ``<part>/hashes.invalid``,
an append being cheap where rewriting the cache on every write would not
be. :func:`get_hashes` then runs in three steps:

1. Under the lock: fold ``hashes.invalid`` into the cache as nulls, save
   it with a fresh token, empty ``hashes.invalid``. (Every save makes a
   new token; with nothing to fold, nothing is saved.)
2. Without the lock, while writes go on: recompute nulls, suffixes asked
   for, suffixes with a reclaimable tombstone and suffix directories the
   cache does not know; forget suffixes whose directory is gone.
3. Under the lock: if the token is still the one we started from, fold
   the invalidations appended meanwhile into the fresh results as nulls
   and save them (if anything changed). If another ``get_hashes`` saved
   in between, our view is stale: go again.

A writer records its suffix and renames its file under one hold of the
lock, so every write lands either before step 1 (and is hashed) or is in
``hashes.invalid`` at step 3: no invalidation is lost. The cache is only
a cache: an unreadable one is logged and rebuilt.
"""

import hashlib
import json
import os
import time
import uuid

from oslo_log import log as logging

from coordsync.common import fsutil
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

HASHES_FILE = 'hashes.json'
INVALID_FILE = 'hashes.invalid'
LOCK_FILE = '.lock'
FORMAT_VERSION = 1
MAX_ATTEMPTS = 3


def lock_partition(part_dir, create=False, timeout=fsutil.LOCK_TIMEOUT):
    """Exclusive lock on a partition directory.

    Raises FileNotFoundError if the directory is gone, unless ``create``.
    """
    return fsutil.locked(os.path.join(part_dir, LOCK_FILE), timeout,
                         make_parent=create)


def record_invalid(part_dir, suffix):
    """Mark ``suffix`` for rehashing; the caller holds the partition lock."""
    path = os.path.join(part_dir, INVALID_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, suffix.encode('ascii') + b'\n')
    finally:
        os.close(fd)


def invalidate_suffix(part_dir, suffix):
    with lock_partition(part_dir):
        record_invalid(part_dir, suffix)


def hash_suffix(suffix_dir, reclaim_age, now):
    """Clean up a suffix; return ``(hash, oldest tombstone)``.

    The hash is None when no objects are left; the oldest tombstone's
    timestamp (normal form, or None) says when the hash will next change
    by itself, as that tombstone becomes reclaimable.
    """
    found = layout.suffix_objects(suffix_dir, reclaim_age, now, cleanup=True)
    if not found:
        return None, None
    tombstones = [f.timestamp for _h, f in found if f.is_tombstone]
    return (digest_objects(found),
            min(tombstones).normal if tombstones else None)


def digest_objects(found):
    """A suffix's hash of its ``[(object hash, newest file)]``."""
    md5 = hashlib.md5(usedforsecurity=False)
    for obj_hash, newest in found:
        md5.update(('%s/%s\n' % (obj_hash, newest.name)).encode('ascii'))
    return md5.hexdigest()


def _empty_cache():
    return {'hashes': {}, 'tombstones': {}}


def _valid_cache(doc):
    if not isinstance(doc, dict) or doc.get('version') != FORMAT_VERSION:
        return False
    suffix_hashes, tombstones = doc.get('hashes'), doc.get('tombstones')
    return (isinstance(doc.get('token'), str)
            and isinstance(suffix_hashes, dict)
            and isinstance(tombstones, dict)
            and all(layout.is_suffix(s) and (v is None or isinstance(v, str))
                    for s, v in suffix_hashes.items())
            and all(isinstance(v, str) and layout.is_timestamp(v)
                    for v in tombstones.values()))


def _load(part_dir):
    """``(token, cache)`` from ``hashes.json``; an empty cache if unusable.
    """
    path = os.path.join(part_dir, HASHES_FILE)
    try:
        with open(path, 'rb') as fp:
            doc = json.load(fp)
    except FileNotFoundError:
        return None, _empty_cache()
    except (OSError, ValueError) as err:
        LOG.warning('Rebuilding unreadable %s: %s', path, err)
        return None, _empty_cache()
    if not _valid_cache(doc):
        LOG.warning('Rebuilding %s: not a version %d hashes file', path,
                    FORMAT_VERSION)
        return None, _empty_cache()
    return doc['token'], {'hashes': doc['hashes'],
                          'tombstones': doc['tombstones']}


def _save(part_dir, cache):
    token = uuid.uuid4().hex
    doc = dict(cache, version=FORMAT_VERSION, token=token)
    data = json.dumps(doc, sort_keys=True).encode('ascii')
    # NOTE: a cache: losing the rename to a power cut only costs a rehash.
    fsutil.write_file_atomic(os.path.join(part_dir, HASHES_FILE), data,
                             durable_dir=False)
    return token


def _take_invalid(part_dir, cache):
    """Mark the recorded suffixes null in ``cache``; empty the record."""
    path = os.path.join(part_dir, INVALID_FILE)
    try:
        with open(path, 'rb') as fp:
            suffixes = fp.read().decode('ascii', 'replace').split()
    except FileNotFoundError:
        return False
    if not all(map(layout.is_suffix, suffixes)):
        LOG.warning('Unreadable %s: rehashing every suffix', path)
        suffixes = list(cache['hashes'])
    for suffix in suffixes:
        cache['hashes'][suffix] = None
        cache['tombstones'].pop(suffix, None)
    os.unlink(path)
    return True


def _begin(part_dir):
    """Step 1: the cache with every invalidation folded in, and its token.
    """
    with lock_partition(part_dir):
        token, cache = _load(part_dir)
        if _take_invalid(part_dir, cache):
            token = _save(part_dir, cache)
        return token, cache


def _is_stale(suffix, cache, recalculate, reclaim_age, now):
    oldest = cache['tombstones'].get(suffix)
    return (cache['hashes'].get(suffix) is None or suffix in recalculate
            or (oldest is not None and float(oldest) < now - reclaim_age))


def _refresh(part_dir, cache, recalculate, reclaim_age, now):
    """Step 2: the cache of every suffix on disk, recomputed where stale."""
    fresh = _empty_cache()
    for suffix in filter(layout.is_suffix, os.listdir(part_dir)):
        if _is_stale(suffix, cache, recalculate, reclaim_age, now):
            value, oldest = hash_suffix(os.path.join(part_dir, suffix),
                                        reclaim_age, now)
        else:
            value = cache['hashes'][suffix]
            oldest = cache['tombstones'].get(suffix)
        if value is not None:
            fresh['hashes'][suffix] = value
        if value is not None and oldest is not None:
            fresh['tombstones'][suffix] = oldest
    return fresh


def _finish(part_dir, token, cache, fresh):
    """Step 3: save ``fresh`` unless another run saved since step 1."""
    with lock_partition(part_dir):
        current, _cache = _load(part_dir)
        if current != token:
            return False
        saved = {key: dict(value) for key, value in fresh.items()}
        if _take_invalid(part_dir, saved) or saved != cache:
            _save(part_dir, saved)
        return True


def cache_matches(part_dir, expected):
    """True if no write was recorded since ``expected`` was computed.

    Call under :func:`lock_partition`: then no write can slip in between
    this check and what the caller does next (delete the partition).
    """
    if os.path.exists(os.path.join(part_dir, INVALID_FILE)):
        return False
    _token, cache = _load(part_dir)
    return cache['hashes'] == dict(expected)


def get_hashes(part_dir, recalculate=(),
               reclaim_age=layout.DEFAULT_RECLAIM_AGE, now=None):
    """``{suffix: md5 hex}`` of a partition; ``{}`` if it does not exist.

    Recomputed: suffixes invalidated since the last call, suffixes in
    ``recalculate``, suffixes the cache does not know, and suffixes with a
    tombstone that has become reclaimable by ``now``.
    """
    now = time.time() if now is None else now
    recalculate = set(recalculate)
    fresh = _empty_cache()
    for _attempt in range(MAX_ATTEMPTS):
        try:
            token, cache = _begin(part_dir)
            fresh = _refresh(part_dir, cache, recalculate, reclaim_age, now)
            if _finish(part_dir, token, cache, fresh):
                return fresh['hashes']
        except FileNotFoundError:
            # NOTE: the partition was deleted (or never existed).
            return {}
    # NOTE: other runs kept saving first; the results are still fresh, and
    # the cache they left behind is consistent, so just do not save ours.
    LOG.debug('Suffix hashes of %s not cached: concurrent updates',
              part_dir)
    return fresh['hashes']
