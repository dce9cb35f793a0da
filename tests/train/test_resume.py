"""Exact resume: a run stopped by SIGTERM, resumed, killed by SIGKILL mid-epoch and resumed again is the same run
as one that was never interrupted: the same per-step losses and the same final weights (fp32 CPU, within 1e-6).

The runs go through the real CLI: the interrupted ones in a subprocess (the process really dies), the others
in-process through `tunesmith.cli.main` (the same code path, faster). A documented test-only hook,
TUNESMITH_TEST_SIGNAL_AFTER_STEP=STEP:SIGNAL (tunesmith/train/checkpoint.py), makes a run send itself the signal
right after optimizer step STEP, so the kill lands at a chosen step without timing races. The tiny models keep
their dropout (0.1), so restoring the RNG states is part of what is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from lm_helpers import lm_recipe, shakespeare_slice
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main
from tunesmith.errors import TrainingError
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune
from tunesmith.train import checkpoint as ckpt
from tunesmith.train import checkpoint_store

REPO = Path(__file__).resolve().parents[2]
STEPS = 12  # 48 training rows / 8 per batch = 6 steps per epoch, 2 epochs
CHECKPOINTS = {"every_steps": 4, "keep_last": 2, "keep_on_finish": True}  # saved at 4, 6 (epoch end), 8, 12


def quiet(*_args, **_kwargs):
    pass


def cli_subprocess(*args: str, hook: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"),
           "OMP_NUM_THREADS": str(torch.get_num_threads()),  # the same kernels as the in-process runs
           "TUNESMITH_TEST_SIGNAL_AFTER_STEP": hook}
    return subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def cli(*args: str) -> int:
    return main(list(args))


def write_recipe(path: Path, raw: dict) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def train_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]


def eval_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"]


def assert_same_run(run: Path, reference: Path, steps: int = STEPS) -> None:
    ours, theirs = train_records(run), train_records(reference)
    assert [r["step"] for r in ours] == list(range(1, steps + 1)), "each step logged exactly once, in order"
    assert [r["step"] for r in theirs] == list(range(1, steps + 1))
    np.testing.assert_allclose([r["loss"] for r in ours], [r["loss"] for r in theirs], rtol=0, atol=1e-6)
    np.testing.assert_allclose([r["lr"] for r in ours], [r["lr"] for r in theirs], rtol=0, atol=1e-12)
    assert [r["samples"] for r in ours] == [r["samples"] for r in theirs]
    ours_eval, theirs_eval = eval_records(run), eval_records(reference)
    assert [(r["step"], r.get("final", False)) for r in ours_eval] == [(r["step"], r.get("final", False))
                                                                       for r in theirs_eval]
    np.testing.assert_allclose([r["loss"] for r in ours_eval], [r["loss"] for r in theirs_eval], rtol=0, atol=1e-6)
    final = f"checkpoints/step-{steps:08d}/model.safetensors"
    for weights in (final, "model/model.safetensors"):  # the last step's weights, and the best model
        a, b = load_file(run / weights), load_file(reference / weights)
        assert a.keys() == b.keys()
        worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
        assert worst <= 1e-6, f"{weights}: weights differ by {worst}"


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    train = write_csv(root / "train.csv", sentiment_rows(64, seed=3))
    raw = tiny_recipe(tiny_bert_dir, train, root / "reference", epochs=2, lr=1e-3)
    raw["checkpoint"] = dict(CHECKPOINTS)
    return root, raw


@pytest.fixture(scope="module")
def reference(setup):
    """The uninterrupted run."""
    root, raw = setup
    assert cli("train", write_recipe(root / "reference.yaml", raw)) == 0
    run = root / "reference"
    assert len(train_records(run)) == STEPS
    return run


def test_sigterm_then_sigkill_mid_epoch_then_resume_is_the_same_run(setup, reference, capsys):
    root, raw = setup
    run = root / "interrupted"
    recipe = write_recipe(root / "interrupted.yaml", {**raw, "output": str(run)})

    # 1. SIGTERM after step 5 (epoch 1, batch 5): a checkpoint is saved, then exit 143 with a hint to resume
    done = cli_subprocess("train", recipe, hook="5:TERM")
    assert done.returncode == 143, done.stderr[-3000:]
    errors = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert errors == [f"error: stopped by SIGTERM at step 5 of {STEPS}; saved checkpoint {run}/checkpoints/"
                      f"step-00000005; continue with: tunesmith train {recipe} --resume"]
    assert [s for s, _ in ckpt.CheckpointStore(run / "checkpoints").steps()] == [5, 4]

    # 2. resumed in a new process, then SIGKILLed after step 10 (epoch 2, batch 4): no chance to save anything
    done = cli_subprocess("train", recipe, "--resume", hook="10:KILL")
    assert done.returncode == -9, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "step-00000005 (step 5 of 12, epoch 1, batch 5)" in done.stdout
    assert [r["step"] for r in train_records(run)] == list(range(1, 11))  # logged up to the kill ...
    store = ckpt.CheckpointStore(run / "checkpoints")
    assert [s for s, _ in store.steps()][:2] == [8, 6]  # ... checkpointed up to step 8 (epoch 2, batch 2)
    assert not (run / "eval.json").exists()

    # 3. resumed again: steps 9 and 10 are replayed (and logged once), and the run finishes as if never stopped
    capsys.readouterr()
    assert cli("train", recipe, "--resume") == 0
    assert "step-00000008 (step 8 of 12, epoch 2, batch 2)" in capsys.readouterr().out
    assert_same_run(run, reference)
    assert json.loads((run / "eval.json").read_text())["steps"] == STEPS


def test_disk_full_while_saving_keeps_the_last_checkpoint_and_resume_finishes_the_run(setup, reference, capsys,
                                                                                   monkeypatch):
    root, raw = setup
    run = root / "disk_full"
    recipe = write_recipe(root / "disk_full.yaml", {**raw, "output": str(run)})
    real_write = checkpoint_store._write_file

    def full_at_step_8(path: Path, data) -> tuple[int, str]:
        if path.parent.name.startswith(".tmp-step-00000008") and path.name == "model.safetensors":
            whole = b"".join(data)  # the file's parts (train/safetensors_parts.py)
            with open(path, "wb") as handle:
                handle.write(whole[: len(whole) // 3])  # part of the file reaches the disk ...
            raise OSError(28, "No space left on device")  # ... then the disk is full
        return real_write(path, data)

    monkeypatch.setattr(checkpoint_store, "_write_file", full_at_step_8)
    capsys.readouterr()
    assert cli("train", recipe) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == err.splitlines()[-1].strip() and "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert message == [f"error: cannot save checkpoint {run}/checkpoints/step-00000008 (writing model.safetensors): "
                       f"No space left on device (ENOSPC); the previous checkpoint {run}/checkpoints/step-00000006 "
                       f"is intact. Free space or fix permissions, then continue with --resume"]
    store = ckpt.CheckpointStore(run / "checkpoints")
    assert sorted(p.name for p in store.root.iterdir()) == ["step-00000004", "step-00000006"]
    assert store.problem(store.root / "step-00000006") is None

    # space is back: resuming from step 6 (an epoch end) finishes the same run
    monkeypatch.setattr(checkpoint_store, "_write_file", real_write)
    assert cli("train", recipe, "--resume") == 0
    assert "step-00000006 (step 6 of 12, epoch 1 done)" in capsys.readouterr().out
    assert_same_run(run, reference)


def test_default_settings_remove_checkpoints_at_the_end_and_a_finished_run_is_not_redone(setup, capsys):
    root, raw = setup
    run = root / "defaults"
    raw = {**raw, "output": str(run), "checkpoint": {}, "train": {**raw["train"], "epochs": 1}}
    recipe = write_recipe(root / "defaults.yaml", raw)
    assert cli("train", recipe) == 0
    assert not (run / "checkpoints").exists() and (run / "eval.json").is_file()
    saved = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert cli("train", recipe, "--resume") == 0  # resume: auto / --resume is idempotent for a finished run
    assert "already finished" in capsys.readouterr().out
    assert (run / "metrics.jsonl").read_text() == saved


@pytest.mark.preflight_expected("lr_above_method")  # --set train.lr=0.5 is refused, but its run is set up first
def test_resume_refuses_a_changed_recipe_and_needs_a_checkpoint(setup, capsys, tmp_path, monkeypatch):
    root, raw = setup
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", {**raw, "output": str(run), "train": {**raw["train"], "max_steps": 3}})
    capsys.readouterr()
    assert cli("train", recipe, "--resume") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run}/checkpoints: no valid checkpoint to resume from; run without --resume to start over")
    monkeypatch.setenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP", "2:TERM")  # in-process: our handler catches it
    assert cli("train", recipe) == 143
    assert capsys.readouterr().err.strip().endswith(f"continue with: tunesmith train {recipe} --resume")
    monkeypatch.delenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP")
    assert cli("train", recipe, "--resume", "--set", "train.lr=0.5") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot resume from {run}/checkpoints/step-00000002: recipe key 'train.lr' is 0.5 now but was "
        f"0.001 when the checkpoint was saved; resume with the same recipe, or start over without --resume")
    # resume: auto with a checkpoint continues; without one it starts from the beginning
    assert cli("train", recipe, "--set", "resume=auto") == 0
    assert "step-00000002 (step 2 of 3" in capsys.readouterr().out
    assert [r["step"] for r in train_records(run)] == [1, 2, 3]


# --- NaN / inf losses ---------------------------------------------------------------------------------------


@pytest.fixture
def nan_at(monkeypatch):
    """Make the training loss NaN at the given training steps' compute_loss calls (1-based), in-process. Calls
    with the model in eval mode (the preflight loss probe runs with dropout off) are not counted."""
    from tunesmith.tasks.classification import ClassificationTask

    real = ClassificationTask.compute_loss
    calls = {"n": 0, "at": set()}

    def compute_loss(self, model, batch):
        loss = real(self, model, batch)
        if not model.training:
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] in calls["at"] else loss

    monkeypatch.setattr(ClassificationTask, "compute_loss", compute_loss)
    return calls["at"]


def test_a_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(setup, nan_at, tmp_path):
    root, raw = setup
    nan_at.add(8)
    recipe = validate_recipe({**raw, "output": str(tmp_path / "run")})
    with pytest.raises(TrainingError) as info:
        finetune(recipe, echo=quiet)
    assert str(info.value) == (
        f"the training loss became nan at step 8 (epoch 2, batch 2); the last good checkpoint is "
        f"{tmp_path}/run/checkpoints/step-00000006 (continue from it with --resume). Lower train.lr, set "
        f"train.max_grad_norm, check the data, or skip such batches with train.on_nan: skip")


def test_a_nan_loss_between_logged_steps_is_caught_before_the_next_checkpoint(setup, nan_at, tmp_path):
    """Losses are read back only at logged steps, evaluations and checkpoints: a NaN at step 3 with
    log_every 5 is still reported at step 3, and the checkpoint due at step 4 is not written."""
    root, raw = setup
    nan_at.add(3)
    out = tmp_path / "run"
    raw = {**raw, "output": str(out), "train": {**raw["train"], "log_every": 5}}
    with pytest.raises(TrainingError) as info:
        finetune(validate_recipe(raw), echo=quiet)
    assert str(info.value).startswith("the training loss became nan at step 3 (epoch 1, batch 3); there is no "
                                      "checkpoint yet.")
    assert not list((out / "checkpoints").glob("step-*"))


def test_logged_losses_and_token_counts_match_the_batches(setup, tmp_path):
    """The device-side running sums give a loss at every logged step, and count every real token once per
    epoch (padding apart)."""
    from transformers import AutoTokenizer

    root, raw = setup
    out = tmp_path / "run"
    validation = write_csv(tmp_path / "validation.csv", sentiment_rows(16, seed=9))
    raw = {**raw, "output": str(out), "data": {**raw["data"], "validation": str(validation)},
           "train": {**raw["train"], "log_every": 3}}
    result = finetune(validate_recipe(raw), echo=quiet)
    records = train_records(out)
    assert [r["step"] for r in records] == [3, 6, 9, 12, 15, 16]  # 64 rows / 8 = 8 steps per epoch, 2 epochs
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records)
    tokenizer = AutoTokenizer.from_pretrained(raw["model"])
    texts = [line.split(",", 1)[1] for line in (root / "train.csv").read_text().splitlines()[1:]]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=raw["train"]["max_length"])["input_ids"]]
    assert result["timing"]["tokens"] == 2 * sum(lengths)


def test_on_nan_skip_skips_counts_and_logs_the_batch(setup, nan_at, tmp_path):
    root, raw = setup
    nan_at.update({3, 9})
    out = tmp_path / "run"
    raw = {**raw, "output": str(out), "train": {**raw["train"], "on_nan": "skip", "max_nan_skips": 2}}
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["steps"] == STEPS
    skips = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "skip"]
    assert [(r["step"], r["skipped"], r["reason"]) for r in skips] == [(3, 1, "loss is nan"), (9, 2, "loss is nan")]
    losses = {r["step"]: r["loss"] for r in train_records(out)}
    assert losses[3] is None and losses[9] is None  # nothing to average on a skipped step (log_every 1)
    assert all(np.isfinite(v) for k, v in losses.items() if k not in (3, 9))
    assert all(torch.isfinite(t).all() for t in load_file(out / "model" / "model.safetensors").values())


def test_on_nan_skip_stops_past_the_limit(setup, nan_at, tmp_path):
    root, raw = setup
    nan_at.update({2, 4})
    raw = {**raw, "output": str(tmp_path / "run"), "train": {**raw["train"], "on_nan": "skip", "max_nan_skips": 1}}
    with pytest.raises(TrainingError, match=r"^the training loss was not finite in 2 batches, more than "
                                            r"train.max_nan_skips \(1\); the last at step 4 \(epoch 1\); "
                                            r"there is no checkpoint yet"):
        finetune(validate_recipe(raw), echo=quiet)


# --- causal LM ----------------------------------------------------------------------------------------------


def test_causal_lm_killed_mid_epoch_and_resumed_is_the_same_run(tiny_gpt2_dir, tmp_path):
    text = shakespeare_slice(tmp_path / "text.txt", 6000)
    raw = lm_recipe(tiny_gpt2_dir, "causal_lm", text, tmp_path / "reference", epochs=2, max_length=32,
                    eval_every="epoch", lm={"sample_prompts": []})
    raw["checkpoint"] = dict(CHECKPOINTS)
    assert cli("train", write_recipe(tmp_path / "reference.yaml", raw)) == 0
    steps = len(train_records(tmp_path / "reference"))
    per_epoch = steps // 2
    assert per_epoch >= 5, steps
    kill_at = per_epoch + 3  # epoch 2, after a checkpoint at step 4 or 8 that is not the epoch end
    recipe = write_recipe(tmp_path / "run.yaml", {**raw, "output": str(tmp_path / "run")})
    done = cli_subprocess("train", recipe, hook=f"{kill_at}:KILL")
    assert done.returncode == -9, done.stderr[-3000:]
    assert cli("train", recipe, "--resume") == 0
    assert_same_run(tmp_path / "run", tmp_path / "reference", steps=steps)
