"""Options of the node's health check (``[server]``): what takes a node
out of its load balancer."""

from oslo_config import cfg

HEALTH_OPTS = [
    cfg.StrOpt('drain_file', default='$state_path/drain',
               help='While this file exists, /healthcheck answers 503 '
                    '(naming it) so that load balancers and monitors '
                    'take the node out, while it goes on serving every '
                    'other request: an operator touches it before '
                    'maintenance and removes it after (Swift\'s '
                    'disable_path). Empty: no drain file.'),
    cfg.FloatOpt('healthcheck_coordination_limit', default=60.0, min=0.0,
                 max=86400.0,
                 help='Seconds the coordination backend may stay out of '
                      'reach of this node before /healthcheck answers '
                      '503. 0: the backend is not checked.'),
]


def register_opts(conf):
    # NOTE: [server] itself is registered by coordsync.conf.cluster,
    # before this area.
    conf.register_opts(HEALTH_OPTS, group='server')


def list_opts():
    return [('server', HEALTH_OPTS)]
