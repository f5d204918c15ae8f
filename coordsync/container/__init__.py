"""Container and account databases and the daemons that keep them level.

Empty for now: the container layer (SQLite databases, their server
handlers, the container replicator, container sync and the reconciler)
is built on :mod:`coordsync.common.worker` like the object replicator.
"""
