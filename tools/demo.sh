#!/usr/bin/env bash
# The Quick start's run command. It installs coordsync and
# python-swiftclient into .venv and starts a local 3-node cluster (the
# embedded coordination backend, every node running the object
# replicator, the object updater, the container and account replicators)
# with its Swift API (coordsync-proxy). Then, with the `swift` command
# line client: it creates a container, uploads a directory and lists it;
# damages replicas (n3 loses every object on its disks; n2 is down
# while more files are uploaded, which leaves async pendings on the other
# nodes; n1 loses its replica of the container database); brings n2 back
# and waits until the workers in the nodes have made every object
# replica and every container replica's listing level again (printing
# how that picture changes, then what each worker did); lists and downloads
# everything again (byte for byte). Then container sync: it starts a
# second cluster, writes a realm (container-sync-realms.conf) naming both
# clusters' APIs, syncs the container to one of the second cluster
# (X-Container-Sync-To //demo/backup/AUTH_test/photos-backup), deletes two
# objects, and waits until the second cluster lists the same objects,
# showing coordsync-status --sync with the lag falling to zero. Last, it
# shows coordsync-status with every worker's progress, and stops both
# clusters.
#
# With --split-brain, before stopping, a split-brain for real: the
# cluster has two storage policies (gold, the default, and silver); a
# container's first replica's node is stopped, the container is deleted
# and created again as silver, files are uploaded; the node comes back
# with its replica still saying gold, and a proxy that asks it first
# (restarted, so that it has not cached the container) puts the next
# files into gold. The container replicators in the nodes settle the
# replicas on silver and queue the misplaced objects; the reconcilers
# move them (4 entries per pass, so the queue is seen draining in
# coordsync-status --reconciler); every file is downloaded again and
# the census shows every object in silver.
#
#   tools/demo.sh [--keep] [--split-brain]
#       --keep: leave the clusters running
#       --split-brain: also show a split-brain repaired (about a minute)
#
# Environment: COORDSYNC_DEMO_DIR, the cluster directory (default
# ./local-cluster; the second cluster goes to <it>-backup; clusters an
# earlier run left there are stopped and removed first);
# COORDSYNC_DEMO_PORT, the first of the 4 ports (3 nodes and the proxy;
# default 6200 if those are free, else free ones); COORDSYNC_DEMO_WAIT,
# the most seconds to wait for the repair and for the sync (180).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
KEEP=0
SPLIT_BRAIN=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --split-brain) SPLIT_BRAIN=1 ;;
        *) echo "usage: $0 [--keep] [--split-brain]" >&2; exit 2 ;;
    esac
done
WORKDIR=$(realpath -m "${COORDSYNC_DEMO_DIR:-$REPO/local-cluster}")
BACKUP="$WORKDIR-backup"
REALMS="$WORKDIR/container-sync-realms.conf"
WAIT=${COORDSYNC_DEMO_WAIT:-180}
ACCOUNT=AUTH_test          # the account of the cluster's user test:tester
CONTAINER=photos

step() { printf '\n=== %s\n' "$*"; }
scratch=$(mktemp -d)
started=0
recorder=""
cleanup() {
    local rc=$?
    if [ -n "$recorder" ]; then kill "$recorder" 2>/dev/null || true; fi
    if [ "$started" = 1 ] && [ "$KEEP" = 0 ]; then
        step "stopping the clusters (use --keep to leave them up)"
        coordsync-local-cluster --workdir "$WORKDIR" down || true
        if [ -e "$BACKUP/cluster.json" ]; then
            coordsync-local-cluster --workdir "$BACKUP" down || true
        fi
    elif [ "$started" = 1 ]; then
        step "the cluster is left running (--keep)"
        echo "export PATH=$REPO/.venv/bin:\$PATH ST_AUTH=${ST_AUTH:-}" \
             "ST_USER=test:tester ST_KEY=testing"
        echo "swift list $CONTAINER"
        echo "coordsync-local-cluster --workdir $WORKDIR status"
        echo "coordsync-local-cluster --workdir $WORKDIR down    # to stop it"
        echo "coordsync-local-cluster --workdir $BACKUP down    # and the other"
    fi
    rm -rf "$scratch"
    exit "$rc"
}
trap cleanup EXIT

# What the shell cannot do briefly: read the cluster, its recon files and
# each container replica (through the node API), run with .venv's python.
cat > "$scratch/helper.py" <<'EOF'
"""tools/demo.sh's helper: helper.py COMMAND ARGS (see the functions)."""
import json
import os
import signal
import sys
import time

WORKERS = ('object-replicator', 'object-updater', 'container-replicator',
           'account-replicator', 'container-sync', 'reconciler',
           'object-auditor')
# What a worker did, from the figures in its recon file.
DB_FIGURES = [('dbs_pushed', 'DBs pushed whole'),
              ('dbs_fetched', 'DBs fetched whole'),
              ('rows_pushed', 'rows pushed'), ('rows_pulled', 'rows pulled'),
              ('handoffs_removed', 'handoff DBs removed')]
FIGURES = {
    'object-replicator': [('objects_pushed', 'objects pushed'),
                          ('objects_pulled', 'objects pulled'),
                          ('handoffs_deleted', 'handoff partitions deleted')],
    'object-updater': [('successes', 'container updates sent'),
                       ('failures', 'updates failed (replica down)'),
                       ('unlinked', 'async pendings done')],
    'container-replicator': DB_FIGURES + [('reported',
                                           'reports to the account')],
    'account-replicator': DB_FIGURES,
    'container-sync': [('puts', 'objects sent to the other cluster'),
                       ('deletes', 'deletes sent'),
                       ('present', 'already there')],
    'reconciler': [('moved', 'misplaced objects moved'),
                   ('already_right', 'entries already right'),
                   ('tombstones', 'tombstones thrown')],
    'object-auditor': [('files_checked', 'object files checked'),
                       ('dbs_checked', 'databases checked'),
                       ('quarantined', 'damaged files quarantined')],
}


def nodes(workdir):
    with open(os.path.join(workdir, 'cluster.json')) as fh:
        return ['n%d' % i for i in range(1, json.load(fh)['nodes'] + 1)]


def recon(workdir, node, worker):
    path = os.path.join(workdir, node, 'state', 'recon', worker + '.json')
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def record(workdir, out):
    """Add up, per worker and node, the figures of every pass that ends
    from now on (each pass rewrites its recon file); until SIGTERM."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    seen = {(n, w): (recon(workdir, n, w) or {}).get('started_at')
            for n in nodes(workdir) for w in WORKERS}
    totals = {}

    def save():
        with open(out + '.tmp', 'w') as fh:
            json.dump(totals, fh)
        os.replace(out + '.tmp', out)
    save()
    while True:
        time.sleep(0.3)
        changed = False
        for (node, worker), last in seen.items():
            figures = recon(workdir, node, worker)
            if not figures or figures.get('started_at') == last:
                continue
            seen[node, worker] = figures.get('started_at')
            sums = totals.setdefault(worker, {}).setdefault(node, {})
            for key, _ in FIGURES[worker]:
                sums[key] = sums.get(key, 0) + figures.get(key, 0)
            changed = True
        if changed:
            save()


def summary(workdir, out):
    """Print what ``record`` added up: one line per worker and node."""
    with open(out) as fh:
        totals = json.load(fh)
    for worker in WORKERS:
        lines = []
        for node in nodes(workdir):
            sums = totals.get(worker, {}).get(node, {})
            done = ['%s %d' % (words, sums[k])
                    for k, words in FIGURES[worker] if sums.get(k)]
            if done:
                lines.append('  %-21s %s: %s' % (worker, node,
                                                 ', '.join(done)))
        print('\n'.join(lines) or '  %-21s nothing to do' % worker)


def pendings(workdir):
    """``{node: async pendings on its devices}`` (not quarantined)."""
    found = {}
    for node in nodes(workdir):
        devices = os.path.join(workdir, node, 'devices')
        count = 0
        for dev in sorted(os.listdir(devices)):
            for _root, _dirs, files in os.walk(
                    os.path.join(devices, dev, 'async_pending')):
                count += sum(1 for f in files if not f.startswith('.'))
        found[node] = count
    return found


def port():
    """The base port: 6200 if it and the next 3 are free, else free ones."""
    import socket
    from coordsync.cmd import local_cluster
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(('127.0.0.1', 6203))     # the proxy's
            free = local_cluster.ports_free(6200, 3)
        except OSError:
            free = False
    print(6200 if free else local_cluster.free_base_port(3))


def auth_url(workdir):
    from coordsync.cmd import local_cluster
    print(local_cluster.proxy_auth_url(local_cluster.load(workdir)))


def realms(path, *workdirs):
    """Write a realm ``demo`` whose clusters are the given ones' APIs
    (named by the directory: local-cluster -> local, ...-backup ->
    backup)."""
    import secrets
    from coordsync.cmd import local_cluster
    lines = ['[demo]', 'key = %s' % secrets.token_hex(16)]
    for workdir in workdirs:
        ip, port = local_cluster.proxy_address(local_cluster.load(workdir))
        name = 'backup' if workdir.endswith('-backup') else 'local'
        lines.append('cluster_%s = http://%s:%d/v1/' % (name, ip, port))
    with open(path + '.tmp', 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
    os.chmod(path + '.tmp', 0o600)
    os.replace(path + '.tmp', path)


def sync_lag(config, container, timeout):
    """Show coordsync-status --sync whenever the container's lag changes,
    until it is zero (exit 0) or ``timeout`` seconds (exit 1)."""
    import subprocess
    started = time.monotonic()
    last = None
    while True:
        out = subprocess.run(
            ['coordsync-status', '--config-file', config, '--sync',
             '--format', 'json'], capture_output=True, text=True).stdout
        try:
            rows = [r for r in json.loads(out)['containers']
                    if r['container'] == container]
        except (ValueError, KeyError):
            rows = []
        behind = rows[0]['rows_behind'] if rows else None
        if behind != last:
            subprocess.run(['coordsync-status', '--config-file', config,
                            '--sync'])
            last = behind
        if behind == 0:
            return 0
        if time.monotonic() - started > timeout:
            print('still behind after %d s' % timeout, file=sys.stderr)
            return 1
        time.sleep(1)


class Cluster:
    """The container replicas of one container, through the node API."""

    def __init__(self, workdir, account, container):
        from coordsync import service
        from coordsync.cmd import local_cluster
        from coordsync.common import direct_client
        from coordsync.common import ring
        self.workdir = workdir
        self.meta = local_cluster.load(workdir)
        self.local_cluster, self.direct_client = local_cluster, direct_client
        conf = service.prepare_service(
            ['--config-file', local_cluster.node_config_path(workdir, 'n1')],
            prog='demo', default_config_files=[])
        self.ring = ring.Ring(conf.container_ring_file,
                              conf.hash_path_prefix, conf.hash_path_suffix)
        self.client = direct_client.NodeClient(conf)
        self.account, self.container = account, container

    def listings(self):
        """``[(node, names | 'no database' | 'down')]``, one per replica."""
        part, replicas = self.ring.get_nodes(self.account, self.container)
        found = []
        for node in replicas:
            path = self.direct_client.container_path(
                node['device'], part, self.account, self.container)
            try:
                status, _, body = self.client.call(
                    node, 'GET', path, query='format=json')
            except self.direct_client.NodeError:
                found.append((node['node'], 'down'))
                continue
            if status == 404:
                found.append((node['node'], 'no database'))
            elif status == 200:
                found.append((node['node'],
                              [row['name'] for row in json.loads(body)]))
            else:
                found.append((node['node'], 'answered %d' % status))
        return found

    def census(self):
        return self.local_cluster.census(self.workdir, self.meta)


def read_names(path):
    with open(path) as fh:
        return sorted(line.rstrip('\n') for line in fh if line.strip())


def describe(listing, expected):
    if isinstance(listing, str):
        return listing
    extra = len(set(listing) - set(expected))
    return '%d/%d%s' % (len(set(listing) & set(expected)), len(expected),
                        ' +%d' % extra if extra else '')


def replicas(workdir, account, container, names_file):
    """One line per container replica; exit 0 iff each lists exactly
    the uploaded names."""
    expected = read_names(names_file)
    level = True
    for node, listing in Cluster(workdir, account, container).listings():
        same = listing == expected
        level = level and same
        print('  %s: %s%s' % (node, describe(listing, expected),
                              '' if isinstance(listing, str) else
                              ' uploaded objects listed' +
                              ('' if same else ' (not level)')))
    return 0 if level else 1


def wait(workdir, account, container, names_file, start, timeout):
    """Start node ``start`` after a first look, then wait until every
    object is on every primary with no handoff copy left, every
    container replica lists exactly the uploaded names and no async
    pending is left (exit 0), or ``timeout`` seconds (exit 1); a line
    whenever that picture changes."""
    expected = read_names(names_file)
    cluster = Cluster(workdir, account, container)
    started = time.monotonic()
    last = None
    while True:
        census = cluster.census()
        listings = cluster.listings()
        left = pendings(workdir)
        picture = ('objects on every primary %d/%d, handoff copies %d; '
                   'container listings %s; async pendings %d' % (
                       census['level'], census['objects'],
                       census['handoff_copies'],
                       ', '.join('%s %s' % (node, describe(listing, expected))
                                 for node, listing in listings),
                       sum(left.values())))
        elapsed = time.monotonic() - started
        if picture != last:
            print('  %3.0f s  %s' % (elapsed, picture), flush=True)
            last = picture
        if start:
            cluster.local_cluster.start_node(workdir, cluster.meta, start)
            cluster.local_cluster.wait_serving(workdir, cluster.meta,
                                               [start])
            print('  %3.0f s  started %s' % (time.monotonic() - started,
                                           start), flush=True)
            start = None
            continue
        if (not census['lacking'] and not census['handoff_copies']
                and all(listing == expected for _, listing in listings)
                and not any(left.values())):
            print('level after %.0f s' % elapsed)
            return 0
        if elapsed > timeout:
            print('not level after %d s' % timeout, file=sys.stderr)
            return 1
        time.sleep(1)


def first_replica(workdir, account, container):
    """The node of a container's first replica: the one a proxy asks
    first."""
    part, replicas = Cluster(workdir, account, container).ring.get_nodes(
        account, container)
    print(replicas[0]['node'])


def object_policies(cluster, names):
    """``{name: [policy indexes with a live copy]}``, from the disks: an
    object is live in a policy where its newest file is a .data."""
    import glob
    from coordsync.common import hashing
    meta = cluster.meta
    found = {}
    for name in names:
        obj_hash = hashing.hash_path(cluster.account, cluster.container,
                                     name, prefix=meta['hash_path_prefix'],
                                     suffix=meta['hash_path_suffix'])
        live = set()
        for hash_dir in glob.glob(os.path.join(
                cluster.workdir, 'n*', 'devices', '*', 'objects*', '*',
                obj_hash[-3:], obj_hash)):
            datadir = hash_dir.split(os.sep)[-4]
            files = sorted(f for f in os.listdir(hash_dir)
                           if f.endswith(('.data', '.ts')))
            if files and files[-1].endswith('.data'):
                live.add(0 if datadir == 'objects' else
                         int(datadir.rpartition('-')[2]))
        found[name] = sorted(live)
    return found


def queue_rows(workdir):
    """Entries in the reconciler's queue, from its databases on disk
    (the fullest replica of each queue container)."""
    import glob
    from coordsync.container import backend
    counts = {}
    for path in glob.glob(os.path.join(workdir, 'n*', 'devices', '*',
                                       'containers', '*', '*', '*',
                                       '*.db')):
        broker = backend.ContainerBroker(path)
        try:
            info = broker.get_info()
        except backend.DatabaseError:
            continue
        finally:
            broker.close()
        if info['account'] == '.misplaced_objects':
            counts[info['container']] = max(
                counts.get(info['container'], 0), info['object_count'])
    return sum(counts.values())


def misplaced(workdir, account, container, names_file, policy):
    """Say how many of the uploaded objects have a live copy in
    ``policy`` (an index); exit 0 if some do."""
    expected = read_names(names_file)
    where = object_policies(Cluster(workdir, account, container), expected)
    count = sum(1 for p in where.values() if int(policy) in p)
    print('%d of %d objects have their live copies in storage policy %s: '
          '%s' % (count, len(expected), policy, ', '.join(
              name for name in expected if int(policy) in where[name])
              or 'none'))
    return 0 if count else 1


def reconciler_depth(config):
    """``(depth, more)``: the queue depth the reconcilers reported
    (coordsync-status --reconciler) and whether more entries lie beyond
    what a pass lists; ``(None, None)`` if unknown."""
    import subprocess
    out = subprocess.run(
        ['coordsync-status', '--config-file', config, '--reconciler',
         '--format', 'json'], capture_output=True, text=True).stdout
    try:
        report = json.loads(out)
        return report['queue_depth'], report['queue_depth_more']
    except (ValueError, KeyError):
        return None, None


def repaired(workdir, account, container, names_file, policy, timeout):
    """Wait until every replica of the container has storage policy
    ``policy`` (an index) and lists exactly the uploaded names, every
    object lives in that policy only, and the queue is empty on the
    disks and in what the reconcilers report (exit 0), or ``timeout``
    seconds (exit 1); a line whenever that picture changes, and
    coordsync-status --reconciler whenever the queue does."""
    import subprocess
    expected = read_names(names_file)
    cluster = Cluster(workdir, account, container)
    config = os.path.join(workdir, 'n1', 'coordsync.conf')
    policy = int(policy)
    started = time.monotonic()
    last = last_queue = None
    while True:
        part, replicas = cluster.ring.get_nodes(account, container)
        policies = []
        for node in replicas:
            try:
                _status, headers, _ = cluster.client.call(
                    node, 'HEAD', cluster.direct_client.container_path(
                        node['device'], part, account, container))
                policies.append((node['node'], headers.get(
                    'x-backend-storage-policy-index', '?')))
            except cluster.direct_client.NodeError:
                policies.append((node['node'], 'down'))
        listings = cluster.listings()
        where = object_policies(cluster, expected)
        right = sum(1 for p in where.values() if p == [policy])
        wrong = sum(1 for p in where.values() if set(p) - {policy})
        queued = queue_rows(workdir)
        depth, more = reconciler_depth(config)
        picture = ('replicas\' policy %s; listings %s; objects only in '
                   'policy %d %d/%d, with a live copy elsewhere %d; queue '
                   '%d entries' % (
                       ', '.join('%s %s' % item for item in policies),
                       ', '.join('%s %s' % (node, describe(listing,
                                                           expected))
                                 for node, listing in listings),
                       policy, right, len(expected), wrong, queued))
        elapsed = time.monotonic() - started
        if picture != last:
            print('  %3.0f s  %s' % (elapsed, picture), flush=True)
            last = picture
        if (queued, depth, more) != last_queue:
            print('  %3.0f s  queue: %d entries on the disks; depth the '
                  'reconcilers report: %s%s' % (
                      elapsed, queued, depth, '+' if more else ''),
                  flush=True)
            subprocess.run(['coordsync-status', '--config-file', config,
                            '--reconciler'])
            last_queue = (queued, depth, more)
        if (all(p == str(policy) for _n, p in policies)
                and all(listing == expected for _n, listing in listings)
                and right == len(expected) and not queued
                and depth == 0 and not more):
            print('repaired after %.0f s' % elapsed)
            return 0
        if elapsed > timeout:
            print('not repaired after %d s' % timeout, file=sys.stderr)
            return 1
        time.sleep(1)


def main(command, *args):
    if command == 'pendings':
        print('  ' + ', '.join('%s: %d' % item
                               for item in pendings(*args).items()))
        return 0
    if command in ('wait', 'sync-lag', 'repaired'):
        return {'wait': wait, 'sync-lag': sync_lag,
                'repaired': repaired}[command](*args[:-1], float(args[-1]))
    return {'record': record, 'summary': summary, 'port': port,
            'auth-url': auth_url, 'replicas': replicas,
            'realms': realms, 'first-replica': first_replica,
            'misplaced': misplaced}[command](*args)


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]) or 0)
EOF
helper() { python "$scratch/helper.py" "$@"; }
sw() { echo "\$ swift $*"; swift "$@"; }

step "installing coordsync and python-swiftclient into .venv"
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq python3-venv
        python3 -m venv .venv
    fi
fi
if ! { .venv/bin/pip install -q --upgrade pip &&
       .venv/bin/pip install -q -e . python-swiftclient; } \
        >"$scratch/pip.log" 2>&1; then
    cat "$scratch/pip.log" >&2
    exit 1
fi
export PATH="$REPO/.venv/bin:$PATH"
swift --version

for dir in "$WORKDIR" "$BACKUP"; do
    if [ -e "$dir/cluster.json" ]; then
        step "removing the cluster an earlier run left in $dir"
        for pidfile in "$dir"/n*/server.pid "$dir"/proxy/proxy.pid; do
            # A pid file whose process is no coordsync one is stale.
            [ -f "$pidfile" ] || continue
            grep -qs coordsync "/proc/$(cat "$pidfile")/cmdline" ||
                rm -f "$pidfile"
        done
        coordsync-local-cluster --workdir "$dir" down
        rm -rf "$dir"
    elif [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
        echo "$dir is not empty and holds no local cluster: move it" \
             "away or set COORDSYNC_DEMO_DIR" >&2
        exit 1
    fi
done

step "starting a 3-node cluster and its Swift API in $WORKDIR"
PORT=${COORDSYNC_DEMO_PORT:-$(helper port)}
started=1
# NOTE: rows_per_pass=5: the demo's container syncs in a few passes,
# so the lag is seen falling; the reconciler's entries_per_pass=4 (with
# --split-brain) likewise shows its queue draining.
UP_EXTRA=()
if [ "$SPLIT_BRAIN" = 1 ]; then
    UP_EXTRA=(--set reconciler.entries_per_pass=4)
fi
coordsync-local-cluster --workdir "$WORKDIR" up --base-port "$PORT" \
    --set "DEFAULT.container_sync_realms_file=$REALMS" \
    --set container-sync.rows_per_pass=5 ${UP_EXTRA[@]+"${UP_EXTRA[@]}"}
ST_AUTH=$(helper auth-url "$WORKDIR")
export ST_AUTH ST_USER=test:tester ST_KEY=testing
unset ST_AUTH_VERSION OS_AUTH_VERSION OS_AUTH_URL OS_AUTH_TOKEN \
    OS_STORAGE_URL OS_USERNAME OS_PASSWORD

step "swift: create a container, upload a directory of 12 files, list it"
echo "(export ST_AUTH=$ST_AUTH ST_USER=$ST_USER ST_KEY=$ST_KEY)"
mkdir -p "$scratch/files/album" "$scratch/down"
for i in $(seq -w 1 11); do
    echo "photo $i, taken at $(date +%s.%N)" > "$scratch/files/album/photo-$i.txt"
done
head -c 3000000 /dev/urandom > "$scratch/files/album/panorama.raw"
cd "$scratch/files"
sw post "$CONTAINER"
sw upload "$CONTAINER" album
sw list --lh "$CONTAINER"

step "damage: n3 loses every object on its disks"
# NOTE: python itself in the background (not a function's subshell), so
# that $! is python's pid and kill ends it.
python "$scratch/helper.py" record "$WORKDIR" "$scratch/record.json" &
recorder=$!
for _ in $(seq 1 100); do [ -e "$scratch/record.json" ] && break; sleep 0.1; done
for dev in "$WORKDIR"/n3/devices/*; do
    # NOTE: moved aside first: n3's replicator may be writing into it.
    [ -d "$dev/objects" ] || continue
    mv "$dev/objects" "$dev/objects.lost"
    rm -rf "$dev/objects.lost" || rm -rf "$dev/objects.lost"
done
coordsync-local-cluster --workdir "$WORKDIR" census || true

step "damage: n2 down (SIGKILL) while 6 more files are uploaded"
coordsync-local-cluster --workdir "$WORKDIR" stop n2 --kill
for i in $(seq 1 6); do
    echo "written while n2 was down, at $(date +%s.%N)" > "album/late-$i.txt"
done
sw upload "$CONTAINER" album/late-*.txt
find album -type f | LC_ALL=C sort > "$scratch/names"
echo "async pendings (container updates a replica missed), per node:"
helper pendings "$WORKDIR"
echo "container replicas (each one's listing through its node's API):"
helper replicas "$WORKDIR" "$ACCOUNT" "$CONTAINER" "$scratch/names" || true

step "damage: n1 loses its replica of the container database"
db=$(find "$WORKDIR/n1/devices" -path '*/containers/*' -name '*.db')
[ -n "$db" ] || { echo "no container database on n1" >&2; exit 1; }
rm -f "$db" "$db-wal" "$db-shm"
echo "removed ${db#"$WORKDIR"/} (and its -wal, -shm)"

step "n2 back; the workers in the nodes repair (a pass every 5 s each; up to $WAIT s)"
if ! helper wait "$WORKDIR" "$ACCOUNT" "$CONTAINER" "$scratch/names" n2 \
        "$WAIT"; then
    coordsync-local-cluster --workdir "$WORKDIR" census || true
    exit 1
fi
sleep 1      # the recorder reads the last recon files
kill "$recorder" 2>/dev/null || true; wait "$recorder" || true; recorder=""
echo "what each worker did since the damage (summed over its passes):"
helper summary "$WORKDIR" "$scratch/record.json"
echo "container replicas:"
helper replicas "$WORKDIR" "$ACCOUNT" "$CONTAINER" "$scratch/names"

step "swift: list and download everything again, compare with the files"
sw list "$CONTAINER"
sw stat "$CONTAINER" | grep -E '^ *(Container|Objects|Bytes):'
sw -q download --output-dir "$scratch/down" "$CONTAINER"
diff -r album "$scratch/down/album"
echo "all $(wc -l < "$scratch/names") objects downloaded identical to the uploaded files"

step "container sync: a second cluster, a realm naming both, a container synced to it"
coordsync-local-cluster --workdir "$BACKUP" up --base-port "$(helper port)" \
    --set "DEFAULT.container_sync_realms_file=$REALMS"
helper realms "$REALMS" "$WORKDIR" "$BACKUP"
echo "$REALMS (both clusters read it):"
sed 's/^key = .*/key = <32 random hex digits>/' "$REALMS"
SYNC_KEY=$(python -c 'import secrets; print(secrets.token_hex(12))')
BACKUP_AUTH=$(helper auth-url "$BACKUP")
backup() { echo "\$ swift -A $BACKUP_AUTH $*"; swift -A "$BACKUP_AUTH" "$@"; }
echo "\$ swift -A $BACKUP_AUTH post -k '<sync key>' photos-backup"
swift -A "$BACKUP_AUTH" post -k "$SYNC_KEY" photos-backup
echo "\$ swift post -t //demo/backup/$ACCOUNT/photos-backup -k '<sync key>' $CONTAINER"
swift post -t "//demo/backup/$ACCOUNT/photos-backup" -k "$SYNC_KEY" "$CONTAINER"
sw delete "$CONTAINER" album/photo-01.txt album/late-1.txt
grep -v -e '^album/photo-01.txt$' -e '^album/late-1.txt$' "$scratch/names" \
    > "$scratch/names.synced"
echo "the container syncs to the second cluster (coordsync-status --sync," \
     "as the lag changes):"
helper sync-lag "$WORKDIR/n1/coordsync.conf" "$CONTAINER" "$WAIT"
echo "\$ swift -A $BACKUP_AUTH list photos-backup"
swift -A "$BACKUP_AUTH" list photos-backup | tee "$scratch/backup-list"
diff "$scratch/names.synced" "$scratch/backup-list"
echo "the second cluster lists the same $(wc -l < "$scratch/backup-list")" \
     "objects (the two deleted ones deleted there too)"
mkdir -p "$scratch/backup-down"
swift -A "$BACKUP_AUTH" -q download --output-dir "$scratch/backup-down" \
    photos-backup
for name in $(cat "$scratch/names.synced"); do
    cmp "$name" "$scratch/backup-down/$name"
done
echo "and their bodies are the uploaded files'"

step "the group: every node's workers and their progress (coordsync-status)"
# NOTE: a worker whose last pass failed items (n2 was down) shows
# degraded until its next pass ends; wait for that, bounded.
deadline=$((SECONDS + 60))
until coordsync-status --config-file "$WORKDIR/n1/coordsync.conf" \
        --expect 3 --format json >/dev/null 2>&1 ||
        [ "$SECONDS" -ge "$deadline" ]; do
    sleep 1
done
coordsync-local-cluster --workdir "$WORKDIR" status

[ "$SPLIT_BRAIN" = 1 ] || exit 0

# NOTE: the node's container replicator, and those of the others, settle
# the stale replica on silver within a pass or two of its return; files
# uploaded before that go to gold. Uploaded at once they usually are:
# if not (nothing misplaced), the split-brain is made again with
# another container.
for attempt in 1 2 3; do
    SPLIT=albums
    [ "$attempt" = 1 ] || SPLIT="albums-$attempt"
    step "split-brain: $SPLIT (gold) made again as silver, one replica down"
    STALE=$(helper first-replica "$WORKDIR" "$ACCOUNT" "$SPLIT")
    rm -rf "$scratch/split"
    mkdir -p "$scratch/split/$SPLIT"
    cd "$scratch/split"
    sw post "$SPLIT"
    sw stat "$SPLIT" | grep -E '^ *(Container|X-Storage-Policy):' || true
    coordsync-local-cluster --workdir "$WORKDIR" stop "$STALE" --kill
    sw delete "$SPLIT"
    sw post -H "X-Storage-Policy: silver" "$SPLIT"
    for i in $(seq -w 1 5); do
        echo "uploaded while $STALE was down, at $(date +%s.%N)" \
            > "$SPLIT/before-$i.txt"
    done
    sw upload "$SPLIT" "$SPLIT"/before-*.txt
    sw stat "$SPLIT" | grep -E '^ *(Container|X-Storage-Policy):' || true
    # NOTE: restarted, the proxy has no cached view of the container: it
    # asks the container's first replica, the stale one, which answers
    # gold once back.
    coordsync-local-cluster --workdir "$WORKDIR" stop proxy
    coordsync-local-cluster --workdir "$WORKDIR" start proxy

    # NOTE: $STALE's replica of $SPLIT still says gold, and is the one
    # the proxy asks first.
    step "$STALE back with its stale replica: more files uploaded"
    for i in $(seq -w 1 8); do
        echo "uploaded after $STALE came back, at $(date +%s.%N)" \
            > "$SPLIT/after-$i.txt"
    done
    coordsync-local-cluster --workdir "$WORKDIR" start "$STALE"
    sw upload "$SPLIT" "$SPLIT"/after-*.txt
    find "$SPLIT" -type f | LC_ALL=C sort > "$scratch/split-names"
    if helper misplaced "$WORKDIR" "$ACCOUNT" "$SPLIT" \
            "$scratch/split-names" 0; then
        break
    fi
    if [ "$attempt" = 3 ]; then
        echo "the replicators settled the container first three times" >&2
        exit 1
    fi
    echo "the replicators settled $SPLIT on silver before the uploads" \
         "reached it: nothing misplaced; once more with another container"
done
echo "objects per storage policy on the disks:"
coordsync-local-cluster --workdir "$WORKDIR" census || true

# NOTE: the container replicators settle $SPLIT on silver and queue the
# misplaced objects; the reconcilers move them.
step "the workers in the nodes repair the split-brain (up to $WAIT s)"
if ! helper repaired "$WORKDIR" "$ACCOUNT" "$SPLIT" "$scratch/split-names" \
        1 "$WAIT"; then
    coordsync-local-cluster --workdir "$WORKDIR" census || true
    exit 1
fi
coordsync-local-cluster --workdir "$WORKDIR" census || true

step "swift: $SPLIT lists and serves every file, from silver"
sw stat "$SPLIT" | grep -E '^ *(Container|Objects|X-Storage-Policy):' || true
sw list "$SPLIT"
mkdir -p "$scratch/split-down"
sw -q download --output-dir "$scratch/split-down" "$SPLIT"
diff -r "$SPLIT" "$scratch/split-down/$SPLIT"
echo "all $(wc -l < "$scratch/split-names") objects downloaded" \
     "identical to the uploaded files"
coordsync-status --config-file "$WORKDIR/n1/coordsync.conf" --reconciler
