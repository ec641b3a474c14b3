#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it.
# Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f tests/setup_system.sh ]; then
    bash tests/setup_system.sh          # system packages: MPI, ...
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,dask,mpi,jobqueue]'
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
