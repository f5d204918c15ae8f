"""coordsync-client: put, get, head and delete objects on the cluster.

    coordsync-client --config-file F put ACCOUNT CONTAINER OBJECT FILE
    coordsync-client --config-file F get ACCOUNT CONTAINER OBJECT [-o OUT]
    coordsync-client --config-file F --policy silver head A C O

Writes go to every primary (handoffs stand in for dead ones) and succeed on
a majority; reads return the newest version. ``--policy`` (a storage
policy's name or index) chooses whose ring and objects; the default
policy's otherwise. Exit status: 0 done, 1 not found or no quorum, 2 bad
usage or config.
"""

import json
import sys

from oslo_config import cfg

from coordsync import concurrency
from coordsync import exceptions
from coordsync import service
from coordsync.common import storage_policy
from coordsync.obj import client as object_client


def _add_parsers(subparsers):
    for name, helptext in (('put', 'store FILE (- for stdin)'),
                           ('get', 'print or save the newest version'),
                           ('head', 'show the newest version\'s headers'),
                           ('delete', 'delete the object')):
        parser = subparsers.add_parser(name, help=helptext)
        for arg in ('account', 'container', 'object'):
            parser.add_argument(arg)
        if name == 'put':
            parser.add_argument('file')
            parser.add_argument('--content-type')
        if name == 'get':
            parser.add_argument('-o', '--output',
                                help='write the body here, not stdout')


DESCRIPTION = ('Put, get, head or delete one object on the cluster, '
               'talking to the node servers directly.')
COMMAND_OPT = cfg.SubCommandOpt('command', handler=_add_parsers,
                                title='Commands',
                                help='What to do with the object.')
POLICY_OPT = cfg.StrOpt('policy', metavar='NAME|INDEX',
                        help='The storage policy of the object (its name '
                             'or index; default: the default policy). '
                             'Give it before the command.')


def choose_policy(conf, wanted):
    """The StoragePolicy named or numbered ``wanted`` (the default one
    when None); ConfigError (one line) if there is none."""
    policies = storage_policy.from_conf(conf)
    if wanted is None:
        return policies.default
    found = (policies.get_by_name(wanted)
             or policies.get_by_index(wanted.strip()))
    if found is None:
        raise exceptions.ConfigError(
            'unknown storage policy %r (known: %s)' % (
                wanted, ', '.join('%d %s' % (p.index, p.name)
                                  for p in policies)))
    return found


def _read_input(path):
    if path == '-':
        return sys.stdin.buffer.read()
    with open(path, 'rb') as fh:
        return fh.read()


def run(conf, objects):
    cmd = conf.command
    names = (cmd.account, cmd.container, cmd.object)
    if cmd.name == 'put':
        when = objects.put(*names, _read_input(cmd.file),
                           content_type=cmd.content_type)
        print('stored /%s/%s/%s at %s' % (*names, when.normal))
    elif cmd.name == 'delete':
        when = objects.delete(*names)
        print('deleted /%s/%s/%s at %s' % (*names, when.normal))
    elif cmd.name == 'head':
        headers = objects.head(*names)
        if headers is None:
            print('not found: /%s/%s/%s' % names, file=sys.stderr)
            return 1
        print(json.dumps(headers, indent=2, sort_keys=True))
    else:
        found = objects.get(*names)
        if found is None:
            print('not found: /%s/%s/%s' % names, file=sys.stderr)
            return 1
        _headers, body = found
        out = open(cmd.output, 'wb') if cmd.output else sys.stdout.buffer
        try:
            for chunk in body:
                out.write(chunk)
        finally:
            if cmd.output:
                out.close()
    return 0


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-client',
                                   description=DESCRIPTION,
                                   cli_opts=[POLICY_OPT, COMMAND_OPT])
    try:
        policy = choose_policy(conf, conf.policy)
        objects = object_client.ObjectClient(
            conf, policy.load_ring(conf), policy=policy.index)
    except exceptions.CoordsyncError as err:
        print('coordsync-client: error: %s' % err, file=sys.stderr)
        return 2
    try:
        return run(conf, objects)
    except OSError as err:
        print('coordsync-client: error: %s' % err, file=sys.stderr)
        return 2
    except exceptions.CoordsyncError as err:
        print('coordsync-client: error: %s' % err, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
