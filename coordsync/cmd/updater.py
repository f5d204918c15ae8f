"""coordsync-object-updater: the object updater of one node.

    coordsync-object-updater --config-file F [--once] [--wait-for-peers]
                             [--devices d1,d2]

It joins the coordination group as an ``object-updater`` member of this
node, then sweeps the async pendings of its devices, of every storage
policy (see :mod:`coordsync.container.updater`), until SIGTERM, or once
with ``--once``. Exit status of ``--once``: 0 when every device was
swept, 1 when some failed, 2 on a bad config or ring. Pendings left for
a container replica still down are not a failure: the next sweep
retries.
"""

import sys

from oslo_config import cfg

from coordsync.cmd import replicator as replicator_cmd

NAME = 'object-updater'
DESCRIPTION = ('Send the container updates that object writes on this '
               'node left pending (async pendings) to the container '
               'servers.')

CLI_OPTS = [
    cfg.BoolOpt('once', default=False, help='Run one sweep and exit.'),
    cfg.BoolOpt('wait-for-peers', default=False,
                help='With --once: first wait (up to a session timeout) '
                     'until every node in the ring has an updater in the '
                     'group.'),
    # NOTE: dest differs from the option name: [DEFAULT] devices exists.
    cfg.ListOpt('devices', dest='override_devices', default=[],
                metavar='DEV[,DEV...]',
                help='Sweep only these devices of this node, by name '
                     '(e.g. sdb,sdc); default: all of them.'),
]


def filters(conf):
    return {'devices': set(conf.override_devices)}


def main(argv=None):
    return replicator_cmd.run_worker(NAME, 'coordsync-object-updater', argv,
                                     CLI_OPTS, filters,
                                     description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
