"""Many objects in one HTTP body, signed as a whole: the sync stream.

Replication moves the objects of a partition between two nodes in one
long request (or response) body, like Swift's ssync, instead of one
request per object: the cost of a request is paid once per partition.
That body has to be framed so that the receiver knows exactly where each
object starts and ends, and signed so that a body cut short, altered,
extended or replayed from another request is refused.

Wire format, version 1::

    stream = b"COORDSYNC-STREAM 1\\n" frame* end
    frame  = obj | del
    obj    = b"OBJ " meta_len b" " body_len b"\\n" meta body
    del    = b"DEL " meta_len b" 0\\n" meta
    end    = b"END " count b" " hmac_hex b"\\n"

The numbers are ASCII decimal without sign or leading zero, at most 19
digits; ``meta_len`` is 1 to :data:`MAX_META_LENGTH`, ``body_len`` 0 to
:data:`MAX_BODY_LENGTH` and ``count`` is the number of frames. A frame
line or the END line is at most :data:`MAX_LINE_LENGTH` bytes. ``meta``
is a UTF-8 JSON object of strings with at least ``name`` and
``X-Timestamp``; an OBJ frame's ``Content-Length`` is its body length, a
DEL frame (a tombstone) has none. Nothing may follow the END line.

``hmac_hex`` is the lowercase hex HMAC-SHA256, keyed with the cluster
secret, of the caller's ``seed`` followed by every byte of the stream
from the header up to and including ``b"END <count> "``. The seed binds
the stream to one request (the request's signature and the direction),
so a stream replayed under another request does not verify.

The signature can only be checked at the end, so everything a
:class:`StreamReader` yields is unverified until its iteration ends
without error (``reader.verified``). A receiver writes each body to a
temporary file and publishes none of them before END has been verified;
any :class:`StreamError` means: discard everything received.

The reader never asks its source for more bytes than the element it is
reading (header, frame line, metadata, body, END line) can still hold,
so the bytes of one object can never be taken as part of another, and it
reads from ``wsgi.input`` or an HTTP response directly. After END it
reads one more byte, which must not exist.
"""

import hashlib
import hmac
import json

from coordsync import exceptions

MAGIC = b'COORDSYNC-STREAM 1\n'
MAX_META_LENGTH = 65536
MAX_BODY_LENGTH = 5 * 2 ** 30 + 2 ** 20
MAX_LINE_LENGTH = 128
MAX_DIGITS = 19
DEFAULT_CHUNK_SIZE = 65536

OBJ = 'OBJ'
DEL = 'DEL'

_MAGIC_PREFIX = b'COORDSYNC-STREAM '
_KEYWORDS = {b'OBJ ': OBJ, b'DEL ': DEL, b'END ': 'END'}
_HEX_DIGITS = b'0123456789abcdef'
_HMAC_HEX_LENGTH = 64
# The shortest possible line: b'OBJ 1 0\n'.
_SHORTEST_LINE = 8


class StreamError(exceptions.CoordsyncError, ValueError):
    """A sync stream is malformed, truncated, extended or not signed.

    The message is one line saying what and where, e.g. ``stream
    truncated in the body of frame 3 (/a/c/o)``; frames are numbered from
    0, as :attr:`Frame.index`.
    """


def _new_mac(key, seed):
    if not isinstance(key, bytes) or not isinstance(seed, bytes):
        raise TypeError('key and seed must be bytes')
    if not key:
        # An empty secret would let anyone sign a stream.
        raise ValueError('key must not be empty')
    return hmac.new(key, seed, hashlib.sha256)


def _check_chunk_size(chunk_size):
    if (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
            or chunk_size < 1):
        raise ValueError('chunk_size must be a positive integer')


def _printable(text, limit=200):
    """``text`` on one line, for an error message."""
    text = ''.join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    if len(text) > limit:
        text = text[:limit] + '...'
    return text


def _is_utf8(text):
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def _metadata_problem(metadata, kind, length):
    """What is wrong with a frame's metadata, or None."""
    if not isinstance(metadata, dict):
        return 'metadata is not an object'
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return 'metadata %s is not a string' % _printable(repr(key))
        if not _is_utf8(key) or not _is_utf8(value):
            return 'metadata %s is not valid UTF-8' % _printable(repr(key))
    for required in ('name', 'X-Timestamp'):
        if required not in metadata:
            return 'metadata has no %s' % required
    content_length = metadata.get('Content-Length')
    if content_length is None:
        return None
    if kind == DEL:
        return 'tombstone metadata has a Content-Length'
    if content_length != str(length):
        return 'Content-Length %s is not the body length %d' % (
            _printable(content_length, 40), length)
    return None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    # The last of two values would win silently; the encoder never
    # sends two.
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def encode(entries, key, seed, chunk_size=DEFAULT_CHUNK_SIZE):
    """The pieces (bytes) of one sync stream carrying ``entries``.

    ``entries`` is an iterable of ``(metadata, length, chunks)``:
    ``chunks`` None makes a DEL frame (a tombstone; ``length`` is
    ignored), otherwise an OBJ frame of ``length`` bytes that the chunks
    (bytes) must add up to exactly, else :class:`StreamError` is raised
    before any byte beyond ``length`` is yielded. Whoever sends the
    pieces must then abort the request, so that the receiver sees a
    truncated stream. ``key`` is the cluster secret, ``seed`` binds the
    stream to its request (see the module's docstring).

    Body chunks of at least ``chunk_size`` bytes are yielded as given,
    never joined; the small pieces (header, frame lines, metadata, small
    chunks) are gathered into pieces of about ``chunk_size`` bytes, so
    that many small objects do not cost one write each. Empty chunks are
    dropped: an empty piece ends a chunked HTTP body.
    """
    _check_chunk_size(chunk_size)
    mac = _new_mac(key, seed)
    pending = bytearray(MAGIC)
    mac.update(MAGIC)
    count = 0
    for index, (metadata, length, chunks) in enumerate(entries):
        meta, length = _frame_metadata(index, metadata, length, chunks)
        kind = DEL if chunks is None else OBJ
        meta_bytes = json.dumps(meta, ensure_ascii=False, sort_keys=True,
                                separators=(',', ':')).encode('utf-8')
        if len(meta_bytes) > MAX_META_LENGTH:
            raise StreamError('metadata of object %d (%s) is %d bytes, more'
                              ' than %d' % (index, _printable(meta['name']),
                                            len(meta_bytes),
                                            MAX_META_LENGTH))
        line = b'%s %d %d\n' % (kind.encode('ascii'), len(meta_bytes),
                                length)
        mac.update(line)
        mac.update(meta_bytes)
        pending += line
        pending += meta_bytes
        if chunks is not None:
            sent = 0
            for chunk in chunks:
                if not isinstance(chunk, (bytes, bytearray)):
                    raise StreamError(
                        'body of object %d (%s) has a %s chunk, not bytes'
                        % (index, _printable(meta['name']),
                           type(chunk).__name__))
                if not chunk:
                    continue
                sent += len(chunk)
                if sent > length:
                    raise StreamError(
                        'body of object %d (%s) is longer than its %d bytes'
                        % (index, _printable(meta['name']), length))
                mac.update(chunk)
                if pending and len(pending) + len(chunk) > chunk_size:
                    yield bytes(pending)
                    pending = bytearray()
                if len(chunk) >= chunk_size:
                    yield chunk
                else:
                    pending += chunk
            if sent != length:
                raise StreamError(
                    'body of object %d (%s) ended after %d of its %d bytes'
                    % (index, _printable(meta['name']), sent, length))
        if len(pending) >= chunk_size:
            yield bytes(pending)
            pending = bytearray()
        count += 1
    end = b'END %d ' % count
    mac.update(end)
    pending += end
    pending += mac.hexdigest().encode('ascii') + b'\n'
    yield bytes(pending)


def _frame_metadata(index, metadata, length, chunks):
    """The metadata and body length to send for one entry."""
    if not isinstance(metadata, dict):
        raise StreamError('metadata of object %d is not a dict' % index)
    name = metadata.get('name')
    where = 'object %d (%s)' % (
        index, _printable(name) if isinstance(name, str) else '?')
    if chunks is None:
        kind = DEL
        length = 0
        meta = {k: v for k, v in metadata.items() if k != 'Content-Length'}
    else:
        kind = OBJ
        if (not isinstance(length, int) or isinstance(length, bool)
                or not 0 <= length <= MAX_BODY_LENGTH):
            raise StreamError('%s: body length %r is not 0 to %d'
                              % (where, length, MAX_BODY_LENGTH))
        meta = dict(metadata)
        content_length = meta.setdefault('Content-Length', str(length))
        if isinstance(content_length, str) and content_length != str(length):
            raise StreamError('%s: Content-Length %s is not the body length'
                              ' %d' % (where, _printable(content_length, 40),
                                       length))
    problem = _metadata_problem(meta, kind, length)
    if problem:
        raise StreamError('%s: %s' % (where, problem))
    return meta, length


class Frame:
    """One object (``kind`` OBJ) or tombstone (DEL) of a sync stream.

    Its body must be read with :meth:`chunks`, or dropped with
    :meth:`skip`, before the next frame is asked for; otherwise the
    reader skips the rest itself, and :meth:`chunks` then refuses to go
    on rather than return a short body.
    """

    def __init__(self, reader, kind, metadata, length, index):
        self.kind = kind
        self.metadata = metadata
        self.length = length
        self.index = index
        self._reader = reader
        self._remaining = length
        self._skipped = False

    def __repr__(self):
        return '<Frame %d %s %s (%d bytes)>' % (
            self.index, self.kind, _printable(self.metadata['name']),
            self.length)

    def chunks(self):
        """The rest of the body, in pieces of at most ``chunk_size``."""
        while True:
            if self._skipped:
                raise RuntimeError('the body of frame %d was skipped'
                                   % self.index)
            if not self._remaining:
                return
            yield self._reader._read_body(self)

    def skip(self):
        """Read and drop the rest of the body (it is still signed)."""
        if self._remaining:
            for _chunk in self.chunks():
                pass
            self._skipped = True


class StreamReader:
    """The frames of one sync stream, read from ``read(n)``.

    ``read`` is a file's ``read``, ``wsgi.input.read`` or an HTTP
    response's ``read(amt)``: it returns at most ``n`` bytes, fewer if it
    likes, and ``b''`` at the end. Iterating yields :class:`Frame` objects
    and stops once the END line's count and signature are right and the
    source has ended; any other outcome is a :class:`StreamError`, raised
    again if iteration is resumed. Nothing yielded is to be trusted
    before then: see the module's docstring.

    ``count`` is the number of frames read so far; ``verified`` becomes
    True only once END has been verified.
    """

    def __init__(self, read, key, seed, chunk_size=DEFAULT_CHUNK_SIZE):
        _check_chunk_size(chunk_size)
        self._read = read
        self._mac = _new_mac(key, seed)
        self.chunk_size = chunk_size
        self.count = 0
        self.verified = False
        # The stream's own signature (hex), once END matched.
        self.signature = None
        self._error = None
        self._frames = self._parse()

    def __iter__(self):
        return self

    def __next__(self):
        if self._error is not None:
            raise StreamError(self._error)
        try:
            return next(self._frames)
        except StopIteration:
            raise
        except BaseException:
            # Whatever stopped the parser, the stream must not look
            # finished to whoever iterates again.
            if self._error is None:
                self._error = 'stream reading was interrupted'
            raise

    def _fail(self, message):
        self._error = message
        return StreamError(message)

    def _pull(self, n):
        """Up to ``n`` (> 0) bytes from the source; b'' at its end."""
        try:
            data = self._read(n)
        except BaseException as err:
            self._error = 'stream source failed: %s' % _printable(
                '%s: %s' % (type(err).__name__, err))
            raise
        if not isinstance(data, (bytes, bytearray)):
            raise self._fail('stream source returned %s, not bytes'
                             % type(data).__name__)
        if len(data) > n:
            raise self._fail('stream source returned %d bytes when asked for'
                             ' %d' % (len(data), n))
        return data

    def _parse(self):
        self._read_header()
        while True:
            index = self.count
            kind, first, second, line = self._read_line(index)
            if kind == 'END':
                self._read_end(first, second, line)
                return
            meta_length = self._number(first, 'metadata length', 1,
                                       MAX_META_LENGTH, index)
            if kind == DEL:
                if second != b'0':
                    raise self._fail('bad frame line %d: a tombstone has no'
                                     ' body' % index)
                length = 0
            else:
                length = self._number(second, 'body length', 0,
                                      MAX_BODY_LENGTH, index)
            self._mac.update(line)
            metadata = self._read_metadata(index, kind, meta_length, length)
            frame = Frame(self, kind, metadata, length, index)
            self.count += 1
            yield frame
            frame.skip()

    def _read_header(self):
        header = b''
        while len(header) < len(MAGIC):
            data = self._pull(len(MAGIC) - len(header))
            if not data:
                raise self._fail('stream truncated in the header')
            header += data
            if not MAGIC.startswith(header):
                if (len(header) > len(_MAGIC_PREFIX)
                        and header.startswith(_MAGIC_PREFIX)):
                    raise self._fail('unsupported stream version')
                raise self._fail('not a sync stream (bad header)')
        self._mac.update(header)

    def _read_line(self, index):
        """A frame or END line: (kind, first field, second field, line).

        Each read asks for the fewest bytes that can still complete a
        valid line, so that a valid line is never read past its newline.
        """
        line = bytearray()
        kind = None
        need = _SHORTEST_LINE
        while True:
            data = self._pull(need)
            if not data:
                if not line:
                    raise self._fail('stream truncated before END (after %d'
                                     ' frames)' % index)
                if kind == 'END':
                    raise self._fail('stream truncated in the END line')
                raise self._fail('stream truncated in frame line %d' % index)
            line += data
            if kind is None and len(line) >= 4:
                kind = _KEYWORDS.get(bytes(line[:4]))
                if kind is None:
                    raise self._fail('unknown frame kind %s in frame line %d'
                                     % (_printable(repr(bytes(line[:4]))),
                                        index))
            newline = line.find(b'\n')
            if newline >= 0:
                break
            need = _line_need(line, kind)
            if len(line) + need > MAX_LINE_LENGTH:
                raise self._fail('%s too long' % self._line_name(kind, index))
        fields = bytes(line[4:newline]).split(b' ')
        if newline != len(line) - 1 or kind is None or len(fields) != 2:
            raise self._fail('bad %s' % self._line_name(kind, index))
        return kind, fields[0], fields[1], bytes(line)

    @staticmethod
    def _line_name(kind, index):
        return 'END line' if kind == 'END' else 'frame line %d' % index

    def _number(self, text, what, low, high, index):
        if problem := _number_problem(text, low, high):
            raise self._fail('bad frame line %d: %s %s' % (
                index, what, problem))
        return int(text)

    def _read_metadata(self, index, kind, meta_length, length):
        raw = bytearray()
        while len(raw) < meta_length:
            data = self._pull(min(self.chunk_size, meta_length - len(raw)))
            if not data:
                raise self._fail('stream truncated in the metadata of frame'
                                 ' %d' % index)
            self._mac.update(data)
            raw += data
        try:
            metadata = json.loads(raw.decode('utf-8'),
                                  object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError:
            raise self._fail('metadata of frame %d is not UTF-8'
                             % index) from None
        except _DuplicateKey as err:
            raise self._fail('metadata of frame %d has a duplicate key %s'
                             % (index, _printable(repr(err.args[0])))
                             ) from None
        except (ValueError, RecursionError):
            raise self._fail('metadata of frame %d is not valid JSON'
                             % index) from None
        problem = _metadata_problem(metadata, kind, length)
        if problem:
            raise self._fail('frame %d: %s' % (index, problem))
        return metadata

    def _read_body(self, frame):
        if self._error is not None:
            raise StreamError(self._error)
        data = self._pull(min(self.chunk_size, frame._remaining))
        if not data:
            raise self._fail('stream truncated in the body of frame %d (%s)'
                             % (frame.index,
                                _printable(frame.metadata['name'])))
        self._mac.update(data)
        frame._remaining -= len(data)
        return data

    def _read_end(self, count_text, signature, line):
        if problem := _number_problem(count_text, 0, 10 ** MAX_DIGITS - 1):
            raise self._fail('bad END line: count %s' % problem)
        if (len(signature) != _HMAC_HEX_LENGTH
                or signature.translate(None, _HEX_DIGITS)):
            raise self._fail('bad END line: the signature is not %d'
                             ' lowercase hex digits' % _HMAC_HEX_LENGTH)
        count = int(count_text)
        if count != self.count:
            raise self._fail('END counts %d frames, the stream has %d'
                             % (count, self.count))
        self._mac.update(line[:len(line) - len(signature) - 1])
        expected = self._mac.hexdigest().encode('ascii')
        if not hmac.compare_digest(expected, signature):
            raise self._fail('stream signature does not match')
        if self._pull(1):
            raise self._fail('trailing bytes after END')
        self.signature = expected.decode('ascii')
        self.verified = True


def _number_problem(text, low, high):
    """What is wrong with a decimal number in a line, or None."""
    if not text:
        return 'is missing'
    if not (text.isascii() and text.isdigit()):
        return 'is not a decimal number'
    if len(text) > MAX_DIGITS:
        return 'has more than %d digits' % MAX_DIGITS
    if len(text) > 1 and text.startswith(b'0'):
        return 'has a leading zero'
    if not low <= int(text) <= high:
        return '%d is not %d to %d' % (int(text), low, high)
    return None


def _line_need(line, kind):
    """The fewest bytes that can still complete a valid line.

    ``line`` has no newline yet; ``kind`` is None until its first four
    bytes are known.
    """
    if kind is None:
        return _SHORTEST_LINE - len(line)
    first, space, second = bytes(line[4:]).partition(b' ')
    if kind == 'END':
        if not space:
            # count, space, signature, newline
            return (0 if first else 1) + 1 + _HMAC_HEX_LENGTH + 1
        return max(_HMAC_HEX_LENGTH - len(second), 0) + 1
    if not space:
        # meta_len, space, body_len, newline
        return (0 if first else 1) + 3
    return (0 if second else 1) + 1
