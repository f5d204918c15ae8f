"""The Swift API's requests to the node servers.

Writes (container PUT/POST/DELETE, account POST, object PUT/DELETE) go to
every primary of the ring in question, a handoff standing in for each
primary that cannot be reached or answers 5xx, and the answer is the
status a majority agrees on (Swift's ``best_response``); reads of
containers and accounts take the first replica that answers 2xx (then
404 if every one that answered said so), as Swift's proxy does.

Object writes carry, for the i-th object primary, the i-th container
replica (``X-Container-Partition``/``-Host``/``-Device``) so that the
object server updates the container listing; container writes carry
the account replicas the same way (``X-Account-*``).

Objects are placed by the ring of their container's storage policy and
sent to that policy's routes (``/objects-N/...``): every object method
takes the ``policy`` index (0 by default); the caller (the proxy) reads
it from the container.
"""

import collections
import itertools
import urllib.parse

from oslo_log import log as logging

from coordsync.common import direct_client
from coordsync.common.direct_client import NodeError
from coordsync.common.direct_client import concurrent_map
from coordsync.common.direct_client import node_label
from coordsync.obj import client as object_client

LOG = logging.getLogger(__name__)

# NOTE: Swift asks 2 * replicas nodes before giving up on a read.
READ_NODES_FACTOR = 2


def quorum_size(replicas):
    return replicas // 2 + 1


def best_status(statuses, replicas):
    """The status a majority of ``replicas`` agrees on (by class: 2xx,
    then 3xx, then 4xx; the most frequent status within it), else 503.
    ``None`` stands for a replica that gave no answer."""
    quorum = quorum_size(replicas)
    for klass in (2, 3, 4):
        group = [s for s in statuses if s is not None and s // 100 == klass]
        if len(group) >= quorum:
            return collections.Counter(group).most_common(1)[0][0]
    return 503


def update_headers(ring_nodes, part, count, prefix):
    """Per-target headers naming ``ring_nodes`` of partition ``part``:
    replica i goes to target ``i % count`` (Swift's spreading), under
    ``X-<prefix>-Partition/-Host/-Device``."""
    headers = [{} for _ in range(count)]
    for i, node in enumerate(ring_nodes):
        target = headers[i % count]
        target['X-%s-Partition' % prefix] = str(part)
        host = '%s:%s' % (node['ip'], node['port'])
        for key, value in (('X-%s-Host' % prefix, host),
                           ('X-%s-Device' % prefix, node['device'])):
            target[key] = '%s,%s' % (target[key], value) if key in target \
                else value
    return headers


class Reply:
    """A read's answer: status, headers (lower-case keys), body bytes."""

    def __init__(self, status, headers=None, body=b''):
        self.status = status
        self.headers = headers or {}
        self.body = body


class UnknownPolicy(LookupError):
    """No object ring is loaded for a storage policy index."""


class Backend:
    """Node I/O of the Swift API over the rings.

    :param object_rings: ``{policy index: object ring}``, or one ring
        (policy 0's, the only policy).
    """

    def __init__(self, node_client, object_rings, container_ring,
                 account_ring):
        if not isinstance(object_rings, dict):
            object_rings = {0: object_rings}
        self.nodes = node_client
        self.object_rings = dict(object_rings)
        self.object_ring = self.object_rings.get(0)
        self.container_ring = container_ring
        self.account_ring = account_ring
        self._objects = {}

    def ring_of(self, policy):
        """The object ring of a policy (UnknownPolicy if not loaded)."""
        try:
            return self.object_rings[policy]
        except KeyError:
            raise UnknownPolicy('no object ring for storage policy %s'
                                % policy) from None

    def objects(self, policy=0):
        """The :class:`~coordsync.obj.client.ObjectClient` of a policy's
        ring and routes."""
        client = self._objects.get(policy)
        if client is None:
            client = self._objects[policy] = object_client.ObjectClient(
                None, self.ring_of(policy), self.nodes, policy=policy)
        return client

    # -- generic --------------------------------------------------------------

    def write_all(self, ring, part, send):
        """``send(index, node)`` on every primary of ``part``, a handoff
        standing in for each one that fails; returns one status per
        primary (None: no node answered). ``send`` returns a status or
        raises NodeError; 5xx and 507 mean "try a handoff"."""
        primaries = ring.get_part_nodes(part)
        handoffs = ring.get_more_nodes(part)

        def attempt(item):
            index, node = item
            while True:
                try:
                    status = send(index, node)
                except NodeError as err:
                    LOG.warning('%s; trying a handoff', err)
                    status = None
                else:
                    if status < 500:
                        return status
                    LOG.warning('%s answered %d; trying a handoff',
                                node_label(node), status)
                node = next(handoffs, None)
                if node is None:
                    return None
        return concurrent_map(attempt, list(enumerate(primaries)))

    def read_first(self, ring, part, method, path_of, query=''):
        """The first 2xx :class:`Reply` of the replicas of ``part``
        (primaries, then handoffs), or one whose status is 404 (every
        node that answered said so) or 503 (none answered)."""
        primaries = ring.get_part_nodes(part)
        candidates = itertools.islice(
            itertools.chain(primaries, ring.get_more_nodes(part)),
            READ_NODES_FACTOR * len(primaries))
        answered = 0
        not_found = None
        for node in candidates:
            try:
                status, headers, body = self.nodes.call(
                    node, method, path_of(node), query=query)
            except NodeError as err:
                LOG.warning('%s', err)
                continue
            if 200 <= status < 300:
                return Reply(status, headers, body)
            if status == 404:
                answered += 1
                not_found = Reply(404, headers, body)
                if answered >= len(primaries):
                    break
            elif status < 500:
                return Reply(status, headers, body)
            else:
                LOG.warning('%s %s on %s: %d', method, path_of(node),
                            node_label(node), status)
        if answered:
            return not_found
        return Reply(503)

    # -- containers -----------------------------------------------------------

    def container_write(self, method, account, container, headers):
        """PUT, POST or DELETE a container on a quorum: the status."""
        part, nodes = self.container_ring.get_nodes(account, container)
        account_part, account_nodes = self.account_ring.get_nodes(account)
        per_node = update_headers(account_nodes, account_part, len(nodes),
                                  'Account')

        def send(index, node):
            sent = dict(headers)
            if method != 'POST':
                sent.update(per_node[index])
            status, _, _ = self.nodes.call(
                node, method, direct_client.container_path(
                    node['device'], part, account, container),
                headers=sent)
            return status
        statuses = self.write_all(self.container_ring, part, send)
        return best_status(statuses, len(nodes))

    def container_read(self, method, account, container, query=None):
        part = self.container_ring.get_part(account, container)
        return self.read_first(
            self.container_ring, part, method,
            lambda node: direct_client.container_path(
                node['device'], part, account, container),
            _query(query))

    def container_nodes(self, account, container):
        """``(partition, primaries)`` of a container's database."""
        return self.container_ring.get_nodes(account, container)

    # -- accounts -------------------------------------------------------------

    def account_write(self, method, account, headers):
        part, nodes = self.account_ring.get_nodes(account)

        def send(index, node):
            status, _, _ = self.nodes.call(
                node, method, direct_client.account_path(
                    node['device'], part, account), headers=headers)
            return status
        return best_status(self.write_all(self.account_ring, part, send),
                           len(nodes))

    def account_read(self, method, account, query=None):
        part = self.account_ring.get_part(account)
        return self.read_first(
            self.account_ring, part, method,
            lambda node: direct_client.account_path(node['device'], part,
                                                    account),
            _query(query))

    # -- objects --------------------------------------------------------------

    def object_write(self, method, account, container, obj, headers,
                     body_of=None, policy=0):
        """PUT (``body_of()`` makes a fresh body per attempt) or DELETE
        an object on the primaries of its policy's ring: ``(statuses,
        replicas)``, one status per primary (None: none answered)."""
        ring = self.ring_of(policy)
        part, nodes = ring.get_nodes(account, container, obj)
        c_part, c_nodes = self.container_ring.get_nodes(account, container)
        per_node = update_headers(c_nodes, c_part, len(nodes), 'Container')

        def send(index, node):
            sent = dict(headers)
            sent.update(per_node[index])
            path = direct_client.object_path(node['device'], part, account,
                                             container, obj, policy=policy)
            body = body_of() if body_of is not None else None
            status, _, _ = self.nodes.call(node, method, path,
                                           headers=sent, body=body)
            return status
        return self.write_all(ring, part, send), len(nodes)

    def object_versions(self, account, container, obj, policy=0):
        """``[(timestamp, node, headers or None)]``, newest first."""
        return self.objects(policy)._versions(account, container, obj)

    def object_get(self, account, container, obj, policy=0):
        """(headers, chunk iterator) of the newest version, or None."""
        return self.objects(policy).get(account, container, obj)

    def object_head_newest(self, account, container, obj, policy=0):
        """``(timestamp, headers)`` of the newest version (headers None
        for a tombstone; both None when nothing is stored)."""
        return self.objects(policy).head_newest(account, container, obj)


def _query(params):
    if not params:
        return ''
    return urllib.parse.urlencode(sorted(params.items()),
                                  quote_via=urllib.parse.quote)
