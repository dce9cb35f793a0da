"""Never lose the user's files: what `train`, `predict` and `evaluate` refuse to write, and what they leave behind.

Each case checks the exit status, the one line on stderr and, where files existed before, that every file of the
directory tree is byte-identical afterwards (sha256 of each). Runs go through `tunesmith.cli.main` in-process;
the live lock is held by this test process, and once by a real second process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.artifacts import RunDir
from tunesmith.cli import main
from tunesmith.errors import RunError
from tunesmith.train.run_lock import LOCK_NAME, RunLock

REPO = Path(__file__).resolve().parents[1]
S = ["--set", "train.epochs=1", "--set", "train.max_steps=2", "--set", "train.max_length=32",
     "--set", "baselines=false", "--set", "report.html=false"]
HOST = socket.gethostname()
FOREIGN = ("error: {dir} is not empty and is not a tunesmith run directory (it holds checkpoints, metrics.jsonl, "
           "model): choose another --output, a new or empty directory")
FINISHED = ("error: {dir} already holds a finished run (eval.json): choose another --output, or add --overwrite to "
            "replace it (the finished run stays as it is until the new one finishes)")


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (hidden ones included), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


PROGRESS = re.compile(r"^[\w ]+: +\d+%\|")  # a tqdm bar (training, evaluation) on stderr


def cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """(exit status, stdout, the lines of stderr as a terminal shows them, progress bars left out)."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    shown = [line.split("\r")[-1] for line in err.split("\n")]
    return status, out, [line for line in shown if line.strip() and not PROGRESS.match(line)]


@pytest.fixture(scope="module")
def work(tiny_bert_dir, tmp_path_factory) -> Path:
    """A directory with the recipe (base.yaml), its 40-row data and a finished run, runs/base."""
    root = tmp_path_factory.mktemp("safety")
    data = write_csv(root / "data.csv", sentiment_rows(40))
    (root / "base.yaml").write_text(yaml.safe_dump(tiny_recipe(tiny_bert_dir, data, root / "runs" / "base")))
    assert main(["train", str(root / "base.yaml"), *S]) == 0
    return root


@pytest.fixture
def keep(work, tmp_path) -> Path:
    """A copy of the finished run (cp -a)."""
    target = tmp_path / "keep"
    shutil.copytree(work / "runs" / "base", target, symlinks=True)
    return target


def train(work: Path, *args) -> list:
    return ["train", work / "base.yaml", *S, *args]


# --- 1. an output directory holding other files -------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--set", "overwrite=true"], ["--resume"]])
def test_a_directory_of_other_files_is_never_written(work, tmp_path, capsys, flags):
    user = tmp_path / "userdir"
    for name, text in (("checkpoints/important.txt", "important"), ("model/mine.txt", "mine"), ("metrics.jsonl", "{}")):
        (user / name).parent.mkdir(parents=True, exist_ok=True)
        (user / name).write_text(text)
    before = tree(user)
    status, _, err = cli(train(work, "--output", user, *flags), capsys)
    overwrite = any("overwrite" in flag for flag in flags)
    suffix = "; --overwrite replaces tunesmith runs only, never other files" if overwrite else ""
    assert (status, err) == (2, [FOREIGN.format(dir=user) + suffix])
    assert tree(user) == before and sorted(os.listdir(user)) == ["checkpoints", "metrics.jsonl", "model"]


def test_a_finished_run_is_refused_without_overwrite(work, keep, capsys):
    before = tree(keep)
    status, _, err = cli(train(work, "--output", keep), capsys)
    assert (status, err) == (2, [FINISHED.format(dir=keep)])
    assert tree(keep) == before


def test_a_run_that_fails_before_writing_anything_leaves_no_directory(work, tmp_path, capsys):
    status, _, err = cli(train(work, "--output", tmp_path / "new" / "run", "--set", f"data.train={tmp_path}/no.csv"),
                         capsys)
    assert (status, err) == (2, [f"error: {tmp_path}/no.csv does not exist"])
    assert not (tmp_path / "new" / "run").exists()


# --- 2. overwriting a finished run ---------------------------------------------------------------------------------


def test_a_failed_overwrite_leaves_the_finished_run_byte_identical(work, keep, capsys, monkeypatch):
    from tunesmith.tasks.classification import ClassificationTask

    real = ClassificationTask.compute_loss
    calls = []

    def nan_at_the_second_step(self, model, batch):  # (--set train.lr=.inf is refused by the recipe schema)
        calls.extend([1] if model.training else [])  # the preflight loss probe runs in eval mode: not a step
        return real(self, model, batch) * (float("nan") if model.training and len(calls) == 2 else 1.0)

    monkeypatch.setattr(ClassificationTask, "compute_loss", nan_at_the_second_step)
    before = tree(keep)
    status, _, err = cli(train(work, "--output", keep, "--overwrite"), capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith("error: the training loss became nan at step 2"), err
    assert tree(keep) == before  # no new file either: RUN/.overwrite (no checkpoint in it) and the lock are gone


def test_overwrite_replaces_only_tunesmith_artifacts_once_the_new_run_finished(work, keep, capsys):
    (keep / "notes.txt").write_text("my notes")
    (keep / "adapter").mkdir()
    (keep / "adapter" / "adapter_config.json").write_text("{}")  # an artifact of the old run the new one lacks
    (keep / "exports" / "onnx").mkdir(parents=True)
    (keep / "exports" / "onnx" / "model.onnx").write_bytes(b"old export")
    before = tree(keep)
    argv = train(work, "--set", "train.lr=1e-3", "--set", "report.html=true", "--output", keep, "--overwrite")
    status, out, err = cli(argv, capsys)
    assert (status, err) == (0, [])
    after = tree(keep)
    for kept in ("notes.txt", "exports/onnx/model.onnx", ".tunesmith-run.json"):
        assert after[kept] == before[kept]
    assert after["eval.json"] != before["eval.json"] and after["metrics.jsonl"] != before["metrics.jsonl"]
    assert not (keep / "adapter").exists() and not (keep / ".overwrite").exists() and not (keep / LOCK_NAME).exists()
    recipe = yaml.safe_load((keep / "recipe.yaml").read_text())
    assert (recipe["train"]["lr"], recipe["output"], recipe["overwrite"]) == (0.001, str(keep), False)
    assert json.loads((keep / "eval.json").read_text())["model_dir"] == str(keep / "model")
    assert f"note: {keep} holds a finished run: the new run trains in {keep}/.overwrite" in out
    assert f"note: {keep}/exports holds exports of the replaced model: export again" in out
    report = (keep / "report.html").read_text()
    assert f"run directory</td><td>{keep}<" in report and f"{keep}/.overwrite" not in report


def test_an_interrupted_overwrite_keeps_the_old_run_and_resumes(work, keep, capsys, monkeypatch):
    before = tree(keep)
    monkeypatch.setenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP", "1:TERM")  # in-process: the run's handler catches it
    argv = train(work, "--set", "checkpoint.every_steps=1", "--output", keep, "--overwrite")
    status, _, err = cli(argv, capsys)
    assert status == 143 and len(err) == 1
    assert f"saved checkpoint {keep}/.overwrite/checkpoints/step-00000001" in err[0], err
    assert err[0].endswith("--overwrite --resume"), err
    assert {k: v for k, v in tree(keep).items() if not k.startswith(".overwrite/")} == before
    assert not (keep / LOCK_NAME).exists()
    monkeypatch.delenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP")
    status, out, err = cli([*argv, "--resume"], capsys)
    assert (status, err) == (0, [])
    assert f"resuming from {keep}/.overwrite/checkpoints/step-00000001" in out
    assert not (keep / ".overwrite").exists() and tree(keep)["eval.json"] != before["eval.json"]


def test_the_scratch_baseline_runs_nested_in_a_fresh_and_in_an_overwritten_run(work, tmp_path, capsys):
    run = tmp_path / "run"
    scratch = ["--set", "baselines=[scratch]", "--output", run]
    for extra in ([], ["--overwrite"]):
        status, out, err = cli(train(work, *scratch, *extra), capsys)
        assert (status, err) == (0, []), out
        result = json.loads((run / "eval.json").read_text())
        assert "skipped" not in result["baselines"]["validation"]["scratch"]
        nested = yaml.safe_load((run / "baselines" / "scratch" / "recipe.yaml").read_text())
        assert nested["output"] == str(run / "baselines" / "scratch")  # the final place, not RUN/.overwrite/...
    assert not (run / ".overwrite").exists()


# --- 3. two runs into one directory --------------------------------------------------------------------------------


def _unfinished_run(root: Path) -> Path:
    """A run directory with a checkpoint and no eval.json (as an interrupted run leaves it)."""
    (root / "checkpoints" / "step-00000001").mkdir(parents=True)
    (root / "checkpoints" / "step-00000001" / "state.json").write_text("{}")
    (root / "recipe.yaml").write_text("model: x\n")
    (root / "metrics.jsonl").write_text("")
    (root / ".tunesmith-run.json").write_text("{}\n")
    return root


def test_a_run_into_a_directory_locked_by_a_live_run_is_refused(work, tmp_path, capsys):
    run = _unfinished_run(tmp_path / "run")
    with RunLock(run):  # this test process is the live run
        before = tree(run)
        status, _, err = cli(train(work, "--output", run), capsys)
        assert tree(run) == before  # its checkpoints were not removed ("starting over")
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"error: {run} is in use by another tunesmith run (pid {os.getpid()} on {HOST}, since ")
    assert err[0].endswith("); wait for it to finish, or choose another --output")
    assert not (run / LOCK_NAME).exists()  # released by its holder


def test_a_lock_held_by_another_process_names_it(work, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tunesmith.train.run_lock import RunLock\n"
                               f"with RunLock({str(run)!r}):\n    print('ready', flush=True)\n    sys.stdin.read()"],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        status, _, err = cli(train(work, "--output", run), capsys)
    finally:
        holder.communicate("", timeout=60)
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"error: {run} is in use by another tunesmith run (pid {holder.pid} on {HOST}, since ")
    assert os.listdir(run) == []  # the holder removed its lock file on exit


def test_a_lock_left_by_a_dead_process_is_noted_and_taken_over(work, tmp_path, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # that process has exited: nobody holds the lock its file names
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": HOST, "started": "2024-01-01T00:00:00+0000"}))
    status, out, err = cli(train(work, "--output", run), capsys)
    assert (status, err) == (0, [])
    assert (f"note: {run}/{LOCK_NAME} was left by a run that is no longer running (pid {pid} on {HOST}, since "
            f"2024-01-01T00:00:00+0000): taking it over") in " ".join(out.split())
    assert (run / "eval.json").is_file() and not (run / LOCK_NAME).exists()


# --- 4, 7, 8. predict and evaluate outputs --------------------------------------------------------------------------


def test_predict_refuses_to_write_over_its_input(work, tmp_path, capsys):
    data = tmp_path / "in.csv"
    shutil.copy(work / "data.csv", data)
    (tmp_path / "link.csv").symlink_to(data)
    before = tree(tmp_path)
    for output in (data, tmp_path / "link.csv"):
        status, _, err = cli(["predict", work / "runs" / "base", "--input", data, "--output", output], capsys)
        assert (status, err) == (2, [f"error: --output {output} is the input file {data}: writing it would replace "
                                     f"the data; choose another --output"])
    assert tree(tmp_path) == before


def test_predict_output_is_written_atomically(work, tmp_path, capsys, monkeypatch):
    from tunesmith import writers

    out = tmp_path / "predictions.csv"
    out.write_text("the previous predictions\n")

    def fail_half_way(frame, path):
        Path(path).write_text("half")
        raise OSError(28, "No space left on device")

    argv = ["predict", work / "runs" / "base", "--input", work / "data.csv", "--output", out]
    with monkeypatch.context() as patch:
        patch.setitem(writers.WRITERS, ".csv", fail_half_way)
        status, _, err = cli(argv, capsys)
    assert (status, err) == (2, [f"error: cannot write {out} (No space left on device (ENOSPC))"])
    assert out.read_text() == "the previous predictions\n" and os.listdir(tmp_path) == ["predictions.csv"]
    status, _, err = cli(argv, capsys)
    assert status == 0 and out.read_text().startswith("text,prediction,prob_neg,prob_pos\n")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_output_that_is_a_directory_or_in_a_missing_folder(work, tmp_path, capsys, command):
    source = ["--input", work / "data.csv"] if command == "predict" else ["--data", work / "data.csv"]
    example = "predictions.csv" if command == "predict" else "metrics.json"
    status, _, err = cli([command, work / "runs" / "base", *source, "--output", tmp_path], capsys)
    assert (status, err) == (2, [f"error: --output {tmp_path} is a directory: give a file name in it, e.g. "
                                 f"{tmp_path}/{example}"])
    missing = tmp_path / "nodir" / "m.json"
    status, _, err = cli([command, work / "runs" / "base", *source, "--output", missing], capsys)
    assert (status, err) == (2, [f"error: {missing}: folder {tmp_path}/nodir does not exist"])
    assert os.listdir(tmp_path) == []


def test_evaluate_writes_its_metrics_and_refuses_its_data_file(work, tmp_path, capsys):
    out = tmp_path / "m.json"
    status, _, err = cli(["evaluate", work / "runs" / "base", "--data", work / "data.csv", "--output", out], capsys)
    assert (status, err) == (0, []) and "macro_f1" in json.loads(out.read_text())
    before = tree(work)
    data = work / "data.csv"
    status, _, err = cli(["evaluate", work / "runs" / "base", "--data", data, "--output", data], capsys)
    assert (status, err) == (2, [f"error: --output {data} is the input file {data}: writing it would replace the "
                                 f"data; choose another --output"])
    assert tree(work) == before


@pytest.mark.parametrize("name", ["eval.json", "model/config.json"])
def test_evaluate_never_writes_over_the_runs_own_files(work, capsys, name):
    run = work / "runs" / "base"
    before = tree(work)
    status, _, err = cli(["evaluate", run, "--data", work / "data.csv", "--output", run / name], capsys)
    assert (status, err) == (2, [f"error: --output {run / name} is one of the files of the run {run}: writing it "
                                 f"would change what the run recorded; choose another --output"])
    assert tree(work) == before


@pytest.mark.parametrize("texts, number", [(["good", "  "], 2), ([""], 1), (["\t\n"], 1)])
def test_predict_refuses_an_empty_text(work, capsys, texts, number):
    argv = ["predict", work / "runs" / "base"] + [arg for text in texts for arg in ("--text", text)]
    status, _, err = cli(argv, capsys)
    assert (status, err) == (2, [f"error: --text number {number} is empty: give a text to classify"])


# --- 5. the recipe being read ---------------------------------------------------------------------------------------


def test_the_recipe_being_read_is_never_replaced_by_the_resolved_one(work, tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    recipe = exp / "recipe.yaml"
    recipe.write_text("# my experiment, commented\n" + (work / "base.yaml").read_text())
    before = tree(exp)
    for flags in ([], ["--overwrite"], ["--resume"]):
        status, _, err = cli(["train", recipe, *S, "--output", exp, *flags], capsys)
        assert (status, err) == (2, [f"error: {recipe} is the recipe being read: the run would replace it with the "
                                     f"resolved recipe; choose another --output (or copy the recipe out of {exp})"])
    assert tree(exp) == before


# --- 6. disk full while saving the model ---------------------------------------------------------------------------

DISK_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def _disk_full(*args, **kwargs):
    raise SafetensorError(DISK_FULL)


def test_disk_full_while_saving_the_model_is_one_line(work, tmp_path, capsys, monkeypatch):
    import transformers.modeling_utils

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", _disk_full)
    run = tmp_path / "run"
    status, _, err = cli(train(work, "--output", run, "--set", "preflight.round_trip=false"), capsys)
    assert (status, err) == (2, [f"error: cannot save the model to {run}/model (writing the weights (.safetensors): "
                                 f"No space left on device (ENOSPC)); no model had been saved there yet"])
    assert not (run / LOCK_NAME).exists() and not list(run.glob(".model-*"))


@pytest.mark.preflight_fault  # a full disk under the round trip's save
def test_disk_full_in_the_preflight_round_trip_stops_before_training(work, tmp_path, capsys, monkeypatch):
    """The save/reload check saves the untrained model to a temporary directory first: a full disk there is
    found before any step, named as such, with the way around it."""
    import tempfile

    import transformers.modeling_utils

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", _disk_full)
    run = tmp_path / "run"
    status, _, err = cli(train(work, "--output", run), capsys)
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: preflight: the save/reload check could not save the untrained model: cannot "
                             "save the model to "), err
    assert err[0].endswith(f"No space left on device (ENOSPC)); no model had been saved there yet; nothing was "
                           f"trained. Free space in {tempfile.gettempdir()} (or point TMPDIR elsewhere), or set "
                           f"preflight.round_trip: false"), err
    assert not (run / "metrics.jsonl").exists() and not (run / "model").exists()


def test_a_failed_model_save_keeps_the_previous_best_model(work, tmp_path, monkeypatch):
    import transformers.modeling_utils
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = work / "runs" / "base" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.save_model(model, tokenizer)
    before = tree(run.path)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", _disk_full)
    with pytest.raises(RunError) as failed:
        run.save_model(model, tokenizer)
    assert str(failed.value) == (f"cannot save the model to {run.model_dir} (writing the weights (.safetensors): "
                                 f"No space left on device (ENOSPC)); the model saved there before is intact")
    assert tree(run.path) == before


def test_a_staged_run_moves_in_every_artifact_and_leaves_other_files(tmp_path):
    """commit_staged on its own: new artifacts replace the old ones (regression predictions included), the old
    run's artifacts the new one lacks are removed, files tunesmith did not write stay, eval.json arrives."""
    from tunesmith.train.run_claim import STAGING, commit_staged

    run = tmp_path / "run"
    for name, text in (("eval.json", "old"), ("predictions_test.csv", "old"), ("report.html", "old"),
                       ("model/config.json", "old"), ("baselines/scratch/eval.json", "old"), ("notes.txt", "mine"),
                       ("baselines/mine.txt", "mine")):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    for name in ("eval.json", "predictions_validation.csv", "model/config.json", "metrics.jsonl"):
        (run / STAGING / name).parent.mkdir(parents=True, exist_ok=True)
        (run / STAGING / name).write_text("new")
    commit_staged(run / STAGING, run, echo=lambda line: None)
    assert tree(run) == {name: hashlib.sha256(text.encode()).hexdigest() for name, text in (
        ("baselines/mine.txt", "mine"), ("eval.json", "new"), ("metrics.jsonl", "new"), ("model/config.json", "new"),
        ("notes.txt", "mine"), ("predictions_validation.csv", "new"))}
    assert sorted(os.listdir(run)) == ["baselines", "eval.json", "metrics.jsonl", "model", "notes.txt",
                                       "predictions_validation.csv"]
