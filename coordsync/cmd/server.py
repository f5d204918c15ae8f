"""coordsync-server: one node's process.

It joins the coordination group, keeps heartbeating (reconnecting after
outages), and stops cleanly on SIGTERM or SIGINT: held locks released,
group left at once rather than after the session timeout.
"""

import sys

from coordsync import concurrency
from coordsync import coordination
from coordsync import daemon
from coordsync import service


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-server')
    coordinator = coordination.Coordinator(conf, roles=['server'])
    return daemon.run_node(conf, coordinator)


if __name__ == '__main__':
    sys.exit(main())
