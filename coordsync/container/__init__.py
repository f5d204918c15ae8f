"""Container and account databases and the daemons that keep them level.

* :mod:`~coordsync.container.backend` -- the SQLite database of each
  container (its object rows) and account (its container rows), with
  Swift's merge, status and listing rules;
* :mod:`~coordsync.container.server` -- their node routes
  (``/containers``, ``/container-rows``, ``/accounts``,
  ``/account-rows``);
* :mod:`~coordsync.container.replication` and
  :mod:`~coordsync.container.replicator` -- the container and account
  replicators (``/db-sync`` routes; one lock per partition);
* :mod:`~coordsync.container.updater` -- the object updater, which
  sends the container updates object servers could not deliver.

Container sync and the reconciler are still to come, built on
:mod:`coordsync.common.worker` like these.
"""
