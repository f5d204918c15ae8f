"""coordsync-ring: create, edit, rebalance and inspect a ring file.

::

    coordsync-ring FILE create --part-power P --replicas R \\
        [--min-part-hours H]
    coordsync-ring FILE add --node N --ip IP --port PORT --device D \\
        --weight W [--id I] [--region R] [--zone Z]
    coordsync-ring FILE remove --id I
    coordsync-ring FILE set-weight --id I --weight W
    coordsync-ring FILE set-min-part-hours H
    coordsync-ring FILE pretend-min-part-hours-passed
    coordsync-ring FILE rebalance [--seed S]
    coordsync-ring FILE show [--format table|json]
    coordsync-ring FILE dispersion [--format table|json]
    coordsync-ring FILE lookup [--config-file F] [--hash-prefix X] \\
        [--hash-suffix Y] ACCOUNT [CONTAINER [OBJECT]]

A command that edits the ring loads it, changes it in memory and writes
it back (atomically) only if everything succeeded. Daemons see nothing
of ``add``, ``remove`` or ``set-weight`` until a ``rebalance`` is saved.
A rebalance moves no replica of a partition that moved less than
``min_part_hours`` ago (default 1, like Swift), and at most one replica
of a partition at a time: replication must copy a moved replica before
another copy leaves. ``lookup`` hashes names with the cluster's salts,
read from ``--config-file`` (or given with ``--hash-prefix`` and
``--hash-suffix``); without them it refuses, as a partition computed
with the wrong salts looks right and is not.
Any error prints one line, ``coordsync-ring: error: ...``, on stderr
and exits with status 2; no file is changed then.
"""

import argparse
import itertools
import json
import os
import sys
import time

from oslo_config import cfg

from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync.common.ring import Ring
from coordsync.common.ring import RingBuilder
from coordsync.common.ring import builder as builder_mod

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
    builder = RingBuilder(args.part_power, args.replicas,
                          min_part_hours=args.min_part_hours)
    builder.save(args.file)
    print('created %s: %d partitions, %d replicas, min_part_hours %d' % (
        args.file, builder.partition_count, builder.replicas,
        builder.min_part_hours))


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


def _set_min_part_hours(args):
    builder = RingBuilder.load(args.file)
    builder.set_min_part_hours(args.hours)
    builder.save(args.file)
    print('set min_part_hours to %d' % builder.min_part_hours)


def _pretend_min_part_hours_passed(args):
    builder = RingBuilder.load(args.file)
    held = len(builder.held_partitions())
    builder.pretend_min_part_hours_passed()
    builder.save(args.file)
    print('%d partitions no longer held by min_part_hours; the next '
          'rebalance may move any of them' % held)


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
    if result.held_back:
        print('%d partition-replicas held back by min_part_hours (%d h): '
              'rebalance again in %s' % (
                  result.held_back, builder.min_part_hours,
                  _duration(result.wait)))


def _duration(seconds):
    minutes = int(-(-seconds // 60))
    return '%dh%02dm' % divmod(minutes, 60)


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
    print(_held_line(report))
    print(_table(report['devices'], _COLUMNS))


def _held_line(report):
    held = report['held_partitions']
    line = 'min_part_hours %d, %d partitions held' % (
        report['min_part_hours'], held)
    if held:
        line += ' (the first may move in %s)' % _duration(
            report['held_wait'])
    return line


def _report(builder):
    counts = builder.part_counts()
    ideals = builder.ideal_parts()
    balances = builder.device_balance()
    devices = [dict(dev, parts=counts[dev['id']],
                    ideal=round(ideals[dev['id']], 2),
                    balance=round(balances[dev['id']], 2))
               for dev in builder.devices]
    now = time.time()
    held = builder.held_partitions(now)
    return {'part_power': builder.part_power,
            'partitions': builder.partition_count,
            'replicas': builder.replicas,
            'min_part_hours': builder.min_part_hours,
            'held_partitions': len(held),
            'held_wait': max(min(held.values(), default=now) - now, 0),
            'rebalanced': builder.assignment is not None,
            'balance': round(builder.balance(), 2),
            'undispersed': builder.undispersed(),
            'dispersion': round(
                builder.undispersed() * 100.0 / builder.partition_count, 2),
            'devices': devices}


def _dispersion(args):
    builder = RingBuilder.load(args.file)
    report = _report(builder)
    tiers = builder.tiers()
    if args.format == 'json':
        print(json.dumps({'partitions': report['partitions'],
                          'replicas': report['replicas'],
                          'rebalanced': report['rebalanced'],
                          'dispersion': report['dispersion'],
                          'undispersed': report['undispersed'],
                          'balance': report['balance'],
                          'tiers': tiers}, indent=2))
        return
    if not report['rebalanced']:
        print('%s: not rebalanced yet' % args.file)
        return
    print('%s: dispersion %.2f%% (%d of %d partitions with two replicas '
          'in one zone), balance %.2f%%' % (
              args.file, report['dispersion'], report['undispersed'],
              report['partitions'], report['balance']))
    # The histogram: how many partitions have 0, 1, 2... replicas in
    # the tier; a zone with partitions at 2+ holds doubled replicas.
    columns = ('tier', 'name', 'replicas', 'max') + tuple(
        'parts@%d' % n for n in range(builder.replicas + 1))
    rows = [dict(tier, **{'parts@%d' % n: count for n, count
                          in enumerate(tier['histogram'])})
            for tier in tiers]
    print(_table(rows, columns))


_COLUMNS = ('id', 'region', 'zone', 'node', 'ip', 'port', 'device',
            'weight', 'parts', 'ideal', 'balance', 'removed')


def _table(devices, columns):
    rows = [columns] + [tuple(_cell(dev[c]) for c in columns)
                        for dev in devices]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width
                               in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _cell(value):
    if isinstance(value, bool):
        return 'yes' if value else ''
    return str(value)


def _salts(args):
    """The hash prefix and suffix: given, or from the config files.

    Never the empty defaults by accident: a partition computed with
    the wrong salts looks as right as the true one.
    """
    if args.hash_prefix is not None or args.hash_suffix is not None:
        return args.hash_prefix or '', args.hash_suffix or ''
    files = args.config_file or cfg.find_config_files(project='coordsync')
    if not files:
        raise exceptions.ConfigError(
            'lookup needs the cluster\'s hash salts: give --config-file '
            '(with [DEFAULT] hash_path_prefix and hash_path_suffix) or '
            '--hash-prefix and --hash-suffix')
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    try:
        conf([], project='coordsync', default_config_files=files,
             use_env=False)
        prefix, suffix = conf.hash_path_prefix, conf.hash_path_suffix
    except cfg.ConfigFilesNotFoundError as err:
        raise exceptions.ConfigError('config file not found: %s' % ', '.join(
            err.config_files)) from err
    except (cfg.Error, ValueError) as err:
        raise exceptions.ConfigError(str(err)) from err
    if not prefix and not suffix:
        raise exceptions.ConfigError(
            'no hash_path_prefix or hash_path_suffix in %s; for an '
            'unsalted cluster give --hash-prefix \'\' --hash-suffix \'\''
            % ', '.join(files))
    return prefix, suffix


def _lookup(args):
    ring = Ring(args.file)
    ring.hash_prefix, ring.hash_suffix = _salts(args)
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
    parser = _Parser(prog=PROG, description=(
        'Create, edit, rebalance and inspect a ring file: which devices '
        'hold each partition.'))
    parser.add_argument('file', metavar='FILE', help='The ring file.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)

    create = commands.add_parser('create', help='Create an empty ring.')
    create.add_argument('--part-power', type=int, required=True,
                        help='The ring has 2 ** P partitions.')
    create.add_argument('--replicas', type=int, required=True)
    create.add_argument('--min-part-hours', type=int, metavar='H',
                        default=builder_mod.DEFAULT_MIN_PART_HOURS,
                        help='Hours a moved partition is not moved again '
                             '(default: %(default)s).')
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

    hours = commands.add_parser(
        'set-min-part-hours',
        help='Hours a moved partition is not moved again.')
    hours.add_argument('hours', type=int, metavar='H')
    hours.set_defaults(func=_set_min_part_hours)

    pretend = commands.add_parser(
        'pretend-min-part-hours-passed',
        help='Let the next rebalance move any partition (only once '
             'replication has caught up).')
    pretend.set_defaults(func=_pretend_min_part_hours_passed)

    rebalance = commands.add_parser('rebalance', help='Assign partitions.')
    rebalance.add_argument('--seed', type=int, default=0)
    rebalance.set_defaults(func=_rebalance)

    show = commands.add_parser('show', help='Devices and balance.')
    show.add_argument('--format', choices=('table', 'json'),
                      default='table')
    show.set_defaults(func=_show)

    dispersion = commands.add_parser(
        'dispersion', help='How replicas spread over regions, zones and '
                           'nodes.')
    dispersion.add_argument('--format', choices=('table', 'json'),
                            default='table')
    dispersion.set_defaults(func=_dispersion)

    lookup = commands.add_parser('lookup', help='Where a name lives.')
    lookup.add_argument('--config-file', action='append', metavar='PATH',
                        help='Config file with the hash salts ([DEFAULT] '
                             'hash_path_prefix, hash_path_suffix); may be '
                             'repeated. Default: coordsync\'s usual '
                             'config files.')
    lookup.add_argument('--hash-prefix',
                        help='The salt itself, instead of a config file.')
    lookup.add_argument('--hash-suffix',
                        help='The salt itself, instead of a config file.')
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
