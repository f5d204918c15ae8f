"""Running a node process until it is told to stop."""

import signal

from oslo_log import log as logging

from coordsync import concurrency

LOG = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT; polled by the main green thread.

    NOTE: a signal handler runs inside whatever green thread was active,
    often the hub; it only sets a flag, and the main loop does the work.
    """

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        self.signum = signum

    def install(self):
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def is_set(self):
        return self.signum is not None


def run_node(conf, coordinator, services=(), poll=0.1):
    """Start the coordinator and ``services``; stop all on a signal.

    ``services`` are objects with ``start()`` and ``stop()``.
    """
    stop = StopFlag()
    stop.install()
    LOG.info('Starting node %s (member %s)', conf.node_name,
             coordinator.member_id)
    coordinator.start()
    started = []
    try:
        for svc in services:
            svc.start()
            started.append(svc)
        while not stop.is_set:
            concurrency.sleep(poll)
        LOG.info('Signal %s received, stopping', stop.signum)
    finally:
        for svc in reversed(started):
            svc.stop()
        coordinator.stop()
    LOG.info('Node %s stopped', conf.node_name)
    return 0
