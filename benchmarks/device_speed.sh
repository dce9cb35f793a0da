#!/usr/bin/env bash
# The GPU speed benchmark, run on the lent machine over the `.device` folder made by device_prepare.sh:
# three classification contenders (benchmarks/classification_speed.py) and a profile of tunesmith's step.
# Results come back under $OUT: gpu_cls.json, profile.json, bench.log.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
python3 -c "import pydantic" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target /tmp/site .device/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 - <<'PY' || exit 4
import shutil
from pathlib import Path
import torch, transformers, accelerate
from safetensors.torch import load_file, save_file
src, dst = Path(".device/minilm"), Path("/tmp/minilm")
dst.mkdir(exist_ok=True)
for f in src.iterdir():
    if f.name != "fp16.safetensors":
        shutil.copy(f, dst / f.name)
weights = load_file(str(src / "fp16.safetensors"))
save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, str(dst / "model.safetensors"),
          metadata={"format": "pt"})
print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__,
      "cuda", torch.cuda.is_available())
import tunesmith.recipes.finetune  # noqa: F401 - the whole import chain works here
PY
{
  timeout ${BENCH_LIMIT:-420} python3 benchmarks/classification_speed.py --model /tmp/minilm \
      --data-dir .device/data --seeds 0 --contenders tunesmith,trainer_random,trainer_tuned --json "$OUT/gpu_cls.json"
  echo "classification benchmark exit $?"
  timeout 90 python3 benchmarks/profile_step.py --model /tmp/minilm --train .device/data/sst2_train_8000.tsv \
      --json "$OUT/profile.json"
  echo "profile exit $?"
} 2>&1 | grep -v "it/s\]" | tail -c 30000 > "$OUT/bench.log"
tail -c 8000 "$OUT/bench.log"
