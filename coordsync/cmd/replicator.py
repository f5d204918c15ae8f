"""coordsync-replicator: the coordinated object replicator of one node.

    coordsync-replicator --config-file F [--once] [--wait-for-peers]
                         [--devices d1,d2] [--partitions 3,17]

It joins the coordination group as an ``object-replicator`` member of
this node, then runs passes (see :mod:`coordsync.obj.replicator`) over
the partitions of every storage policy until SIGTERM, or one pass with
``--once``; ``--partitions`` picks those partitions in every policy.
Exit status of ``--once``: 0 when every partition was replicated, 1 when
some failed, 2 on a bad config or ring (any policy's ring missing or
unreadable).
"""

import sys

from oslo_config import cfg

from coordsync import concurrency
from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.common import daemon

NAME = 'object-replicator'
DESCRIPTION = ('Replicate the object partitions of this node, sharing '
               'the work with the other nodes through distributed locks.')

CLI_OPTS = [
    cfg.BoolOpt('once', default=False, help='Run one pass and exit.'),
    cfg.BoolOpt('wait-for-peers', default=False,
                help='With --once: first wait (up to a session timeout) '
                     'until every node in the ring has a replicator in '
                     'the group, so runs started together on several '
                     'nodes plan alike.'),
    # NOTE: dest differs from the option name: [DEFAULT] devices exists.
    cfg.ListOpt('devices', dest='override_devices', default=[],
                metavar='DEV[,DEV...]',
                help='Work only on these devices of this node, by name '
                     '(e.g. sdb,sdc); default: all of them.'),
    cfg.ListOpt('partitions', dest='override_partitions', default=[],
                item_type=cfg.types.Integer(min=0),
                metavar='PART[,PART...]',
                help='Work only on these partition numbers (e.g. 3,17); '
                     'default: all of them.'),
]


def filters(conf):
    return {'devices': set(conf.override_devices),
            'partitions': set(conf.override_partitions)}


def run_worker(name, prog, argv=None, cli_opts=None, make_filters=None,
               description=None):
    """Run worker ``name`` as command ``prog`` (one pass with
    ``--once``); its exit status. The object replicator's options and
    filters unless others are given (every worker command has
    ``--once`` and ``--wait-for-peers``); ``description`` is the one
    sentence --help starts with."""
    concurrency.monkey_patch()
    conf = service.prepare_service(
        argv, prog=prog, description=description,
        cli_opts=CLI_OPTS if cli_opts is None else cli_opts)
    try:
        coordinator, (worker,) = daemons.make_workers(conf, [name])
    except exceptions.CoordsyncError as err:
        print('%s: error: %s' % (prog, err), file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    chosen = (make_filters or filters)(conf)
    if conf.once:
        return daemon.run_once(conf, worker, chosen, conf.wait_for_peers)
    return daemon.run_workers(conf, coordinator, [worker], filters=chosen)


def main(argv=None):
    return run_worker(NAME, 'coordsync-replicator', argv,
                      description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
