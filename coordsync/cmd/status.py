"""coordsync-status: who is in the group and what each member is doing.

Exit status: 0 healthy, 1 degraded (missing, stale or erring members),
2 backend unreachable (or a bad config).
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
]


def main(argv=None):
    conf = service.prepare_service(argv, prog='coordsync-status',
                                   cli_opts=CLI_OPTS)
    timeout = conf.timeout or conf.status.backend_timeout
    try:
        members = status.fetch_members(conf, timeout)
    except exceptions.CoordsyncError as err:
        report = {'group': conf.coordination.group,
                  'state': status.UNREACHABLE, 'members': [],
                  'problems': [str(err)]}
        if conf.format == 'json':
            print(json.dumps(report, indent=2, sort_keys=True))
        print('coordsync-status: error: %s' % err, file=sys.stderr)
        return status.EXIT_CODES[status.UNREACHABLE]
    report = status.build_report(
        members, group=conf.coordination.group, expect=conf.expect,
        expected_nodes=status.ring_nodes(conf),
        stale_after=conf.status.stale_after)
    if conf.format == 'json':
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(status.format_table(report))
    return status.EXIT_CODES[report['state']]


if __name__ == '__main__':
    sys.exit(main())
