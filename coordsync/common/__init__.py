"""What every coordsync daemon shares.

* :mod:`~coordsync.common.coordination` -- the group, heartbeats, locks.
* :mod:`~coordsync.common.division` -- which items this node tries first.
* :mod:`~coordsync.common.worker` -- the coordinated worker engine.
* :mod:`~coordsync.common.ring` -- placement of partitions on devices.
* :mod:`~coordsync.common.direct_client` -- signed node-to-node requests.
* :mod:`~coordsync.common.signing` -- the signature those requests carry.
* :mod:`~coordsync.common.fsutil` -- atomic writes and directory fsync.
"""
