#!/usr/bin/env bash
# The prepared GPU run: one command for a machine with a CUDA GPU, minutes not hours.
#
#   bash benchmarks/gpu_check.sh [OUT]        (OUT: results folder, default gpu-results)
#
# Steps, each with its own time limit (7 min 45 s together), each writing OUT/STEP.log and
# a line to OUT/summary.txt:
#   environment  nvidia-smi, torch and CUDA, `vrstyle info --json`
#   gpu-tests    the GPU-marked tests (python -m pytest -m gpu)
#   bench-*      `vrstyle bench` at Quest 3 eyes on the GPU (fp16, compiled: the CUDA defaults) for
#                the candy teacher (needs the shared data) and the shipped candy student, and the
#                data path alone (null workers) beside a memcpy
#   compositor   the GL compositor against the CPU stitch, through EGL on the NVIDIA driver
#   kernels      the binary popcount kernels on this machine's CPU
# Without a GPU the GPU steps say "skipped: no CUDA GPU" and the rest still run, so the script
# is tested on CPUs (tests/test_gpu_check.py, with GPU_CHECK_QUICK=1 for tiny sizes).
# The project must be installed (pip install -e ".[all,test]"; on a machine without network,
# from wheels). Exit status: the number of failed steps.
set -uo pipefail

OUT=${1:-gpu-results}
PYTHON=${PYTHON:-python3}
QUICK=${GPU_CHECK_QUICK:-0}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=0

if [ "$QUICK" = 1 ]; then
    EYE=(--eye-size 128x96 --tile 64 --frames 2 --warmup 1)
    KERNELS=(--size 16 --threads 1 --repeats 1)
else
    EYE=(--eye-size quest3 --frames 20 --warmup 3)
    KERNELS=(--size 256 --threads 1,8,16 --repeats 5)
fi

has_cuda() {
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
}

# step NAME SECONDS GPU|CPU COMMAND...: run with a time limit, log, and record the outcome.
step() {
    local name=$1 limit=$2 needs=$3
    shift 3
    if [ "$needs" = GPU ] && ! has_cuda; then
        echo "$name: skipped: no CUDA GPU" | tee -a "$OUT/summary.txt"
        return
    fi
    local start=$SECONDS
    # A job of its own (functions too), stopped with its children when the limit passes.
    set -m
    "$@" > "$OUT/$name.log" 2>&1 &
    local job=$!
    set +m
    while kill -0 "$job" 2>/dev/null && [ $((SECONDS - start)) -lt "$limit" ]; do sleep 1; done
    local outcome="ok"
    if kill -0 "$job" 2>/dev/null; then
        kill -TERM -- "-$job" 2>/dev/null; sleep 5; kill -KILL -- "-$job" 2>/dev/null
        outcome="timed out after ${limit} s"
    fi
    wait "$job"
    local status=$?
    [ "$outcome" = ok ] && [ $status -ne 0 ] && outcome="failed (exit $status)"
    [ "$outcome" != ok ] && failed=$((failed + 1))
    echo "$name: $outcome in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

environment() {
    if command -v nvidia-smi > /dev/null; then nvidia-smi; else echo "nvidia-smi: not installed"; fi
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
          [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])" || true
    "$PYTHON" -m vrstyle.cli info --json
}

has_teacher() {
    "$PYTHON" -c "from vrstyle.models import resolve_model; resolve_model('candy/teacher')" 2>/dev/null
}

teacher_bench() {
    if ! has_teacher; then
        echo "skipped: candy/teacher needs the shared data"
        return 0
    fi
    "$PYTHON" -m vrstyle.cli bench --style candy/teacher --device cuda "${EYE[@]}" --out "$OUT" --name bench-teacher
}

step environment 30 CPU environment
step gpu-tests 60 GPU "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider
step bench-teacher 150 GPU teacher_bench
step bench-student 90 GPU "$PYTHON" -m vrstyle.cli bench --style candy --device cuda "${EYE[@]}" --out "$OUT" \
    --name bench-student
step bench-null 45 CPU "$PYTHON" -m vrstyle.cli bench --data-path null --workers 1,2 "${EYE[@]}" --out "$OUT" \
    --name bench-null
step compositor 45 GPU env EGL_PLATFORM=surfaceless "$PYTHON" benchmarks/compositor.py \
    --eye-size "$([ "$QUICK" = 1 ] && echo 128x96 || echo quest3)" --repeats "$([ "$QUICK" = 1 ] && echo 1 || echo 10)"
step kernels 45 CPU "$PYTHON" benchmarks/binary_kernels.py "${KERNELS[@]}" --out "$OUT/binary-kernels"

echo "results in $OUT ($failed failed)" | tee -a "$OUT/summary.txt"
exit "$failed"
