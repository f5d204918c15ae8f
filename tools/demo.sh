#!/usr/bin/env bash
# The Quick start's run command: install coordsync into .venv, bring up a
# local 3-node cluster on the embedded coordination backend, store and
# read back objects, damage replicas (a node loses its objects, another
# is down during writes), let the coordinated replicators running in
# every node bring every replica level again, show coordsync-status,
# and stop the cluster. `tools/demo.sh --keep` leaves it running.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
WORKDIR=${COORDSYNC_DEMO_DIR:-$PWD/local-cluster}
PORT=${COORDSYNC_DEMO_PORT:-6200}

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq python3-venv
        python3 -m venv .venv
    fi
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e . >/dev/null
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }
cleanup() {
    if [ "$KEEP" = 0 ]; then
        step "stopping the cluster (use --keep to leave it up)"
        coordsync-local-cluster --workdir "$WORKDIR" down || true
    fi
}
trap cleanup EXIT

step "starting a 3-node cluster in $WORKDIR (embedded backend)"
coordsync-local-cluster --workdir "$WORKDIR" up --base-port "$PORT"
CONF="$WORKDIR/n1/coordsync.conf"
client() { coordsync-client --config-file "$CONF" "$@"; }
read_back() {  # read objects o1..o$1 back and compare with what was written
    for i in $(seq 1 "$1"); do
        client get AUTH_demo photos "o$i" -o "$scratch/back$i"
        cmp -s "$scratch/o$i" "$scratch/back$i" || { echo "o$i differs"; exit 1; }
    done
    echo "all $1 objects read back identical"
}

step "writing 20 objects (one of 3 MB) and reading them back"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"; cleanup' EXIT
for i in $(seq 1 19); do
    echo "object $i written at $(date +%s.%N)" > "$scratch/o$i"
done
head -c 3000000 /dev/urandom > "$scratch/o20"
for i in $(seq 1 20); do client put AUTH_demo photos "o$i" "$scratch/o$i"; done
read_back 20
echo "replicas of o20 on disk:"
find "$WORKDIR" -path "*objects*" -name '*.data' -size +1000k | sed "s#$WORKDIR/##"

step "damage: node n3 loses every object on its disks"
rm -rf "$WORKDIR"/n3/devices/*/objects/*
coordsync-local-cluster --workdir "$WORKDIR" census || true

step "node n2 down while 10 more objects are written (handoffs stand in)"
coordsync-local-cluster --workdir "$WORKDIR" stop n2 --kill
for i in $(seq 21 30); do
    echo "object $i written while n2 was down" > "$scratch/o$i"
    client put AUTH_demo photos "o$i" "$scratch/o$i" 2>/dev/null
done
coordsync-local-cluster --workdir "$WORKDIR" start n2
coordsync-local-cluster --workdir "$WORKDIR" census || true

step "coordinated replication (a pass every 5 s inside every node)"
started=$(date +%s)
until coordsync-local-cluster --workdir "$WORKDIR" census >/dev/null; do
    if [ $(( $(date +%s) - started )) -gt 180 ]; then
        echo "replicas still not level after 180 s" >&2
        coordsync-local-cluster --workdir "$WORKDIR" census || true
        exit 1
    fi
    sleep 1
done
echo "level again after $(( $(date +%s) - started )) s:"
coordsync-local-cluster --workdir "$WORKDIR" census
read_back 30
echo "what each node's replicator did (its last pass that synced something):"
for n in n1 n2 n3; do
    lines=$(grep -o '[0-9]*/[0-9]* (.*partitions replicated.*' \
        "$WORKDIR/$n/server.log")
    line=$(grep -v ' 0 synced' <<<"$lines" | tail -n 1)
    echo "  $n: ${line:-$(tail -n 1 <<<"$lines")}"
done

step "the group: who is in it and what each member did"
coordsync-local-cluster --workdir "$WORKDIR" status
