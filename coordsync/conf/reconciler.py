"""Options of the misplaced-object reconciler (``[reconciler]``)."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

RECONCILER_GROUP = cfg.OptGroup(
    'reconciler', title='Misplaced-object reconciler options',
    help='coordsync-reconciler: moves objects written under a storage '
         'policy their container does not have (after a split-brain '
         'recreate) into the container\'s policy, working the queue '
         'containers of the .misplaced_objects account, one lock holder '
         'per queue container (coordsync/reconcile/<queue container>) '
         'per pass.')

RECONCILER_OPTS = worker.worker_opts(run_pause=30.0, concurrency=4) + [
    cfg.IntOpt('entries_per_pass', default=1000, min=1, max=100000,
               help='Most entries of one queue container worked on in a '
                    'pass (the first ones by name); the rest wait for '
                    'the next pass.'),
    cfg.IntOpt('entry_concurrency', default=4, min=1, max=256,
               help='Entries of one queue container worked on at the same '
                    'time (concurrency is the number of queue containers '
                    'at the same time).'),
    cfg.FloatOpt('request_timeout', default=300.0, min=1.0,
                 help='Seconds one entry may take, every request of it '
                      'included (the container HEADs, the copy of the '
                      'object\'s body, the tombstones, the pop); past it '
                      'the entry counts as an error and stays queued for '
                      'the next pass, which finishes it.'),
    cfg.IntOpt('max_report_queues', default=50, min=0,
               help='Queue containers (the deepest first) whose depth a '
                    'member publishes in its progress for coordsync-'
                    'status; the recon file has all of them.'),
]


def register_opts(conf):
    conf.register_group(fresh_group(RECONCILER_GROUP))
    conf.register_opts(RECONCILER_OPTS, group=RECONCILER_GROUP.name)


def list_opts():
    return [(RECONCILER_GROUP, RECONCILER_OPTS)]
