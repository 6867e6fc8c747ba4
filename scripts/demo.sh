#!/usr/bin/env bash
# The main job on the embedded defaults (creates .venv first if needed): the quick transfer report of the
# shipped NAMM. Extra arguments go to eval.transfer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m eval.transfer --quick "$@"
