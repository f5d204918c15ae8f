"""Writing the objects of one sync stream into one partition.

One code path for every replicated write, whoever received it: the node
server for a push (``PUT /object-sync/<dev>/<part>``) and the lock
holder for what it pulled from a peer (``POST .../pull``) both hand the
stream's :class:`~coordsync.obj.syncstream.StreamReader` to
:func:`receive`.

Each object is checked against what is stored before its body is
written (a version not newer than the stored one is skipped unread:
409), its body goes to a temporary file and is checked against its
``ETag`` and length (422 if it does not match), and nothing is visible
yet. Only once the whole stream was read and its signature matched
(``END``), and ``admit()`` still lets the caller write (its fencing
token is still the newest), are the files published together:
:meth:`~coordsync.obj.diskfile.DiskFileManager.publish_batch` makes the
batch durable with one filesystem sync for the data and one for the
directories, instead of several fsyncs per object. A stream cut, altered
or replayed leaves nothing visible: every temporary file is removed.
"""

import dataclasses
import time

from coordsync import concurrency
from coordsync import exceptions
from coordsync.common import timestamp
from coordsync.obj import layout
from coordsync.obj import streams
from coordsync.obj import syncstream

# Per-object results, as HTTP statuses.
STORED, NOT_NEWER, BAD_BODY, BAD_OBJECT = 201, 409, 422, 400
# Small objects are written this many (or this many bytes) per thread
# hop: one hop per object would leave the disk idle between objects.
BATCH_OBJECTS = 128
BATCH_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass
class Received:
    """What :func:`receive` did: a status per object name, and totals."""

    results: dict
    stored: int = 0
    bytes_stored: int = 0
    # Seconds spent making the batch durable and visible.
    publish_seconds: float = 0.0


def split_name(name):
    """``/a/c/o`` -> ``(a, c, o)``, or ValueError (one line): the names
    the object API accepts, no others."""
    return layout.split_object_name(name)


def _stored_version(df):
    """``(timestamp, is_tombstone)`` of the stored version, or None."""
    try:
        return timestamp.Timestamp(df.read_metadata()['X-Timestamp']), False
    except exceptions.DiskFileDeleted as err:
        return err.timestamp, True
    except (exceptions.DiskFileNotFound, exceptions.DiskFileCorrupt):
        # NOTE: a damaged stored copy was quarantined as it was read:
        # the one received replaces it.
        return None


def _is_newer(new, tombstone, stored):
    """Would a version at ``new`` win over ``stored``? A tombstone wins
    a tie with data, as on disk."""
    if stored is None:
        return True
    when, stored_tombstone = stored
    if new != when:
        return new > when
    return tombstone and not stored_tombstone


def _start(manager, device, partition, frame):
    """The writer of a frame's object, or a status to answer with."""
    metadata = dict(frame.metadata)
    a, c, o = split_name(metadata['name'])
    df = manager.diskfile(device, partition, a, c, o)
    when = timestamp.Timestamp(metadata['X-Timestamp'])
    tombstone = frame.kind == 'DEL'
    if not _is_newer(when, tombstone, _stored_version(df)):
        return NOT_NEWER
    if tombstone:
        return streams.DiskFileWriter(
            df, streams.tombstone_metadata(metadata['name'], when),
            tombstone=True)
    metadata['Content-Length'] = str(frame.length)
    return df.writer(metadata)


@dataclasses.dataclass
class _Small:
    """A frame whose body was read whole: what ``_start`` needs."""

    kind: str
    metadata: dict
    length: int
    body: bytes


def _write_many(manager, device, partition, smalls):
    """Start, write and seal small objects in one thread hop:
    ``[(name, Sealed or status)]``. On a disk error the files sealed
    here are removed before it is raised."""
    done = []
    try:
        for small in smalls:
            name = small.metadata['name']
            try:
                writer = _start(manager, device, partition, small)
                if isinstance(writer, int):
                    done.append((name, writer))
                    continue
                with writer:
                    if small.body:
                        writer.write(small.body)
                    done.append((name, writer.seal()))
            except exceptions.DiskFileMismatch:
                done.append((name, BAD_BODY))
            except exceptions.DiskFileError:
                raise
            except ValueError:
                done.append((name, BAD_OBJECT))
    except BaseException:
        for _name, outcome in done:
            if not isinstance(outcome, int):
                outcome.discard()
        raise
    return done


class _Batches:
    """Small objects written a batch at a time in the thread pool while
    the next batch is read off the stream (one batch in flight)."""

    def __init__(self, manager, device, partition, results, sealed,
                 max_count=BATCH_OBJECTS, max_bytes=BATCH_BYTES):
        self._args = (manager, device, partition)
        self._results = results
        self._sealed = sealed
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._pending = []
        self._bytes = 0
        self._writing = None

    def add(self, small):
        self._pending.append(small)
        self._bytes += small.length
        if (len(self._pending) >= self._max_count
                or self._bytes >= self._max_bytes):
            self.flush()

    def flush(self):
        """Hand the pending objects to the thread pool (after the batch
        in flight is done)."""
        self.wait()
        if self._pending:
            batch, self._pending, self._bytes = self._pending, [], 0
            self._writing = concurrency.spawn(
                concurrency.run_in_thread, _write_many, *self._args, batch)

    def wait(self):
        """Wait for the batch in flight; record what it did."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        for name, outcome in writing.wait():
            if isinstance(outcome, int):
                self._results[name] = outcome
            else:
                self._sealed.append(outcome)

    def abandon(self):
        """After an error: let the batch in flight end, keep its files
        for the caller to discard."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - the first error is raised
            pass


def receive(manager, device, partition, reader, admit=None,
            small=streams.CHUNK_SIZE):
    """Write the objects of ``reader`` (a StreamReader) into ``partition``
    of ``device``; return a :class:`Received`.

    ``admit()`` is called once the stream is verified, right before the
    objects are published; it raises to stop (a fencing check). Raises
    StreamError for a bad stream, DiskFileError for a disk that cannot
    take it; nothing of the stream is visible then, unless the disk
    failed in the middle of publishing (some objects were renamed into
    place; newest wins, so they are as good as any).
    """
    results = {}
    sealed = []
    batches = _Batches(manager, device, partition, results, sealed)
    try:
        for frame in reader:
            if frame.length <= small:
                batches.add(_Small(frame.kind, dict(frame.metadata),
                                   frame.length, b''.join(frame.chunks())))
                continue
            batches.flush()
            batches.wait()
            name = frame.metadata['name']
            try:
                outcome = _write_large(manager, device, partition, frame)
            except exceptions.DiskFileMismatch:
                outcome = BAD_BODY
            except ValueError as err:
                if isinstance(err, syncstream.StreamError):
                    raise
                outcome = BAD_OBJECT
            if isinstance(outcome, int):
                frame.skip()
                results[name] = outcome
            else:
                sealed.append(outcome)
        batches.flush()
        batches.wait()
        if admit is not None:
            admit()
        publishing = time.monotonic()
        published = concurrency.run_in_thread(
            manager.publish_batch, device, partition, sealed)
        publish_seconds = time.monotonic() - publishing
    except BaseException:
        batches.abandon()
        for one in sealed:
            one.discard()
        raise
    received = Received(results, publish_seconds=publish_seconds)
    for one, conflict in zip(sealed, published, strict=True):
        name = one.metadata['name']
        if conflict is None:
            results[name] = STORED
            received.stored += 1
            received.bytes_stored += int(one.metadata.get('Content-Length',
                                                          0))
        else:
            results[name] = NOT_NEWER
    return received


def _write_large(manager, device, partition, frame):
    """Stream a large body to its temporary file chunk by chunk."""
    writer = concurrency.run_in_thread(_start, manager, device, partition,
                                       frame)
    if isinstance(writer, int):
        return writer
    with writer:
        for chunk in frame.chunks():
            concurrency.run_in_thread(writer.write, chunk)
        return concurrency.run_in_thread(writer.seal)
