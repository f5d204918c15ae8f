"""coordsync-object-updater: the object updater of one node.

    coordsync-object-updater --config-file F [--once] [--wait-for-peers]
                             [--devices d1,d2]

It joins the coordination group as an ``object-updater`` member of this
node, then sweeps the async pendings of its devices (see
:mod:`coordsync.container.updater`) until SIGTERM, or once with
``--once``. Exit status of ``--once``: 0 when every device was swept, 1
when some failed, 2 on a bad config or ring. Pendings left for a
container replica still down are not a failure: the next sweep retries.
"""

import sys

from oslo_config import cfg

from coordsync import concurrency
from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.common import daemon

NAME = 'object-updater'

CLI_OPTS = [
    cfg.BoolOpt('once', default=False, help='Run one sweep and exit.'),
    cfg.BoolOpt('wait-for-peers', default=False,
                help='With --once: first wait (up to a session timeout) '
                     'until every node in the ring has an updater in the '
                     'group.'),
    # NOTE: dest differs from the option name: [DEFAULT] devices exists.
    cfg.ListOpt('devices', dest='override_devices', default=[],
                help='Only these local devices (comma separated).'),
]


def filters(conf):
    return {'devices': set(conf.override_devices)}


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-object-updater',
                                   cli_opts=CLI_OPTS)
    try:
        coordinator, (worker,) = daemons.make_workers(conf, [NAME])
    except exceptions.CoordsyncError as err:
        print('coordsync-object-updater: error: %s' % err, file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    if conf.once:
        return daemon.run_once(conf, worker, filters(conf),
                               conf.wait_for_peers)
    return daemon.run_workers(conf, coordinator, [worker],
                              filters=filters(conf))


if __name__ == '__main__':
    sys.exit(main())
