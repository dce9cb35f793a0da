"""FSDP and DeepSpeed on CUDA GPUs, the way a user runs them: a check for a GPU machine (the suite tests FSDP on
the CPU through a test hook, tests/train/test_sharded.py; this runs it without the hook, over nccl).

    python benchmarks/gpu_sharded_check.py            # ~2-4 minutes; prints one JSON line (exit 0: all passed)
    TUNESMITH_TEST_FSDP_OVER_GLOO=1 python benchmarks/gpu_sharded_check.py   # a dry run of the script on CPUs

Self-contained: a tiny random Llama (tests/tiny_models.py: its BPE tokenizer is trained on the spot, nothing is
downloaded) fine-tuned with `task: sft` on 48 generated rows, 2 epochs, fp32, in N = min(2, GPUs) processes:

1. FSDP (`--accelerate-config`, fsdp_version 2, FULL_STATE_DICT) vs DDP (`--processes N`; one process: a plain
   run): logged losses, validation loss, generations, RUN/model weights; RUN/model loads with from_pretrained;
2. FSDP stopped by SIGTERM after step 3 (the documented test hook), then --resume: losses and weights against (1);
3. DeepSpeed ZeRO-2 when `deepspeed` is installed (else "skipped"): trains, RUN/model equals DDP's within a
   tolerance, no checkpoint is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))
TOLERANCE = 1e-4  # nccl reductions in another order than gloo's: not bit for bit


def run(args: list[str], **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}",
           **extra}
    return subprocess.run([sys.executable, "-m", "tunesmith", *args], env=env, capture_output=True, text=True,
                          timeout=240)


def records(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


def weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    if x.keys() != y.keys():
        return float("inf")
    return max((x[k].double() - y[k].double()).abs().max().item() for k in x)


def loss_difference(a: Path, b: Path) -> float:
    x, y = records(a, "train"), records(b, "train")
    if [r["step"] for r in x] != [r["step"] for r in y]:
        return float("inf")
    return max(abs(p["loss"] - q["loss"]) for p, q in zip(x, y))


def accelerate_config(path: Path, processes: int, kind: str, settings: dict) -> str:
    key = "fsdp_config" if kind == "FSDP" else "deepspeed_config"
    path.write_text(yaml.safe_dump({"compute_environment": "LOCAL_MACHINE", "distributed_type": kind,
                                    "num_processes": processes, "num_machines": 1, "mixed_precision": "no",
                                    "use_cpu": False, "debug": False, "main_process_port": 0, key: settings}))
    return str(path)


def main() -> int:
    import torch
    from lm_helpers import lm_recipe, number_rows, write_json
    from tiny_models import build_tiny_llama

    started = time.perf_counter()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    report: dict = {"gpus": gpus, "torch": torch.__version__}
    if not gpus and os.environ.get("TUNESMITH_TEST_FSDP_OVER_GLOO") != "1":  # the hook: a dry run of this script
        print(json.dumps({**report, "ok": False, "error": "no CUDA GPU"}))
        return 1
    n = min(2, gpus) if gpus else 2
    report["processes"] = n
    root = Path(tempfile.mkdtemp(prefix="sharded-check-"))
    train = write_json(root / "train.json", number_rows(48))
    model = build_tiny_llama(root / "llama")

    def recipe(name: str) -> str:
        raw = lm_recipe(model, "sft", train, root / name, epochs=2, group_by_length=False, precision="fp32",
                        lm={"num_samples": 2})
        raw["checkpoint"] = {"keep_on_finish": True, "every_steps": 3}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        return str(root / f"{name}.yaml")

    fsdp_config = accelerate_config(root / "accelerate_fsdp.yaml", n, "FSDP", {
        "fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_cpu_ram_efficient_loading": False,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_reshard_after_forward": True})
    checks: dict = {}
    fsdp = run(["train", recipe("fsdp"), "--accelerate-config", fsdp_config])
    ddp = run(["train", recipe("ddp"), *(["--processes", str(n)] if n > 1 else [])])
    report["fsdp"] = {"rc": fsdp.returncode, "ddp_rc": ddp.returncode, "stderr": fsdp.stderr[-600:] if fsdp.returncode
                      else None}
    if fsdp.returncode == 0 and ddp.returncode == 0:
        a, b = (json.loads((root / name / "eval.json").read_text()) for name in ("fsdp", "ddp"))
        from transformers import AutoModelForCausalLM

        loaded = AutoModelForCausalLM.from_pretrained(root / "fsdp" / "model")
        report["fsdp"].update({
            "engine": a["environment"]["engine"], "val_loss": a["validation"]["loss"],
            "ddp_val_loss": b["validation"]["loss"], "loss_diff": loss_difference(root / "fsdp", root / "ddp"),
            "weight_diff": weight_difference(root / "fsdp", root / "ddp"),
            "generations_equal": a["generations"] == b["generations"],
            "from_pretrained": type(loaded).__name__})
        checks["fsdp"] = (a["environment"]["engine"] == "FSDP" and report["fsdp"]["loss_diff"] <= TOLERANCE
                          and report["fsdp"]["weight_diff"] <= TOLERANCE)
    else:
        checks["fsdp"] = False

    stopped = run(["train", recipe("resumed"), "--accelerate-config", fsdp_config],
                  TUNESMITH_TEST_SIGNAL_AFTER_STEP="3:TERM:launcher")
    resumed = run(["train", str(root / "resumed.yaml"), "--accelerate-config", fsdp_config, "--resume"])
    report["resume"] = {"rc_term": stopped.returncode, "rc_resume": resumed.returncode,
                        "stderr": resumed.stderr[-600:] if resumed.returncode else None}
    if stopped.returncode == 143 and resumed.returncode == 0 and fsdp.returncode == 0:
        report["resume"].update({"resumed_from": "resuming from" in resumed.stdout,
                                 "loss_diff": loss_difference(root / "resumed", root / "fsdp"),
                                 "weight_diff": weight_difference(root / "resumed", root / "fsdp")})
        checks["resume"] = report["resume"]["loss_diff"] <= TOLERANCE and report["resume"]["weight_diff"] <= TOLERANCE
    else:
        checks["resume"] = False

    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        report["deepspeed"] = {"skipped": "deepspeed is not installed"}
    else:
        raw = yaml.safe_load(Path(recipe("zero2")).read_text())
        raw["checkpoint"] = {"keep_on_finish": True}
        (root / "zero2.yaml").write_text(yaml.safe_dump(raw))
        config = accelerate_config(root / "zero2_accelerate.yaml", n, "DEEPSPEED", {
            "zero_stage": 2, "gradient_clipping": 1.0, "gradient_accumulation_steps": 1,
            "offload_optimizer_device": "none", "offload_param_device": "none", "zero3_init_flag": False})
        zero2 = run(["train", str(root / "zero2.yaml"), "--accelerate-config", config])
        report["deepspeed"] = {"rc": zero2.returncode, "stderr": zero2.stderr[-600:] if zero2.returncode else None}
        if zero2.returncode == 0 and ddp.returncode == 0:
            result = json.loads((root / "zero2" / "eval.json").read_text())
            report["deepspeed"].update({"engine": result["environment"]["engine"],
                                        "no_checkpoints": not (root / "zero2" / "checkpoints").exists(),
                                        "loss_diff": loss_difference(root / "zero2", root / "ddp"),
                                        "weight_diff": weight_difference(root / "zero2", root / "ddp")})
            checks["deepspeed"] = report["deepspeed"]["weight_diff"] <= 1e-3 and report["deepspeed"]["no_checkpoints"]
        else:
            checks["deepspeed"] = False
    report.update({"checks": checks, "ok": all(checks.values()), "wall_s": round(time.perf_counter() - started, 1)})
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
