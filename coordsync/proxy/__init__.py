"""The Swift-compatible API (``coordsync-proxy``): auth, then accounts,
containers and objects over the node servers (see :mod:`.server`)."""
