"""Options of coordsync-status: what counts as healthy."""

from oslo_config import cfg

from coordsync.conf.groups import fresh_group

STATUS_GROUP = cfg.OptGroup(
    'status',
    title='Status command options',
    help='Thresholds coordsync-status uses to call the group healthy.')

STATUS_OPTS = [
    cfg.FloatOpt('stale_after',
                 default=60.0, min=1.0, max=86400.0,
                 help='A member whose capabilities were last published '
                      'longer ago than this many seconds is reported as '
                      'stale.'),
    cfg.FloatOpt('backend_timeout',
                 default=10.0, min=0.5, max=300.0,
                 help='Seconds coordsync-status waits for the backend '
                      'before reporting it unreachable (exit status 2).'),
]


def register_opts(conf):
    conf.register_group(fresh_group(STATUS_GROUP))
    conf.register_opts(STATUS_OPTS, group=STATUS_GROUP.name)


def list_opts():
    return [(STATUS_GROUP, STATUS_OPTS)]
