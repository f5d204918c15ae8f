"""Container sync to another cluster: realms, signed requests and the
daemon that sends rows (see :mod:`coordsync.sync.daemon`)."""
