"""Options of the Swift-compatible API (``coordsync-proxy``)."""

from oslo_config import cfg

from coordsync.conf.groups import fresh_group

PROXY_GROUP = cfg.OptGroup(
    'proxy', title='Swift API (coordsync-proxy) options',
    help='The Swift-compatible API that Swift clients (python-swiftclient'
         ', its swift command) talk to: tempauth-style users, then '
         '/v1/<account>[/<container>[/<object>]].')

PROXY_OPTS = [
    cfg.HostAddressOpt('bind_ip', default='127.0.0.1',
                       help='Address the API listens on.'),
    cfg.PortOpt('bind_port', default=8080,
                help='Port the API listens on.'),
    cfg.MultiStrOpt('users', default=[], secret=True,
                    help='One user per line, tempauth style: '
                         '"<account>:<user> <key> [.admin] '
                         '[.reseller_admin]". The user authenticates at '
                         '/auth/v1.0 with X-Auth-User <account>:<user> and '
                         'X-Auth-Key <key>, and its storage URL is '
                         '/v1/AUTH_<account>. .admin: may do everything in '
                         'its account; others only what container ACLs '
                         'allow. Keys are secrets: never logged.'),
    cfg.IntOpt('token_ttl', default=86400, min=1,
               help='Seconds an auth token stays valid.'),
    cfg.IntOpt('max_tokens', default=100000, min=1,
               help='Most live tokens kept (memory bound); the oldest is '
                    'dropped beyond it.'),
    cfg.StrOpt('storage_url_base',
               help='Scheme, host and port put in front of the storage '
                    'URLs handed out at auth (e.g. https://swift.example.'
                    'com); default: from the request\'s Host header.'),
    cfg.IntOpt('max_file_size', default=5 * 2 ** 30, min=1,
               help='Largest object accepted, in bytes (413 beyond).'),
    cfg.FloatOpt('recheck_container_existence', default=10.0, min=0.0,
                 help='Seconds an object write trusts that its container '
                      'exists after having seen it (a container deleted '
                      'through this proxy is forgotten at once).'),
    cfg.IntOpt('max_connections', default=1024, min=1, max=65536,
               help='Most client connections served at once; beyond it, '
                    '503.'),
    cfg.IntOpt('backlog', default=4096, min=1,
               help='Listen backlog of the API socket.'),
    cfg.FloatOpt('client_timeout', default=60.0, min=1.0,
                 help='Seconds a client connection may stay silent.'),
    cfg.BoolOpt('access_log', default=True,
                help='Log one line per request at INFO to the logger '
                     'coordsync.proxy.access: time, method, path, status, '
                     'bytes, duration, user, transaction id, client '
                     'address (never a token or key).'),
]


def register_opts(conf):
    conf.register_group(fresh_group(PROXY_GROUP))
    conf.register_opts(PROXY_OPTS, group=PROXY_GROUP.name)


def list_opts():
    return [(PROXY_GROUP, PROXY_OPTS)]
