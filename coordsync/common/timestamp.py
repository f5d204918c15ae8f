"""Timestamps: the order of writes, as every node stores and compares it.

A timestamp is seconds since the epoch with five decimal places, the same
resolution and text form as Swift's ``X-Timestamp`` (``normal``: sixteen
characters, ``'1700000000.12345'``). It names object files on disk, so
the text form sorts like the value and two spellings of one instant
(``'1.5'``, ``'0000000001.50000'``) are the same timestamp.

The value is kept as an integer count of 10 microsecond ticks, so
comparisons are exact and never depend on float rounding.
"""

import decimal
import functools
import math
import re
import time

PRECISION = 5
TICKS_PER_SECOND = 10 ** PRECISION
# NOTE: ten integer digits keep ``normal`` at a fixed sixteen characters,
# which is what makes file names sort by time (good until the year 2286).
MAX_TICKS = 10 ** 10 * TICKS_PER_SECOND - 1
MAX_TEXT_LENGTH = 32
_QUANTUM = decimal.Decimal(1).scaleb(-PRECISION)
_LIMIT = decimal.Decimal(10 ** 10)
_DECIMAL_RE = re.compile(r'(\d+(\.\d*)?|\.\d+)\Z', re.ASCII)


def _ticks_from_decimal(value, original):
    ticks = MAX_TICKS + 1
    # NOTE: testing the magnitude first keeps quantize() within decimal's
    # 28 significant digits; the second test catches rounding up.
    if value < _LIMIT:
        ticks = int(value.quantize(_QUANTUM, rounding=decimal.ROUND_HALF_UP)
                    .scaleb(PRECISION))
    if ticks > MAX_TICKS:
        raise ValueError('timestamp %r is too large (max %s)'
                         % (original, _format(MAX_TICKS)))
    return ticks


def _ticks_from_str(text):
    if len(text) > MAX_TEXT_LENGTH:
        raise ValueError('timestamp %r is too long (max %d characters)'
                         % (text[:MAX_TEXT_LENGTH] + '...', MAX_TEXT_LENGTH))
    if text.startswith('-'):
        raise ValueError('timestamp %r must not be negative' % text)
    if not _DECIMAL_RE.match(text):
        raise ValueError('timestamp %r is not a decimal number of seconds'
                         % text)
    return _ticks_from_decimal(decimal.Decimal(text), text)


def _ticks_from_number(number):
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError('timestamp %r is not a finite number' % number)
    if number < 0:
        raise ValueError('timestamp %r must not be negative' % number)
    # NOTE: repr() is the shortest text that reads back as the same float,
    # so 0.1 becomes exactly 0.10000, not 0.1000000000000000055...
    return _ticks_from_decimal(decimal.Decimal(repr(number)), number)


def _ticks_from(value):
    if isinstance(value, Timestamp):
        return value._ticks
    if isinstance(value, bytes):
        value = value.decode('ascii', 'replace')
    if isinstance(value, str):
        return _ticks_from_str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _ticks_from_number(value)
    raise ValueError('timestamp must be a str or a number, not %s'
                     % type(value).__name__)


def _format(ticks):
    return '%010d.%0*d' % (ticks // TICKS_PER_SECOND, PRECISION,
                           ticks % TICKS_PER_SECOND)


@functools.total_ordering
class Timestamp:
    """An immutable, ordered point in time with 10 microsecond resolution.

    ``Timestamp('1700000000.12345')``, ``Timestamp(1700000000.12345)`` and
    ``Timestamp(other_timestamp)`` are accepted. Anything else -- negative,
    not a number, NaN or infinite, longer than 32 characters, or beyond
    ``9999999999.99999`` -- raises :class:`ValueError` whose message can be
    shown to the client that sent it.
    """

    __slots__ = ('_ticks',)

    def __init__(self, value):
        self._ticks = _ticks_from(value)

    @classmethod
    def now(cls, clock=time.time):
        return cls(clock())

    @property
    def ticks(self):
        """The value in 10 microsecond ticks."""
        return self._ticks

    def later(self, ticks=1):
        """This timestamp ``ticks`` ticks later: a write that must win
        over this one and lose to any real later write (the reconciler's
        copies and tombstones)."""
        return Timestamp(_format(self._ticks + ticks))

    @property
    def normal(self):
        """The sixteen-character text form, e.g. ``'1700000000.12345'``."""
        return _format(self._ticks)

    def __float__(self):
        return self._ticks / TICKS_PER_SECOND

    def __str__(self):
        return self.normal

    def __repr__(self):
        return 'Timestamp(%r)' % self.normal

    def __hash__(self):
        return hash(self._ticks)

    def __eq__(self, other):
        if not isinstance(other, Timestamp):
            return NotImplemented
        return self._ticks == other._ticks

    def __lt__(self, other):
        if not isinstance(other, Timestamp):
            return NotImplemented
        return self._ticks < other._ticks
