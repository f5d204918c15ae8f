"""The bytes of one object file: a header line, JSON metadata, the body.

::

    COORDSYNC-OBJ 1 <json-length>\\n
    <json-length bytes: a JSON object of str -> str, maybe space-padded>
    <the body: Content-Length bytes; nothing in a tombstone>

Metadata and body share one file so that one rename publishes both; there
are no extended attributes to lose on copy and no pickle to trust. The
JSON may end in spaces because a writer reserves room for the ETag and
Content-Length, known only once the body is written, and fills them in
place instead of copying the body a second time.

Required keys: ``name`` (``/account/container/object``) and
``X-Timestamp`` (equal to the file name's); a ``.data`` file also has
``Content-Length`` (equal to the body's length) and ``ETag`` (md5 hex of
the body, checked when the body is read to its end).
"""

import json
import re

from coordsync.common import timestamp

MAGIC = b'COORDSYNC-OBJ'
VERSION = 1
MAX_HEADER_LINE = 64
MAX_METADATA_LENGTH = 1 << 20
# NOTE: the widest values the writer can fill in after the body.
_RESERVED = {'ETag': 'f' * 32, 'Content-Length': '9' * 20}
_ETAG_RE = re.compile(r'[0-9a-f]{32}\Z')


class InvalidObjectFile(ValueError):
    """An object file cannot be trusted; its caller quarantines it."""


def encode_metadata(metadata, length=None):
    """``metadata`` as JSON bytes, space-padded to ``length`` if given."""
    raw = json.dumps(metadata, sort_keys=True, separators=(',', ':'))
    data = raw.encode('ascii')
    if length is None:
        return data
    if len(data) > length:
        raise ValueError('metadata needs %d bytes, %d were reserved'
                         % (len(data), length))
    return data.ljust(length, b' ')


def reserved_length(metadata):
    """Bytes to reserve for ``metadata`` once ETag and length are added."""
    return len(encode_metadata({**metadata, **_RESERVED}))


def header_line(json_length):
    return b'%s %d %d\n' % (MAGIC, VERSION, json_length)


def encode_header(metadata, json_length=None):
    """Header line plus metadata: everything in front of the body."""
    data = encode_metadata(metadata, json_length)
    return header_line(len(data)) + data


def _parse_header_line(line):
    fields = line.split(b' ')
    if (len(fields) != 3 or fields[0] != MAGIC
            or not line.endswith(b'\n')):
        raise InvalidObjectFile('not a coordsync object file')
    version, length = fields[1], fields[2][:-1]
    if not (version.isdigit() and length.isdigit()):
        raise InvalidObjectFile('malformed header %r' % line)
    if int(version) != VERSION:
        raise InvalidObjectFile('unsupported format version %s'
                                % version.decode())
    if int(length) > MAX_METADATA_LENGTH:
        raise InvalidObjectFile('metadata length %s is implausible'
                                % length.decode())
    return int(length)


def _parse_metadata(raw):
    try:
        metadata = json.loads(raw)
    except ValueError as err:
        raise InvalidObjectFile('metadata is not JSON: %s' % err) from err
    if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()):
        raise InvalidObjectFile('metadata is not an object of strings')
    return metadata


def read_header(fp):
    """Read ``(metadata, body_offset)`` from a binary file at offset 0."""
    line = fp.readline(MAX_HEADER_LINE + 1)
    length = _parse_header_line(line)
    raw = fp.read(length)
    if len(raw) != length:
        raise InvalidObjectFile('metadata truncated: %d of %d bytes'
                                % (len(raw), length))
    return _parse_metadata(raw), len(line) + length


def _check_name(name):
    parts = name.split('/', 3) if isinstance(name, str) else ()
    if len(parts) != 4 or parts[0] or not all(parts[1:]):
        raise InvalidObjectFile('bad or missing name %r' % (name,))


def _check_timestamp(metadata, file_timestamp):
    try:
        stored = timestamp.Timestamp(metadata.get('X-Timestamp'))
    except ValueError as err:
        raise InvalidObjectFile(str(err)) from err
    if stored != file_timestamp:
        raise InvalidObjectFile('X-Timestamp %s differs from file name %s'
                                % (stored.normal, file_timestamp.normal))


def _check_body(metadata, body_length, is_tombstone):
    if is_tombstone:
        if body_length:
            raise InvalidObjectFile('tombstone has %d body bytes'
                                    % body_length)
        return
    length = metadata.get('Content-Length', '')
    is_number = length.isascii() and length.isdigit()
    if not is_number or int(length) != body_length:
        raise InvalidObjectFile('Content-Length %r but %d body bytes'
                                % (length, body_length))
    if not _ETAG_RE.match(metadata.get('ETag', '')):
        raise InvalidObjectFile('bad or missing ETag')


def check_metadata(metadata, file_timestamp, is_tombstone, body_length):
    """Raise :class:`InvalidObjectFile` unless the file is consistent."""
    _check_name(metadata.get('name'))
    _check_timestamp(metadata, file_timestamp)
    _check_body(metadata, body_length, is_tombstone)
