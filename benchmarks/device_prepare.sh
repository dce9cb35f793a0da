#!/usr/bin/env bash
# Prepare the GPU speed benchmark for the `device` tool (a lent GPU machine that reaches nothing outside it and
# receives at most 64 MiB with the working tree). Run here, once; then hand `.device` over with `carry`:
#
#   bash benchmarks/device_prepare.sh                       # writes .device/ (ignored by git), ~47 MB
#   device run: carry [".device"], command "bash benchmarks/device_speed.sh", timeout_s 540
#
# .device/minilm   MiniLM as fp16 safetensors (the fp32 file is 87 MB; device_speed.sh casts it back exactly
#                  enough for a speed run: fp16 keeps MiniLM's weights to ~3 significant digits)
# .device/data     the fixed 8,000-row SST-2 subset and the dev set (from ../shared/data/sst2)
# .device/whl      wheels for what the device's Python lacked before (pydantic and its parts)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .device && mkdir -p .device/minilm .device/data .device/whl
HF_HUB_OFFLINE=1 "$PY" - <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
sys.path.insert(0, "benchmarks")
from common import sst2_subset
from tunesmith.models import resolve_model

src, dst = Path(resolve_model("minilm")), Path(".device/minilm")
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors" and f.stat().st_size < 2**20 * 20:
        shutil.copy(f, dst / f.name)
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, str(dst / "fp16.safetensors"),
          metadata={"format": "pt"})
sst2_subset(Path(".device/data"), 8000)
PY
"$PY" -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --platform manylinux2014_x86_64 \
    -d .device/whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.7.0 typing-inspection
grep -qx "/.device/" .git/info/exclude 2>/dev/null || echo "/.device/" >> .git/info/exclude
du -sh .device
