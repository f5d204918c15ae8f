"""Every background worker a node can run, by the name operators use.

``[server] workers`` lists names from here; each is also a command of
its own (``coordsync-replicator`` runs ``object-replicator``).
"""

from coordsync.common import coordination
from coordsync.container import replicator as db_replicator
from coordsync.container import updater
from coordsync.obj import auditor
from coordsync.obj import replicator
from coordsync.reconciler import daemon as reconciler_daemon
from coordsync.sync import daemon as sync_daemon

WORKER_CLASSES = {
    replicator.ObjectReplicator.name: replicator.ObjectReplicator,
    updater.ObjectUpdater.name: updater.ObjectUpdater,
    db_replicator.ContainerReplicator.name:
        db_replicator.ContainerReplicator,
    db_replicator.AccountReplicator.name: db_replicator.AccountReplicator,
    sync_daemon.ContainerSync.name: sync_daemon.ContainerSync,
    reconciler_daemon.Reconciler.name: reconciler_daemon.Reconciler,
    auditor.ObjectAuditor.name: auditor.ObjectAuditor,
}


def make_workers(conf, names, roles=()):
    """One Coordinator (member) for this process, and its workers.

    The member's roles are ``roles`` plus the workers' names, which is
    how peers find who runs what.
    """
    coordinator = coordination.Coordinator(conf,
                                           roles=list(roles) + list(names))
    workers = [WORKER_CLASSES[name](conf, coordinator) for name in names]
    devices = set()
    for worker in workers:
        devices.update(worker.local_devices())
    coordinator.devices = sorted(devices)
    return coordinator, workers
