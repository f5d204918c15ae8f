"""Options of the coordinated object replicator."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

REPLICATOR_GROUP = cfg.OptGroup(
    'replicator', title='Object replicator options',
    help='The coordinated object replicator: one lock holder per '
         'partition per pass brings every replica of it level.')

REPLICATOR_OPTS = worker.worker_opts() + [
    cfg.IntOpt('suffix_concurrency', default=8, min=1, max=256,
               help='Suffixes of one partition listed at the same time '
                    'on this node when comparing replicas.'),
    cfg.IntOpt('max_incoming', default=4, min=1, max=1024,
               help='Sync requests (pushes and pulls of whole partitions '
                    'from lock holders) this node serves at the same '
                    'time; beyond it, 503, and the sender tries again '
                    'after a growing delay.'),
    cfg.BoolOpt('handoffs_first', default=False,
                help='Push handoff partitions before repairing primary '
                     'ones (to drain a node after a ring change).'),
    cfg.IntOpt('handoff_delete', default=0, min=0,
               help='Delete a handoff partition once this many primaries '
                    'confirmed they have everything; 0 means all of '
                    'them.'),
]


def register_opts(conf):
    conf.register_group(fresh_group(REPLICATOR_GROUP))
    conf.register_opts(REPLICATOR_OPTS, group=REPLICATOR_GROUP.name)


def list_opts():
    return [(REPLICATOR_GROUP, REPLICATOR_OPTS)]
