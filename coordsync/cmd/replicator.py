"""coordsync-replicator: the coordinated object replicator of one node.

    coordsync-replicator --config-file F [--once] [--devices d1,d2]
                         [--partitions 3,17]

It joins the coordination group as a ``replicator`` member of this node,
then runs passes (see :mod:`coordsync.obj.replicator`) until SIGTERM, or one
pass with ``--once``. Exit status of ``--once``: 0 when every job
succeeded, 1 when some failed, 2 on a bad config or ring.
"""

import sys

from oslo_config import cfg

from coordsync import concurrency
from coordsync import exceptions
from coordsync import service
from coordsync.common import coordination
from coordsync.common import daemon
from coordsync.obj import replicator

CLI_OPTS = [
    cfg.BoolOpt('once', default=False, help='Run one pass and exit.'),
    # NOTE: dest differs from the option name: [DEFAULT] devices exists.
    cfg.ListOpt('devices', dest='override_devices', default=[],
                help='Only these local devices (comma separated).'),
    cfg.ListOpt('partitions', dest='override_partitions', default=[],
                item_type=cfg.types.Integer(min=0),
                help='Only these partitions (comma separated).'),
]


def make_replicator(conf, roles):
    coordinator = coordination.Coordinator(conf, roles=roles)
    worker = replicator.ObjectReplicator(conf, coordinator)
    coordinator.devices = [d['device'] for d in
                           worker.ring.devices_on_node(conf.node_name)]
    return coordinator, worker


def run_once(conf, coordinator, worker):
    # NOTE: give the group a session timeout to answer; without it the
    # pass runs under the static rule, which is still safe.
    coordinator.start(wait=conf.coordination.session_timeout)
    try:
        if coordinator.healthy and not worker.wait_for_peers(
                conf.coordination.session_timeout):
            worker.log.info('Not every ring node has a replicator in the '
                            'group; planning with the ones that do')
        summary = worker.run_once(set(conf.override_devices),
                                  set(conf.override_partitions))
    finally:
        coordinator.stop()
    return 1 if summary['failed'] or summary['lockups'] else 0


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-replicator',
                                   cli_opts=CLI_OPTS)
    try:
        coordinator, worker = make_replicator(conf, ['replicator'])
    except exceptions.CoordsyncError as err:
        print('coordsync-replicator: error: %s' % err, file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    if conf.once:
        return run_once(conf, coordinator, worker)
    return daemon.run_node(conf, coordinator,
                           [replicator.ReplicatorService(worker)])


if __name__ == '__main__':
    sys.exit(main())
