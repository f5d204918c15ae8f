"""Object -> container updates, and the async pendings of those missed.

After an object PUT or DELETE is on disk, the object server sends the
object's row to the container replicas the request named, as Swift's
proxy names them::

    X-Container-Partition: 17
    X-Container-Host: 10.0.0.1:6200,10.0.0.2:6200
    X-Container-Device: sda,sdb

(``PUT /container-rows/<dev>/<part>/<a>/<c>/<obj>`` with X-Timestamp,
X-Size, X-Content-Type, X-Etag; ``DELETE`` with X-Timestamp). It waits
``[server] container_update_timeout`` for the answers; a replica that
cannot be reached, answers 404 or 5xx, or is too slow, gets the update
later: it is saved on the object's device as an **async pending**::

    <dev>/async_pending/<hash[-3:]>/<hash>-<timestamp>

(``async_pending-N/`` for an object of storage policy N > 0, whose row
carries ``X-Backend-Storage-Policy-Index: N`` so the container records
it under the object's policy)

a versioned JSON document (never pickle), written atomically::

    {"version": 1, "op": "PUT" | "DELETE", "account": ..., "container":
     ..., "obj": ..., "headers": {...}, "successes": [ring device ids]}

``successes`` lists the container ring's device ids that have the
update already (those that answered in time, when this node has the
container ring); the object updater (:mod:`coordsync.container.updater`)
sends it to the others, in the container ring current then. A failed
update never fails the object write: the object is on disk, and the
pending carries its row to the container. Sending a row twice is
harmless (rows merge, newest timestamp wins).
"""

import json
import os
import re
import time

from oslo_log import log as logging

from coordsync import concurrency
from coordsync.common import direct_client
from coordsync.common import fsutil
from coordsync.common import hashing
from coordsync.common import ring as ring_mod
from coordsync.common import storage_policy
from coordsync.common import timestamp
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

ASYNC_DIR = storage_policy.async_dir(0)
QUARANTINE_DIR = os.path.join('quarantined', ASYNC_DIR)
POLICY_HEADER = 'X-Backend-Storage-Policy-Index'
VERSION = 1
OPS = ('PUT', 'DELETE')
# A pending is small; anything much larger is not one of ours.
MAX_PENDING_BYTES = 65536
MAX_TARGETS = 16
PENDING_RE = re.compile(r'([0-9a-f]{32})-([0-9]{10}\.[0-9]{5})\Z')
_HOST_RE = re.compile(r'(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.-]{1,253}):'
                      r'([0-9]{1,5})\Z')
_DIGITS_RE = re.compile(r'[0-9]{1,10}\Z')
# NOTE: policy 0's is async_pending, never async_pending-0.
_ASYNC_DIR_RE = re.compile(r'async_pending(?:-([1-9][0-9]{0,8}))?\Z')
# Row headers a pending may carry (and nothing else).
ROW_HEADERS = ('X-Timestamp', 'X-Size', 'X-Content-Type', 'X-Etag',
               POLICY_HEADER)


class BadPending(ValueError):
    """An async pending file that is not one (quarantine it)."""


def container_targets(header):
    """``(partition, [node])`` named by a request's X-Container-*
    headers, or None when it names none; ValueError (one line) when they
    are malformed. ``header(name)`` reads one request header.

    Each node is ``{'ip', 'port', 'device'}``.
    """
    part = header('X-Container-Partition')
    hosts = header('X-Container-Host')
    devices = header('X-Container-Device')
    if part is None and hosts is None and devices is None:
        return None
    if part is None or hosts is None or devices is None:
        raise ValueError('X-Container-Partition, X-Container-Host and '
                         'X-Container-Device go together')
    if not _DIGITS_RE.match(part.strip()):
        raise ValueError('bad X-Container-Partition')
    hosts = [h.strip() for h in hosts.split(',')]
    devices = [d.strip() for d in devices.split(',')]
    if len(hosts) != len(devices) or len(hosts) > MAX_TARGETS:
        raise ValueError('X-Container-Host and X-Container-Device must '
                         'list as many entries (at most %d)' % MAX_TARGETS)
    nodes = []
    for host, device in zip(hosts, devices, strict=True):
        found = _HOST_RE.match(host)
        if not found or not 0 < int(found.group(2)) < 65536:
            raise ValueError('bad X-Container-Host entry %r' % host[:64])
        layout.check_device(device)
        ip = found.group(1).strip('[]')
        nodes.append({'ip': ip, 'port': int(found.group(2)),
                      'device': device})
    return int(part.strip()), nodes


def target_headers(part, nodes):
    """The X-Container-* headers naming ``nodes`` (ring devices) of
    container partition ``part``."""
    return {'X-Container-Partition': str(part),
            'X-Container-Host': ','.join(
                '%s:%s' % ('[%s]' % n['ip'] if ':' in n['ip'] else n['ip'],
                           n['port'])
                for n in nodes),
            'X-Container-Device': ','.join(n['device'] for n in nodes)}


def row_headers(op, when, metadata=None, policy=0):
    """The headers of an object row update."""
    headers = {'X-Timestamp': when.normal, POLICY_HEADER: str(int(policy))}
    if op == 'PUT':
        metadata = metadata or {}
        headers.update({
            'X-Size': str(metadata.get('Content-Length', 0)),
            'X-Content-Type': metadata.get('Content-Type',
                                           'application/octet-stream'),
            'X-Etag': metadata.get('ETag', '')})
    return headers


def send_all(client, requests, timeout, logger=LOG):
    """Send ``[(node, method, path, headers)]`` at once; wait at most
    ``timeout`` seconds. Returns each one's status, None for a failure
    or one still unanswered (it goes on in the background; its answer
    is ignored)."""
    results = [None] * len(requests)
    finished = concurrency.Event()
    left = [len(requests)]
    late = []

    def one(index, request):
        node, method, path, headers = request
        try:
            status, _headers, body = client.call(node, method, path,
                                                  headers=headers)
            if not late:
                results[index] = status
            if status >= 300:
                logger.warning('%s %s on %s: %d %s', method, path[:256],
                               direct_client.node_label(node), status,
                               body[:200].decode('utf-8', 'replace')
                               .strip())
        except direct_client.NodeError as err:
            logger.warning('%s', err)
        except Exception:
            logger.exception('%s %s on %s failed', method, path[:256],
                             direct_client.node_label(node))
        finally:
            left[0] -= 1
            if not left[0] and not finished.ready():
                finished.send()
    if not requests:
        return results
    for index, request in enumerate(requests):
        concurrency.spawn(one, index, request)
    with concurrency.Timeout(timeout, False):
        finished.wait()
    late.append(True)
    return list(results)


def pending_dir(dev_path, obj_hash, policy=0):
    """The directory of an object's pendings (its policy's async dir)."""
    return os.path.join(dev_path, storage_policy.async_dir(policy),
                        hashing.suffix_of(obj_hash))


def policy_of_async_dir(name):
    """The policy index of an ``async_pending[-N]`` directory name, or
    None for any other name."""
    found = _ASYNC_DIR_RE.match(name)
    if not found:
        return None
    return int(found.group(1) or 0)


def pending_name(obj_hash, when):
    return '%s-%s' % (obj_hash, timestamp.Timestamp(when).normal)


def encode_pending(op, account, container, obj, headers, successes=()):
    return json.dumps({
        'version': VERSION, 'op': op, 'account': account,
        'container': container, 'obj': obj, 'headers': dict(headers),
        'successes': sorted(set(successes))}, sort_keys=True).encode(
            'utf-8')


def write_pending(dev_path, obj_hash, op, account, container, obj, headers,
                  successes=(), policy=0):
    """Save an update as an async pending of storage policy ``policy``;
    returns its path. Blocks on the disk: call it through
    run_in_thread."""
    directory = pending_dir(dev_path, obj_hash, policy)
    fsutil.makedirs_durable(directory)
    path = os.path.join(directory, pending_name(obj_hash,
                                                headers['X-Timestamp']))
    fsutil.write_file_atomic(path, encode_pending(
        op, account, container, obj, headers, successes))
    return path


def read_pending(path):
    """The checked contents of a pending file (dict), or BadPending."""
    try:
        with open(path, 'rb') as fp:
            raw = fp.read(MAX_PENDING_BYTES + 1)
    except IsADirectoryError:
        raise BadPending('a directory, not a file') from None
    if len(raw) > MAX_PENDING_BYTES:
        raise BadPending('larger than %d bytes' % MAX_PENDING_BYTES)
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError as err:
        raise BadPending('not JSON: %s' % err) from None
    return check_pending(data, os.path.basename(path))


def check_pending(data, name=None):
    """``data`` if it is a well-formed pending (of file ``name``)."""
    if not isinstance(data, dict):
        raise BadPending('not a JSON object')
    if data.get('version') != VERSION:
        raise BadPending('unknown version %r' % (data.get('version'),))
    if data.get('op') not in OPS:
        raise BadPending('bad op %r' % (data.get('op'),))
    try:
        layout.check_name('account', data.get('account'),
                          layout.MAX_ACCOUNT_LENGTH)
        layout.check_name('container', data.get('container'),
                          layout.MAX_CONTAINER_LENGTH)
        layout.check_name('object', data.get('obj'),
                          layout.MAX_OBJECT_LENGTH, allow_slash=True)
    except ValueError as err:
        raise BadPending(str(err)) from None
    headers = data.get('headers')
    if not isinstance(headers, dict) or not all(
            k in ROW_HEADERS and isinstance(v, str)
            for k, v in headers.items()):
        raise BadPending('bad headers')
    try:
        when = timestamp.Timestamp(headers.get('X-Timestamp'))
    except (TypeError, ValueError):
        raise BadPending('bad X-Timestamp') from None
    if data['op'] == 'PUT' and not all(
            k in headers for k in ('X-Size', 'X-Content-Type', 'X-Etag')):
        raise BadPending('a PUT needs X-Size, X-Content-Type and X-Etag')
    successes = data.get('successes')
    if not isinstance(successes, list) or not all(
            isinstance(s, int) and not isinstance(s, bool)
            for s in successes):
        raise BadPending('bad successes')
    if name is not None:
        found = PENDING_RE.match(name)
        if not found or timestamp.Timestamp(found.group(2)) != when:
            raise BadPending('file name does not match its X-Timestamp')
    return data


class ContainerUpdates:
    """The object server's side: send an object's row to its container
    replicas, save what failed as an async pending.

    :param manager: the node's DiskFileManager (device paths, salts).
    :param client: a NodeClient.
    :param container_ring: optional; maps the replicas that took the
        update to ring device ids, recorded in a pending's successes.
    """

    def __init__(self, manager, client, timeout=1.0, container_ring=None,
                 logger=None):
        self.manager = manager
        self.client = client
        self.timeout = timeout
        self.ring = container_ring
        self.log = logger or LOG
        self.pendings_written = 0

    @classmethod
    def from_conf(cls, conf, manager, logger=None):
        ring = None
        if os.path.exists(conf.container_ring_file):
            ring = ring_mod.Ring(conf.container_ring_file,
                                 conf.hash_path_prefix,
                                 conf.hash_path_suffix)
        return cls(manager, direct_client.NodeClient(conf),
                   conf.server.container_update_timeout, ring, logger)

    def _ring_id(self, node):
        if self.ring is None:
            return None
        try:
            if self.ring.has_changed():
                self.ring.reload()
        except Exception as err:  # NOTE: a bad new ring file: keep old.
            self.log.warning('Cannot reload the container ring: %s', err)
        for dev in self.ring.devices:
            if dev and (dev['ip'], int(dev['port']), dev['device']) == (
                    node['ip'], node['port'], node['device']):
                return dev['id']
        return None

    def update(self, op, device, account, container, obj, headers,
               targets, policy=0):
        """Send the row; save an async pending for what failed.

        ``targets`` is ``(partition, [node])`` of
        :func:`container_targets`; ``policy`` the object's storage
        policy (where a pending is saved). Returns the pending's path or
        None.
        """
        part, nodes = targets
        requests = [(node, op, direct_client.container_row_path(
            node['device'], part, account, container, obj), headers)
            for node in nodes]
        statuses = send_all(self.client, requests, self.timeout, self.log)
        ok = [node for node, status in zip(nodes, statuses, strict=True)
              if status is not None and 200 <= status < 300]
        if len(ok) == len(nodes):
            return None
        successes = [i for i in (self._ring_id(n) for n in ok)
                     if i is not None]
        obj_hash = hashing.hash_path(account, container, obj,
                                     prefix=self.manager.hash_prefix,
                                     suffix=self.manager.hash_suffix)
        try:
            dev_path = self.manager.require_device(device)
            path = concurrency.run_in_thread(
                write_pending, dev_path, obj_hash, op, account, container,
                obj, headers, successes, policy)
        except Exception as err:
            self.log.error('Cannot save the container update of %s /%s/%s'
                           '/%s as an async pending: %s', op, account,
                           container, obj, err)
            return None
        self.pendings_written += 1
        self.log.info('Container update of %s /%s/%s/%s: %d of %d replicas '
                      'took it; saved %s', op, account, container, obj,
                      len(ok), len(nodes), path)
        return path


def pending_age(name, now=None):
    """Seconds since the timestamp in a pending's file name."""
    found = PENDING_RE.match(name)
    if not found:
        return 0.0
    return max(0.0, (now or time.time()) - float(found.group(2)))
