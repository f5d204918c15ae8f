"""coordsync-container-sync: container sync to other clusters, one node.

    coordsync-container-sync --config-file F [--once] [--wait-for-peers]
                             [--devices d1,d2] [--partitions 3,17]

It joins the coordination group as a ``container-sync`` member of this
node, then, pass after pass, sends the rows of the containers with
``X-Container-Sync-To`` that have a replica here and whose lock
(``coordsync/sync/<account>/<container>``) it gets (see
:mod:`coordsync.sync.daemon`), until SIGTERM, or one pass with
``--once``. Exit status of ``--once``: 0 when every container synced
without error, 1 when some failed (their errors are in the log and in
``coordsync-status --sync``), 2 on a bad config or ring.
"""

import sys

from coordsync.cmd import replicator as replicator_cmd

NAME = 'container-sync'
DESCRIPTION = ('Send the rows of containers marked X-Container-Sync-To '
               'to their peer containers in other clusters.')


def main(argv=None):
    return replicator_cmd.run_worker(NAME, 'coordsync-container-sync', argv,
                                     description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
