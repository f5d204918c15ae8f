"""Signatures on requests between nodes, from the cluster secret.

A request carries ``X-Coordsync-Date`` (Unix seconds) and
``X-Coordsync-Signature``, the hex HMAC-SHA256 of these lines::

    coordsync-v2
    METHOD
    PATH                  (as sent, still quoted)
    QUERY
    DATE
    X-Timestamp
    ETag
    Content-Length
    X-Coordsync-Member    (who sent it)
    X-Coordsync-Item      (the fence: which locked item ...)
    X-Coordsync-Token     (... and the holder's token)

an absent header signing as an empty line (and a header cannot hold a
line break, so no two requests sign alike). ``ETag`` and
``Content-Length`` bind a write to its body: a captured PUT cannot be
sent again with another one (the server checks the body against both).
The date bounds replays of a whole request to the allowed clock skew.
"""

import hashlib
import hmac
import re
import time

DATE_HEADER = 'X-Coordsync-Date'
SIGNATURE_HEADER = 'X-Coordsync-Signature'
MEMBER_HEADER = 'X-Coordsync-Member'
# NOTE: the names of coordsync.common.fencing's headers, repeated here so
# that signing needs nothing but the standard library.
SIGNED_HEADERS = ('X-Timestamp', 'ETag', 'Content-Length', MEMBER_HEADER,
                  'X-Coordsync-Item', 'X-Coordsync-Token')
VERSION = 'coordsync-v2'
# Unix seconds: up to 12 digits (year 33658) keeps every date arithmetic
# on small integers.
_DATE_RE = re.compile(r'[0-9]{1,12}\Z')
_SIGNATURE_RE = re.compile(r'[0-9a-f]{64}\Z')


def _message(method, path, query, date, header):
    lines = [VERSION, method.upper(), path, query or '', date]
    lines.extend(header(name) or '' for name in SIGNED_HEADERS)
    return '\n'.join(lines).encode('utf-8', 'surrogateescape')


def _mac(secret, message):
    return hmac.new(secret.encode('utf-8'), message,
                    hashlib.sha256).hexdigest()


def _getter(headers):
    """Case-insensitive ``get`` of a header dict."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return lambda name: lowered.get(name.lower())


def sign(secret, method, path, query='', headers=None, now=None):
    """The date and signature headers to add to a request.

    ``path`` as sent (still quoted); ``headers`` the request's other
    headers, of which :data:`SIGNED_HEADERS` are signed.
    """
    date = '%d' % int(time.time() if now is None else now)
    mac = _mac(secret, _message(method, path, query, date,
                                _getter(headers)))
    return {DATE_HEADER: date, SIGNATURE_HEADER: mac}


def verify(secret, method, path, query, header, max_skew, now=None):
    """None if the request is signed well, else the reason (one line).

    ``header(name)`` returns a header's value or None.
    """
    date = header(DATE_HEADER)
    signature = header(SIGNATURE_HEADER)
    if not date or not signature:
        return 'request is not signed'
    if not _DATE_RE.match(date):
        return 'bad %s' % DATE_HEADER
    skew = abs((time.time() if now is None else now) - int(date))
    if skew > max_skew:
        return 'request date is %ds off this node\'s clock' % skew
    if not _SIGNATURE_RE.match(signature):
        return 'bad signature'
    expected = _mac(secret, _message(method, path, query, date, header))
    if not hmac.compare_digest(expected, signature):
        return 'bad signature'
    return None
