"""Options every coordinated worker has, and which workers a node runs.

Each daemon's option group (``[replicator]``, later ``[container-sync]``
and the others) holds :func:`worker_opts` plus its own options, so an
operator tunes every daemon with the same names.
"""

from oslo_config import cfg
from oslo_config import types

# Names of the daemons built on coordsync.common.worker; each is also a
# role in the coordination group and a key of the published progress.
# The option group of each is its value (with its recon_cache_path).
WORKER_GROUPS = {
    'object-replicator': 'replicator',
    'object-updater': 'object-updater',
    'container-replicator': 'container-replicator',
    'account-replicator': 'account-replicator',
    'container-sync': 'container-sync',
    'reconciler': 'reconciler',
    'object-auditor': 'object-auditor',
}
WORKERS = tuple(WORKER_GROUPS)

SERVER_WORKER_OPTS = [
    cfg.ListOpt('workers',
                default=[],
                item_type=types.String(choices=WORKERS),
                help='Background workers coordsync-server runs beside the '
                     'node API, comma separated (each can also run as a '
                     'command of its own, e.g. coordsync-replicator). '
                     'Known: %s.' % ', '.join(WORKERS)),
    cfg.FloatOpt('stop_timeout',
                 default=10.0, min=0.0, max=3600.0,
                 help='On SIGTERM, seconds a worker\'s items in flight get '
                      'to finish their current write before they are '
                      'cancelled; locks are released only once no write '
                      'of their item is in flight.'),
]


def worker_opts(run_pause=30.0, concurrency=4, lockup_timeout=1800.0):
    """The engine's options, with this daemon's defaults."""
    return [
        cfg.FloatOpt('run_pause', default=run_pause, min=0.0,
                     help='Seconds to wait between two passes.'),
        cfg.IntOpt('concurrency', default=concurrency, min=1, max=256,
                   help='Items worked on at the same time.'),
        cfg.IntOpt('lock_window', default=64, min=1, max=1024,
                   help='Items whose locks are taken together, in one '
                        'round trip on ZooKeeper, shortly before they are '
                        'worked on. Each lock is still released as soon as '
                        'its item ends. Larger windows cost fewer round '
                        'trips but hold locks of waiting items longer.'),
        cfg.FloatOpt('lockup_timeout', default=lockup_timeout, min=1.0,
                     help='An item worked on longer than this is '
                          'cancelled and its lock released; the pass goes '
                          'on.'),
        cfg.FloatOpt('stats_interval', default=300.0, min=1.0,
                     help='Seconds between two progress lines in the '
                          'log.'),
        cfg.IntOpt('backlog_intervals', default=3, min=1, max=1000,
                   help='An item this member owns that none of its passes '
                        'finished within this many intervals (run_pause '
                        'plus the last pass\'s duration) counts as '
                        'backlog in coordsync-status and the metrics.'),
        cfg.StrOpt('recon_cache_path', default='$state_path/recon',
                   help='Directory of the JSON file with the last pass\'s '
                        'figures.'),
        cfg.StrOpt('audit_log',
                   help='If set, append one line per item start and end '
                        '(node, item, wall-clock time, mode, where) to this '
                        'file; tests and operators use it to check who '
                        'worked on what and when.'),
    ]


def register_opts(conf):
    conf.register_opts(SERVER_WORKER_OPTS, group='server')


def list_opts():
    return [('server', SERVER_WORKER_OPTS)]
