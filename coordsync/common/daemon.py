"""Running a node process until it is told to stop, or one pass."""

import signal

from oslo_log import log as logging

from coordsync import concurrency
from coordsync.common import worker as worker_mod

LOG = logging.getLogger(__name__)
EXIT_OK, EXIT_FAILED = 0, 1


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


def run_workers(conf, coordinator, workers, services=(), filters=None):
    """Serve ``services`` and run every worker's passes until a signal
    (``filters``, e.g. devices and partitions, go to each pass)."""
    return run_node(conf, coordinator, list(services) + [
        worker_mod.WorkerService(w, filters) for w in workers])


def run_once(conf, worker, filters, wait_for_peers=False):
    """One pass of ``worker`` (``--once``); the exit status.

    Non-zero when an item failed or locked up, so a cron job or an
    operator sees it.
    """
    coordinator = worker.coordinator
    timeout = conf.coordination.session_timeout
    # NOTE: the group gets a session timeout to answer; without it the
    # pass runs under the static rule, which is still safe.
    coordinator.start(wait=timeout)
    try:
        if (wait_for_peers and coordinator.healthy and not
                worker.wait_for_peers(worker.expected_nodes(), timeout)):
            LOG.info('Not every expected node has a %s in the group; '
                     'planning with the ones that do', worker.name)
        summary = worker.run_once(**filters)
        worker.finish_once(max(30.0, 3 * timeout))
    finally:
        coordinator.stop()
    return EXIT_FAILED if summary['errors'] else EXIT_OK
