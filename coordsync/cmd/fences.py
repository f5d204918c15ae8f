"""coordsync-fences: the fencing tokens this node's servers accept.

``coordsync-fences list [--prefix P]`` prints, per locked item, the
highest fencing token this node accepted and when a holder of it last
talked to this node. ``coordsync-fences reset --yes [--prefix P]``
forgets them.

Tokens only grow within one coordination backend (on ZooKeeper they are
zxids of one ensemble). A cluster moved to another backend — a new
ZooKeeper ensemble, not one restored from the old one's data — gets
tokens that start again from low numbers, and every node would refuse
them (409, ``X-Coordsync-Fenced``) until reset: stop every coordsync
process of the cluster, switch ``[coordination] backend_url``, run
``coordsync-fences reset --yes`` on each node, and start again.

Exit status: 0 done, 1 the store cannot be read or written, 2 a bad
command line or config.
"""

import datetime
import sys

from oslo_config import cfg

from coordsync import service
from coordsync.common import fencing

DESCRIPTION = ('List or reset the highest fencing token this node\'s '
               'servers accepted per locked item.')


def _add_parsers(subparsers):
    for name, help_text in (
            ('list', 'Print the highest token accepted per item.'),
            ('reset', 'Forget the highest tokens (every coordsync process '
                      'of the cluster stopped first).')):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument('--prefix', default='',
                            help='Only items whose name starts with this, '
                                 'e.g. coordsync/replicate/0/.')
        if name == 'reset':
            parser.add_argument('--yes', action='store_true',
                                help='Do it (without it, nothing is '
                                     'changed).')


CLI_OPTS = [
    cfg.SubCommandOpt('action', title='Commands', handler=_add_parsers,
                      help='What to do.'),
]


def main(argv=None):
    conf = service.prepare_service(argv, prog='coordsync-fences',
                                   description=DESCRIPTION,
                                   cli_opts=CLI_OPTS)
    store = fencing.TokenStore(conf.server.fence_db)
    action = conf.action
    try:
        if action.name == 'list':
            rows = store.items(action.prefix)
            print(_table(rows))
            return 0
        if not action.yes:
            count = len(store.items(action.prefix))
            print('coordsync-fences: would forget the tokens of %d items '
                  'in %s; add --yes to do it' % (count,
                                                 conf.server.fence_db),
                  file=sys.stderr)
            return 2
        count = store.reset(action.prefix)
        print('Forgot the highest tokens of %d items in %s'
              % (count, conf.server.fence_db))
        return 0
    except fencing.TokenStoreError as err:
        print('coordsync-fences: error: %s' % err, file=sys.stderr)
        return 1
    finally:
        store.close()


def _table(rows):
    lines = [('ITEM', 'TOKEN', 'LAST ADMITTED (UTC)')]
    for item, token, updated in rows:
        when = datetime.datetime.fromtimestamp(
            updated, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S')
        lines.append((item, str(token), when))
    widths = [max(len(row[i]) for row in lines) for i in range(2)]
    return '\n'.join('%-*s  %*s  %s' % (widths[0], row[0], widths[1],
                                        row[1], row[2]) for row in lines)


if __name__ == '__main__':
    sys.exit(main())
