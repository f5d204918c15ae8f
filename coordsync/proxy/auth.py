"""Tempauth-style users and tokens for the Swift API.

Users come from ``[proxy] users``, one per line::

    <account>:<user> <key> [.admin] [.reseller_admin]

``GET /auth/v1.0`` with ``X-Auth-User: <account>:<user>`` and
``X-Auth-Key: <key>`` answers a token (``AUTH_tk`` and 32 random hex
digits) and the storage URL ``.../v1/AUTH_<account>``. Tokens live in
this process's memory for ``token_ttl`` seconds: a restarted proxy
forgets them and clients authenticate again, as they do after expiry.
Keys are compared in constant time and never logged; neither are tokens.

Container sync requests from another cluster carry no token:
:class:`SyncAuth` checks their ``X-Container-Sync-Auth`` signature (or
``X-Container-Sync-Key``) against the destination container's key.
"""

import collections
import dataclasses
import hmac
import ipaddress
import secrets
import socket
import time

from oslo_log import log as logging

from coordsync import exceptions
from coordsync.sync import realms as realms_mod

LOG = logging.getLogger(__name__)

RESELLER_PREFIX = 'AUTH_'
TOKEN_PREFIX = 'AUTH_tk'
ADMIN = '.admin'
RESELLER_ADMIN = '.reseller_admin'
_GROUPS = (ADMIN, RESELLER_ADMIN)


@dataclasses.dataclass(frozen=True)
class User:
    account: str
    name: str
    key: str = dataclasses.field(repr=False)
    admin: bool = False
    reseller_admin: bool = False

    @property
    def label(self):
        return '%s:%s' % (self.account, self.name)

    @property
    def storage_account(self):
        return RESELLER_PREFIX + self.account


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to."""

    user: User
    expires: float

    @property
    def label(self):
        return self.user.label


def parse_users(lines):
    """``{'account:user': User}`` of ``[proxy] users`` lines.

    Raises ConfigError naming the line's user (never its key).
    """
    users = {}
    for number, line in enumerate(lines, start=1):
        words = line.split()
        if len(words) < 2:
            raise exceptions.ConfigError(
                '[proxy] users line %d: expected "<account>:<user> <key> '
                '[.admin] [.reseller_admin]"' % number)
        label, key, groups = words[0], words[1], words[2:]
        account, colon, name = label.partition(':')
        if (not colon or not account or not name or ':' in name
                or '/' in label or not label.isprintable()):
            raise exceptions.ConfigError(
                '[proxy] users line %d: user must be <account>:<user>'
                % number)
        unknown = [g for g in groups if g not in _GROUPS]
        if unknown:
            raise exceptions.ConfigError(
                '[proxy] users %s: unknown group %s (known: %s)' % (
                    label, unknown[0], ', '.join(_GROUPS)))
        if label in users:
            raise exceptions.ConfigError('[proxy] users: %s given twice'
                                         % label)
        users[label] = User(account, name, key, ADMIN in groups,
                            RESELLER_ADMIN in groups)
    return users


class TokenAuth:
    """Users, their tokens, and who may do what.

    :param users: ``{'account:user': User}``.
    :param ttl: seconds a token is valid.
    :param max_tokens: most live tokens; beyond it the oldest goes.
    """

    def __init__(self, users, ttl=86400, max_tokens=100000,
                 clock=time.time):
        self.users = dict(users)
        self.ttl = ttl
        self.max_tokens = max_tokens
        self.clock = clock
        # token -> Identity, oldest first (expiry order: one ttl for all).
        self._tokens = collections.OrderedDict()

    def authenticate(self, label, key):
        """A new ``(token, Identity)`` for good credentials, else None."""
        user = self.users.get(label or '')
        # NOTE: a key is compared even for an unknown user, so that the
        # answer's timing does not tell which users exist.
        expected = user.key if user is not None else secrets.token_hex(16)
        if not hmac.compare_digest((key or '').encode('utf-8'),
                                   expected.encode('utf-8')):
            return None
        if user is None:
            return None
        self._purge()
        while len(self._tokens) >= self.max_tokens:
            self._tokens.popitem(last=False)
        token = TOKEN_PREFIX + secrets.token_hex(16)
        identity = Identity(user, self.clock() + self.ttl)
        self._tokens[token] = identity
        return token, identity

    def identify(self, token):
        """The Identity of a valid token, else None."""
        if not token:
            return None
        identity = self._tokens.get(token)
        if identity is None:
            return None
        if identity.expires <= self.clock():
            self._tokens.pop(token, None)
            return None
        return identity

    def _purge(self):
        now = self.clock()
        while self._tokens:
            token, identity = next(iter(self._tokens.items()))
            if identity.expires > now:
                return
            self._tokens.pop(token)

    # -- who may do what -----------------------------------------------------

    def authorize(self, identity, account, container, obj, method,
                  acls=None):
        """None if allowed; else 401 (nobody) or 403 (not allowed).

        ``acls`` is ``(read_acl, write_acl)`` of the container, or None
        when not looked up; :meth:`needs_acls` tells when it matters.
        """
        if identity is None:
            if acls and container and method in ('GET', 'HEAD') \
                    and _referrer_allowed(acls[0], listing=not obj):
                return None
            return 401
        user = identity.user
        if user.reseller_admin:
            return None
        if account != user.storage_account:
            return 403
        if user.admin:
            return None
        if not container or acls is None:
            return 403
        acl = acls[0] if method in ('GET', 'HEAD') else acls[1]
        if _user_in_acl(user, acl):
            return None
        return 403

    def needs_acls(self, identity, account, container, obj, method):
        """Must the container's ACLs be read to decide this request?"""
        if not container:
            return False
        if identity is None:
            return method in ('GET', 'HEAD')
        user = identity.user
        if user.reseller_admin or user.admin:
            return False
        if account != user.storage_account:
            return False
        # NOTE: only .admin creates, deletes or changes containers.
        return bool(obj) or method in ('GET', 'HEAD')


def _acl_entries(acl):
    return [e.strip() for e in (acl or '').split(',') if e.strip()]


def _user_in_acl(user, acl):
    entries = _acl_entries(acl)
    names = {user.label, user.account, user.storage_account, '*',
             '%s:*' % user.account, '*:%s' % user.name}
    return any(e in names for e in entries)


def _referrer_allowed(acl, listing):
    """Swift's referrer ACL, the any-referrer form only: ``.r:*`` lets
    anyone read objects, and with ``.rlistings`` list the container."""
    entries = _acl_entries(acl)
    return '.r:*' in entries and (not listing or '.rlistings' in entries)


# -- container sync -----------------------------------------------------------

class SyncRefused(exceptions.CoordsyncError):
    """A sync request that does not authenticate; the message (one line,
    no secret) is for the log."""


class SyncAuth:
    """Authenticates container sync requests (Swift's rules).

    ``X-Container-Sync-Auth: <realm> <nonce> <sig>`` is good when the
    realm is in this cluster's realms file, the signature matches one of
    the realm's keys and the container's sync key, and the nonce is
    fresh (``nonces``, a :class:`~coordsync.sync.realms.NonceCache`).
    ``X-Container-Sync-Key`` alone is good when it equals the
    container's key and the client's address is one of
    ``allowed_hosts``. Names in that list are resolved once, at the
    first such request (the addresses of a name that later moves are
    not followed until a restart).

    :param realms: a :class:`~coordsync.sync.realms.Realms`.
    """

    def __init__(self, realms, nonces, allowed_hosts, clock=time.time,
                 resolve=socket.getaddrinfo):
        self.realms = realms
        self.nonces = nonces
        self.allowed_hosts = list(allowed_hosts)
        self.clock = clock
        self._resolve = resolve
        self._addresses = None

    @staticmethod
    def is_sync_request(headers):
        """Does a request (lower-case ``headers``) claim to be a sync
        request: ``X-Container-Sync-Auth``, or ``X-Container-Sync-Key``
        without a token? (With a token, that header sets the key of the
        container a user PUTs or POSTs.)"""
        if 'x-container-sync-auth' in headers:
            return True
        return 'x-container-sync-key' in headers and not (
            headers.get('x-auth-token') or headers.get('x-storage-token'))

    def check(self, method, quoted_path, headers, remote_addr,
              container_key):
        """The user label (``container-sync:<realm>`` or
        ``container-sync:key``) of a sync request to a container whose
        key is ``container_key`` (None or empty: it cannot be synced
        to), else SyncRefused. ``headers`` have lower-case names."""
        if not container_key:
            raise SyncRefused('the container has no X-Container-Sync-Key')
        signed = headers.get('x-container-sync-auth')
        if signed is not None:
            return self._check_signature(method, quoted_path, headers,
                                         signed, container_key)
        if not _same(headers.get('x-container-sync-key', ''),
                     container_key):
            raise SyncRefused('X-Container-Sync-Key does not match')
        try:
            allowed = _address(remote_addr) in self._allowed_addresses()
        except ValueError:
            allowed = False
        if not allowed:
            raise SyncRefused('X-Container-Sync-Key from %s, not in '
                              'allowed_sync_hosts' % remote_addr)
        return 'container-sync:key'

    def _check_signature(self, method, quoted_path, headers, signed,
                         container_key):
        words = signed.split()
        if len(words) != 3:
            raise SyncRefused('X-Container-Sync-Auth is not '
                              '"<realm> <nonce> <signature>"')
        realm, nonce, sig = words
        self.realms.reload_if_changed()
        keys = self.realms.keys(realm)
        if not keys:
            raise SyncRefused('unknown realm %r' % realm[:64])
        x_timestamp = headers.get('x-timestamp') or '0'
        if not any(_same(sig, realms_mod.get_sig(
                method, quoted_path, x_timestamp, nonce, key,
                container_key)) for key in keys):
            raise SyncRefused('signature does not match (realm %s)'
                              % realm.upper())
        problem = self.nonces.admit(nonce, self.clock())
        if problem:
            raise SyncRefused(problem)
        return 'container-sync:%s' % realm.upper()

    def _allowed_addresses(self):
        if self._addresses is None:
            found = set()
            for host in self.allowed_hosts:
                try:
                    found.add(_address(host))
                    continue
                except ValueError:
                    pass
                try:
                    infos = self._resolve(host, None)
                except OSError as err:
                    LOG.warning('allowed_sync_hosts: cannot resolve %s '
                                '(%s); ignored', host, err)
                    continue
                found.update(_address(info[4][0]) for info in infos)
            self._addresses = found
        return self._addresses


def _same(given, expected):
    return hmac.compare_digest(given.encode('utf-8'),
                               expected.encode('utf-8'))


def _address(text):
    """The normal form of an IP address (ValueError if it is not one);
    an IPv4-mapped IPv6 address is its IPv4 one."""
    address = ipaddress.ip_address((text or '').strip('[]'))
    mapped = getattr(address, 'ipv4_mapped', None)
    return (mapped or address).compressed
