"""Entry point for oslo-config-generator (``oslo.config.opts``)."""

from coordsync import conf
from coordsync.common import storage_policy


def list_opts():
    opts = []
    for area in conf.AREAS:
        opts.extend(area.list_opts())
    opts.extend(storage_policy.list_opts())
    return opts
