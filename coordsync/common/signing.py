"""Signatures on requests between nodes, from the cluster secret.

A request carries ``X-Coordsync-Date`` (Unix seconds) and
``X-Coordsync-Signature``, the hex HMAC-SHA256 of::

    METHOD \\n PATH \\n QUERY \\n DATE \\n X-TIMESTAMP

The body is not signed (objects are checked by their ETag on write);
the date bounds replays to the allowed clock skew.
"""

import hashlib
import hmac
import time

DATE_HEADER = 'X-Coordsync-Date'
SIGNATURE_HEADER = 'X-Coordsync-Signature'


def _message(method, path, query, date, x_timestamp):
    return '\n'.join((method.upper(), path, query or '', date,
                      x_timestamp or '')).encode('utf-8')


def sign(secret, method, path, query='', x_timestamp='', now=None):
    """Headers to add to a request (``path`` as sent, still quoted)."""
    date = '%d' % int(time.time() if now is None else now)
    mac = hmac.new(secret.encode('utf-8'),
                   _message(method, path, query, date, x_timestamp),
                   hashlib.sha256)
    return {DATE_HEADER: date, SIGNATURE_HEADER: mac.hexdigest()}


def verify(secret, method, path, query, headers_get, max_skew, now=None):
    """None if the request is signed well, else the reason it is not.

    ``headers_get(name)`` returns a header's value or None.
    """
    date = headers_get(DATE_HEADER)
    signature = headers_get(SIGNATURE_HEADER)
    if not date or not signature:
        return 'request is not signed'
    try:
        skew = abs((time.time() if now is None else now) - int(date))
    except ValueError:
        return 'bad %s' % DATE_HEADER
    if skew > max_skew:
        return 'request date is %ds off this node\'s clock' % skew
    expected = hmac.new(
        secret.encode('utf-8'),
        _message(method, path, query, date,
                 headers_get('X-Timestamp') or ''),
        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return 'bad signature'
    return None
