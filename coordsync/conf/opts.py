"""Entry point for oslo-config-generator (``oslo.config.opts``)."""

from coordsync import conf


def list_opts():
    opts = []
    for area in conf.AREAS:
        opts.extend(area.list_opts())
    return opts
