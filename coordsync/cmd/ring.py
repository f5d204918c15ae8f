"""coordsync-ring: create, edit, rebalance and inspect a ring file.

::

    coordsync-ring FILE create --part-power P --replicas R
    coordsync-ring FILE add --node N --ip IP --port PORT --device D \\
        --weight W [--id I] [--region R] [--zone Z]
    coordsync-ring FILE remove --id I
    coordsync-ring FILE set-weight --id I --weight W
    coordsync-ring FILE rebalance [--seed S]
    coordsync-ring FILE show [--format table|json]
    coordsync-ring FILE lookup [--hash-prefix X] [--hash-suffix Y] \\
        ACCOUNT [CONTAINER [OBJECT]]

A command that edits the ring loads it, changes it in memory and writes
it back (atomically) only if everything succeeded. Daemons see nothing
of ``add``, ``remove`` or ``set-weight`` until a ``rebalance`` is saved.
Any error prints one line, ``coordsync-ring: error: ...``, on stderr
and exits with status 2.
"""

import argparse
import itertools
import json
import os
import sys

from coordsync import exceptions
from coordsync.common.ring import Ring
from coordsync.common.ring import RingBuilder

PROG = 'coordsync-ring'
EXIT_ERROR = 2


class _UsageError(Exception):
    """A bad command line; reported like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the usage too; one line is the contract.
        raise _UsageError(message)


def _create(args):
    if os.path.exists(args.file):
        raise exceptions.RingError(
            '%s already exists; refusing to overwrite a ring' % args.file)
    builder = RingBuilder(args.part_power, args.replicas)
    builder.save(args.file)
    print('created %s: %d partitions, %d replicas' % (
        args.file, builder.partition_count, builder.replicas))


def _add(args):
    builder = RingBuilder.load(args.file)
    dev = builder.add_device(args.node, args.ip, args.port, args.device,
                             args.weight, dev_id=args.id,
                             region=args.region, zone=args.zone)
    builder.save(args.file)
    print('added device %s; rebalance to give it partitions'
          % _describe(dev))


def _remove(args):
    builder = RingBuilder.load(args.file)
    held = builder.part_counts().get(args.id, 0)
    dev = builder.remove_device(args.id)
    builder.save(args.file)
    if dev['removed']:
        print('marked device %s for removal; rebalance to move its %d '
              'partition-replicas' % (_describe(dev), held))
    else:
        print('removed device %s' % _describe(dev))


def _set_weight(args):
    builder = RingBuilder.load(args.file)
    dev = builder.set_weight(args.id, args.weight)
    builder.save(args.file)
    print('set weight of device %s; rebalance to apply it'
          % _describe(dev))


def _rebalance(args):
    builder = RingBuilder.load(args.file)
    before = builder.to_dict()
    first = builder.assignment is None
    result = builder.rebalance(seed=args.seed)
    if builder.to_dict() == before:
        print('nothing to move; %s unchanged' % args.file)
    else:
        # Only write on change: daemons restart a pass on a new file.
        builder.save(args.file)
        if first:
            print('assigned %d partition-replicas' % (
                builder.partition_count * builder.replicas))
        else:
            print('moved %d partition-replicas' % result.moved)
    print('balance %.2f%%, %d partitions with two replicas in one zone'
          % (result.balance, result.undispersed))


def _show(args):
    builder = RingBuilder.load(args.file)
    report = _report(builder)
    if args.format == 'json':
        print(json.dumps(report, indent=2))
        return
    print('%s: part_power %d (%d partitions), %d replicas, %s' % (
        args.file, report['part_power'], report['partitions'],
        report['replicas'], 'balance %.2f%%, %d partitions with two '
        'replicas in one zone' % (report['balance'], report['undispersed'])
        if report['rebalanced'] else 'not rebalanced yet'))
    print(_table(report['devices']))


def _report(builder):
    counts = builder.part_counts()
    ideals = builder.ideal_parts()
    devices = [dict(dev, parts=counts[dev['id']],
                    ideal=round(ideals[dev['id']], 2))
               for dev in builder.devices]
    return {'part_power': builder.part_power,
            'partitions': builder.partition_count,
            'replicas': builder.replicas,
            'rebalanced': builder.assignment is not None,
            'balance': round(builder.balance(), 2),
            'undispersed': builder.undispersed(),
            'devices': devices}


_COLUMNS = ('id', 'region', 'zone', 'node', 'ip', 'port', 'device',
            'weight', 'parts', 'ideal', 'removed')


def _table(devices):
    rows = [_COLUMNS] + [tuple(_cell(dev[c]) for c in _COLUMNS)
                         for dev in devices]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width
                               in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _cell(value):
    if isinstance(value, bool):
        return 'yes' if value else ''
    return str(value)


def _lookup(args):
    ring = Ring(args.file, hash_prefix=args.hash_prefix,
                hash_suffix=args.hash_suffix)
    part, primaries = ring.get_nodes(args.account, args.container, args.obj)
    print('partition %d' % part)
    for dev in primaries:
        print('  primary %d: %s' % (dev['index'], _describe(dev)))
    for dev in itertools.islice(ring.get_more_nodes(part), args.handoffs):
        print('  handoff %d: %s' % (dev['handoff_index'], _describe(dev)))


def _describe(dev):
    host = '[%s]' % dev['ip'] if ':' in dev['ip'] else dev['ip']
    return '%d %s %s:%d/%s weight %g (region %d zone %d)' % (
        dev['id'], dev['node'], host, dev['port'], dev['device'],
        dev['weight'], dev['region'], dev['zone'])


def _parser():
    parser = _Parser(prog=PROG, description='Edit and inspect a ring.')
    parser.add_argument('file', metavar='FILE', help='The ring file.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)

    create = commands.add_parser('create', help='Create an empty ring.')
    create.add_argument('--part-power', type=int, required=True,
                        help='The ring has 2 ** P partitions.')
    create.add_argument('--replicas', type=int, required=True)
    create.set_defaults(func=_create)

    add = commands.add_parser('add', help='Add a device.')
    add.add_argument('--node', required=True, help='Node (host) name.')
    add.add_argument('--ip', required=True)
    add.add_argument('--port', type=int, required=True)
    add.add_argument('--device', required=True, help='Device name.')
    add.add_argument('--weight', type=float, required=True)
    add.add_argument('--id', type=int, help='Default: the next free id.')
    add.add_argument('--region', type=int, default=0)
    add.add_argument('--zone', type=int, default=0)
    add.set_defaults(func=_add)

    remove = commands.add_parser('remove', help='Remove a device.')
    remove.add_argument('--id', type=int, required=True)
    remove.set_defaults(func=_remove)

    weight = commands.add_parser('set-weight', help="Change a weight.")
    weight.add_argument('--id', type=int, required=True)
    weight.add_argument('--weight', type=float, required=True)
    weight.set_defaults(func=_set_weight)

    rebalance = commands.add_parser('rebalance', help='Assign partitions.')
    rebalance.add_argument('--seed', type=int, default=0)
    rebalance.set_defaults(func=_rebalance)

    show = commands.add_parser('show', help='Devices and balance.')
    show.add_argument('--format', choices=('table', 'json'),
                      default='table')
    show.set_defaults(func=_show)

    lookup = commands.add_parser('lookup', help='Where a name lives.')
    lookup.add_argument('--hash-prefix', default='')
    lookup.add_argument('--hash-suffix', default='')
    lookup.add_argument('--handoffs', type=int, default=3,
                        help='How many handoffs to list.')
    lookup.add_argument('account')
    lookup.add_argument('container', nargs='?')
    lookup.add_argument('obj', nargs='?', metavar='object')
    lookup.set_defaults(func=_lookup)
    return parser


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        args.func(args)
    except (_UsageError, exceptions.CoordsyncError, OSError) as err:
        print('%s: error: %s' % (PROG, _one_line(err)), file=sys.stderr)
        return EXIT_ERROR
    return 0


def _one_line(err):
    return ' '.join(str(err).split())


if __name__ == '__main__':
    sys.exit(main())
