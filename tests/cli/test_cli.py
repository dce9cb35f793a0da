"""The command line: train / predict / evaluate / models, and one clear line + exit 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    """One tiny run through the real CLI (a subprocess), shared by the predict/evaluate tests."""
    root = tmp_path_factory.mktemp("cli")
    train = write_csv(root / "train.csv", sentiment_rows(160, seed=1))
    write_csv(root / "held_out.csv", sentiment_rows(40, seed=2))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert_dir, train, root / "unused")))
    done = run_cli("train", str(recipe), "--set", "train.epochs=6", "--output", str(root / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    return root, done


def test_train_prints_a_summary_and_writes_the_run(trained):
    root, done = trained
    assert "results (best model)" in done.stdout and "majority class (" in done.stdout
    assert "confusion matrix (validation)" in done.stdout
    assert "train:" in done.stderr  # the progress bar
    recipe = yaml.safe_load((root / "run" / "recipe.yaml").read_text())
    assert recipe["train"]["epochs"] == 6 and recipe["output"] == str(root / "run")
    assert (root / "run" / "model" / "model.safetensors").is_file()


def test_predict_texts(trained, capsys):
    root, _ = trained
    assert main(["predict", str(root / "run"), "--text", "great and wonderful film", "--text", "awful terrible plot"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "film" in line or "plot" in line]
    assert "pos" in lines[0] and "neg" in lines[1]


def test_predict_file_to_csv(trained, tmp_path):
    root, _ = trained
    pd.DataFrame({"text": ["love it, superb", "the worst, boring"], "id": [1, 2]}).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(root / "run"), "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "p.csv")]) == 0
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds["prediction"]) == ["pos", "neg"]
    assert set(preds.columns) >= {"text", "prediction", "prob_neg", "prob_pos"}
    assert (abs(preds["prob_neg"] + preds["prob_pos"] - 1) < 1e-5).all()


def test_evaluate_held_out_file(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(root / "run"), "--data", str(root / "held_out.csv"), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 40 and metrics["accuracy"] >= 0.85
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 40


def test_models_lists_packaged_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "minilm" in out and "smollm2" in out and "BERT" in out.upper()


# ---- bad input: one line on stderr, exit status 2, no traceback -------------------------------

def _expect_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _recipe(tmp_path, model, train, **data):
    raw = tiny_recipe(model, train, tmp_path / "run")
    raw["data"].update(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_missing_data_file(capsys, tmp_path, tiny_bert_dir):
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, tmp_path / "nope.csv")], "nope.csv", "does not exist")


def test_unsupported_extension(capsys, tmp_path, tiny_bert_dir):
    (tmp_path / "data.xlsx").write_text("x")
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, tmp_path / "data.xlsx")], "data.xlsx", "data.format")


def test_missing_column_lists_existing_ones(capsys, tmp_path, tiny_bert_dir):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, train, columns={"text": "txt", "label": "label"})],
                  "t.csv", "'txt'", "label, text")


def test_empty_file(capsys, tmp_path, tiny_bert_dir):
    (tmp_path / "empty.csv").write_text("")
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, tmp_path / "empty.csv")], "empty.csv", "empty")


def test_row_without_label_names_file_and_line(capsys, tmp_path, tiny_bert_dir):
    rows = sentiment_rows(20)
    rows[6] = ("", rows[6][1])
    train = write_csv(tmp_path / "t.csv", rows)
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, train)], "t.csv, line 8", "label")


def test_validation_label_unseen_in_training(capsys, tmp_path, tiny_bert_dir):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    dev = write_csv(tmp_path / "dev.csv", [("pos", "fine"), ("neutral", "meh")])
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, train, validation=str(dev))],
                  "dev.csv, line 3", "'neutral'", "not seen in the training data")


def test_non_utf8_file(capsys, tmp_path, tiny_bert_dir):
    (tmp_path / "latin.csv").write_bytes("label,text\npos,très bien\n".encode("latin-1"))
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, tmp_path / "latin.csv")], "latin.csv, line 2", "UTF-8")


def test_directory_that_is_not_a_model(capsys, tmp_path):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    (tmp_path / "not_a_model").mkdir()
    _expect_error(capsys, ["train", _recipe(tmp_path, tmp_path / "not_a_model", train)], "not_a_model", "config.json")


def test_unknown_model_name(capsys, tmp_path):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    _expect_error(capsys, ["train", _recipe(tmp_path, "bert-base-uncased", train)], "bert-base-uncased", "minilm")


def test_recipe_typo(capsys, tmp_path, tiny_bert_dir):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(20))
    _expect_error(capsys, ["train", _recipe(tmp_path, tiny_bert_dir, train), "--set", "train.lrr=1"],
                  "unknown key 'train.lrr'", "did you mean 'train.lr'")


def test_predict_on_a_missing_run(capsys, tmp_path):
    _expect_error(capsys, ["predict", str(tmp_path / "nope"), "--text", "hi"], "nope", "does not exist")


def test_errors_through_a_real_subprocess(tmp_path):
    (tmp_path / "r.yaml").write_text("model: minilm\ndata: {train: missing.csv}\n")
    done = run_cli("train", str(tmp_path / "r.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: missing.csv does not exist"]
