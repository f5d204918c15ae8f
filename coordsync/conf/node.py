"""Options that say what this node is and where its data lives."""

import socket

from oslo_config import cfg

NODE_OPTS = [
    cfg.StrOpt('node_name',
               default=socket.gethostname(),
               sample_default='<hostname>',
               regex=r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
               help='Stable name of this storage node. It must match the '
                    'node name of this node\'s devices in the ring; '
                    'coordsync-status groups members by it.'),
    cfg.StrOpt('state_path',
               default='/var/lib/coordsync',
               help='Directory for node-local state: recon dumps and, with '
                    'the default backend, the coordination files.'),
    cfg.StrOpt('devices',
               default='/srv/node',
               help='Parent directory of the devices (one directory, '
                    'usually a mount point, per disk).'),
    cfg.BoolOpt('mount_check',
                default=False,
                help='Refuse to use a device directory that is not a mount '
                     'point (protects the root disk when a disk is '
                     'missing).'),
    cfg.HostAddressOpt('bind_ip',
                       default='127.0.0.1',
                       help='Address the node server listens on.'),
    cfg.PortOpt('bind_port',
                default=6200,
                help='Port the node server listens on.'),
]


def register_opts(conf):
    conf.register_opts(NODE_OPTS)


def list_opts():
    return [('DEFAULT', NODE_OPTS)]
