"""coordsync's options, declared per area.

Each area module defines ``<AREA>_GROUP`` (where it has a group),
``<AREA>_OPTS``, ``register_opts(conf)`` and ``list_opts()``. Nothing is
registered at import time: :func:`register_opts` wires every area onto the
ConfigOpts that ``main()`` creates and passes down.
"""

from coordsync.conf import auditor
from coordsync.conf import cluster
from coordsync.conf import container
from coordsync.conf import container_sync
from coordsync.conf import coordination
from coordsync.conf import db_replicator
from coordsync.conf import node
from coordsync.conf import proxy
from coordsync.conf import recon
from coordsync.conf import reconciler
from coordsync.conf import replicator
from coordsync.conf import status
from coordsync.conf import worker

AREAS = (node, cluster, coordination, worker, replicator, status,
         container, proxy)
AREAS += (db_replicator, container_sync, reconciler)
AREAS += (recon,)
AREAS += (auditor,)


def register_opts(conf):
    for area in AREAS:
        area.register_opts(conf)
