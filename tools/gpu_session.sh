#!/usr/bin/env bash
# Everything GPU-related in one call on a lent GPU machine; results packed into $OUT/gpu-session.tgz.
#
# On the development machine first:  ../shared/tools/gpu-wheels.sh     (array-api-compat/-strict into .whl/)
# Then one device run, carry [".whl"], command:   bash tools/gpu_session.sh all 0.3
#   mode: tests | probe | train | bench | all, or several joined by commas (tests,probe)      seconds: timing budget per implementation and row of the sweep
# Writes (inside the archive): info.json, gpu-tests.log/.xml, the sweep's <gpu>-cuda.{json,md} and PNGs,
# the probes' JSON and the Nsight Compute report of the persistent kernels at H=512, B=64.
# Exit status: non-zero if any GPU test failed, or if any would have skipped (RNN_XP_REQUIRE_GPU=1 turns a
# skipped GPU test into a failure, and a missing CuPy/device/torch-with-CUDA into a usage error).
set -uo pipefail
mode=${1:-all}
seconds=${2:-0.3}
out=${OUT:-/tmp/rnn-xp-gpu}
work=/tmp/rnn-xp-gpu-session
rm -rf "$work"; mkdir -p "$work" "$out"
export PYTHONUNBUFFERED=1 RNN_XP_REQUIRE_GPU=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$HOME/site" .whl/*.whl || exit 1
    export PYTHONPATH="$HOME/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$work/nvidia-smi.txt"
python3 -m rnn_xp info --json > "$work/info.json"
python3 -m rnn_xp info
status=0
pack() { tar -czf "$out/gpu-session.tgz" -C "$work" . ; }
wants() { [ "$mode" = all ] || [[ ",$mode," == *",$1,"* ]]; }
trap pack EXIT
if wants tests; then
    timeout -k 10 -s INT "${TESTS_LIMIT:-400}" python3 -m pytest -q -m "gpu or cuda_emulated" tests/ -p no:cacheprovider -rfE \
        --timeout=120 --timeout-method=thread --junitxml="$work/gpu-tests.xml" 2>&1 \
        | tee "$work/gpu-tests.log" | grep -vE '^\.+ *\[' 
    status=${PIPESTATUS[0]}
    tail -n 3 "$work/gpu-tests.log"
fi
if wants probe; then
    for probe in ${PROBES:-latency crossover overhead}; do
        timeout -s INT "${PROBE_LIMIT:-150}" python3 bench/gpu_probe.py "$probe" --out "$work" | head -n 45 || status=1
    done
    if command -v ncu >/dev/null && [ "${NCU:-1}" = 1 ]; then
        # The persistent kernels at H=512, B=64 (the profile point) and at H=128, B=1 (the latency case).
        for size in "512 64" "128 1"; do
            set -- $size
            rep="$work/ncu-persistent-H$1-B$2"
            timeout "${NCU_LIMIT:-120}" ncu --clock-control none --kernel-name regex:persistent --launch-skip 1 \
                --launch-count 2 --set full -o "$rep" python3 bench/gpu_probe.py ncu-target --hidden "$1" --batch "$2" \
                > "$rep.log" 2>&1 || echo "ncu failed (see $rep.log)"
            ncu --import "$rep.ncu-rep" --page details > "$rep-details.txt" 2>&1
            ncu --import "$rep.ncu-rep" --page raw --csv > "$rep-raw.csv" 2>&1
            python3 tools/ncu_stalls.py "$rep-raw.csv" | tee "$rep-stalls.txt"
        done
    fi
fi
if wants train; then
    # The charlm example on the GPU and on this machine's CPU, same configuration and time budget.
    for device in cuda cpu; do
        timeout "${TRAIN_LIMIT:-90}" python3 -m rnn_xp train charlm --device "$device" --minutes 0.5 \
            --eval-every-s 1000 --out "$work/charlm-$device" 2>&1 | tail -n 2
    done
fi
if wants bench; then
    name=$(python3 -c "import cupy, re; n = cupy.cuda.runtime.getDeviceProperties(0)['name']; n = n.decode() if isinstance(n, bytes) else n; print(re.sub(r'[^a-z0-9]+', '-', n.lower()).strip('-'))")
    # SIGINT at the limit: the sweep keeps (and writes) the rows it finished.
    timeout -k 10 -s INT "${BENCH_LIMIT:-540}" python3 -m rnn_xp bench --device cuda --max-seconds "$seconds" \
        --out "$work" --name "${name}-cuda" ${BENCH_ARGS:-} || status=1
fi
exit "$status"
