#!/usr/bin/env bash
# GPU benchmark, one call on a GPU machine without TensorFlow (Keras on JAX, then a PyTorch smoke study).
#
#   bash bench/gpu.sh [N_CALLS] [JAX_SECONDS] [TORCH_SECONDS] [PARALLEL...]
#
# TORCH_SECONDS 0 skips the PyTorch study; PARALLEL defaults to "1 4"; THROUGHPUT_ARGS (e.g. "--equal-trials")
# go to bench.throughput as they are. MPS=1 runs the Keras-on-JAX study under CUDA MPS (the daemon is started
# before it and stopped after it; needs root or the GPU's owner): the k workers' kernels then run side by side on
# the GPU instead of time-slicing between processes (for these tiny MLPs it made no difference beyond run-to-run
# noise: bench/RESULTS.md). Logs are named by it and by LOG_TAG (several runs in one call):
# throughput_jax[_TAG][_mps].log, smi[_TAG][_mps].csv.
# Missing Python packages travel as wheels in .whl/ (ignored by git); they are installed into /tmp/site and put on
# PYTHONPATH. Fetch them here for the GPU machine's Python 3.12, then delete the ones its image already has
# (numpy, pandas, scikit-learn, scipy, jax, torch, matplotlib, ...: see the device tool's KINDS.md), ~39 MB remain:
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp --platform any \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       -d .whl "scikit-optimize==0.10.2" "mlflow==3.17.2" "keras==3.15.1" pyyaml tqdm nvidia-ml-py
# Logs go to $OUT (or ./gpu-out) so they come back even if a step times out.
set -u
n_calls=${1:-16}
jax_seconds=${2:-330}
torch_seconds=${3:-120}
shift $(($# < 3 ? $# : 3))
parallel=("${@:-1}")
[ $# -eq 0 ] && parallel=(1 4)
out=${OUT:-gpu-out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null && [ ! -e /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    # what pip would have compiled at install: else the first study's process compiles them (each study is a fresh one)
    python3 -m compileall -q -j 0 /tmp/site >/dev/null
    touch /tmp/site/.installed
fi
[ -e /tmp/site/.installed ] && export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
KERAS_BACKEND=jax python3 -c "import sys, numpy, pandas, sklearn, jax, keras, mlflow, skopt; print(sys.version.split()[0], 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'sklearn', sklearn.__version__, 'jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'mlflow', mlflow.__version__)" 2>&1 | tee -a "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
suffix=${LOG_TAG:+_$LOG_TAG}
[ "${MPS:-0}" = 1 ] && suffix=${suffix}_mps
# GPU load and memory once a second while the benchmark runs
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$out/smi$suffix.csv" 2>&1 &)
if [ "${MPS:-0}" = 1 ]; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d || { echo "MPS: the control daemon did not start"; exit 1; }
    echo "MPS: control daemon started"
fi
KERAS_BACKEND=jax timeout "$jax_seconds" python3 -m bench.throughput --n-calls "$n_calls" --parallel "${parallel[@]}" \
    ${THROUGHPUT_ARGS:-} 2>&1 | tee "$out/throughput_jax$suffix.log"
if [ "${MPS:-0}" = 1 ]; then
    echo quit | nvidia-cuda-mps-control
    cp "$CUDA_MPS_LOG_DIRECTORY/control.log" "$out/mps_control.log" 2>/dev/null
    cp "$CUDA_MPS_LOG_DIRECTORY/server.log" "$out/mps_server.log" 2>/dev/null
fi
if [ "$torch_seconds" -gt 0 ]; then
    KERAS_BACKEND=torch timeout "$torch_seconds" python3 -m bench.throughput --n-calls 4 --parallel 1 2 \
        --max-epochs 10 2>&1 | tee "$out/throughput_torch.log"
fi
pkill -f "nvidia-smi --query-gpu" || true
