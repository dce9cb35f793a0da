"""`tunesmith inspect` on small crafted files: each finding is found, counted and shown; fail_on
turns findings into errors (exit status 1 for inspect, a stopped run for train)."""

import json

import pytest

from imbalance_data import quiet, recipe, skewed_rows, write_csv
from tunesmith.cli import main
from tunesmith.errors import DataError
from tunesmith.inspection import inspect_files, normalise

TRAIN = """label,text
ham,hello there
ham,Hello  There
ham,hello there
spam,win a prize now
ham,win a prize now
ham,"   "
ham,see you soon
spam,free entry txt now
ham,are we meeting today
ham,call me later
ham,dinner at eight
ham,the bus is late
"""
VALIDATION = """label,text
ham,SEE you   soon
spam,claim your reward
ham,running late sorry
"""
TEST = """label,text
spam,free entry txt now
ham,what time is it
"""


@pytest.fixture()
def files(tmp_path):
    paths = {}
    for name, text in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def codes(report):
    return {f.code: f for f in report.findings}


def test_normalise():
    assert normalise("  Hello\t\tTHERE \n") == "hello there"
    assert normalise("\u200b\u200b") == ""  # zero-width spaces only
    assert normalise("ｆｕｌｌ width") == "full width"  # NFKC


def test_each_finding_on_crafted_files(files):
    report = inspect_files(str(files["train"]), validation=str(files["validation"]), test=str(files["test"]))
    found = codes(report)
    assert report.rows == {"train": 12, "validation": 3, "test": 2}
    assert report.classes["train"] == {"ham": 10, "spam": 2}
    assert report.imbalance_ratio == 5.0 and found["class_imbalance"].severity == "info"
    assert found["rare_class"].count == 1 and "'spam' 2" in found["rare_class"].message
    # exact: 'hello there' once more, 'win a prize now' once more (with another label)
    assert found["duplicates"].count == 2
    assert found["normalised_duplicates"].count == 1  # 'Hello  There'
    assert found["normalised_duplicates"].examples[0]["where"] == "line 3"
    conflict = found["conflicting_labels"]
    assert conflict.count == 1 and conflict.examples[0]["text"] == "win a prize now"
    assert sorted(conflict.examples[0]["labels"]) == ["train line 5: spam", "train line 6: ham"]
    leak = found["leakage"]
    assert leak.count == 2  # 'SEE you   soon' in validation, 'free entry txt now' in test
    assert {(e["split"], e["in"]) for e in leak.examples} == {("validation", "train"), ("test", "train")}
    assert found["empty_text"].count == 1 and found["empty_text"].examples[0]["where"] == "line 7"
    assert "missing_class" not in found  # validation and test hold both classes
    assert report.majority_baseline == {"split": "validation", "predicts": "ham", "accuracy": pytest.approx(2 / 3),
                                        "macro_f1": pytest.approx(0.4), "balanced_accuracy": 0.5}
    assert all(f.severity != "error" for f in report.findings)


def test_clean_data_has_no_findings(tmp_path):
    rows = skewed_rows(40, positive_every=2)
    report = inspect_files(str(write_csv(tmp_path / "clean.csv", rows)))
    assert report.findings == [] and report.imbalance_ratio == 1.0
    only_neg = write_csv(tmp_path / "neg.csv", [r for r in skewed_rows(10, 2, seed=4) if r[0] == "neg"])
    missing = codes(inspect_files(str(tmp_path / "clean.csv"), validation=str(only_neg)))["missing_class"]
    assert missing.count == 1 and "validation has no example of 'pos'" in missing.message


def test_mixed_label_types(tmp_path):
    rows = skewed_rows(40, positive_every=2)
    rows[3], rows[7] = ("1", rows[3][1]), ("1.0", rows[7][1])  # one label, equal as numbers, among words
    report = inspect_files(str(write_csv(tmp_path / "mixed.csv", rows)))
    mixed = codes(report)["mixed_label_types"]
    assert (mixed.severity, mixed.count) == ("warning", 2)
    assert mixed.message.startswith("the labels mix numbers (2 rows) and words (38 rows)")
    assert [e["where"] for e in mixed.examples] == ["line 5", "line 9"]
    assert "1" in report.classes["train"] and "1.0" not in report.classes["train"]
    numbers = [(str(i % 2), text) for i, (_, text) in enumerate(rows)]
    assert "mixed_label_types" not in codes(inspect_files(str(write_csv(tmp_path / "numbers.csv", numbers))))


def test_token_lengths_count_truncation(tiny_bert_dir, tmp_path):
    rows = [("a", "short text"), ("b", "word " * 40), ("a", "another short one"), ("b", "tiny")]
    report = inspect_files(str(write_csv(tmp_path / "long.csv", rows)), model=str(tiny_bert_dir), max_length=16)
    stats = report.token_lengths["train"]
    assert stats["max"] == 42 and stats["min"] == 3 and stats["truncated"] == 1  # [CLS] 40 words [SEP]
    truncation = codes(report)["truncation"]
    assert truncation.count == 1 and truncation.severity == "warning"  # 25% of the split


def test_cli_json_and_fail_on(files, capsys):
    args = ["inspect", str(files["train"]), "--validation", str(files["validation"]), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["error"] == 0 and {f["code"] for f in report["findings"]} >= {"leakage", "empty_text"}
    assert main(args + ["--fail-on", "leakage"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["leakage"]
    assert main(["inspect", str(files["train"]), "--fail-on", "leak"]) == 2  # not a finding: usage error


def test_cli_table(files, capsys):
    assert main(["inspect", str(files["train"]), "--test", str(files["test"])]) == 0
    out = capsys.readouterr().out
    assert "conflicting_labels" in out and "leakage" in out and "imbalance ratio 5.0:1" in out


def test_recipe_inspection_matches_the_training_split(tiny_bert_dir, tmp_path, capsys):
    import yaml

    rows = skewed_rows(60, positive_every=6)
    train = write_csv(tmp_path / "train.csv", rows + [rows[1]])  # one repeated row
    raw = recipe(tiny_bert_dir, train, tmp_path / "run")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    from tunesmith.data.prepare import load_labelled_splits
    from tunesmith.config.recipe import validate_recipe

    splits = load_labelled_splits(validate_recipe(raw).data, seed=0)  # what train would use
    assert report["rows"] == {"train": 45, "validation": 16}
    for name, frame in splits.frames().items():
        assert report["classes"][name] == frame["label"].value_counts().to_dict()
    # the repeat lands in the same split (a duplicate) or across splits (leakage): found either way
    assert [f["count"] for f in report["findings"] if f["code"] in ("duplicates", "leakage")] == [1]
    assert report["token_lengths"]["train"]["truncated"] == 0


def test_train_saves_the_report_and_stops_on_fail_on(tiny_bert_dir, tmp_path):
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    rows = skewed_rows(48, positive_every=3)
    train = write_csv(tmp_path / "train.csv", rows)
    dev = write_csv(tmp_path / "dev.csv", rows[:6] + skewed_rows(12, positive_every=3, seed=5)[6:])
    raw = recipe(tiny_bert_dir, train, tmp_path / "run", validation=str(dev), epochs=1)
    lines = []
    finetune(validate_recipe(raw), echo=lines.append)
    saved = json.loads((tmp_path / "run" / "inspect.json").read_text())
    assert [f["count"] for f in saved["findings"] if f["code"] == "leakage"] == [6]
    assert any(line.startswith("warning: [leakage] held-out data overlaps") for line in lines)

    raw["inspect"] = {"fail_on": ["leakage"]}
    raw["output"] = str(tmp_path / "stopped")
    with pytest.raises(DataError, match="inspect found 1 problem.*leakage: held-out data overlaps"):
        finetune(validate_recipe(raw), echo=quiet)
    assert not (tmp_path / "stopped" / "model").exists()
