"""The one main of coordsync-container-replicator and
coordsync-account-replicator (same options as coordsync-replicator)."""

import sys

from coordsync import concurrency
from coordsync import daemons
from coordsync import exceptions
from coordsync import service
from coordsync.cmd import replicator as replicator_cmd
from coordsync.common import daemon


def run_worker(name, prog, argv=None):
    """Run worker ``name`` (one pass with ``--once``); the exit status."""
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog=prog,
                                   cli_opts=replicator_cmd.CLI_OPTS)
    try:
        coordinator, (worker,) = daemons.make_workers(conf, [name])
    except exceptions.CoordsyncError as err:
        print('%s: error: %s' % (prog, err), file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    filters = replicator_cmd.filters(conf)
    if conf.once:
        return daemon.run_once(conf, worker, filters, conf.wait_for_peers)
    return daemon.run_workers(conf, coordinator, [worker], filters=filters)
