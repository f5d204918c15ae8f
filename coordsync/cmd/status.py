"""coordsync-status: who is in the group, what each member does, and
how far behind the cluster is.

Exit status (the Nagios convention, so a check can run it as it is):
0 healthy, 1 degraded (missing, stale or erring members), 2 backend
unreachable, 3 a usage or config error (unknown flag, bad value, bad
``--who`` item, unknown ``-c`` column). Errors are one line on stderr,
``coordsync-status: error: ...``; the backend clients' own log lines
(kazoo's connection retries) are kept out.

The default view has a row per member and worker: the member's node,
host, pid, uptime, last update age and state, and per worker its state,
mode (coordinated or static), pass number, items done/total, errors,
how long ago its last pass ended and how long it took, and its backlog
(owned items no pass finished within ``backlog_intervals``). Then one
summary line per worker kind, like ``swift-recon -r``::

    object-replicator: 3 member(s); last pass oldest 42s ago (n1),
    newest 3s ago (n3); slowest n2 (12.1s); failures 0; backlog 0

and one backlog line per kind (items late, and the levels the workers
measure: the object updater's ``async_pending`` and
``oldest_async_age``, container sync's ``rows_behind`` and
``oldest_unsynced_age``, the reconciler's ``queue_depth``). An empty
group (or one not created yet) says "no members" and is healthy unless
``--expect`` or the ring's nodes expect members.

``-c COLUMN`` (repeatable, or a comma list) prints only those columns
(``-c member,worker,last``); ``-f json`` prints the whole report, in
the stable schema below, whatever ``-c`` says.

JSON schema of the default view (``schema_version`` 1; the file
``coordsync/common/status_schema.json`` is its JSON Schema)::

    {"schema_version": 1, "group": str,
     "state": "healthy" | "degraded" | "unreachable",
     "members": [{"member", "node", "host", "pid", "version",
                  "uptime", "roles", "devices", "last_update_age",
                  "outages", "state": "ok" | "degraded",
                  "progress_summary", "progress" (as published, free
                  form), "workers": [{"worker", "state", "mode",
                  "pass", "done", "total", "errors", "skipped",
                  "fenced", "backlog", "backlog_oldest", "levels",
                  "last_pass", "last_pass_age", "last_pass_duration",
                  "last_pass_failed", "last_pass_mode"}]}],
     "summary": {kind: {"members", "nodes", "passed",
                        "oldest_pass_age", "oldest_pass_node",
                        "newest_pass_age", "newest_pass_node",
                        "slowest_node", "slowest_member",
                        "slowest_duration", "failures", "errors",
                        "static", "backlog"}},
     "backlog": {kind: {"items", "oldest", "levels": {name: number},
                        "queue_depth_more" (reconciler only)}},
     "problems": [str]}

Ages and durations are seconds; an unknown value is null. New keys may
be added within a schema version; none is removed or changes meaning.

``--who ITEM`` names the node that owns ITEM by the division the
workers use (the live members of its worker kind on the nodes holding
a replica of it) and who holds its lock now, for how long (ZooKeeper
only: other backends cannot tell). ITEM is a lock name as the workers
spell it (``coordsync/replicate/0/17``,
``coordsync/replicate-container/5``, ``coordsync/replicate-account/5``,
``coordsync/update/<node>/<device>``,
``coordsync/sync/<account>/<container>``,
``coordsync/reconcile/<queue>``), or ``KIND:SPEC``
(``object-replicator:[<policy>/]<partition>``,
``container-replicator:<partition>``, ``account-replicator:<partition>``,
``object-updater:<node>/<device>``,
``container-sync:<account>/<container>``, ``reconciler:<queue>``), or
``[<policy>/]<partition>`` for the object replicator (``17`` is
``0/17``). Exit 0, or 1 when no live member may take the item.

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

PROG = 'coordsync-status'
DESCRIPTION = (
    'Show the coordination group: a row per member and worker (state, '
    'mode, pass, done/total, errors, last pass age and duration, '
    'backlog), a summary and backlog line per worker kind, and the '
    'verdict. Exit status: 0 healthy, 1 degraded, 2 backend unreachable, '
    '3 usage or config error.')

CLI_OPTS = [
    cfg.StrOpt('format', short='f', default='table',
               choices=['table', 'json'],
               help='Output format; json follows a stable, versioned '
                    'schema (coordsync/common/status_schema.json).'),
    cfg.MultiStrOpt('column', short='c', dest='columns', default=[],
                    metavar='COLUMN',
                    help='Only this column in the table (repeat it, or '
                         'give a comma list); an unknown one lists the '
                         'valid ones.'),
    cfg.IntOpt('expect', min=0,
               help='Number of members expected; fewer is degraded.'),
    cfg.FloatOpt('timeout', min=0.1,
                 help='Seconds to wait for the backend (default: '
                      '[status] backend_timeout).'),
    cfg.StrOpt('who', metavar='ITEM',
               help='Name the owner of ITEM by the division the workers '
                    'use, and its lock holder and for how long '
                    '(ZooKeeper). ITEM: a lock name '
                    '(coordsync/replicate/0/17), KIND:SPEC '
                    '(object-replicator:0/17, container-replicator:5, '
                    'object-updater:NODE/DEVICE, '
                    'container-sync:ACCOUNT/CONTAINER, reconciler:QUEUE) '
                    'or [POLICY/]PARTITION of the object replicator.'),
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


class UsageError(Exception):
    """Bad command-line input found after parsing: exit 3, one line."""


def _fail(message, code):
    print('%s: error: %s' % (PROG, message), file=sys.stderr)
    return code


def _columns(conf):
    names = [name for value in conf.columns for name in value.split(',')
             if name.strip()]
    return names or None


def _check_usage(conf):
    """Refuse contradicting flags, a bad -c column or a bad --who ITEM
    before the backend is asked anything."""
    chosen = [flag for flag, on in (('--locks', conf.locks),
                                    ('--sync', conf.sync),
                                    ('--reconciler', conf.show_reconciler),
                                    ('--who', conf.who is not None))
              if on]
    if len(chosen) > 1:
        raise UsageError('%s cannot be combined' % ' and '.join(chosen))
    columns = _columns(conf)
    if columns:
        if conf.show_reconciler or conf.who is not None:
            raise UsageError('-c cannot be combined with %s' % chosen[0])
        table = (status.LOCK_COLUMNS if conf.locks else
                 status.SYNC_COLUMNS if conf.sync else
                 status.MEMBER_COLUMNS)
        try:
            status.select_columns(table, columns)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return columns


def main(argv=None):
    conf = service.prepare_service(argv, prog=PROG, cli_opts=CLI_OPTS,
                                   description=DESCRIPTION,
                                   config_exit=status.EXIT_USAGE)
    status.quiet_backend_loggers()
    try:
        columns = _check_usage(conf)
        target = eligible = None
        if conf.who is not None:
            target = status.parse_item(conf.who)
            eligible = status.eligible_nodes(conf, target)
    except (UsageError, ValueError, exceptions.ConfigError) as err:
        return _fail(err, status.EXIT_USAGE)
    timeout = conf.timeout or conf.status.backend_timeout
    group = conf.coordination.group
    fetch = (status.fetch_locks if conf.locks else
             status.fetch_members_and_locks if target else
             status.fetch_members)
    try:
        found = fetch(conf, timeout)
    except exceptions.ConfigError as err:
        return _fail(err, status.EXIT_USAGE)
    except exceptions.CoordsyncError as err:
        if conf.format == 'json':
            print(json.dumps(_unreachable(conf, err), indent=2,
                             sort_keys=True))
        return _fail(err, status.EXIT_CODES[status.UNREACHABLE])
    if conf.locks:
        report = status.build_locks_report(
            found, group=group, backend_url=conf.coordination.backend_url)
        _print(conf, report, status.format_locks_table, columns)
        return 0
    if target:
        members, locks = found
        report = status.build_who_report(
            target, eligible, members, locks, group=group,
            backend_url=conf.coordination.backend_url)
        _print(conf, report, status.format_who)
        return status.EXIT_CODES[report['state']]
    if conf.sync:
        report = status.build_sync_report(found, group=group)
        _print(conf, report, status.format_sync_table, columns)
        return status.EXIT_CODES[report['state']]
    if conf.show_reconciler:
        report = status.build_reconciler_report(found, group=group)
        _print(conf, report, status.format_reconciler_table)
        return status.EXIT_CODES[report['state']]
    report = status.build_report(
        found, group=group, expect=conf.expect,
        expected_nodes=status.ring_nodes(conf),
        stale_after=conf.status.stale_after)
    _print(conf, report, status.format_table, columns)
    return status.EXIT_CODES[report['state']]


def _unreachable(conf, err):
    """The report printed (``-f json``) when the backend is out of
    reach, in the shape of the chosen view."""
    group = conf.coordination.group
    if not (conf.locks or conf.sync or conf.show_reconciler or conf.who):
        return status.unreachable_report(group, err)
    listing = ('locks' if conf.locks else
               'containers' if conf.sync else
               'reconcilers' if conf.show_reconciler else 'members')
    report = {'group': group, 'state': status.UNREACHABLE,
              'problems': [str(err)], listing: []}
    if conf.show_reconciler:
        report['queues'] = []
    return report


def _print(conf, report, as_table, columns=None):
    if conf.format == 'json':
        print(json.dumps(report, indent=2, sort_keys=True))
    elif columns:
        print(as_table(report, columns))
    else:
        print(as_table(report))


if __name__ == '__main__':
    sys.exit(main())
