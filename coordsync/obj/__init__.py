"""The object store: objects on local disks, as Swift's object server lays
them out, plus the suffix hashes replication compares.

* :mod:`~coordsync.obj.diskfile` -- the API: ``DiskFileManager`` (devices,
  partitions, suffix hashes, listings) and ``DiskFile`` (one object).
* :mod:`~coordsync.obj.streams` -- a body streamed to and from disk.
* :mod:`~coordsync.obj.fileformat` -- the bytes of one object file.
* :mod:`~coordsync.obj.layout` -- names, paths and the files of one object.
* :mod:`~coordsync.obj.hashes` -- per-partition suffix hashes and their
  cache.
* :mod:`~coordsync.obj.server` -- the object routes of the node server.
* :mod:`~coordsync.obj.repair` -- levelling the replicas of a partition.
* :mod:`~coordsync.obj.replicator` -- the coordinated object replicator.
* :mod:`~coordsync.obj.client` -- quorum object reads and writes.

Everything here blocks on disk I/O; callers in green threads run it through
:func:`coordsync.concurrency.run_in_thread`.
"""
