#!/usr/bin/env bash
# The main job on the embedded defaults (creates .venv first if needed). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m eval.demo "$@"
