"""coordsync-object-auditor: the object auditor of one node.

    coordsync-object-auditor --config-file F [--once] [--wait-for-peers]
                             [--devices d1,d2]

It joins the coordination group as an ``object-auditor`` member of this
node, then audits its devices (see :mod:`coordsync.obj.auditor`): every
object file of every storage policy and, with ``[object-auditor]
audit_databases``, every container and account database, at the rate
``files_per_second`` and ``bytes_per_second`` allow, until SIGTERM, or
one full audit of each device with ``--once``. Damaged files are moved
to the device's ``quarantined/`` directory for replication to restore;
that is not a failure. Exit status of ``--once``: 0 when every device
was audited, 1 when some could not be (files unreadable, an I/O error),
2 on a bad config or ring.
"""

import sys

from oslo_config import cfg

from coordsync.cmd import replicator as replicator_cmd

NAME = 'object-auditor'
DESCRIPTION = ('Read every object file and database on this node\'s '
               'devices at a bounded rate and quarantine the damaged '
               'ones, for replication to restore from a good copy.')

CLI_OPTS = [
    cfg.BoolOpt('once', default=False,
                help='Audit each device once and exit.'),
    cfg.BoolOpt('wait-for-peers', default=False,
                help='With --once: first wait (up to a session timeout) '
                     'until every node in the rings has an auditor in '
                     'the group.'),
    # NOTE: dest differs from the option name: [DEFAULT] devices exists.
    cfg.ListOpt('devices', dest='override_devices', default=[],
                metavar='DEV[,DEV...]',
                help='Audit only these devices of this node, by name '
                     '(e.g. sdb,sdc); default: all of them.'),
]


def filters(conf):
    return {'devices': set(conf.override_devices)}


def main(argv=None):
    return replicator_cmd.run_worker(NAME, 'coordsync-object-auditor',
                                     argv, CLI_OPTS, filters,
                                     description=DESCRIPTION)


if __name__ == '__main__':
    sys.exit(main())
