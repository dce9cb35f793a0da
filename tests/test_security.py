"""Security: no unsafe deserialization anywhere in the package, pickle weights only when the recipe allows them,
and nothing planted inside a run directory makes tunesmith write or delete outside it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
import torch
from safetensors.torch import load_file

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main

SRC = Path(__file__).resolve().parents[1] / "src" / "tunesmith"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_torch_load_in_the_package_uses_weights_only():
    offenders, seen = [], 0
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, name in _calls(tree):
            where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
            if name == "torch.load":
                seen += 1
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    offenders.append(f"{where}: {ast.unparse(node)}")
            if name in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "cloudpickle.load",
                        "numpy.load", "np.load", "joblib.load"):
                if not any(k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in node.keywords):
                    offenders.append(f"{where}: {ast.unparse(node)}")
    assert not offenders, "unsafe deserialization:\n" + "\n".join(offenders)
    text = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    assert text.count("torch.load(") == seen  # no torch.load reached through another spelling
    assert "import pickle" not in text and "from pickle" not in text


@pytest.fixture(scope="module")
def pickle_model(tiny_bert_dir, tmp_path_factory) -> Path:
    """The tiny BERT saved as pytorch_model.bin (pickle) only."""
    path = tmp_path_factory.mktemp("pickled")
    torch.save(load_file(tiny_bert_dir / "model.safetensors"), path / "pytorch_model.bin")
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert_dir / name).is_file():
            (path / name).write_bytes((tiny_bert_dir / name).read_bytes())
    assert (path / "pytorch_model.bin").is_file() and not list(path.glob("*.safetensors"))
    return path


def test_pickle_weights_need_allow_pickle(pickle_model, tmp_path, capsys):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(40))
    raw = tiny_recipe(pickle_model, train, tmp_path / "run", max_steps=1)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", str(tmp_path / "r.yaml")]) == 2
    assert "has only pickle weights (pytorch_model.bin)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "r.yaml"), "--set", "allow_pickle=true"]) == 0
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["steps"] == 1
    assert list((tmp_path / "run" / "model").glob("*.safetensors"))  # what tunesmith writes is safetensors


def test_symlinks_planted_in_a_run_directory_are_never_followed(tiny_bert_dir, tmp_path):
    """A run directory reused by a new run: its checkpoints/ and model/ are symlinks to precious data elsewhere."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".tunesmith-run.json").write_text("{}\n")  # an unfinished run (other files: refused, test_file_safety.py)
    (run / "checkpoints").symlink_to(precious, target_is_directory=True)
    (run / "model").symlink_to(precious, target_is_directory=True)
    train = write_csv(tmp_path / "t.csv", sentiment_rows(40))
    raw = tiny_recipe(tiny_bert_dir, train, run, max_steps=2)
    raw["checkpoint"] = {"keep_on_finish": True}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", str(tmp_path / "r.yaml")]) == 0
    assert sorted(p.name for p in precious.iterdir()) == ["keep.txt"] and (precious / "keep.txt").read_text() == "mine"
    for path in run.rglob("*"):  # everything written is inside the run directory
        assert path.resolve().is_relative_to(run.resolve()) or path.is_symlink(), path
    assert not (run / "checkpoints").is_symlink() and (run / "checkpoints" / "step-00000002").is_dir()
    assert not (run / "model").is_symlink() and (run / "model" / "config.json").is_file()
