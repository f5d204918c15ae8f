"""Options of container sync: the realms and hosts a container may sync
to (``[DEFAULT]``, read by the proxy that checks ``X-Container-Sync-To``
and authenticates incoming sync requests, and by the daemon that sends
them) and the daemon's own ``[container-sync]``."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

SYNC_REALM_OPTS = [
    cfg.StrOpt('container_sync_realms_file',
               default='/etc/coordsync/container-sync-realms.conf',
               help='Swift\'s container-sync-realms.conf: one section per '
                    'realm with key (and key2 while rotating) and '
                    'cluster_<name> = <endpoint URL ending in /v1/> lines. '
                    'A container synced to //<realm>/<cluster>/<account>/'
                    '<container> signs each request with the realm key '
                    'and the container\'s X-Container-Sync-Key; the '
                    'receiving cluster checks the signature with its own '
                    'copy of the file. A missing file means no realms. '
                    'Reread when it changes.'),
    cfg.ListOpt('allowed_sync_hosts', default=['127.0.0.1'],
                help='Hosts (names or addresses) a container may be synced '
                     'to with a plain http(s):// URL in X-Container-Sync-To, '
                     'and, on the receiving side, the client addresses '
                     'whose requests may authenticate with '
                     'X-Container-Sync-Key alone (no realm signature).'),
    cfg.FloatOpt('container_sync_auth_window', default=300.0, min=1.0,
                 max=86400.0,
                 help='Seconds a signed sync request stays valid (its '
                      'nonce carries the time it was made); the receiving '
                      'proxy remembers every nonce it accepted for this '
                      'long and refuses a replayed one.'),
]

CONTAINER_SYNC_GROUP = cfg.OptGroup(
    'container-sync', title='Container sync daemon options',
    help='coordsync-container-sync: sends the rows of containers that have '
         'X-Container-Sync-To to the other cluster, one lock holder per '
         'container (coordsync/sync/<account>/<container>) per pass.')

CONTAINER_SYNC_OPTS = worker.worker_opts(run_pause=30.0, concurrency=4) + [
    cfg.FloatOpt('container_time', default=60.0, min=0.1,
                 help='Most seconds one container is worked on in a pass; '
                      'its sync point makes the next pass go on from '
                      'there, so a huge container does not starve the '
                      'others.'),
    cfg.IntOpt('rows_per_pass', default=10000, min=1,
               help='Most rows of one container sent in a pass.'),
    cfg.IntOpt('batch_size', default=100, min=1, max=10000,
               help='Rows sent between two writes of the sync point: a '
                    'holder that dies re-checks at most this many rows.'),
    cfg.IntOpt('row_concurrency', default=8, min=1, max=256,
               help='Rows of one container sent at the same time.'),
    cfg.FloatOpt('retry_interval', default=10.0, min=0.0,
                 help='Seconds before a failed row is tried again; doubled '
                      'after each failure, up to max_retry_interval.'),
    cfg.FloatOpt('max_retry_interval', default=600.0, min=0.0,
                 help='Longest wait between two tries of a failed row.'),
    cfg.FloatOpt('retry_report_after', default=3600.0, min=0.0,
                 help='A row failing for longer than this is reported '
                      '(an error per pass in the log, and in status) '
                      'while it is still retried.'),
    cfg.IntOpt('max_retry_rows', default=1000, min=1,
               help='Most failed rows kept per container to be retried; '
                    'beyond it the sync point stops advancing (the rows '
                    'after it wait) until some succeed.'),
    cfg.FloatOpt('request_timeout', default=30.0, min=0.1,
                 help='Seconds a request to the other cluster may take.'),
    cfg.IntOpt('max_lag_containers', default=50, min=0,
               help='Containers (the most behind first) whose lag a member '
                    'publishes in its progress for coordsync-status; the '
                    'recon file has all of them.'),
]


def register_opts(conf):
    conf.register_opts(SYNC_REALM_OPTS)
    conf.register_group(fresh_group(CONTAINER_SYNC_GROUP))
    conf.register_opts(CONTAINER_SYNC_OPTS, group=CONTAINER_SYNC_GROUP.name)


def list_opts():
    return [('DEFAULT', SYNC_REALM_OPTS),
            (CONTAINER_SYNC_GROUP, CONTAINER_SYNC_OPTS)]
