"""A real coordsync process that takes locks, for the functional tests.

``hold``: take the lock once, print ``LOCKED <name>`` and keep it (and the
membership) until killed. ``contend``: for ``--duration`` seconds, take the
lock whenever free, record ``start``/``end`` with wall-clock times in an
append-only audit file, and release it. ``window``: ``--rounds`` times,
try-lock the ``--count`` names ``<lock>/<i>`` with ``try_lock_many`` and
print ``GRANTED <json {name: token}>``; with ``--wait-all`` print
``REFUSED <n>`` once if some are held elsewhere and retry those until all
are granted. Between rounds, and after the last without ``--hold``,
release them all, flush and print ``RELEASED``; with ``--hold`` keep the
last round's locks until SIGTERM (then stop cleanly) or SIGKILL.
"""

import json
import os
import random
import signal
import sys
import time

from oslo_config import cfg

from coordsync import concurrency
from coordsync import service
from coordsync.common import coordination

CLI_OPTS = [
    cfg.StrOpt('mode', choices=['hold', 'contend', 'window'],
               required=True),
    cfg.StrOpt('lock', required=True),
    cfg.StrOpt('audit'),
    cfg.FloatOpt('duration', default=10.0),
    cfg.IntOpt('count', default=16),
    cfg.IntOpt('rounds', default=1),
    cfg.BoolOpt('wait-all', default=False),
    cfg.BoolOpt('hold', default=False),
]


def audit(path, member, event):
    line = '%s %s %.6f\n' % (member, event, time.time())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def hold(coordinator, name):
    while not (coordinator.healthy and coordinator.try_lock(name)):
        concurrency.sleep(0.1)
    print('LOCKED %s' % name, flush=True)
    while True:
        concurrency.sleep(1)


def contend(coordinator, conf):
    deadline = time.monotonic() + conf.duration
    taken = 0
    while time.monotonic() < deadline:
        if coordinator.healthy and coordinator.try_lock(conf.lock):
            taken += 1
            audit(conf.audit, coordinator.member_id, 'start')
            concurrency.sleep(random.uniform(0.01, 0.05))
            owner = coordinator.is_still_owner(conf.lock)
            audit(conf.audit, coordinator.member_id,
                  'end' if owner else 'lost')
            coordinator.release(conf.lock)
        concurrency.sleep(random.uniform(0.0, 0.02))
    print('TAKEN %d' % taken, flush=True)


def take_window(coordinator, names, wait_all):
    granted, refused_once = {}, False
    while True:
        missing = [name for name in names if name not in granted]
        if coordinator.healthy:
            tokens = coordinator.try_lock_many(missing)
            granted.update((n, t) for n, t in tokens.items() if t is not None)
        refused = len(names) - len(granted)
        if not wait_all or refused == 0:
            return granted
        if not refused_once:
            print('REFUSED %d' % refused, flush=True)
            refused_once = True
        concurrency.sleep(0.1)


def window(coordinator, conf):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    names = ['%s/%d' % (conf.lock, i) for i in range(conf.count)]
    for round_ in range(conf.rounds):
        tokens = take_window(coordinator, names, conf.wait_all)
        print('GRANTED %s' % json.dumps(tokens, sort_keys=True), flush=True)
        if conf.hold and round_ == conf.rounds - 1:
            break
        for name in tokens:
            coordinator.release(name)
        coordinator.flush_releases()
        print('RELEASED', flush=True)
    while conf.hold and not stopping:
        concurrency.sleep(0.1)


def main():
    concurrency.monkey_patch()
    conf = service.prepare_service(sys.argv[1:], prog='lock-worker',
                                   cli_opts=CLI_OPTS)
    coordinator = coordination.Coordinator(conf, roles=['test'])
    if not coordinator.start(wait=30):
        print('NOT JOINED', flush=True)
        return 1
    try:
        if conf.mode == 'hold':
            hold(coordinator, conf.lock)
        elif conf.mode == 'window':
            window(coordinator, conf)
        else:
            contend(coordinator, conf)
    finally:
        coordinator.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
