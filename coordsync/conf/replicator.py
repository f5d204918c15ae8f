"""Options of the coordinated object replicator."""

from oslo_config import cfg

from coordsync.conf.groups import fresh_group

REPLICATOR_GROUP = cfg.OptGroup(
    'replicator', title='Object replicator options',
    help='The coordinated object replicator: one lock holder per '
         'partition per pass brings every replica of it level.')

REPLICATOR_OPTS = [
    cfg.FloatOpt('run_pause', default=30.0, min=0.0,
                 help='Seconds to wait between two passes.'),
    cfg.IntOpt('concurrency', default=4, min=1, max=256,
               help='Partitions replicated at the same time.'),
    cfg.IntOpt('suffix_concurrency', default=8, min=1, max=256,
               help='Suffixes of one partition levelled at the same time '
                    '(each sends its objects one after another).'),
    cfg.BoolOpt('handoffs_first', default=False,
                help='Push handoff partitions before repairing primary '
                     'ones (to drain a node after a ring change).'),
    cfg.IntOpt('handoff_delete', default=0, min=0,
               help='Delete a handoff partition once this many primaries '
                    'confirmed they have everything; 0 means all of '
                    'them.'),
    cfg.FloatOpt('lockup_timeout', default=1800.0, min=1.0,
                 help='A partition job running longer than this is '
                      'cancelled and its lock released; the pass goes on.'),
    cfg.FloatOpt('stats_interval', default=300.0, min=1.0,
                 help='Seconds between two progress lines in the log.'),
    cfg.StrOpt('recon_cache_path', default='$state_path/recon',
               help='Directory of the JSON file with the last pass\'s '
                    'figures.'),
    cfg.StrOpt('audit_log',
               help='If set, append one line per partition job start and '
                    'end (node, partition, wall-clock time) to this file; '
                    'tests and operators use it to check who repaired '
                    'what and when.'),
    cfg.BoolOpt('run_in_server', default=False,
                help='Run the replicator inside coordsync-server instead '
                     'of as a separate coordsync-replicator process.'),
]


def register_opts(conf):
    conf.register_group(fresh_group(REPLICATOR_GROUP))
    conf.register_opts(REPLICATOR_OPTS, group=REPLICATOR_GROUP.name)


def list_opts():
    return [(REPLICATOR_GROUP, REPLICATOR_OPTS)]
