#!/usr/bin/env bash
# One command for a lent GPU (the `device` tool): the CUDA tests, then `bench` and `bench --scale` on the
# GPU; writes the README's GPU table to $OUT/gpu_table.md (and the raw JSON beside it).
#
#     bash scripts/gpu_check.sh                 # N = 10k, 50k, 200k and the 1.28 M-image semantic space
#     GPU_SIZES=50000 bash scripts/gpu_check.sh # a shorter check
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt"
python3 -m cae_core bench --json > "$OUT/bench.json"
python3 -m cae_core bench --scale --sizes "${GPU_SIZES:-10000,50000,200000}" --json > "$OUT/scale.json"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path

from cae_core.benchmarks import scale_table

out = Path(sys.argv[1])
scale, bench = json.loads((out / "scale.json").read_text()), json.loads((out / "bench.json").read_text())
tests = (out / "cuda_tests.txt").read_text().strip().splitlines()[-1]
lines = [f"GPU: {scale['gpu']} (`bash scripts/gpu_check.sh`); CUDA tests: {tests}", "",
         scale_table(scale), "",
         f"bench: Sinkhorn {bench['ot_s']} s against POT {bench['pot_ot_s']} s (max |dx| {bench['ot_max_abs_diff_vs_pot']:.1e}); "
         f"k-means {bench['kmeans_ours_cpu_s']} CPU s, faiss-cpu {bench['kmeans_faiss_cpu_s']} CPU s"]
(out / "gpu_table.md").write_text("\n".join(lines) + "\n")
print((out / "gpu_table.md").read_text())
PY
