"""An object's body streamed to and from disk, one chunk at a time."""

import dataclasses
import errno
import hashlib
import os
import tempfile

from coordsync import exceptions
from coordsync.common import timestamp
from coordsync.obj import fileformat
from coordsync.obj import layout

CHUNK_SIZE = 65536
DEFAULT_CONTENT_TYPE = 'application/octet-stream'


def _as_text(key, value):
    if isinstance(value, timestamp.Timestamp):
        return value.normal
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(key, str) or not isinstance(value, str):
        raise ValueError('metadata %r: keys and values must be strings'
                         % (key,))
    return value


def new_metadata(metadata, name):
    """What to store for a new version of ``name``, or ValueError.

    ``X-Timestamp`` is required. ``Content-Length`` and ``ETag``, if given,
    are what the body must match; the stored ones are computed.
    """
    clean = {key: _as_text(key, value) for key, value in metadata.items()}
    if clean.setdefault('name', name) != name:
        raise ValueError('metadata name %r is not %r' % (clean['name'], name))
    if 'X-Timestamp' not in clean:
        raise ValueError('X-Timestamp is required')
    clean['X-Timestamp'] = timestamp.Timestamp(clean['X-Timestamp']).normal
    length = clean.get('Content-Length')
    if length is not None and not (length.isascii() and length.isdigit()):
        raise ValueError('Content-Length %r is not a number' % length)
    clean.setdefault('Content-Type', DEFAULT_CONTENT_TYPE)
    return clean


def tombstone_metadata(name, when):
    return {'name': name, 'X-Timestamp': timestamp.Timestamp(when).normal}


def disk_error(err, what):
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return exceptions.DiskFileNoSpace('%s: %s' % (what, err))
    return exceptions.DiskFileError('%s: %s' % (what, err))


class DiskFileWriter:
    """A new version of an object, streamed to a temporary file::

        with diskfile.writer(metadata) as writer:
            for chunk in body:
                writer.write(chunk)
            writer.commit()

    Nothing is visible until :meth:`commit` returns. Leaving the block
    without it, or any error, removes the temporary file; a crash leaves
    it in ``<device>/tmp``, which is never read as an object.
    """

    def __init__(self, diskfile, metadata, tombstone=False):
        self._diskfile = diskfile
        self._tombstone = tombstone
        self._metadata = dict(metadata)
        length = self._metadata.pop('Content-Length', None)
        self._expected_length = None if length is None else int(length)
        etag = self._metadata.pop('ETag', None)
        self._expected_etag = etag and etag.strip('"').lower()
        self._json_length = self._reserve()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._length = 0
        self._committed = False
        self._fd = None
        self._tmp_path = None
        self._open_tmp()

    def _reserve(self):
        # NOTE: a data file's ETag and length are filled in after the body;
        # their room is kept now, the body is never copied to make room.
        size = (len(fileformat.encode_metadata(self._metadata))
                if self._tombstone
                else fileformat.reserved_length(self._metadata))
        if size > fileformat.MAX_METADATA_LENGTH:
            raise ValueError('metadata too large: %d bytes' % size)
        return size

    def _open_tmp(self):
        tmp_dir = self._diskfile.tmp_dir
        try:
            try:
                self._fd, self._tmp_path = tempfile.mkstemp(dir=tmp_dir,
                                                            suffix='.tmp')
            except FileNotFoundError:
                # NOTE: made on first use only: a mkdir that finds the
                # directory there costs as much as creating a file.
                os.makedirs(tmp_dir, exist_ok=True)
                self._fd, self._tmp_path = tempfile.mkstemp(dir=tmp_dir,
                                                            suffix='.tmp')
            header = fileformat.header_line(self._json_length)
            self._header_length = len(header)
            self._write_all(header + b' ' * self._json_length)
        except OSError as err:
            self.close()
            raise disk_error(err, 'cannot start writing in %s'
                              % tmp_dir) from err

    def _write_all(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def write(self, chunk):
        """Append ``chunk`` (bytes-like) to the body."""
        if self._fd is None:
            raise ValueError('writer is closed')
        if self._tombstone:
            raise ValueError('a tombstone has no body')
        chunk = memoryview(chunk)
        self._length += chunk.nbytes
        expected = self._expected_length
        if expected is not None and self._length > expected:
            raise exceptions.DiskFileMismatch(
                'body longer than Content-Length %s' % expected,
                'Content-Length')
        self._md5.update(chunk)
        try:
            self._write_all(chunk)
        except OSError as err:
            raise disk_error(err, 'cannot write %s'
                              % self._tmp_path) from err

    def _final_metadata(self):
        if self._tombstone:
            return dict(self._metadata)
        expected = self._expected_length
        if expected is not None and self._length != expected:
            raise exceptions.DiskFileMismatch(
                'body has %d bytes, Content-Length says %d'
                % (self._length, expected), 'Content-Length')
        etag = self._md5.hexdigest()
        if self._expected_etag and etag != self._expected_etag:
            raise exceptions.DiskFileMismatch(
                'body has ETag %s, %s was given' % (etag, self._expected_etag),
                'ETag')
        return {**self._metadata, 'Content-Length': str(self._length),
                'ETag': etag}

    def commit(self):
        """Make the new version durable and visible; return its metadata.

        Raises DiskFileMismatch, or DiskFileConflict when a version at
        least as new is already stored; either way nothing changes.
        """
        metadata = self._finish(durable=True)
        self._diskfile.publish(self._tmp_path, self._object_file(metadata))
        self._committed = True
        return metadata

    def seal(self):
        """Finish the temporary file without making it durable or
        visible, for a batch: returns a :class:`Sealed` that
        :meth:`~coordsync.obj.diskfile.DiskFileManager.publish_batch`
        publishes with others, one filesystem sync for the whole batch.

        Raises DiskFileMismatch (nothing kept). The temporary file is
        the Sealed's from now on (:meth:`Sealed.discard` removes it).
        """
        metadata = self._finish(durable=False)
        self._committed = True
        return Sealed(self._diskfile, self._tmp_path,
                      self._object_file(metadata), metadata)

    def _finish(self, durable):
        if self._fd is None:
            raise ValueError('writer is closed')
        metadata = self._final_metadata()
        data = fileformat.encode_metadata(metadata, self._json_length)
        try:
            os.pwrite(self._fd, data, self._header_length)
            if durable:
                os.fsync(self._fd)
        except OSError as err:
            raise disk_error(err, 'cannot write %s'
                              % self._tmp_path) from err
        os.close(self._fd)
        self._fd = None
        return metadata

    def _object_file(self, metadata):
        ext = layout.TOMBSTONE_EXT if self._tombstone else layout.DATA_EXT
        return layout.ObjectFile(timestamp.Timestamp(metadata['X-Timestamp']),
                                 ext)

    def close(self):
        """Forget an uncommitted write; a no-op after :meth:`commit`."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._committed and self._tmp_path is not None:
            try:
                os.unlink(self._tmp_path)
            except FileNotFoundError:
                pass
            self._tmp_path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@dataclasses.dataclass
class Sealed:
    """A finished temporary file waiting for its batch to be published."""

    diskfile: object
    tmp_path: str
    object_file: layout.ObjectFile
    metadata: dict

    def discard(self):
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass


class DiskFileReader:
    """An object's body as an iterator of chunks read as they are used.

    ``metadata``, ``content_length`` and ``timestamp`` describe the version
    opened; a newer write meanwhile does not change what is read. Reading
    to the end checks the body against its ETag and length: on mismatch
    the object is quarantined and DiskFileCorrupt raised (after the bad
    bytes were yielded, as a streamed body cannot be checked sooner).
    Close it, or use it as a context manager, when stopping early.
    """

    def __init__(self, diskfile, fp, metadata, body_offset, object_file,
                 chunk_size=CHUNK_SIZE):
        self._diskfile = diskfile
        self._fp = fp
        self._object_file = object_file
        self._chunk_size = chunk_size
        self.metadata = metadata
        self.content_length = int(metadata['Content-Length'])
        self.timestamp = object_file.timestamp
        fp.seek(body_offset)

    def __iter__(self):
        if self._fp is None:
            raise ValueError('reader is closed')
        return self._chunks()

    def _read(self):
        if self._fp is None:
            raise ValueError('reader is closed')
        try:
            return self._fp.read(self._chunk_size)
        except OSError as err:
            raise exceptions.DiskFileError(
                'cannot read %s: %s' % (self._fp.name, err)) from err

    def _chunks(self):
        md5 = hashlib.md5(usedforsecurity=False)
        length = 0
        with self:
            for chunk in iter(self._read, b''):
                md5.update(chunk)
                length += len(chunk)
                yield chunk
        if (length != self.content_length
                or md5.hexdigest() != self.metadata['ETag']):
            self._diskfile.quarantine(
                self._object_file, 'body does not match its ETag or length')

    def close(self):
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
