"""Options of the coordination group: backend, liveness and reconnects."""

from oslo_config import cfg

from coordsync.conf.groups import fresh_group

COORDINATION_GROUP = cfg.OptGroup(
    'coordination',
    title='Coordination options',
    help='How nodes find each other and divide the work: a tooz backend, '
         'a group every node joins, and distributed locks.')

COORDINATION_OPTS = [
    cfg.StrOpt('backend_url',
               default='file://$state_path/coordination',
               secret=True,
               help='tooz backend URL. The default is an embedded backend '
                    'for one machine that needs no server (all nodes must '
                    'share the directory). Use zookeeper://host:2181 '
                    '(several hosts: zookeeper://h1:2181?hosts=h2:2181'
                    '&hosts=h3:2181) for a cluster of machines; redis:// '
                    'and etcd3+http:// work through tooz as well. Kept '
                    'secret because URLs may carry passwords.'),
    cfg.StrOpt('group',
               default='coordsync',
               regex=r'^[A-Za-z0-9_.-]{1,64}$',
               help='Name of the coordination group all nodes join.'),
    cfg.FloatOpt('heartbeat',
                 default=1.0, min=0.1, max=60.0,
                 help='Seconds between heartbeats and membership checks.'),
    cfg.IntOpt('session_timeout',
               default=10, min=1, max=600,
               help='Seconds after which the backend considers a silent '
                    'member dead and frees its locks.'),
    cfg.FloatOpt('initial_reconnect_backoff',
                 default=0.5, min=0.01, max=60.0,
                 help='First delay, in seconds, before reconnecting after '
                      'the backend became unreachable.'),
    cfg.FloatOpt('max_reconnect_backoff',
                 default=30.0, min=0.1, max=3600.0,
                 help='Longest delay, in seconds, between reconnect '
                      'attempts. Delays grow as min(max, uniform(initial, '
                      'previous * 3)).'),
    cfg.FloatOpt('static_after',
                 min=0.0, max=86400.0,
                 sample_default='3 * session_timeout',
                 help='Seconds the backend must have been unreachable '
                      'from this process before its workers fall back to '
                      'the static rule (own primaries, push-only, no '
                      'locks). A process that only lost its session (it '
                      'was paused, or an election took long) reconnects '
                      'and stays coordinated instead. Default: three '
                      'session timeouts.'),
    cfg.FloatOpt('progress_interval',
                 default=10.0, min=0.5, max=600.0,
                 help='Longest time, in seconds, between two publications '
                      'of this member\'s capabilities (progress is '
                      'published sooner when it changes).'),
]


def register_opts(conf):
    conf.register_group(fresh_group(COORDINATION_GROUP))
    conf.register_opts(COORDINATION_OPTS, group=COORDINATION_GROUP.name)


def list_opts():
    return [(COORDINATION_GROUP, COORDINATION_OPTS)]
