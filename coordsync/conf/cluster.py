"""Options every node of one cluster must share: placement and trust."""

from oslo_config import cfg

from coordsync.conf.groups import fresh_group

CLUSTER_OPTS = [
    cfg.StrOpt('ring_file',
               default='/etc/coordsync/object.ring.json',
               help='The object ring (JSON) built with coordsync-ring.'),
    cfg.StrOpt('hash_path_prefix',
               default='',
               secret=True,
               help='Secret salt hashed before every name to place it. Set '
                    'it once, identically on every node, and never change '
                    'it: objects would become unfindable.'),
    cfg.StrOpt('hash_path_suffix',
               default='',
               secret=True,
               help='Secret salt hashed after every name (see '
                    'hash_path_prefix).'),
    cfg.StrOpt('cluster_secret',
               secret=True,
               help='Shared secret that signs every request between nodes '
                    '(HMAC-SHA256). Required by coordsync-server and '
                    'coordsync-client.'),
    cfg.IntOpt('reclaim_age',
               default=7 * 24 * 3600, min=60,
               help='Seconds after which tombstones are removed.'),
]

SERVER_GROUP = cfg.OptGroup('server', title='Node server options')
SERVER_OPTS = [
    cfg.IntOpt('max_connections', default=1024, min=1, max=65536,
               deprecated_name='max_clients', deprecated_group='server',
               help='Most client connections one node server keeps open '
                    '(idle keep-alive ones included; each is a green '
                    'thread and a file descriptor). Beyond it a new '
                    'connection is answered 503 as soon as its request '
                    'line is in (or after 2 s) and closed, except a '
                    'health check, which still gets its 200.'),
    cfg.IntOpt('backlog', default=4096, min=1,
               help='Listen backlog of the node server socket.'),
    cfg.FloatOpt('client_timeout', default=60.0, min=1.0,
                 help='Seconds a client connection may stay silent: '
                      'waiting for a request (idle keep-alive), for more '
                      'of its headers or body, or for it to take the '
                      'answer. Then it is closed.'),
    cfg.IntOpt('max_clock_skew', default=300, min=5, max=86400,
               help='Seconds a signed request\'s date may differ from this '
                    'node\'s clock before it is rejected (bounds replays).'),
    cfg.StrOpt('fence_db', default='$state_path/fencing.db',
               help='SQLite file with the highest fencing token accepted '
                    'per locked item (see X-Coordsync-Token). Shared by '
                    'the node server and the workers of this node; it '
                    'must survive restarts, so keep it on a disk, not in '
                    'a tmpfs.'),
    cfg.FloatOpt('fence_lease', min=0.0, max=3600.0,
                 sample_default='3 * [coordination] session_timeout',
                 help='Seconds during which this node refuses a '
                      'replication write made without a lock (a static '
                      'pass, which carries no fencing token) into a '
                      'partition, after it accepted a request from the '
                      'holder of that partition\'s lock (409, '
                      'X-Coordsync-Fenced). Longer than the pauses '
                      'between a holder\'s requests: a few coordination '
                      'session timeouts. Users\' writes are never '
                      'refused. 0 disables it. Default: three session '
                      'timeouts.'),
    cfg.BoolOpt('access_log', default=True,
                help='Log one line per request at INFO to the logger '
                     'coordsync.access: time, method, path, status, '
                     'bytes, duration, sender member id, fence item and '
                     'token, client address (format: the README, Logs).'),
]

CLIENT_GROUP = cfg.OptGroup('client',
                            title='Options of requests to other nodes')
CLIENT_OPTS = [
    cfg.FloatOpt('conn_timeout', default=2.0, min=0.1,
                 help='Seconds to wait for a connection to a node.'),
    cfg.FloatOpt('node_timeout', default=30.0, min=0.5,
                 help='Seconds to wait for a node to answer.'),
    cfg.IntOpt('connections_per_node', default=16, min=1, max=1024,
               help='Most connections one process opens to one node (more '
                    'requests wait for one). They are kept alive for '
                    'the next request; the node closes idle ones after '
                    'its [server] client_timeout, and each counts '
                    'against its [server] max_connections meanwhile.'),
]


def register_opts(conf):
    conf.register_opts(CLUSTER_OPTS)
    conf.register_group(fresh_group(SERVER_GROUP))
    conf.register_opts(SERVER_OPTS, group=SERVER_GROUP.name)
    conf.register_group(fresh_group(CLIENT_GROUP))
    conf.register_opts(CLIENT_OPTS, group=CLIENT_GROUP.name)


def list_opts():
    return [('DEFAULT', CLUSTER_OPTS), (SERVER_GROUP, SERVER_OPTS),
            (CLIENT_GROUP, CLIENT_OPTS)]
