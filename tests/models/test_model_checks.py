"""Models that do not fit the recipe or their own files (issue 20, model side):

- train.max_length beyond the model's positions: clamped with a note, recorded in the run, and predict /
  evaluate cut long texts the same way;
- a model directory without tokenizer files, or with a tokenizer that does not fit the input embedding:
  one line, exit status 2, at model load for train and for predict/evaluate on a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from transformers import AutoTokenizer, BertConfig, DebertaV2Config, GPT2Config, RobertaConfig, T5Config

from pipeline_helpers import FILLER, POSITIVE, sentiment_rows, tiny_recipe, write_csv
from tiny_models import build_tiny_bert
from tunesmith.cli import main
from tunesmith.errors import ModelError
from tunesmith.models.checks import check_vocabulary, position_limit
from tunesmith.models import load_for_causal_lm

POSITIONS = 32  # the short BERT's position table
ASKED = 64  # train.max_length in its recipe
LONG_WORDS = (FILLER + POSITIVE) * 3  # 60 words, each one WordPiece token: longer than POSITIONS


def one_error_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def short_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("short_bert"), max_position_embeddings=POSITIONS)


@pytest.fixture(scope="module")
def clamped_run(short_bert, tmp_path_factory):
    """A run of the short BERT with max_length 64 and one row of 60 words: (root, run, stdout, status)."""
    root = tmp_path_factory.mktemp("clamped")
    rows = sentiment_rows(40)
    rows[3] = ("pos", " ".join(LONG_WORDS))
    train = write_csv(root / "train.csv", rows)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(short_bert, train, root / "run", epochs=2, max_length=ASKED)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the note is printed on stdout (capsys is per test)
        status = main(["train", str(recipe)])
    return root, root / "run", out.getvalue(), status


# --- train.max_length beyond the model's positions ----------------------------------------------------------


@pytest.mark.preflight_expected("max_length_over_positions")  # the point of the test
def test_max_length_is_clamped_with_a_note_and_training_succeeds(clamped_run, short_bert):
    _, _, stdout, status = clamped_run
    assert status == 0, stdout[-2000:]
    notes = [line for line in stdout.splitlines() if "train.max_length" in line and line.startswith("note:")]
    assert notes == [f"note: train.max_length {ASKED} is more than {short_bert}'s {POSITIONS} positions: "
                     f"using {POSITIONS}"]


def test_the_run_records_the_max_length_it_used(clamped_run):
    root, run, _, _ = clamped_run
    saved = json.loads((run / "eval.json").read_text())
    assert saved["max_length"] == {"asked": ASKED, "used": POSITIONS, "model_positions": POSITIONS}
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["max_length"] == POSITIONS
    assert yaml.safe_load((root / "recipe.yaml").read_text())["train"]["max_length"] == ASKED  # left alone
    inspected = json.loads((run / "inspect.json").read_text())
    assert inspected["token_lengths"]["max_length"] == POSITIONS


def predictions(capsys, run: Path, text: str, out: Path) -> pd.DataFrame:
    capsys.readouterr()
    assert main(["predict", str(run), "--text", text, "--output", str(out)]) == 0, capsys.readouterr().err
    return pd.read_csv(out)


@pytest.mark.parametrize("recorded", [POSITIONS, ASKED], ids=["run-recipe", "recipe-beyond-positions"])
def test_predict_cuts_a_long_text_as_training_did(clamped_run, short_bert, recorded, tmp_path, capsys):
    _, trained, _, _ = clamped_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["train"]["max_length"] = recorded  # ASKED: an older run, or a recipe edited by hand
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    long_text = " ".join(LONG_WORDS * 12)  # 720 words
    by_hand = " ".join(LONG_WORDS[:POSITIONS - 2])  # what fits next to [CLS] and [SEP]
    assert len(AutoTokenizer.from_pretrained(short_bert)(by_hand)["input_ids"]) == POSITIONS
    long = predictions(capsys, run, long_text, tmp_path / "long.csv")
    cut = predictions(capsys, run, by_hand, tmp_path / "cut.csv")
    assert long["prediction"].tolist() == cut["prediction"].tolist()
    for column in ("prob_neg", "prob_pos"):
        assert long[column].tolist() == pytest.approx(cut[column].tolist(), abs=1e-6)


def test_evaluate_a_file_with_long_rows(clamped_run, tmp_path, capsys):
    root, run, _, _ = clamped_run
    rows = sentiment_rows(10, seed=5) + [("pos", " ".join(LONG_WORDS * 12))]
    data = write_csv(tmp_path / "held_out.csv", rows)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 11


@pytest.mark.parametrize("config, limit", [
    (BertConfig(max_position_embeddings=512), 512),
    (GPT2Config(n_positions=1024), 1024),
    (RobertaConfig(max_position_embeddings=514, pad_token_id=1), 512),  # position ids start after the pad id
    (DebertaV2Config(max_position_embeddings=512, position_biased_input=False), None),  # relative only
    (T5Config(), None),
])
def test_position_limit(config, limit):
    assert position_limit(config) == limit


# --- tokenizer files and vocabulary -------------------------------------------------------------------------


def without_tokenizer(model: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model / name, target / name)
    return target


def train_error_line(model: Path, tmp_path: Path, capsys) -> str:
    """The one error line of `tunesmith train` on a small recipe for `model`."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(model, train, tmp_path / "run")))
    return one_error_line(capsys, ["train", str(recipe)])


def test_missing_tokenizer_files_are_one_line(tiny_bert_dir, tmp_path, capsys):
    model = without_tokenizer(tiny_bert_dir, tmp_path / "no_tokenizer")
    line = train_error_line(model, tmp_path, capsys)
    assert line == (f"error: cannot load the tokenizer of {model}: it has no tokenizer files (looked for "
                    f"tokenizer.json, vocab.txt); copy them from the original model")
    assert not (tmp_path / "run").exists()


def test_predict_on_a_run_that_lost_its_tokenizer(clamped_run, tmp_path, capsys):
    _, trained, _, _ = clamped_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (run / "model" / name).unlink(missing_ok=True)
    line = one_error_line(capsys, ["predict", str(run), "--text", "great film"])
    assert line.startswith(f"error: cannot load the tokenizer of {run / 'model'}: it has no tokenizer files")


def small_vocabulary(model: Path, target: Path, words: int = 20) -> Path:
    """The model with a WordPiece vocabulary of the 5 special tokens and `words` words instead of its own."""
    shutil.copytree(model, target)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (target / name).unlink(missing_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (target / "vocab.txt").write_text("\n".join(specials + (FILLER + POSITIVE)[:words]) + "\n")
    return target


def test_a_tokenizer_far_smaller_than_the_embedding_is_one_line(tiny_bert_dir, tmp_path, capsys):
    model = small_vocabulary(tiny_bert_dir, tmp_path / "small_vocab")
    line = train_error_line(model, tmp_path, capsys)
    assert line == (f"error: the tokenizer has 25 tokens but the model's embedding has 30,522 rows: wrong or "
                    f"missing tokenizer files in {model}")


def test_a_tokenizer_larger_than_the_embedding_is_one_line(tmp_path, capsys):
    model = build_tiny_bert(tmp_path / "small_embedding", vocab_size=1000)  # with the 30,522-token tokenizer
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(model, train, tmp_path / "run")))
    line = one_error_line(capsys, ["train", str(recipe)])
    assert line == (f"error: the tokenizer has 30,522 tokens but the model's embedding has 1,000 rows: token ids "
                    f"from 1,000 up would be out of range; wrong tokenizer files in {model}, or tokens added "
                    f"without resizing the embeddings")


def test_a_causal_lm_with_another_models_tokenizer_is_refused(tiny_gpt2_dir, tiny_bert_dir, tmp_path):
    model = tmp_path / "gpt2_with_bert_tokenizer"
    shutil.copytree(tiny_gpt2_dir, model)
    for path in model.glob("*"):
        if path.name not in ("config.json", "model.safetensors", "generation_config.json"):
            path.unlink()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (tiny_bert_dir / name).is_file():
            shutil.copy(tiny_bert_dir / name, model / name)
    with pytest.raises(ModelError, match=r"^the tokenizer has 30,522 tokens but the model's embedding has \d+ rows"):
        load_for_causal_lm(model)


def test_an_embedding_padded_beyond_the_vocabulary_is_fine(tiny_gpt2_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    padded = -(-len(tokenizer) // 128) * 128  # decoders round their embedding up to a multiple of 64 or 128
    check_vocabulary(tokenizer, padded, tmp_path)
    check_vocabulary(tokenizer, 2 * len(tokenizer), tmp_path)  # half the rows: still this model's
    with pytest.raises(ModelError, match="wrong or missing tokenizer files"):
        check_vocabulary(tokenizer, 2 * len(tokenizer) + 1, tmp_path)
    with pytest.raises(ModelError, match="would be out of range"):
        check_vocabulary(tokenizer, len(tokenizer) - 1, tmp_path)
