"""coordsync-reconciler: moves misplaced objects into their container's
storage policy, one node.

    coordsync-reconciler --config-file F [--once] [--wait-for-peers]
                         [--devices d1,d2] [--partitions 3,17]

It joins the coordination group as a ``reconciler`` member of this
node, then, pass after pass, works the queue containers of the
``.misplaced_objects`` account that have a replica here with rows and
whose lock (``coordsync/reconcile/<queue container>``) it gets (see
:mod:`coordsync.reconciler.daemon`), until SIGTERM, or one pass with
``--once``. ``--devices`` and ``--partitions`` limit the container
ring devices and partitions whose queue containers it looks at. Exit
status of ``--once``: 0 when every queue container was worked without
error (entries whose source is not there yet stay queued, and are no
error), 1 when some failed (their errors are in the log and in
``coordsync-status --reconciler``), 2 on a bad config or ring (a
storage policy's missing object ring included).
"""

import sys

from coordsync.cmd import replicator as replicator_cmd

NAME = 'reconciler'
DESCRIPTION = ('Move objects written under the wrong storage policy into '
               'their container\'s policy, from the .misplaced_objects '
               'queue.')


def main(argv=None):
    return replicator_cmd.run_worker(NAME, 'coordsync-reconciler', argv,
                                     description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
