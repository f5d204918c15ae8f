#!/usr/bin/env bash
# Install what the tests need on a Debian machine: ZooKeeper and a JRE
# (functional tests start their own server), rsync (benchmarks), and tox.
# Safe to run again; does nothing that is already done.
set -euo pipefail
need=()
[ -e /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        zookeeper default-jre-headless rsync
fi
# NOTE: the Debian package only ships ZooKeeper; the tests start their own
# on a free loopback port, so the system service is not needed.
python3 -m pip --version >/dev/null 2>&1 || {
    echo "python3 with pip is required" >&2; exit 1; }
python3 -m tox --version >/dev/null 2>&1 || \
    python3 -m pip install -q 'tox>=4'
