"""The catalogue of bad input: every case ends with exit status 2 and ONE line on stderr, `error: ...`, naming the
file and line, the recipe key, the model directory or the argument at fault. No traceback, ever.

Cases run in-process through `tunesmith.cli.main` (fast); a few go through a real subprocess too. The hypothesis
tests at the end feed random text to the recipe loader and random values to its schema: only RecipeError (one
line) may come out. (The data readers have their own property tests in tests/data/test_readers.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main
from tunesmith.errors import RecipeError
from tunesmith.config.recipe import load_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ctx:
    root: Path
    model: Path
    train: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def recipe(self, name: str = "recipe.yaml", *, train=None, model=None, data=None, **top) -> str:
        raw = tiny_recipe(model or self.model, train or self.train, self.root / "run")
        raw["data"].update(data or {})
        for key, value in top.items():
            section, _, sub = key.partition("__")
            if sub:
                raw.setdefault(section, {})[sub] = value
            else:
                raw[key] = value
        return str(self.write(name, yaml.safe_dump(raw)))

    def model_dir(self, name: str, files: dict[str, str | bytes]) -> Path:
        for file, content in files.items():
            self.write(f"{name}/{file}", content)
        return self.root / name


def train_with(ctx: Ctx, file: str, content: str | bytes, **data) -> list[str]:
    return ["train", ctx.recipe(train=ctx.write(file, content), data=data)]


ROWS = "label,text\n" + "".join(f"{'pos' if i % 2 else 'neg'},row number {i}\n" for i in range(12))

# (id, argv builder, fragments the one line must contain); {root} is the case's directory
CASES = [
    # --- data files ---
    ("data file missing", lambda c: ["train", c.recipe(train=c.root / "nope.csv")],
     ["{root}/nope.csv does not exist"]),
    ("data path is a directory", lambda c: ["train", c.recipe(train=c.root)], ["{root} is a directory"]),
    ("empty data file", lambda c: train_with(c, "empty.csv", ""), ["{root}/empty.csv is empty"]),
    ("unknown extension", lambda c: train_with(c, "data.xlsx", "x"), ["data.xlsx", "set data.format"]),
    ("header but no rows", lambda c: train_with(c, "h.csv", "label,text\n"), ["h.csv has a header but no rows"]),
    ("unclosed quote", lambda c: train_with(c, "q.csv", ROWS + 'pos,"never closed\nneg,x\n'),
     ["q.csv, line 14", "quoted field", "data.quoting: none"]),
    ("too few fields", lambda c: train_with(c, "few.tsv", "pos\tgood\nneg\n", header=False,
                                            columns={"label": 0, "text": 1}),
     ["few.tsv, line 2: expected at least 2 tab-separated fields, found 1"]),
    ("row without label", lambda c: train_with(c, "nolabel.csv", ROWS.replace("pos,row number 5", ",row number 5")),
     ["nolabel.csv, line 7: empty label"]),
    ("row without text", lambda c: train_with(c, "notext.csv", ROWS.replace("pos,row number 3", "pos,  ")),
     ["notext.csv, line 5: empty text"]),
    ("not UTF-8", lambda c: train_with(c, "latin.csv", (ROWS + "pos,très bien\n").encode("latin-1")),
     ["latin.csv, line 14: not valid utf-8", "data.encoding"]),
    ("unknown encoding", lambda c: train_with(c, "e.csv", ROWS, encoding="klingon"),
     ["e.csv: unknown encoding 'klingon' (data.encoding)"]),
    ("missing column", lambda c: train_with(c, "m.csv", ROWS, columns={"text": "body", "label": "label"}),
     ["m.csv: column 'body' (data.columns.text) not found; columns are: label, text"]),
    ("column index out of range", lambda c: train_with(c, "i.csv", "pos,a\nneg,b\n", header=False,
                                                       columns={"text": 5, "label": 0}),
     ["i.csv: column index 5 (data.columns.text) is out of range"]),
    ("jsonl broken line", lambda c: train_with(c, "b.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "lab\n'),
     ["b.jsonl, line 2: invalid JSON"]),
    ("jsonl line not an object", lambda c: train_with(c, "a.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n'),
     ["a.jsonl, line 2: expected a JSON object, found an array"]),
    ("json not an array", lambda c: train_with(c, "o.json", '{"text": "a", "label": "x"}'),
     ["o.json: expected a JSON array of objects, found an object", "data.format: jsonl"]),
    ("json item not an object", lambda c: train_with(c, "n.json", '[{"text": "a", "label": "x"}, 7]'),
     ["n.json, item 2: expected a JSON object, found a number"]),
    ("label is an object", lambda c: train_with(c, "l.jsonl", '{"text": "a", "label": "x"}\n'
                                                             '{"text": "b", "label": {"y": 1}}\n'),
     ["l.jsonl, line 2: label must be a string or a number, found an object"]),
    ("parquet that is not parquet", lambda c: train_with(c, "p.parquet", b"PAR1 not really"),
     ["p.parquet: cannot read as parquet"]),
    ("a single class", lambda c: train_with(c, "one.csv", "label,text\na,x\na,y\na,z\na,w\n"),
     ["one.csv: classification needs at least 2 classes, found 1: 'a'"]),
    ("validation label unseen in training", lambda c: ["train", c.recipe(
        data={"validation": str(c.write("dev.csv", "label,text\npos,fine\nneutral,meh\n"))})],
     ["dev.csv, line 3: label 'neutral' was not seen in the training data"]),
    ("class too small to stratify", lambda c: train_with(c, "s.csv", ROWS + "rare,only once\n"),
     ["label 'rare' has only 1 example", "data.validation.stratify: false"]),
    ("txt file for classification", lambda c: train_with(c, "t.txt", "just text\nmore text\n"),
     ["t.txt: a txt file holds only text"]),
    ("test file missing", lambda c: ["train", c.recipe(data={"test": str(c.root / "test.csv")})],
     ["{root}/test.csv does not exist"]),
    ("more fields than the header", lambda c: train_with(c, "more.csv", ROWS + "neg,I hated every minute, and more words\n"),
     ["more.csv, line 14: 3 comma-separated fields, but the header (line 1) has 2", "put that field in double quotes",
      "data.extra_fields: ignore"]),
    ("a comma shifts the label", lambda c: train_with(c, "shift.csv", "text,label\n" + "".join(
        f"row {i},{'pos' if i % 2 else 'neg'}\n" for i in range(12)) + "I hated it, really,neg\n"),
     ["shift.csv, line 14: 3 comma-separated fields, but the header (line 1) has 2"]),
    ("repeated header name", lambda c: train_with(c, "dup.csv", "text,text,label\na,b,pos\nc,d,neg\n"),
     ["dup.csv, line 1: the header names column 'text' twice (0-based columns 0 and 1)"]),
    ("two roles on one column", lambda c: ["train", c.recipe(data={"columns": {"text": "label", "label": "label"}})],
     ["key 'data.columns': roles 'label' and 'text' both map to column 'label'; each role needs a column of its own"]),
    ("data path is a symlink loop", lambda c: ["train", c.recipe(train=_symlink_loop(c))],
     ["{root}/loop.csv is a symlink loop"]),
    # --- recipes ---
    ("recipe file missing", lambda c: ["train", str(c.root / "none.yaml")], ["none.yaml: recipe file does not exist"]),
    ("recipe is a directory", lambda c: ["train", str(c.root)], ["is a directory, not a recipe file"]),
    ("recipe not YAML", lambda c: ["train", str(c.write("bad.yaml", "model: m\ndata: [unclosed\n"))],
     ["bad.yaml, line 3: not valid YAML"]),
    ("recipe is a list", lambda c: ["train", str(c.write("list.yaml", "- a\n- b\n"))],
     ["list.yaml: a recipe is a YAML mapping"]),
    ("recipe empty", lambda c: ["train", str(c.write("empty.yaml", ""))], ["empty.yaml: a recipe is a YAML mapping"]),
    ("recipe not UTF-8", lambda c: ["train", str(c.write("bin.yaml", b"model: \xff\xfe\n"))],
     ["bin.yaml: not UTF-8 text"]),
    ("recipe key twice", lambda c: ["train", str(c.write("twice.yaml", "model: a\ndata: {train: x.csv}\nmodel: b\n"))],
     ["twice.yaml, line 3: not valid YAML (the key 'model' appears twice)"]),
    ("recipe impossible date", lambda c: ["train", str(c.write("date.yaml", "model: 2021-02-30\n"))],
     ["date.yaml: not a valid recipe (ValueError: day is out of range for month)"]),
    ("recipe typo", lambda c: ["train", c.recipe(), "--set", "train.lrr=1"],
     ["unknown key 'train.lrr' (did you mean 'train.lr'?)"]),
    ("recipe missing model", lambda c: ["train", str(c.write("nomodel.yaml", "data: {train: x.csv}\n"))],
     ["nomodel.yaml: missing key 'model'"]),
    ("recipe wrong type", lambda c: ["train", c.recipe(), "--set", "train.batch_size=many"],
     ["key 'train.batch_size': Input should be a valid integer", "'many'"]),
    ("recipe impossible value", lambda c: ["train", c.recipe(), "--set", "train.lr=-1"],
     ["key 'train.lr': Input should be greater than 0 (got -1)"]),
    ("set without =", lambda c: ["train", c.recipe(), "--set", "train.lr"], ["--set 'train.lr': expected KEY=VALUE"]),
    ("set into a value", lambda c: ["train", c.recipe(), "--set", "train.lr.x=1"],
     ["--set train.lr.x: 'lr' is not a section"]),
    ("bad resume value", lambda c: ["train", c.recipe(), "--set", "resume=maybe"],
     ["key 'resume': must be true, false or auto (got 'maybe')"]),
    ("bad checkpoint.keep_last", lambda c: ["train", c.recipe(checkpoint__keep_last=0)],
     ["key 'checkpoint.keep_last': Input should be greater than or equal to 1 (got 0)"]),
    ("bad train.on_nan", lambda c: ["train", c.recipe(), "--set", "train.on_nan=ignore"],
     ["key 'train.on_nan': Input should be 'stop' or 'skip' (got 'ignore')"]),
    ("metric of another task", lambda c: ["train", c.recipe(), "--set", "train.early_stopping.metric=perplexity"],
     ["train.early_stopping.metric: 'perplexity' is not a classification metric"]),
    ("infinite lr", lambda c: ["train", c.recipe(), "--set", "train.lr=.inf"],
     ["key 'train.lr': Input should be a finite number (got inf)"]),
    ("infinite epochs", lambda c: ["train", c.recipe(), "--set", "train.epochs=.inf"],
     ["key 'train.epochs': Input should be a finite number (got inf)"]),
    ("infinite class weight", lambda c: ["train", c.recipe(), "--set", "imbalance.class_weights={pos: .inf, neg: 1}"],
     ["key 'imbalance.class_weights.pos': Input should be a finite number (got inf)"]),
    ("nan focal gamma", lambda c: ["train", c.recipe(imbalance__loss="focal", imbalance__gamma=float("nan"))],
     ["key 'imbalance.gamma': Input should be a finite number (got nan)"]),
    ("negative seed", lambda c: ["train", c.recipe(), "--set", "train.seed=-1"],
     ["key 'train.seed': Input should be greater than or equal to 0 (got -1)"]),
    ("seed past numpy's range", lambda c: ["train", c.recipe(), "--set", "train.seed=99999999999999999999"],
     ["key 'train.seed': Input should be less than or equal to 4294967295"]),
    ("unreachable early-stopping target", lambda c: ["train", c.recipe(), "--set", "train.early_stopping.target=5"],
     ["train.early_stopping.target: 5 can never be reached: macro_f1 lies between 0 and 1"]),
    ("fractional eval_every", lambda c: ["train", c.recipe(), "--set", "train.eval_every=0.5"],
     ["key 'train.eval_every': must be 'epoch' or a whole number >= 1 (got 0.5)"]),
    ("validation of the wrong kind", lambda c: ["train", c.recipe(data={"validation": [0.2]})],
     ["key 'data.validation': must be a fraction of the training rows (e.g. 0.2), the path of a validation file"]),
    ("recipe alias bomb", lambda c: ["train", str(c.write("bomb.yaml", billion_laughs(9)))],
     ["bomb.yaml: not valid YAML (its aliases (*name) expand to more than 10000 values"]),
    ("a long value is cut short", lambda c: ["train", c.recipe(), "--set", "train.lr=" + "x" * 100_000],
     ["key 'train.lr': Input should be a valid number", "(got 'xxxxxxxxxx", "x…)"]),
    ("output is a file", lambda c: ["train", c.recipe(), "--output", str(c.write("taken", "x"))],
     ["{root}/taken: cannot create the run directory (File exists (EEXIST))"]),
    # --- model directories ---
    ("unknown model name", lambda c: ["train", c.recipe(model="bert-base-uncased")],
     ["'bert-base-uncased' is not a packaged model (minilm, smollm2) nor a local model directory"]),
    ("model dir without config", lambda c: ["train", c.recipe(model=c.model_dir("m0", {"x.txt": "x"}))],
     ["model directory {root}/m0 has no config.json"]),
    ("model config not JSON", lambda c: ["train", c.recipe(model=c.model_dir("m1", {"config.json": '{"a": 1,\n oops'}))],
     ["{root}/m1/config.json, line 2: not valid JSON"]),
    ("model without weights", lambda c: ["train", c.recipe(model=c.model_dir("m2", {"config.json": "{}"}))],
     ["model directory {root}/m2 has no weights (*.safetensors)"]),
    ("pickle weights refused", lambda c: ["train", c.recipe(model=c.model_dir(
        "m3", {"config.json": '{"model_type": "bert"}', "pytorch_model.bin": b"\x80\x02pickle"}))],
     ["model directory {root}/m3 has only pickle weights (pytorch_model.bin)", "allow_pickle"]),
    ("weights file truncated", lambda c: ["train", c.recipe(model=_truncated_copy(c))],
     ["cannot load {root}/trunc for classification", "SafetensorError"]),
    ("model dir without tokenizer files", lambda c: ["train", c.recipe(model=_weights_only_copy(c))],
     ["cannot load the tokenizer of {root}/weights_only: it has no tokenizer files (looked for tokenizer.json, "
      "vocab.txt); copy them from the original model"]),
    ("tokenizer of another vocabulary", lambda c: ["train", c.recipe(model=_small_vocabulary_copy(c))],
     ["the tokenizer has 7 tokens but the model's embedding has 30,522 rows: wrong or missing tokenizer files in "
      "{root}/small_vocab"]),
    # --- runs and CLI arguments ---
    ("resume without a checkpoint", lambda c: ["train", c.recipe(), "--resume"],
     ["{root}/run/checkpoints: no valid checkpoint to resume from; run without --resume to start over"]),
    ("predict on a missing run", lambda c: ["predict", str(c.root / "gone"), "--text", "hi"],
     ["{root}/gone: run directory does not exist"]),
    ("evaluate on a dir that is not a run", lambda c: ["evaluate", str(c.root), "--data", "x.csv"],
     ["{root}: no trained model in {root}/model (did training finish?)"]),
    ("missing argument", lambda c: ["train"], ["tunesmith train: the following arguments are required: recipe"]),
    ("unknown option", lambda c: ["train", "r.yaml", "--fast"], ["unrecognized arguments: --fast"]),
    ("bad choice", lambda c: ["evaluate", "run", "--data", "x", "--format", "xls"],
     ["argument --format: invalid choice: 'xls'"]),
    ("exclusive options", lambda c: ["predict", "run", "--text", "a", "--input", "b.csv"],
     ["argument --input: not allowed with argument --text"]),
    ("negative --max-length", lambda c: ["inspect", str(c.train), "--max-length", "-5"],
     ["tunesmith inspect: argument --max-length: must be a whole number >= 1 (got '-5')"]),
    ("nan --max-drop", lambda c: ["export", str(c.root), "--format", "onnx", "--max-drop", "nan"],
     ["tunesmith export: argument --max-drop: must be a finite number >= 0 (got 'nan')"]),
    # --- regression targets (task: regression), before any model loads ---
    ("regression: a word among the targets", lambda c: regression_with(c, SCORES.replace("2.5,", "high,", 1)),
     ["scores.csv, line 4: target 'score' is not a number: 'high'"]),
    ("regression: an empty target", lambda c: regression_with(c, SCORES.replace("2.5,", ",", 1)),
     ["scores.csv, line 4: empty target 'score'"]),
    ("regression: inf target", lambda c: regression_with(c, SCORES.replace("2.5,", "inf,", 1)),
     ["scores.csv, line 4: target 'score' is inf"]),
    ("regression: constant target", lambda c: regression_with(c, SCORES_CONSTANT),
     ["target 'score' has one value (3.0) in every row: nothing to learn"]),
    ("regression: class labels as targets", lambda c: regression_with(c, ROWS.replace("label,", "score,", 1)),
     ["target 'score' holds words, not numbers", "set task: classification"]),
    ("regression: two values are class labels", lambda c: regression_with(c, SCORES_BINARY),
     ["target 'score' has only two values (0.0 and 1.0): it looks like class labels"]),
    ("regression: stratify asked for", lambda c: ["train", c.recipe(train=c.write("scores.csv", SCORES), task="regression",
                                                                 data={"columns": {"text": "text", "label": "score"},
                                                                       "validation": {"split": 0.25, "stratify": True}},
                                                                 train__early_stopping={"metric": "pearson"})],
     ["data.validation.stratify: regression targets are not classes to stratify by"]),
    ("regression: a list of text columns", lambda c: ["train", c.recipe(task="regression",
                                                                      data={"columns": {"text": ["a", "b"]}})],
     ["key 'data.columns': 'text' names one column; only label may list several"]),
]

SCORES = "score,text\n" + "".join(f"{1.0 + i % 4 * 0.75},row number {i}\n" for i in range(12))
SCORES_CONSTANT = "score,text\n" + "".join(f"3.0,row number {i}\n" for i in range(12))
SCORES_BINARY = "score,text\n" + "".join(f"{i % 2},row number {i}\n" for i in range(12))


def regression_with(ctx: Ctx, content: str) -> list[str]:
    return ["train", ctx.recipe(train=ctx.write("scores.csv", content), task="regression",
                                data={"columns": {"text": "text", "label": "score"}, "validation": {"split": 0.25}},
                                train__early_stopping={"metric": "pearson"})]


def _symlink_loop(c: Ctx) -> Path:
    (c.root / "loop.csv").symlink_to(c.root / "back.csv")
    (c.root / "back.csv").symlink_to(c.root / "loop.csv")
    return c.root / "loop.csv"


def billion_laughs(levels: int) -> str:
    """A recipe whose train.lr is 9 ** levels strings once its aliases are expanded."""
    lines = ["model: m", "data: {train: x.csv}", "anchors:", "  l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines + ["train:", f"  lr: *l{levels - 1}", ""])


def _truncated_copy(c: Ctx) -> Path:
    import shutil

    target = c.root / "trunc"
    shutil.copytree(c.model, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return target


def _weights_only_copy(c: Ctx) -> Path:
    """The tiny BERT without its tokenizer files: transformers v5 would build an empty tokenizer from it."""
    return c.model_dir("weights_only", {name: (c.model / name).read_bytes()
                                        for name in ("config.json", "model.safetensors")})


def _small_vocabulary_copy(c: Ctx) -> Path:
    """The tiny BERT (30,522 embedding rows) with a 7-token WordPiece vocabulary instead of its own."""
    return c.model_dir("small_vocab", {"config.json": (c.model / "config.json").read_bytes(),
                                       "model.safetensors": (c.model / "model.safetensors").read_bytes(),
                                       "vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngreat\nawful\n"})


def test_the_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("build, fragments", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(build, fragments, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    ctx = Ctx(tmp_path, tiny_bert_dir, write_csv(tmp_path / "train.csv", sentiment_rows(40)))
    monkeypatch.chdir(tmp_path)
    argv = build(ctx)
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert len(lines[0]) < 600, lines[0][:1000]  # values echoed in errors are cut short
    for fragment in fragments:
        assert fragment.format(root=tmp_path) in lines[0], lines[0]


@pytest.mark.parametrize("args, expected", [
    (["train"], "error: tunesmith train: the following arguments are required: recipe (see: tunesmith train --help)"),
    (["train", "{recipe}", "--set", "train.epohcs=2"],
     "error: {root}/r.yaml: unknown key 'train.epohcs' (did you mean 'train.epochs'?)"),
])  # (a data error through a real subprocess: tests/cli/test_cli.py::test_errors_through_a_real_subprocess)
def test_through_a_real_subprocess(args, expected, tmp_path):
    (tmp_path / "r.yaml").write_text(f"model: minilm\ndata: {{train: {tmp_path}/t.csv}}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    argv = [a.format(recipe=tmp_path / "r.yaml") for a in args]
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [expected.format(root=tmp_path)]


# --- property tests: the recipe loader raises RecipeError and nothing else --------------------------------------

YAMLISH = st.lists(st.sampled_from(list("model: data train {}[],-\n\t'\"&*!?|>#%@`~0123456789.e") +
                                    ["lr", "epochs", "\x00", "é", "2021-02-30", "<<", "!!python/object", "  ",
                                     "model: m\n", "data: {train: x.csv}\n", "train:\n  lr: ", "&a ", "*a"]),
                   max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=YAMLISH)
def test_random_recipe_text_gives_a_recipe_or_a_one_line_recipe_error(text, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(path)
    except RecipeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


KEYS = ["model", "task", "data", "train", "output", "resume", "checkpoint", "every_steps", "keep_last", "lr",
        "epochs", "batch_size", "columns", "text", "label", "validation", "split", "early_stopping", "metric",
        "on_nan", "max_nan_skips", "allow_pickle", "eval_every", "lm", "imbalance", "method", "report"]
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=True), st.text(max_size=8),
              st.sampled_from(["auto", "epoch", "x.csv", "skip", "loss", "1e-3"])),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=4)),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6),
       overrides=st.lists(st.tuples(st.sampled_from(KEYS + ["train.lr", "data.train", "checkpoint.keep_last"]),
                                    st.text(max_size=10)), max_size=2))
def test_random_recipe_structures_give_a_recipe_or_a_one_line_recipe_error(raw, overrides):
    try:
        load_recipe(None, [f"{k}={v}" for k, v in overrides], base=raw)
        validate_recipe(json.loads(json.dumps(raw, default=str)))
    except RecipeError as exc:
        assert "\n" not in str(exc)
