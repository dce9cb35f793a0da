"""The tunesmith command runs under tcmalloc where it is installed (tunesmith/allocator.py): the decision, and a
real `python -m tunesmith` run whose eval.json names the allocator that ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.allocator import SETTING, find_tcmalloc, preload_environment


def test_the_command_is_started_again_only_once_and_only_when_it_can_be(tmp_path):
    library = tmp_path / "libtcmalloc_minimal.so.4"
    library.write_bytes(b"")
    assert find_tcmalloc([tmp_path / "absent", tmp_path]) == str(library)
    assert find_tcmalloc([tmp_path / "absent"]) is None
    again = preload_environment({"PATH": "/bin"}, str(library))
    assert again["LD_PRELOAD"] == str(library) and again["PATH"] == "/bin" and again[SETTING] == "tcmalloc"
    assert preload_environment(again, str(library)) is None  # started again: it goes on
    assert preload_environment({"PATH": "/bin"}, None) is None  # no tcmalloc on the machine
    assert preload_environment({SETTING: "system"}, str(library)) is None  # asked for the system's
    assert preload_environment({"LD_PRELOAD": "/other.so"}, str(library)) is None  # the user's preload is kept


@pytest.mark.parametrize("setting", ["", "system"])
def test_a_run_records_the_allocator_it_ran_under(tiny_bert_dir, tmp_path, setting):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(32, seed=1))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=1)
    raw.update(baselines=False, report={"html": False})
    recipe = tmp_path / "recipe.json"  # JSON is YAML
    recipe.write_text(json.dumps(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", SETTING)}
    env.update({SETTING: setting} if setting else {})
    done = subprocess.run([sys.executable, "-m", "tunesmith", "train", str(recipe)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ran = json.loads((tmp_path / "run" / "eval.json").read_text())["environment"]["allocator"]
    expected = "tcmalloc" if not setting and find_tcmalloc() and sys.platform.startswith("linux") else "system"
    assert ran == expected
    assert "tcmalloc: large alloc" not in done.stderr
