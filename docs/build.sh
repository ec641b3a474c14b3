#!/usr/bin/env bash
# Builds the documentation site strictly (any warning fails) into site/.
# Installs the docs requirements (the 'docs' extra) into the project's venv first.
# Usage: bash docs/build.sh [extra mkdocs build args]
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[docs]'
exec .venv/bin/python -m mkdocs build --strict --clean --site-dir site "$@"
