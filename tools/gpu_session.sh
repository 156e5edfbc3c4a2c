#!/usr/bin/env bash
# Everything GPU-related in one call on a lent GPU machine; results under $OUT (at most 7 files come back).
#
# On the development machine first:  ../shared/tools/gpu-wheels.sh     (array-api-compat/-strict into .whl/)
# Then one device run, carry [".whl"], command:   bash tools/gpu_session.sh all 0.5
#   mode: tests | bench | all      seconds: timing budget per implementation and row of the sweep (default 0.5;
#   the full CUDA sweep is 36 cases x fwd/train x 3 implementations, so 0.5 s keeps it within one 10-minute call)
# Writes: info.json, gpu-tests.log, and the sweep's <gpu>-cuda.{json,md} plus its three PNGs.
set -uo pipefail
mode=${1:-all}
seconds=${2:-0.5}
out=${OUT:-/tmp/rnn-xp-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$HOME/site" .whl/*.whl || exit 1
    export PYTHONPATH="$HOME/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
python3 -m rnn_xp info --json > "$out/info.json"
python3 -m rnn_xp info
status=0
if [ "$mode" = tests ] || [ "$mode" = all ]; then
    python3 -m pytest -q -m gpu tests/ -p no:cacheprovider -rfE 2>&1 | tee "$out/gpu-tests.log"
    status=${PIPESTATUS[0]}
fi
if [ "$mode" = bench ] || [ "$mode" = all ]; then
    name=$(python3 -c "import cupy, re; n = cupy.cuda.runtime.getDeviceProperties(0)['name']; n = n.decode() if isinstance(n, bytes) else n; print(re.sub(r'[^a-z0-9]+', '-', n.lower()).strip('-'))")
    python3 -m rnn_xp bench --device cuda --max-seconds "$seconds" --out "$out" --name "${name}-cuda" || status=1
fi
exit "$status"
