"""Options of the container and account replicators
(``[container-replicator]``, ``[account-replicator]``)."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

CONTAINER_REPLICATOR_GROUP = cfg.OptGroup(
    'container-replicator', title='Container replicator options',
    help='The coordinated container replicator: one lock holder per '
         'partition of the container ring per pass brings every replica '
         'of each container database in it level, and reports '
         'containers\' stats to their accounts.')

ACCOUNT_REPLICATOR_GROUP = cfg.OptGroup(
    'account-replicator', title='Account replicator options',
    help='The coordinated account replicator: the container replicator\'s '
         'code over the account ring and account databases.')


def db_replicator_opts():
    """Options of either replicator (a new list for each group)."""
    return worker.worker_opts(run_pause=30.0, concurrency=4) + [
        cfg.IntOpt('per_diff', default=1000, min=1, max=10000,
                   help='Rows sent or pulled in one request when a '
                        'replica lacks some.'),
        cfg.IntOpt('db_concurrency', default=4, min=1, max=256,
                   help='Databases of one partition levelled at the same '
                        'time.'),
        cfg.BoolOpt('handoffs_first', default=False,
                    help='Push handoff partitions home before levelling '
                         'primary ones (to drain a node after a ring '
                         'change).'),
    ]


CONTAINER_REPLICATOR_OPTS = db_replicator_opts()
ACCOUNT_REPLICATOR_OPTS = db_replicator_opts()


def register_opts(conf):
    for group, opts in list_opts():
        conf.register_group(fresh_group(group))
        conf.register_opts(opts, group=group.name)


def list_opts():
    return [(CONTAINER_REPLICATOR_GROUP, CONTAINER_REPLICATOR_OPTS),
            (ACCOUNT_REPLICATOR_GROUP, ACCOUNT_REPLICATOR_OPTS)]
