#!/usr/bin/env bash
# The device run (see tools/gpu_session.py: stages, caps, files, predictions). On a lent GPU, with .whl/ carried:
#   bash tools/gpu_session.sh            (an argument "all", as earlier runs passed, is accepted)
# Files go to $OUT; the summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
exec python3 tools/gpu_session.py "$@"
