"""A real coordsync process that takes locks, for the functional tests.

``hold``: take the lock once, print ``LOCKED <name>`` and keep it (and the
membership) until killed. ``contend``: for ``--duration`` seconds, take the
lock whenever free, record ``start``/``end`` with wall-clock times in an
append-only audit file, and release it.
"""

import os
import random
import sys
import time

from oslo_config import cfg

from coordsync import concurrency
from coordsync import service
from coordsync.common import coordination

CLI_OPTS = [
    cfg.StrOpt('mode', choices=['hold', 'contend'], required=True),
    cfg.StrOpt('lock', required=True),
    cfg.StrOpt('audit'),
    cfg.FloatOpt('duration', default=10.0),
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
        else:
            contend(coordinator, conf)
    finally:
        coordinator.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
