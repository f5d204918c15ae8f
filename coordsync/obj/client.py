"""Quorum object I/O over the node servers, placed by the ring.

:class:`ObjectClient` writes an object to all its primaries (a handoff
standing in for each primary that does not answer) and succeeds once a
majority acknowledged; a read asks every primary and returns the newest
version. One client serves one storage policy: its ring places the
objects and every request goes to that policy's routes (``/objects-N``
for N > 0).

A write no newer than what a node stores is refused by that node (409);
when too few nodes took a write, :class:`QuorumError` lists every
node's answer in ``statuses``, so a caller can tell "a newer (or equal)
version exists" (409s) from nodes that failed.
"""

from oslo_log import log as logging

from coordsync import exceptions
from coordsync.common import timestamp
from coordsync.common.direct_client import NodeClient
from coordsync.common.direct_client import NodeError
from coordsync.common.direct_client import concurrent_map
from coordsync.common.direct_client import node_label
from coordsync.common.direct_client import object_path
from coordsync.obj import updates

LOG = logging.getLogger(__name__)


class QuorumError(exceptions.CoordsyncError):
    """Too few nodes acknowledged a request.

    ``statuses``: the HTTP status of every answer received (primaries
    and handoffs, one per answer; nodes that could not be reached gave
    none). ``conflicts`` counts the 409s among them: nodes holding a
    version at least as new as the write.
    """

    def __init__(self, message, statuses=()):
        super().__init__(message)
        self.statuses = list(statuses)

    @property
    def conflicts(self):
        return self.statuses.count(409)


def quorum_size(replicas):
    return replicas // 2 + 1


# Headers put() sets itself, whatever ``metadata`` says.
_OWN_HEADERS = ('x-timestamp', 'content-length', 'transfer-encoding')


class ObjectClient:
    """Quorum reads and writes of the objects of one storage policy,
    placed by ``ring``, that policy's object ring."""

    def __init__(self, conf, ring, node_client=None, container_ring=None,
                 policy=0):
        self.ring = ring
        self.policy = policy
        self.nodes = node_client or NodeClient(conf)
        # With it, writes name each primary's container replicas
        # (X-Container-*), which then get the object's row.
        self.container_ring = container_ring

    def _targets(self, account, container, obj):
        part, primaries = self.ring.get_nodes(account, container, obj)
        return part, primaries, self.ring.get_more_nodes(part)

    def _container_headers(self, account, container, count):
        """X-Container-* headers for each of ``count`` object primaries:
        the i-th primary gets the i-th container replica (more replicas
        than primaries: some get two), as Swift's proxy does."""
        if self.container_ring is None or not count:
            return [{} for _ in range(count)]
        cpart, cnodes = self.container_ring.get_nodes(account, container)
        shares = [[] for _ in range(count)]
        for index, cnode in enumerate(cnodes):
            shares[index % count].append(cnode)
        for index in range(len(cnodes), count):
            shares[index].append(cnodes[index % len(cnodes)])
        return [updates.target_headers(cpart, share) for share in shares]

    def _path(self, node, part, account, container, obj):
        return object_path(node['device'], part, account, container, obj,
                           policy=self.policy)

    def _send_with_handoffs(self, part, primaries, handoffs, send,
                            statuses=None):
        """Run ``send(node)`` on every primary, a handoff for each failure.

        ``send`` returns (ok, status, detail), ok None meaning "try
        elsewhere"; the status of every answer is appended to
        ``statuses`` if given. Returns (acks, details) where acks counts
        distinct *nodes* that acknowledged: copies on two disks of one
        machine do not survive that machine, so they make no majority.
        """
        def attempt(indexed):
            index, node = indexed
            while True:
                try:
                    ok, status, detail = send(node, index)
                except NodeError as err:
                    ok, status, detail = None, None, str(err)
                if status is not None and statuses is not None:
                    statuses.append(status)
                if ok is not None:
                    return ok, node['node'], '%s: %s' % (node_label(node),
                                                          detail)
                LOG.info('%s; trying a handoff', detail)
                node = next(handoffs, None)
                if node is None:
                    return False, None, detail
        results = concurrent_map(attempt, list(enumerate(primaries)))
        acked = {name for ok, name, _ in results if ok}
        return len(acked), [detail for _, _, detail in results]

    def put(self, account, container, obj, body, content_type=None,
            metadata=None, when=None):
        """Store ``body`` (bytes) on a quorum; return its timestamp.

        ``when`` (a Timestamp) is the version's X-Timestamp, now by
        default; ``metadata`` extra headers (``X-Object-Meta-*``,
        ``Content-Type``, an ``ETag`` the nodes check the body
        against); X-Timestamp and Content-Length are the call's own.
        A node holding a version at least as new answers 409: with too
        few acknowledgements, the QuorumError's ``conflicts`` says so.
        """
        when = when or timestamp.Timestamp.now()
        part, primaries, handoffs = self._targets(account, container, obj)
        headers = {k: v for k, v in (metadata or {}).items()
                   if k.lower() not in _OWN_HEADERS}
        if content_type or not any(k.lower() == 'content-type'
                                   for k in headers):
            headers = {k: v for k, v in headers.items()
                       if k.lower() != 'content-type'}
            headers['Content-Type'] = (content_type
                                       or 'application/octet-stream')
        headers.update({'X-Timestamp': when.normal,
                        'Content-Length': str(len(body))})
        targets = self._container_headers(account, container,
                                          len(primaries))

        def send(node, index):
            status, _, reply = self.nodes.call(
                node, 'PUT', self._path(node, part, account, container, obj),
                headers=dict(headers, **targets[index]), body=body)
            return _outcome(status, reply, status == 201)
        statuses = []
        return self._finish('PUT', account, container, obj, when,
                            *self._send_with_handoffs(
                                part, primaries, handoffs, send, statuses),
                            statuses)

    def delete(self, account, container, obj, when=None):
        """Write a tombstone on a quorum; return its timestamp.

        ``when`` as for :meth:`put`; a node holding a version at least
        as new answers 409 (``QuorumError.conflicts``)."""
        when = when or timestamp.Timestamp.now()
        part, primaries, handoffs = self._targets(account, container, obj)
        targets = self._container_headers(account, container,
                                          len(primaries))

        def send(node, index):
            status, _, reply = self.nodes.call(
                node, 'DELETE',
                self._path(node, part, account, container, obj),
                headers=dict({'X-Timestamp': when.normal}, **targets[index]))
            return _outcome(status, reply, status in (204, 404))
        statuses = []
        return self._finish('DELETE', account, container, obj, when,
                            *self._send_with_handoffs(
                                part, primaries, handoffs, send, statuses),
                            statuses)

    def _finish(self, method, account, container, obj, when, acks,
                details, statuses=()):
        needed = quorum_size(self.ring.replicas)
        if acks < needed:
            raise QuorumError('%s /%s/%s/%s%s: %d of %d replicas '
                              'acknowledged, %d needed (%s)' % (
                                  method, account, container, obj,
                                  _policy_note(self.policy), acks,
                                  self.ring.replicas, needed,
                                  '; '.join(details)), statuses)
        return when

    def _versions(self, account, container, obj):
        """HEAD every primary (handoffs for failures): [(ts, node, hdrs)].

        A tombstone's timestamp is included with ``hdrs`` None.
        """
        part, primaries, handoffs = self._targets(account, container, obj)
        found = []

        def send(node, _index):
            status, headers, _ = self.nodes.call(
                node, 'HEAD', self._path(node, part, account, container,
                                         obj))
            if status >= 500:
                return None, status, str(status)
            if status == 200:
                found.append((timestamp.Timestamp(headers['x-timestamp']),
                              node, headers))
            elif 'x-backend-timestamp' in headers:
                found.append((timestamp.Timestamp(
                    headers['x-backend-timestamp']), node, None))
            return status in (200, 404), status, str(status)
        answered, details = self._send_with_handoffs(part, primaries,
                                                     handoffs, send)
        if not answered:
            raise QuorumError('no replica of /%s/%s/%s answered (%s)' % (
                account, container, obj, '; '.join(details)))
        return part, sorted(found, key=lambda f: f[0], reverse=True)

    def head(self, account, container, obj):
        """Headers of the newest version; None when absent or deleted."""
        return self.head_newest(account, container, obj)[1]

    def head_newest(self, account, container, obj):
        """``(timestamp, headers)`` of the newest version: ``(None,
        None)`` when no replica has anything, headers None for a
        tombstone."""
        _, versions = self._versions(account, container, obj)
        if not versions:
            return None, None
        return versions[0][0], versions[0][2]

    def get(self, account, container, obj):
        """(headers, chunk iterator) of the newest version, or None."""
        _when, headers, chunks = self.get_newest(account, container, obj)
        return None if headers is None else (headers, chunks)

    def get_newest(self, account, container, obj):
        """``(timestamp, headers, chunks)`` of the newest version: the
        timestamp is None when no replica has the object or a tombstone;
        headers and chunks are None when the newest is a tombstone (or
        no replica holding it could send it)."""
        part, versions = self._versions(account, container, obj)
        newest = versions[0][0] if versions else None
        for when, node, headers in versions:
            if headers is None or when != newest:
                break
            path = self._path(node, part, account, container, obj)
            try:
                resp = self.nodes.request(node, 'GET', path)
            except NodeError as err:
                LOG.warning('%s; trying another replica', err)
                continue
            if resp.status == 200:
                return newest, resp.headers, resp.iter_body()
            resp.close()
        return newest, None, None


def _outcome(status, reply, ok):
    """``send``'s answer for a write: a 5xx (a handoff tries again), or
    whether the node took it."""
    if status >= 500:
        return None, status, '%d %s' % (status, reply.strip()[:200])
    return ok, status, str(status)


def _policy_note(policy):
    return ' (policy %d)' % policy if policy else ''
