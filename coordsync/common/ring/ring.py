"""The ring file and the read side of the ring.

A ring file is one versioned JSON document::

    {"format": "coordsync-ring", "version": 1,
     "part_power": 10, "replicas": 3,
     "devices": [{"id": 0, "region": 1, "zone": 1, "node": "node1",
                  "ip": "10.0.0.1", "port": 6200, "device": "sdb",
                  "weight": 100.0, "removed": false}, ...],
     "assignment": [[dev id of replica 0 for each partition],
                    [dev id of replica 1 for each partition], ...]}

``assignment`` is ``null`` until the first rebalance. The builder also
keeps ``min_part_hours`` and ``last_moved`` (when each partition last
moved) in the file; the read side ignores both, and files without them
load as "moved long ago". A device marked
``removed`` keeps serving its partitions until the next rebalance, which
moves them away and drops the device. The same file is what the builder
edits and what every daemon reads, so everything in it is validated on
load: a ring that loads is a ring whose lookups cannot fail.
"""

import collections
import ipaddress
import json
import math
import os
import random
import re

from coordsync import exceptions
from coordsync.common import hashing

FORMAT = 'coordsync-ring'
VERSION = 1
MAX_PART_POWER = 24
# NOTE: devices are kept in a list indexed by id (as Swift does), so an
# absurd id would cost memory; a million devices is far beyond any cluster.
MAX_DEVICE_ID = 2 ** 20 - 1
MAX_NAME_LENGTH = 255

_TOP_KEYS = frozenset(('format', 'version', 'part_power', 'replicas',
                       'devices', 'assignment'))
# NOTE: the builder's own fields; daemons ignore them (not validated
# here, so a builder detail can never stop a node from loading a ring).
BUILDER_KEYS = frozenset(('min_part_hours', 'last_moved'))
_DEVICE_KEYS = frozenset(('id', 'region', 'zone', 'node', 'ip', 'port',
                          'device', 'weight', 'removed'))
_SAFE_NAME = re.compile(r'[A-Za-z0-9_.-]+')
_HOST_LABEL = re.compile(r'[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?')


def _fail(message, *args):
    raise exceptions.RingError(message % args)


def _brief(value, limit=60):
    """repr() of an offending value, cut short: errors stay one line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _check_int(value, what, low, high=None):
    # NOTE: bool is an int subclass; true/false is never a valid number.
    if (type(value) is not int or value < low
            or (high is not None and value > high)):
        limit = '%d..%d' % (low, high) if high is not None else '>= %d' % low
        _fail('%s must be an integer %s, got %s', what, limit, _brief(value))
    return value


def check_weight(value, what='weight', allow_zero=True):
    """Return ``value`` as a float or raise RingError if it is no weight."""
    if (type(value) not in (int, float) or not math.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        _fail('%s must be a finite number %s 0, got %s',
              what, '>=' if allow_zero else '>', _brief(value))
    return float(value)


def check_safe_name(value, what):
    """Names end up in paths and lock names: no separators, no dot-dirs."""
    if (not isinstance(value, str) or not _SAFE_NAME.fullmatch(value)
            or value in ('.', '..') or len(value) > MAX_NAME_LENGTH):
        _fail('%s must match [A-Za-z0-9_.-]+ (not "." or ".."), got %s',
              what, _brief(value))
    return value


def _check_host(value, what):
    if isinstance(value, str) and value:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            labels = value.split('.')
            if (len(value) <= 253
                    and all(_HOST_LABEL.fullmatch(x) for x in labels)):
                return value
    _fail('%s must be an IP address or host name, got %s',
          what, _brief(value))


def validate_device(raw):
    """Return a normalised copy of one device dict or raise RingError."""
    if not isinstance(raw, dict):
        _fail('a device must be a JSON object, got %s', _brief(raw))
    missing = sorted(_DEVICE_KEYS - {'removed'} - raw.keys())
    unknown = sorted(raw.keys() - _DEVICE_KEYS)
    label = 'device %s' % _brief(raw.get('id'))
    if missing or unknown:
        _fail('%s: missing fields %s, unknown fields %s',
              label, missing, unknown)
    removed = raw.get('removed', False)
    if type(removed) is not bool:
        _fail('%s: removed must be true or false, got %s',
              label, _brief(removed))
    return {
        'id': _check_int(raw['id'], label + ': id', 0, MAX_DEVICE_ID),
        'region': _check_int(raw['region'], label + ': region', 0),
        'zone': _check_int(raw['zone'], label + ': zone', 0),
        'node': check_safe_name(raw['node'], label + ': node'),
        'ip': _check_host(raw['ip'], label + ': ip'),
        'port': _check_int(raw['port'], label + ': port', 1, 65535),
        'device': check_safe_name(raw['device'], label + ': device'),
        'weight': check_weight(raw['weight'], label + ': weight'),
        'removed': removed,
    }


def validate_devices(raw_devices):
    """Validate a device list as a whole; return it sorted by id.

    Beyond each device on its own: ids are unique, a node does not hold
    two devices of one name, and all devices of a node sit in one region
    and zone (a node is a failure domain inside exactly one zone).
    """
    if not isinstance(raw_devices, list):
        _fail('devices must be a list, got %r', type(raw_devices).__name__)
    devices = sorted((validate_device(d) for d in raw_devices),
                     key=lambda d: d['id'])
    ids, names, tiers = set(), set(), {}
    for dev in devices:
        if dev['id'] in ids:
            _fail('device id %d is used twice', dev['id'])
        ids.add(dev['id'])
        name = (dev['node'], dev['device'])
        if name in names:
            _fail('node %s has two devices named %s', *name)
        names.add(name)
        tier = tiers.setdefault(dev['node'], (dev['region'], dev['zone']))
        if tier != (dev['region'], dev['zone']):
            _fail('node %s has devices in region/zone %d/%d and %d/%d',
                  dev['node'], *tier, dev['region'], dev['zone'])
    return devices


def _validate_assignment(rows, replicas, part_count, devices):
    if not isinstance(rows, list) or len(rows) != replicas:
        _fail('assignment must be a list of %d replica rows', replicas)
    node_of = {d['id']: d['node'] for d in devices}
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != part_count:
            _fail('assignment row %d must list %d partitions',
                  index, part_count)
        if not all(type(dev_id) is int for dev_id in row):
            _fail('assignment row %d holds a non-integer device id', index)
        unknown = set(row).difference(node_of)
        if unknown:
            _fail('assignment row %d names unknown device ids %s',
                  index, sorted(unknown)[:5])
    if replicas > 1:
        for part, dev_ids in enumerate(zip(*rows, strict=True)):
            if len({node_of[dev_id] for dev_id in dev_ids}) != replicas:
                _fail('partition %d has two replicas on one node', part)
    return [list(row) for row in rows]


def validate_ring_data(data):
    """Return a normalised copy of a decoded ring file or raise RingError."""
    if not isinstance(data, dict):
        _fail('a ring must be a JSON object')
    if data.get('format') != FORMAT:
        _fail('not a coordsync ring (format %s)', _brief(data.get('format')))
    version = data.get('version')
    if type(version) is not int or version != VERSION:
        _fail('unsupported ring version %s (this coordsync reads %d)',
              _brief(version), VERSION)
    missing = sorted(_TOP_KEYS - data.keys())
    unknown = sorted(data.keys() - _TOP_KEYS - BUILDER_KEYS)
    if missing or unknown:
        _fail('missing fields %s, unknown fields %s', missing, unknown)
    part_power = _check_int(data['part_power'], 'part_power', 1,
                            MAX_PART_POWER)
    replicas = _check_int(data['replicas'], 'replicas', 1)
    devices = validate_devices(data['devices'])
    rows = data['assignment']
    if rows is not None:
        rows = _validate_assignment(rows, replicas, 2 ** part_power, devices)
    return {'format': FORMAT, 'version': VERSION, 'part_power': part_power,
            'replicas': replicas, 'devices': devices, 'assignment': rows}


def read_ring_file(path):
    """Load and validate a ring file.

    Returns ``(data, stamp)`` where ``stamp`` identifies the version of
    the file that was read (taken from the open file, so a concurrent
    atomic replace cannot pair new contents with an old stamp).
    """
    raw, stamp = read_ring_json(path)
    try:
        return validate_ring_data(raw), stamp
    except exceptions.RingError as err:
        raise exceptions.RingError('invalid ring file %s: %s' % (
            path, err)) from err


def read_ring_json(path):
    """``(decoded JSON, stamp)`` of a ring file, not validated yet."""
    try:
        with open(path, 'rb') as ring_file:
            stamp = _stamp(os.fstat(ring_file.fileno()))
            raw = ring_file.read()
    except OSError as err:
        raise exceptions.RingError('cannot read ring file %s: %s' % (
            path, err.strerror or err)) from err
    try:
        return json.loads(raw), stamp
    # NOTE: ValueError covers bad JSON, bad UTF-8 and over-long numbers;
    # absurd nesting raises RecursionError.
    except (ValueError, RecursionError) as err:
        raise exceptions.RingError(
            'not a ring file: %s is not valid JSON: %s' % (
                path, err)) from err


def _stamp(stat):
    # NOTE: the inode changes on every atomic replace, so it catches a
    # rewrite even when mtime granularity hides it.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Ring:
    """Where partitions live: the read side of a ring file.

    ``get_part`` hashes a name (with the cluster's hash prefix and
    suffix) to a partition; ``get_part_nodes`` lists the partition's
    primary devices, each a copy of its device dict with the replica
    ``index`` added; ``get_more_nodes`` yields handoff devices in a
    stable order per partition: regions, zones and nodes holding no copy
    first, then round-robin over those that do.

    Daemons poll ``has_changed()`` and call ``reload()``: the file is
    replaced atomically by the builder, so a reload sees either the old
    or the new ring, never half of one.
    """

    def __init__(self, path, hash_prefix='', hash_suffix=''):
        self.path = path
        self.hash_prefix = hash_prefix
        self.hash_suffix = hash_suffix
        self.reload()

    @classmethod
    def load(cls, path, hash_prefix='', hash_suffix=''):
        """Same as the constructor; reads as what it does."""
        return cls(path, hash_prefix=hash_prefix, hash_suffix=hash_suffix)

    def reload(self):
        """Re-read the file; on error keep the ring loaded before."""
        data, stamp = read_ring_file(self.path)
        devices = [None] * (max((d['id'] for d in data['devices']),
                                default=-1) + 1)
        for dev in data['devices']:
            devices[dev['id']] = dev
        self.part_power = data['part_power']
        self.replicas = data['replicas']
        self.partition_count = 2 ** self.part_power
        self.devices = devices
        self._rows = data['assignment']
        self._parts_by_device = None
        self._stamp = stamp

    def has_changed(self):
        """True if the file on disk is not the one last loaded."""
        try:
            return _stamp(os.stat(self.path)) != self._stamp
        except OSError:
            return True

    def get_part(self, account, container=None, obj=None):
        """The partition a name hashes to (needs no assignment)."""
        name_hash = hashing.hash_path(account, container, obj,
                                      prefix=self.hash_prefix,
                                      suffix=self.hash_suffix)
        return hashing.partition_of(name_hash, self.part_power)

    def get_part_nodes(self, part):
        """The primary devices of ``part``, in replica order."""
        self._check_part(part)
        return [dict(self.devices[row[part]], index=index)
                for index, row in enumerate(self._rows)]

    def get_nodes(self, account, container=None, obj=None):
        """``(partition, primary devices)`` for a name."""
        part = self.get_part(account, container, obj)
        return part, self.get_part_nodes(part)

    def get_more_nodes(self, part):
        """Yield handoff devices for ``part``, best failure domain first.

        Candidates are the devices that are neither primaries, removed
        nor weightless. Each step yields the first (in a shuffle seeded
        by the partition, so every caller agrees) in the region, then
        zone, then node holding the fewest copies so far, counting the
        primaries and earlier handoffs: new failure domains first, then
        round-robin over the ones in use.
        """
        self._check_part(part)
        return self._handoffs(part)

    def _handoffs(self, part):
        primaries = [self.devices[row[part]] for row in self._rows]
        used = [collections.Counter() for _tier in range(3)]
        for dev in primaries:
            _mark_used(used, dev)
        primary_ids = {dev['id'] for dev in primaries}
        candidates = [dev for dev in self.devices
                      if dev is not None and dev['id'] not in primary_ids
                      and dev['weight'] > 0 and not dev['removed']]
        random.Random(part).shuffle(candidates)
        handoff_index = 0
        while candidates:
            best = min(range(len(candidates)),
                       key=lambda i: _reuse(used, candidates[i]))
            dev = candidates.pop(best)
            _mark_used(used, dev)
            yield dict(dev, handoff_index=handoff_index)
            handoff_index += 1

    def devices_on_node(self, node):
        """Copies of the devices of one node, by id."""
        return [dict(dev) for dev in self.devices
                if dev is not None and dev['node'] == node]

    def partitions_for_device(self, dev_id):
        """Sorted partitions for which ``dev_id`` is a primary."""
        self._check_device(dev_id)
        return list(self._device_index().get(dev_id, {}))

    def replica_index(self, part, dev_id):
        """The replica index of ``dev_id`` for ``part``, or None."""
        self._check_part(part)
        self._check_device(dev_id)
        return self._device_index().get(dev_id, {}).get(part)

    def _device_index(self):
        # Built on first use: only the replicator asks, and it asks for
        # every local device, so one pass over the assignment serves all.
        if self._parts_by_device is None:
            index = {}
            for part in range(self.partition_count):
                for replica, row in enumerate(self._rows):
                    index.setdefault(row[part], {})[part] = replica
            self._parts_by_device = index
        return self._parts_by_device

    def _check_part(self, part):
        if self._rows is None:
            _fail('ring %s has not been rebalanced yet', self.path)
        if type(part) is not int or not 0 <= part < self.partition_count:
            _fail('partition %s is out of range 0..%d',
                  _brief(part), self.partition_count - 1)

    def _check_device(self, dev_id):
        if self._rows is None:
            _fail('ring %s has not been rebalanced yet', self.path)
        if (type(dev_id) is not int or not 0 <= dev_id < len(self.devices)
                or self.devices[dev_id] is None):
            _fail('no device with id %s', _brief(dev_id))


def _tiers(dev):
    return (dev['region'], (dev['region'], dev['zone']), dev['node'])


def _mark_used(used, dev):
    for counts, tier in zip(used, _tiers(dev), strict=True):
        counts[tier] += 1


def _reuse(used, dev):
    """Sort key: copies already in the device's region, zone, node."""
    return tuple(counts[tier]
                 for counts, tier in zip(used, _tiers(dev), strict=True))
