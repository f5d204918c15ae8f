"""Tempauth-style users and tokens for the Swift API.

Users come from ``[proxy] users``, one per line::

    <account>:<user> <key> [.admin] [.reseller_admin]

``GET /auth/v1.0`` with ``X-Auth-User: <account>:<user>`` and
``X-Auth-Key: <key>`` answers a token (``AUTH_tk`` and 32 random hex
digits) and the storage URL ``.../v1/AUTH_<account>``. Tokens live in
this process's memory for ``token_ttl`` seconds: a restarted proxy
forgets them and clients authenticate again, as they do after expiry.
Keys are compared in constant time and never logged; neither are tokens.
"""

import collections
import dataclasses
import hmac
import secrets
import time

from coordsync import exceptions

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
