#!/usr/bin/env bash
# The Quick start's run command: install coordsync into .venv, bring up a
# local 3-node cluster on the embedded coordination backend, store and
# read back objects (also with a node down), show coordsync-status, and
# stop the cluster again. `tools/demo.sh --keep` leaves it running.
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

step "writing 20 objects (one of 3 MB) and reading them back"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"; cleanup' EXIT
for i in $(seq 1 19); do
    echo "object $i written at $(date +%s.%N)" > "$scratch/o$i"
done
head -c 3000000 /dev/urandom > "$scratch/o20"
for i in $(seq 1 20); do client put AUTH_demo photos "o$i" "$scratch/o$i"; done
for i in $(seq 1 20); do
    client get AUTH_demo photos "o$i" -o "$scratch/back$i"
    cmp -s "$scratch/o$i" "$scratch/back$i" || { echo "o$i differs"; exit 1; }
done
echo "all 20 objects read back identical"
echo "replicas of o20 on disk:"
find "$WORKDIR" -path "*objects*" -name '*.data' -size +1000k | sed "s#$WORKDIR/##"

step "killing node n2 and writing while it is down (handoffs stand in)"
coordsync-local-cluster --workdir "$WORKDIR" stop n2 --kill
echo "written while n2 was down" > "$scratch/late"
client put AUTH_demo photos late "$scratch/late" 2>/dev/null
client get AUTH_demo photos late 2>/dev/null
coordsync-local-cluster --workdir "$WORKDIR" status || true

step "restarting n2"
coordsync-local-cluster --workdir "$WORKDIR" start n2
coordsync-local-cluster --workdir "$WORKDIR" status
