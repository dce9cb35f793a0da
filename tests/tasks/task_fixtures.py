"""One small, learnable data set and recipe per registered task, for the registry-driven test matrix
(tests/tasks/test_task_matrix.py). Registering a task without an entry here fails the matrix: a new task
is tested the moment it is registered."""

from __future__ import annotations

import random
from pathlib import Path

from multi_label_helpers import multi_label_recipe, topic_rows, write_jsonl
from lm_helpers import lm_recipe, number_rows, shakespeare_slice, write_json
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv


def classification(models: dict, root: Path) -> dict:
    train = write_csv(root / "train.csv", sentiment_rows(48, seed=1))
    return {"model_dir": models["bert"], "raw": tiny_recipe(models["bert"], train, root / "run", epochs=2),
            "predict_text": "great wonderful movie"}


def regression(models: dict, root: Path) -> dict:
    """The target counts the positive words of each row (0 to 3), plus a little noise."""
    rng = random.Random(0)
    lines = ["score,text"]
    for _ in range(60):
        label, text = sentiment_rows(1, seed=rng.randrange(10**6))[0]
        score = sum(word in ("great", "excellent", "wonderful", "love") for word in text.split())
        lines.append(f"{score + rng.random() * 0.1:.3f},{text}")
    train = root / "scores.csv"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = tiny_recipe(models["bert"], train, root / "run", epochs=2, early_stopping={"metric": "pearson"})
    raw.update(task="regression")
    raw["data"].update(columns={"text": "text", "label": "score"}, validation={"split": 0.25})
    return {"model_dir": models["bert"], "raw": raw, "predict_text": "great wonderful movie"}


def causal_lm(models: dict, root: Path) -> dict:
    train = shakespeare_slice(root / "shakespeare.txt", 3000)
    raw = lm_recipe(models["gpt2"], "causal_lm", train, root / "run", epochs=1, max_length=32)
    return {"model_dir": models["gpt2"], "raw": raw, "prompt": "ROMEO:"}


def sft(models: dict, root: Path) -> dict:
    train = write_json(root / "alpaca.json", number_rows(40))
    raw = lm_recipe(models["llama"], "sft", train, root / "run", epochs=1)
    return {"model_dir": models["llama"], "raw": raw, "prompt": "say the word two"}


def multi_label(models: dict, root: Path) -> dict:
    """Each row is labelled with the topics (food, music, sport) its keywords name; some rows have none."""
    train = write_jsonl(root / "topics.jsonl", topic_rows(60, seed=3))
    raw = multi_label_recipe(models["bert"], train, root / "run", epochs=2)
    return {"model_dir": models["bert"], "raw": raw, "predict_text": "the pizza and the guitar"}


# ---- token_classification (issue 13) -------------------------------------------------------------------------
NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans"]
PLACES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna"]
FILLER = ["the", "lives", "works", "said", "met", "today", "and", "went", "home"]


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Learnable NER: a capitalised name after "Mr." is PER (sometimes two words), a word after "in" is LOC."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [(rng.choice(FILLER), "O") for _ in range(rng.randrange(0, 3))]
        words += [("Mr.", "O"), (rng.choice(NAMES), "B-PER")]
        if rng.random() < 0.3:
            words.append((rng.choice(NAMES), "I-PER"))
        words += [(rng.choice(FILLER), "O") for _ in range(rng.randrange(1, 3))]
        words += [("in", "O"), (rng.choice(PLACES), "B-LOC"), (".", "O")]
        sentences.append(words)
    return sentences


def write_conll(path: Path, sentences) -> Path:
    """word, a POS placeholder and the tag per line (tags in column 2), a blank line between sentences."""
    lines = ["-DOCSTART- -X- O", ""]
    for words in sentences:
        lines += [f"{word} X {tag}" for word, tag in words] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def token_classification(models: dict, root: Path) -> dict:
    train = write_conll(root / "ner.conll", ner_sentences(48, seed=1))
    raw = tiny_recipe(models["bert"], train, root / "run", epochs=3, max_length=16, early_stopping={"metric": "f1"})
    raw.update(task="token_classification", token_classification={"stride": 4})
    raw["data"].update(format="conll", columns={"tokens": 0, "tags": 2}, validation={"split": 0.25})
    return {"model_dir": models["bert"], "raw": raw, "predict_text": "Mr. Smith went home in Paris."}


# ---- dpo (issue 14) -------------------------------------------------------------------------------------------
def preference_rows(n: int, seed: int = 0) -> list[dict]:
    """Learnable preferences: the chosen reply says the word the prompt asks for, the rejected one refuses."""
    from lm_helpers import NUMBERS

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(NUMBERS)
        rows.append({"prompt": f"say the word {word}", "chosen": word, "rejected": "no, I will not"})
    return rows


def dpo(models: dict, root: Path) -> dict:
    train = write_json(root / "pairs.jsonl", preference_rows(48, seed=2), lines=True)
    raw = lm_recipe(models["llama"], "dpo", train, root / "run", epochs=2, lr=1e-2,
                    data={"columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
                          "validation": {"split": 0.25}})
    raw["preference"] = {"beta": 0.5}
    # a tiny random model learns a preference at 1e-2, 200x full fine-tuning's default for pretrained models
    return {"model_dir": models["llama"], "raw": raw, "prompt": "say the word two",
            "preflight_expected": ["lr_above_method"]}


def dpo_recipe(models: dict, root: Path, **changes) -> dict:
    """The dpo fixture's recipe in fp32, without baselines or report.html; `changes` update its sections."""
    root.mkdir(parents=True, exist_ok=True)
    raw = dpo(models, root)["raw"]
    raw["baselines"] = False
    raw["report"] = {"html": False}
    raw["train"].update(precision="fp32")
    for section, values in changes.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return raw


TASK_FIXTURES = {"classification": classification, "regression": regression, "causal_lm": causal_lm, "sft": sft,
                 "multi_label": multi_label, "token_classification": token_classification, "dpo": dpo}
