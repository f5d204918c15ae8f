"""coordsync-status: who is in the group and what each member is doing.

Exit status: 0 healthy, 1 degraded (missing, stale or erring members),
2 backend unreachable (or a bad config).

``--locks`` lists the locks held in the group instead (name, holder,
age in seconds); exit status 0 once read (a backend that cannot list
its locks says so), 2 when unreachable.

``--sync`` shows the container sync lag instead, a row per container
(the way ``kafka-consumer-groups --describe`` shows lag per partition),
from what the container sync daemons publish in their progress; when
several members report a container, the freshest measurement wins::

    CONTAINER  TARGET  HOLDER  BEHIND  OLDEST  RETRY  FAILING  SYNCED  ERROR

With ``--format json`` it prints ``{"group", "state", "containers",
"problems"}``, each container ``{"account", "container", "target",
"holder", "rows_behind", "oldest_age", "retry", "failing",
"last_error", "point", "synced_age"}``: ``oldest_age`` is the age in
seconds of the oldest unsynced row now (0 when none is behind),
``synced_age`` how long ago it was measured; unknown values are null.
Exit status 0 healthy, 1 degraded (a container with an error or rows
failing longer than the report limit), 2 unreachable.

``--reconciler`` shows the misplaced-object reconciler instead: a row
per reconciler member with the queue depth it reported (entries left in
the queue containers it works, ``+`` when more lie beyond what one pass
lists) and its current pass's figures, then a row per queue container
with the freshest depth any member reported::

    MEMBER  NODE  STATE  PASS  DEPTH  QUEUES  MOVED  RIGHT  TOMBSTONES
    RETRIED  INVALID  ERRORS

    QUEUE  HOLDER  ENTRIES  LEFT  CHECKED

With ``--format json``: ``{"group", "state", "reconcilers", "queues",
"queue_depth", "queue_depth_more", "problems"}``. Exit status 0
healthy, 1 degraded (a member reports failed queue containers or
entries), 2 unreachable.
"""

import json
import sys

from oslo_config import cfg

from coordsync import exceptions
from coordsync import service
from coordsync.common import status

CLI_OPTS = [
    cfg.StrOpt('format', default='table', choices=['table', 'json'],
               help='Output format.'),
    cfg.IntOpt('expect', min=0,
               help='Number of members expected; fewer is degraded.'),
    cfg.FloatOpt('timeout', min=0.1,
                 help='Seconds to wait for the backend (default: '
                      '[status] backend_timeout).'),
    cfg.BoolOpt('locks', default=False,
                help='List the locks held in the group (name, holder, '
                     'age) instead of the members. Only ZooKeeper can '
                     'list them.'),
    cfg.BoolOpt('sync', default=False,
                help='Show container sync lag per container (rows '
                     'behind, oldest unsynced row, retry set, last '
                     'error) instead of the members.'),
    # NOTE: dest differs from the option name: [reconciler] exists.
    cfg.BoolOpt('reconciler', dest='show_reconciler', default=False,
                help='Show the misplaced-object queue instead of the '
                     'members: the queue depth (entries left) and pass '
                     'figures (moved, already right, tombstones, '
                     'retried, invalid, errors) each reconciler member '
                     'reported, and the depth of each queue container.'),
]


def main(argv=None):
    conf = service.prepare_service(argv, prog='coordsync-status',
                                   cli_opts=CLI_OPTS)
    timeout = conf.timeout or conf.status.backend_timeout
    chosen = [flag for flag, on in (('--locks', conf.locks),
                                    ('--sync', conf.sync),
                                    ('--reconciler', conf.show_reconciler))
              if on]
    if len(chosen) > 1:
        print('coordsync-status: error: %s cannot be combined'
              % ' and '.join(chosen), file=sys.stderr)
        return status.EXIT_CODES[status.UNREACHABLE]
    fetch = status.fetch_locks if conf.locks else status.fetch_members
    try:
        found = fetch(conf, timeout)
    except exceptions.CoordsyncError as err:
        listing = ('locks' if conf.locks else
                   'containers' if conf.sync else
                   'reconcilers' if conf.show_reconciler else 'members')
        report = {'group': conf.coordination.group,
                  'state': status.UNREACHABLE, 'problems': [str(err)],
                  listing: []}
        if conf.show_reconciler:
            report['queues'] = []
        if conf.format == 'json':
            print(json.dumps(report, indent=2, sort_keys=True))
        print('coordsync-status: error: %s' % err, file=sys.stderr)
        return status.EXIT_CODES[status.UNREACHABLE]
    if conf.locks:
        report = status.build_locks_report(
            found, group=conf.coordination.group,
            backend_url=conf.coordination.backend_url)
        _print(conf, report, status.format_locks_table)
        return 0
    if conf.sync:
        report = status.build_sync_report(
            found, group=conf.coordination.group)
        _print(conf, report, status.format_sync_table)
        return status.EXIT_CODES[report['state']]
    if conf.show_reconciler:
        report = status.build_reconciler_report(
            found, group=conf.coordination.group)
        _print(conf, report, status.format_reconciler_table)
        return status.EXIT_CODES[report['state']]
    report = status.build_report(
        found, group=conf.coordination.group, expect=conf.expect,
        expected_nodes=status.ring_nodes(conf),
        stale_after=conf.status.stale_after)
    _print(conf, report, status.format_table)
    return status.EXIT_CODES[report['state']]


def _print(conf, report, as_table):
    if conf.format == 'json':
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(as_table(report))


if __name__ == '__main__':
    sys.exit(main())
