"""Container and account databases and the daemons that keep them level.

* :mod:`~coordsync.container.backend` -- the SQLite database of each
  container (its object rows) and account (its container rows), with
  Swift's merge, status and listing rules.

Still to come: their server handlers, the container replicator,
container sync and the reconciler, built on
:mod:`coordsync.common.worker` like the object replicator.
"""
