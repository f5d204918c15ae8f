#!/usr/bin/env bash
# The project's test command: install what the tests need, then run tox
# (lint, sample-config check, unit and functional tests with a private
# ZooKeeper, and the Sphinx documentation with warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/test-setup.sh
python3 -m tox -e pep8,py3,docs "$@"
