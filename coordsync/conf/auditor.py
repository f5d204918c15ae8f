"""Options of the object auditor (``[object-auditor]``)."""

from oslo_config import cfg

from coordsync.conf import worker
from coordsync.conf.groups import fresh_group

AUDITOR_GROUP = cfg.OptGroup(
    'object-auditor', title='Object auditor options',
    help='The object auditor: reads every object file (and, with '
         'audit_databases, checks every container and account database) '
         'on this node\'s devices at a bounded rate, and moves a damaged '
         'one to the device\'s quarantined/ directory so that replication '
         'restores a good copy from a peer.')

# NOTE: one item is a whole device, audited at a bounded rate: a pass may
# last days, so the lockup watchdog only catches a device audit stuck for
# a month.
AUDITOR_OPTS = worker.worker_opts(run_pause=30.0, concurrency=1,
                                  lockup_timeout=30 * 24 * 3600.0) + [
    cfg.FloatOpt('files_per_second', default=20.0, min=0.0,
                 help='Most object files (and databases) one device audit '
                      'checks per second (0: no limit). Each device '
                      'audited at the same time (concurrency) has this '
                      'budget of its own.'),
    cfg.FloatOpt('bytes_per_second', default=10000000.0, min=0.0,
                 help='Most bytes one device audit reads per second (0: '
                      'no limit), paced chunk by chunk, so the auditor '
                      'leaves the disk to the object servers.'),
    cfg.BoolOpt('audit_databases', default=True,
                help='Also run SQLite\'s quick_check on every container '
                     'and account database of this node\'s devices (those '
                     'of the container and account rings too), and '
                     'quarantine a damaged one for the replicators to '
                     'restore.'),
]


def register_opts(conf):
    conf.register_group(fresh_group(AUDITOR_GROUP))
    conf.register_opts(AUDITOR_OPTS, group=AUDITOR_GROUP.name)


def list_opts():
    return [(AUDITOR_GROUP, AUDITOR_OPTS)]
