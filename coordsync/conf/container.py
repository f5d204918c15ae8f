"""Options of the container layer: where the container and account
rings are, how long an object write waits for its container update, and
the object updater (``[object-updater]``)."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

RING_OPTS = [
    cfg.StrOpt('container_ring_file',
               default='/etc/coordsync/container.ring.json',
               help='The container ring (JSON, built with coordsync-ring '
                    'like the object ring): where the database of each '
                    'container lives.'),
    cfg.StrOpt('account_ring_file',
               default='/etc/coordsync/account.ring.json',
               help='The account ring (JSON, built with coordsync-ring): '
                    'where the database of each account lives.'),
]

SERVER_UPDATE_OPTS = [
    cfg.FloatOpt('container_update_timeout', default=1.0, min=0.01,
                 max=300.0,
                 help='Seconds an object PUT or DELETE waits for its '
                      'container replicas to take the object row before '
                      'it answers; a replica that failed or has not '
                      'answered by then gets the update later from an '
                      'async pending (the object updater).'),
    cfg.FloatOpt('account_update_timeout', default=1.0, min=0.01,
                 max=300.0,
                 help='Seconds a container PUT or DELETE waits for the '
                      'account replicas to take the container row; a '
                      'failure is logged and the container replicator '
                      'reports the container again later.'),
]

UPDATER_GROUP = cfg.OptGroup(
    'object-updater', title='Object updater options',
    help='The object updater: sweeps the async pendings of this node\'s '
         'devices (object updates a container replica missed) and sends '
         'them to the container replicas that have not had them yet.')

UPDATER_OPTS = worker.worker_opts(run_pause=30.0, concurrency=2) + [
    cfg.IntOpt('update_concurrency', default=8, min=1, max=256,
               help='Async pendings of one device sent at the same '
                    'time.'),
    cfg.FloatOpt('max_updates_per_second', default=0.0, min=0.0,
                 help='Most async pendings one device sweep sends per '
                      'second (0: no limit), to spare the container '
                      'servers after a long outage.'),
]


def register_opts(conf):
    conf.register_opts(RING_OPTS)
    conf.register_opts(SERVER_UPDATE_OPTS, group='server')
    conf.register_group(fresh_group(UPDATER_GROUP))
    conf.register_opts(UPDATER_OPTS, group=UPDATER_GROUP.name)


def list_opts():
    return [('DEFAULT', RING_OPTS), ('server', SERVER_UPDATE_OPTS),
            (UPDATER_GROUP, UPDATER_OPTS)]
