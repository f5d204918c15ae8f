"""Container sync realms, the signature of a sync request, and where a
container syncs to.

A realm is a group of clusters that trust each other, declared in
Swift's ``container-sync-realms.conf`` (the same file on every cluster
of the realm)::

    [US]
    key = 9ff3b71c849749dbaec4ccdd3cbab62b
    key2 = 1a0a5a0cbd66448084089304442d6776
    cluster_dfw1 = http://127.0.0.1:8080/v1/

A container with ``X-Container-Sync-To: //US/DFW1/AUTH_b/c2`` and an
``X-Container-Sync-Key`` sends each row to that container with
``X-Container-Sync-Auth: <realm> <nonce> <signature>``: an HMAC-SHA1,
keyed by the realm key, of the method, path, ``X-Timestamp``, nonce and
the container's key (:func:`get_sig`). The receiving proxy holds the
same realms file and the destination container the same sync key; it
checks the signature against ``key`` and ``key2`` (so a realm key can
be rotated), and refuses a nonce it saw already or one older than its
window (:class:`NonceCache`). A plain ``http(s)://`` target carries the
container key itself (``X-Container-Sync-Key``) and its host must be in
``allowed_sync_hosts``.
"""

import configparser
import dataclasses
import hashlib
import heapq
import hmac
import os
import re
import secrets
import time
import urllib.parse

from oslo_log import log as logging

from coordsync import exceptions
from coordsync.obj import layout

LOG = logging.getLogger(__name__)

REPLAYED = 'replayed nonce'
TOO_MANY = 'too many sync requests in the window'
_NONCE = re.compile(r'([0-9]{1,15})-[0-9a-f]{16,64}')
_CLUSTER_PREFIX = 'cluster_'
_SYNC_TO_FORMS = ('X-Container-Sync-To must be //realm/cluster/account/'
                  'container or http(s)://host/v1/account/container')


class RealmsError(exceptions.CoordsyncError):
    """A realm a sync target names is not (or no longer) configured."""


@dataclasses.dataclass(frozen=True)
class _Realm:
    keys: tuple
    clusters: dict


class Realms:
    """The realms of a ``container-sync-realms.conf``, reread when it
    changes (:meth:`reload_if_changed`, one ``stat``).

    A missing file means no realms. A bad one means no realms either,
    and :attr:`error` says, in one line naming the file, what is wrong
    (logged once per change of the file). Realm and cluster names are
    compared without regard to case, as Swift upper-cases them.

    :param check_interval: seconds of ``clock`` between two ``stat``
        calls (0: every call).
    """

    def __init__(self, path, clock=time.time, check_interval=0.0):
        self.path = path
        self.clock = clock
        self.check_interval = check_interval
        self.error = None
        self._realms = {}
        self._seen = None
        self._checked = None
        self.reload_if_changed()

    def reload_if_changed(self):
        """Reread the file if its inode, mtime or size changed."""
        now = self.clock()
        if self._checked is not None and \
                now - self._checked < self.check_interval:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            seen = 'missing'
        except OSError as err:
            seen = ('unreadable', err.errno)
        else:
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self._realms, self.error = self._load(), None
        except RealmsError as err:
            self._realms, self.error = {}, str(err)
            LOG.error('%s', self.error)

    def _load(self):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(self.path, encoding='utf-8') as f:
                parser.read_file(f)
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeError, configparser.Error) as err:
            first = ' '.join(str(err).split())[:200]
            raise RealmsError('%s: cannot read: %s'
                              % (self.path, first)) from None
        realms = {}
        for section in parser.sections():
            name = section.upper()
            if name in realms:
                raise RealmsError('%s: realm %s given twice'
                                  % (self.path, section))
            realms[name] = self._realm(section, parser[section])
        return realms

    def _realm(self, name, section):
        key = section.get('key', '').strip()
        if not key:
            raise RealmsError('%s: realm %s has no key' % (self.path, name))
        key2 = section.get('key2', '').strip()
        clusters = {}
        for option, url in section.items():
            if not option.startswith(_CLUSTER_PREFIX):
                continue
            cluster = option[len(_CLUSTER_PREFIX):].upper()
            url = url.strip()
            parts = urllib.parse.urlsplit(url)
            if not cluster or parts.scheme not in ('http', 'https') \
                    or not parts.hostname:
                raise RealmsError(
                    '%s: realm %s: %s must be an http:// or https:// URL'
                    % (self.path, name, option))
            clusters[cluster] = url
        return _Realm((key, key2) if key2 else (key,), clusters)

    def realms(self):
        """The realm names (upper case), sorted."""
        return sorted(self._realms)

    def keys(self, realm):
        """``(key,)`` or ``(key, key2)`` of a realm, None if unknown."""
        found = self._realms.get((realm or '').upper())
        return found.keys if found is not None else None

    def endpoint(self, realm, cluster):
        """The URL of a cluster of a realm, None if either is unknown."""
        found = self._realms.get((realm or '').upper())
        if found is None:
            return None
        return found.clusters.get((cluster or '').upper())


def get_sig(method, path, x_timestamp, nonce, realm_key, user_key):
    """Swift's signature of a sync request: hex HMAC-SHA1, keyed by the
    realm key, of method, quoted path, ``X-Timestamp`` (``'0'`` when
    none is sent), nonce and the container's sync key."""
    message = '%s\n%s\n%s\n%s\n%s' % (method.upper(), path, x_timestamp,
                                      nonce, user_key)
    return hmac.new(realm_key.encode('utf-8'), message.encode('utf-8'),
                    hashlib.sha1).hexdigest()


def new_nonce(clock=time.time):
    """A nonce carrying the time it was made: ``<seconds>-<32 hex>``."""
    return '%d-%s' % (int(clock()), secrets.token_hex(16))


def nonce_time(nonce):
    """The time (int seconds) of a nonce from :func:`new_nonce`, None if
    it is not of that form."""
    found = _NONCE.fullmatch(nonce) if isinstance(nonce, str) else None
    return int(found.group(1)) if found else None


@dataclasses.dataclass(frozen=True)
class SyncTarget:
    """Where a container syncs to.

    ``url`` is ``scheme://host[:port][/prefix]/v1/<account>/<container>``
    (names quoted, no trailing slash) and ``path`` its URL path;
    ``realm`` and ``cluster`` (upper case) are None for a plain URL;
    ``account`` and ``container`` are the decoded names.
    """

    url: str
    path: str
    realm: str | None
    cluster: str | None
    account: str
    container: str


def parse_sync_to(value, realms, allowed_hosts):
    """The :class:`SyncTarget` of an ``X-Container-Sync-To`` value, or
    ValueError with a one-line reason.

    ``//<realm>/<cluster>/<account>/<container>`` needs the realm and
    cluster in ``realms``; ``http(s)://host[:port]/v1/<account>/
    <container>`` needs the host in ``allowed_hosts``. In both forms the
    names are percent-decoded, then checked as the API checks them.
    """
    value = value or ''
    if value.startswith('//'):
        return _realm_target(value, realms)
    if value[:8].lower().startswith(('http://', 'https://')):
        return _url_target(value, allowed_hosts)
    raise ValueError(_SYNC_TO_FORMS)


def _names(account, container):
    try:
        account = urllib.parse.unquote(account, errors='strict')
        container = urllib.parse.unquote(container, errors='strict')
    except UnicodeError:
        raise ValueError('X-Container-Sync-To is not UTF-8') from None
    layout.check_name('account', account, layout.MAX_ACCOUNT_LENGTH)
    layout.check_name('container', container, layout.MAX_CONTAINER_LENGTH)
    return account, container


def _target(base, realm, cluster, account, container):
    url = '%s%s/%s' % (base, urllib.parse.quote(account),
                       urllib.parse.quote(container))
    return SyncTarget(url, urllib.parse.urlsplit(url).path, realm, cluster,
                      account, container)


def _realm_target(value, realms):
    parts = value[2:].split('/')
    if len(parts) != 4 or not all(parts):
        raise ValueError(_SYNC_TO_FORMS)
    realm, cluster = parts[0], parts[1]
    if realms.error:
        raise ValueError(realms.error)
    if realms.keys(realm) is None:
        raise ValueError('unknown realm %r' % realm)
    endpoint = realms.endpoint(realm, cluster)
    if endpoint is None:
        raise ValueError('unknown cluster %r in realm %r' % (cluster, realm))
    if not endpoint.endswith('/'):
        endpoint += '/'
    account, container = _names(parts[2], parts[3])
    return _target(endpoint, realm.upper(), cluster.upper(), account,
                   container)


def _url_target(value, allowed_hosts):
    parts = urllib.parse.urlsplit(value)
    segments = parts.path.split('/')
    if not parts.hostname or '@' in parts.netloc or not _port_ok(parts) \
            or '?' in value or '#' in value or len(segments) != 4 \
            or segments[:2] != ['', 'v1'] or not all(segments[2:]):
        raise ValueError(_SYNC_TO_FORMS)
    if parts.hostname.lower() not in {h.lower() for h in allowed_hosts}:
        raise ValueError('host %s is not in allowed_sync_hosts'
                         % parts.hostname)
    account, container = _names(segments[2], segments[3])
    base = '%s://%s/v1/' % (parts.scheme.lower(), parts.netloc)
    return _target(base, None, None, account, container)


def _port_ok(parts):
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


def sync_headers(method, target, quoted_path, x_timestamp, user_key,
                 realms, clock=time.time):
    """The auth headers of one sync request to ``target``.

    A realm target is signed with the realm's first key over
    ``quoted_path`` (``urllib.parse.quote`` of the decoded ``/v1/a/c/o``
    or ``/v1/a/c``) and ``x_timestamp`` (the ``X-Timestamp`` sent, or
    ``'0'``); a plain one carries the key. RealmsError if the target's
    realm is no longer in ``realms``.
    """
    if target.realm is None:
        return {'X-Container-Sync-Key': user_key}
    keys = realms.keys(target.realm)
    if not keys:
        raise RealmsError(realms.error or 'unknown realm %r' % target.realm)
    nonce = new_nonce(clock)
    sig = get_sig(method, quoted_path, x_timestamp, nonce, keys[0],
                  user_key)
    return {'X-Container-Sync-Auth': '%s %s %s' % (target.realm, nonce,
                                                   sig)}


class NonceCache:
    """The nonces of the sync requests accepted in the last ``window``
    seconds, to refuse a replayed one.

    A nonce is remembered until its own time plus ``window``; after
    that it is refused as too old anyway. At most ``max_entries`` are
    held: when full (after dropping expired ones) new requests are
    refused until some expire.
    """

    def __init__(self, window, max_entries=200000):
        self.window = window
        self.max_entries = max_entries
        self._expires = {}   # nonce -> time it may be forgotten
        self._heap = []      # (expires, nonce), oldest first

    def __len__(self):
        return len(self._expires)

    def admit(self, nonce, now):
        """None if ``nonce`` is fresh (it is then remembered), else a
        one-line reason."""
        made = nonce_time(nonce)
        if made is None:
            return 'nonce is not of the form <time>-<hex>'
        if abs(now - made) > self.window:
            return 'nonce is older than %gs or from the future' % self.window
        if nonce in self._expires:
            return REPLAYED
        self._purge(now)
        if len(self._expires) >= self.max_entries:
            return TOO_MANY
        expires = made + self.window
        self._expires[nonce] = expires
        heapq.heappush(self._heap, (expires, nonce))
        return None

    def _purge(self, now):
        # NOTE: strictly older only: at made + window exactly the nonce
        # is still within the window, so it must still be refused.
        while self._heap and self._heap[0][0] < now:
            _expires, nonce = heapq.heappop(self._heap)
            self._expires.pop(nonce, None)
