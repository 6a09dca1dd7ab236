#!/usr/bin/env bash
# Issue 15 item 5 in one call of the device tool: the GPU tests, the fused kernel's tests
# compiled (on a GPU fused.interpret() is false), `jaxgd bench`, and benchmarks/suite.py
# with the fused kernel against the floor and the engine at medium size. A lease has 15
# minutes in all, start-up included, so each step runs under its own timeout within one
# budget (one hang cannot eat the rest), and everything comes back as at most 7 files
# (the tool returns 8) in OUT_DIR: env.txt, pytest_gpu.log, pytest_fused.log, bench.log,
# bench.json, suite.log, summary.txt (each step's result and seconds, then the figures).
#
#   benchmarks/device_check.sh [--cpu-rehearsal] [OUT_DIR]
#
# OUT_DIR: default $OUT (set on the device machine), else device_check_out.
# --cpu-rehearsal (or DEVICE_CHECK_CPU=1): the same steps on the host (JAX_PLATFORMS=cpu)
#   at smoke-test sizes and two of the fused tests (97 s on 2 loaded cores); here run it
#   as PYTHON=/work/venv/bin/python benchmarks/device_check.sh --cpu-rehearsal /tmp/dc
# DEVICE_CHECK_BUDGET: seconds for all steps (default 480: the whole call stays under
#   10 minutes with the machine's start). DEVICE_CHECK_STEPS: only these steps (names as
#   in summary.txt; env, wheels and import always run), for a rerun on the warm machine.
#   DEVICE_CHECK_DRY=1: print each step's command instead of running it
#   (tests/test_benchmarks.py checks them).
# PYTHON: the interpreter (default python3, the device machine's, with JAX for CUDA).
#
# Before the call, in the root of the checkout the session started in (the device tool
# sends that one): the device machine has every package jaxgd needs but tomli-w (Python
# 3.12, jax 0.11.2 with the CUDA 13 plugin; submitit, zarr and h5netcdf are missing, which
# only `jaxgd run --slurm` and Results.to_xarray's files use) and fetches nothing, so
# bring its wheel (.whl/ is git-ignored: `carry` takes it):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl tomli-w==1.2.0
# The call (the machine stays warm 30 s after it: rerun at once or give_back):
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=560)

set -u
rehearsal=${DEVICE_CHECK_CPU:-}
if [[ ${1:-} == --cpu-rehearsal ]]; then rehearsal=1; shift; fi
out=${1:-${OUT:-device_check_out}}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
budget=${DEVICE_CHECK_BUDGET:-480}
only=${DEVICE_CHECK_STEPS:-}
dry=${DEVICE_CHECK_DRY:-}
site=${TMPDIR:-/tmp}/jaxgd_device_check_site
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1  # this checkout's jaxgd, no install; logs complete if killed

if [[ $rehearsal ]]; then
    export JAX_PLATFORMS=cpu
    mode="cpu rehearsal"
    fused_tests=("tests/test_fused.py::test_fused_losses_equal_xla[relu_standard_bias_three_blocks]"
                 "tests/test_fused.py::test_kernel_lowers_to_triton[relu]")
    quick=(--quick)
    medium_runs=16
else
    mode=gpu
    fused_tests=(tests/test_fused.py)
    quick=()
    medium_runs=4096  # the suite's 32 would leave most of a GPU idle; 4096 runs are 4 chunks of 1024
fi
pytest=("$PY" -m pytest -p no:cacheprovider -q -rfEs --durations=10)
suite=("$PY" benchmarks/suite.py "${quick[@]}")

rm -f "$out"/{env.txt,pytest_gpu.log,pytest_fused.log,bench.log,bench.json,suite.log,summary.txt}
results=()
failed=""

# step NAME CAP LOG CMD...: CMD under a timeout of CAP seconds (less if the budget has less
# left), stdout and stderr appended to LOG; its result and seconds go to summary.txt.
step() {
    local name=$1 cap=$2 log=$3 start=$SECONDS rc result
    shift 3
    if [[ $only && " env wheels import $only " != *" $name "* ]]; then return 0; fi
    if [[ $dry ]]; then printf '%s %s %s\n' "$name" "$log" "$(printf '%q ' "$@")"; return 0; fi
    local limit=$((budget - SECONDS))
    ((cap < limit)) && limit=$cap
    if ((limit < 10)); then
        results+=("$(printf '%-18s %-10s %5s %5s  %s' "$name" "no time" - - "$log")")
        return 124
    fi
    echo "== $name: $* (timeout ${limit} s)" >>"$out/$log"
    timeout -k 10 "$limit" "$@" >>"$out/$log" 2>&1
    rc=$?
    case $rc in
        0) result=passed ;;
        124 | 137) result="timed out" ;;
        *) result="failed $rc" ;;
    esac
    [[ $rc != 0 ]] && failed+=" $name"
    echo "== $name: $result after $((SECONDS - start)) s" >>"$out/$log"
    results+=("$(printf '%-18s %-10s %5d %5d  %s' "$name" "$result" $((SECONDS - start)) "$limit" "$log")")
    return $rc
}

env_facts() {
    date -u
    uname -a
    echo "cores: $(nproc)"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    command -v "$PY"
    "$PY" --version
    "$PY" -m pip list 2>/dev/null |
        grep -Ei -e '^(jax|jaxlib|jax-cuda[a-z0-9-]*|numpy|ml[-_]dtypes|optax|chex|pandas|pyarrow) ' \
            -e '^(matplotlib|tqdm|tomli[-_]w|pytest|triton) '
    echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no repository (a copy of the tree)')"
    "$PY" -c 'import jax; print("jax.devices():", jax.devices()); print("backend:", jax.default_backend())'
}
export -f env_facts
export PY

step env 60 env.txt bash -c env_facts
backend=$(sed -n 's/^backend: //p' "$out/env.txt" 2>/dev/null)

# tomli-w, the one dependency the device machine lacks, from the carried wheels
if [[ ! $dry ]] && ! "$PY" -c 'import tomli_w' 2>/dev/null; then
    if compgen -G '.whl/*.whl' >/dev/null; then
        step wheels 60 env.txt "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$site" .whl/*.whl && export PYTHONPATH=$PWD:$site
    else
        echo "tomli_w is missing and there is no .whl/: see this script's header" >>"$out/env.txt"
    fi
fi
step import 60 env.txt "$PY" -c 'import jaxgd, tomli_w; print(jaxgd.__version__, jaxgd.__file__, tomli_w.__file__)'

if [[ ! $dry && ! $rehearsal && $backend != gpu ]]; then
    results+=("stopped: JAX sees no GPU (backend '${backend:-none}', env.txt): the rest would run on the host")
    failed+=" no_gpu"
else
    step gpu_tests 75 pytest_gpu.log "${pytest[@]}" -m gpu tests/test_gpu.py
    step fused_tests 120 pytest_fused.log "${pytest[@]}" "${fused_tests[@]}"
    step bench 90 bench.log "$PY" -m jaxgd bench "${quick[@]}" --out "$out/bench.json"
    medium=("${suite[@]}" --sizes medium --runs "$medium_runs")
    step suite_medium 120 suite.log "${medium[@]}" --contenders engine fused floor
    rc=$?
    # A fused kernel that fails at medium size must not cost the engine's figures against
    # the floor (a dry run prints this step too).
    if [[ $dry ]] || ((rc != 0 && rc != 124 && rc != 137)); then
        step suite_medium_xla 60 suite.log "${medium[@]}" --contenders engine floor
    fi
    step suite_small 90 suite.log "${suite[@]}" --sizes tiny large --contenders engine fused floor
fi
[[ $dry ]] && exit 0

{
    echo "device_check ($mode) $(date -u '+%Y-%m-%d %H:%M UTC'), $SECONDS s in all (budget $budget s)"
    echo "failed or timed out:${failed:- none}"
    printf '%-18s %-10s %5s %5s  %s\n' step result s limit log
    printf '%s\n' "${results[@]}"
    for log in pytest_gpu.log pytest_fused.log; do
        [[ -f $out/$log ]] && echo "$log: $(grep -E ' in [0-9.]+s( \([0-9:]+\))?$' "$out/$log" | tail -1)"
    done
    [[ -f $out/bench.log ]] && sed -n '/^jaxgd bench on/,/^online/p' "$out/bench.log"
    [[ -f $out/suite.log ]] && grep -E '^(\| (size|tiny|medium|large) |- (device|peak|command):)' \
        "$out/suite.log"
} >"$out/summary.txt"
cat "$out/summary.txt"
[[ -z $failed ]]
