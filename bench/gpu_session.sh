#!/usr/bin/env bash
# The GPU checks as one command, at most ~9.5 minutes:
#   1. the CUDA tests (tests/test_gpu.py: no host sync in the hot loop, CUDA defaults vs fp32 on
#      the CPU, pinned loader, generation on the GPU vs the CPU)
#   2. the benchmark suite's GPU set (bench/suite.py --gpu within a 330 s budget; results are
#      rewritten after every section, so a run cut short keeps what it measured)
# Results go to ${OUT:-bench/results}: gpu.txt, gpu-tests.txt, suite-log.txt, suite.json, suite.md.
#
# Needs PyTorch with CUDA and kinema's dependencies. On a GPU machine without network access and
# without PyAV, download a PyAV wheel on a machine that has access and copy it into .whl/:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
if ! python3 -c "import av" 2>/dev/null; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .whl/*.whl || { echo "gpu_session: PyAV is missing and no wheel could be installed from .whl/"; exit 2; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}   # kinema from this checkout, not installed
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'av', av.__version__)" \
    | tee -a "$out/gpu.txt"
timeout -k 10 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -rs 2>&1 | tee "$out/gpu-tests.txt"
tests=${PIPESTATUS[0]}
timeout -k 10 380 python3 bench/suite.py --gpu --out "$out" --budget 330 2>&1 | tee "$out/suite-log.txt"
suite=${PIPESTATUS[0]}
echo "gpu_session: tests exit $tests, suite exit $suite"
exit $(( tests != 0 || suite != 0 ))
