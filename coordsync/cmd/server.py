"""coordsync-server: one node's process.

It serves the node API on ``bind_ip:bind_port``, joins the coordination
group (heartbeating, reconnecting after outages), and stops cleanly on
SIGTERM or SIGINT: held locks released, group left at once rather than
after the session timeout.
"""

import sys

from coordsync import concurrency
from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.common import daemon
from coordsync.common import fencing
from coordsync.common import storage_policy
from coordsync.common import wsgi
from coordsync.obj import server

DESCRIPTION = ('Run one node: serve its objects, containers and accounts '
               'to the other nodes, and run its configured workers in the '
               'coordination group.')


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-server',
                                   description=DESCRIPTION)
    try:
        # NOTE: a node declaring a policy it has no ring for would serve
        # objects no replicator can place. Without declarations (policy
        # 0 only) the ring is read by the workers that place objects,
        # as before policies.
        if storage_policy.policy_sections(conf):
            storage_policy.from_conf(conf).check_rings()
        app = server.NodeServer(conf)
        app.open()
    except (exceptions.ConfigError, fencing.TokenStoreError) as err:
        print('coordsync-server: error: %s' % err, file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    services = [wsgi.WSGIService(conf, app)]
    try:
        coordinator, workers = daemons.make_workers(
            conf, conf.server.workers, roles=['server'])
    except exceptions.CoordsyncError as err:
        print('coordsync-server: error: %s' % err, file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    if not workers:
        coordinator.devices = app.manager.devices()
    # NOTE: token-less replication writes are refused into a partition
    # whose lock another member holds, as far as this node can tell.
    app.lock_holder = coordinator.lock_holder
    # NOTE: /healthcheck fails when coordination is out of reach too long.
    app.coordinator = coordinator
    try:
        return daemon.run_workers(conf, coordinator, workers, services)
    except OSError as err:
        print('coordsync-server: error: cannot listen on %s:%s: %s'
              % (conf.bind_ip, conf.bind_port, err.strerror or err),
              file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
