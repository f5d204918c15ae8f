"""coordsync-account-replicator: the coordinated account replicator
of one node.

    coordsync-account-replicator --config-file F [--once]
        [--wait-for-peers] [--devices d1,d2] [--partitions 3,17]

It joins the coordination group as an ``account-replicator`` member of
this node, then runs passes (see :mod:`coordsync.container.replicator`)
until SIGTERM, or one pass with ``--once``. Exit status of ``--once``:
0 when every partition was replicated, 1 when some failed, 2 on a bad
config or ring. The options are those of coordsync-replicator.
"""

import sys

from coordsync.cmd import replicator as replicator_cmd

NAME = 'account-replicator'
DESCRIPTION = ('Replicate the account databases of this node, sharing '
               'the work with the other nodes through distributed locks.')


def main(argv=None):
    return replicator_cmd.run_worker(
        NAME, 'coordsync-account-replicator', argv,
        description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
