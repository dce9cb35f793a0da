"""load_preference_splits: the three pair formats, bad pairs (drop | error), malformed rows, splits, HH-RLHF."""

from __future__ import annotations

import csv
import gzip
import json

import pandas as pd
import pytest

from tunesmith.config.preference import PreferenceSpec
from tunesmith.config.recipe import DataSpec
from tunesmith.data.preference_data import hh_messages, load_preference_splits
from tunesmith.errors import DataError

DROP, ERROR = PreferenceSpec(), PreferenceSpec(invalid_pairs="error")


def spec(train, **extra) -> DataSpec:
    return DataSpec(train=str(train), **extra)


def jsonl(path, rows, compress=False):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def string_rows(n):
    return [{"prompt": f"question {i}?", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"}
            for i in range(n)]


def load(path, preference=DROP, **extra):
    return load_preference_splits(spec(path, **extra), preference, seed=0)


def error_of(path, preference=DROP, **extra) -> str:
    with pytest.raises(DataError) as info:
        load(path, preference, **extra)
    assert "\n" not in str(info.value)
    return str(info.value)


def all_rows(splits) -> pd.DataFrame:
    return pd.concat(list(splits.frames().values())).sort_values("line").reset_index(drop=True)


# --- formats ---------------------------------------------------------------------------------------------

def test_prompt_chosen_rejected_strings(tmp_path):
    splits, columns = load(jsonl(tmp_path / "p.jsonl", string_rows(10)))
    assert columns == {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    assert (len(splits.train), len(splits.validation), splits.test) == (8, 2, None)
    assert list(splits.frames()) == ["train", "validation"]
    rows = all_rows(splits)
    assert list(rows.columns) == ["prompt", "chosen", "rejected", "line"]
    assert rows["line"].tolist() == list(range(1, 11))
    assert rows.loc[3, "prompt"] == [{"role": "user", "content": "question 3?"}]
    assert (rows.loc[3, "chosen"], rows.loc[3, "rejected"]) == ("good answer 3", "bad answer 3")
    assert splits.notes == [] and splits.findings.findings == []
    assert splits.sources == {"train": str(tmp_path / "p.jsonl"), "validation": f"{tmp_path / 'p.jsonl'} (held-out 0.2)"}


def test_trl_conversational_format(tmp_path):
    system = {"role": "system", "content": "be brief"}
    rows = [{"prompt": [system, {"role": "user", "content": f"q{i}"}],
             "chosen": [{"role": "assistant", "content": f"yes {i}"}],
             "rejected": [{"role": "assistant", "content": f"no {i}"}]} for i in range(5)]
    for path in (jsonl(tmp_path / "c.jsonl", rows), tmp_path / "c.parquet"):
        pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
        splits, _ = load(path, validation={"split": 0.2})
        row = all_rows(splits).iloc[2]
        assert row["prompt"] == [system, {"role": "user", "content": "q2"}]
        assert (row["chosen"], row["rejected"], row["line"]) == ("yes 2", "no 2", 3)
    mixed = [{"prompt": "q", "chosen": [{"role": "assistant", "content": "yes"}], "rejected": "no"}] * 2
    row = all_rows(load(jsonl(tmp_path / "m.jsonl", mixed), validation={"split": 0.5})[0]).iloc[0]
    assert (row["prompt"], row["chosen"], row["rejected"]) == ([{"role": "user", "content": "q"}], "yes", "no")


def test_whole_dialogues_as_message_lists_and_as_hh_text(tmp_path):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "joke?"}]
    rows = [{"chosen": turns + [{"role": "assistant", "content": "a pun"}],
             "rejected": turns + [{"role": "assistant", "content": "no"}]},
            {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: two\n\nlines?\n\nAssistant: yes,\nsure",
             "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: two\n\nlines?\n\nAssistant: no"}]
    splits, columns = load(jsonl(tmp_path / "d.jsonl", rows * 3))
    assert columns == {"chosen": "chosen", "rejected": "rejected"}
    rows_ = all_rows(splits)
    assert rows_.loc[0, "prompt"] == turns and rows_.loc[0, "chosen"] == "a pun"
    assert rows_.loc[1, "prompt"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                      {"role": "user", "content": "two\n\nlines?"}]
    assert (rows_.loc[1, "chosen"], rows_.loc[1, "rejected"]) == ("yes,\nsure", "no")


def test_hh_text_before_the_first_turn_is_a_system_message():
    assert hh_messages("Be kind.\n\nHuman: hi\n\nAssistant: ok", "f, line 1", "chosen") == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok"}]
    assert hh_messages("Human: hi\n\nAssistant:", "f, line 1", "chosen")[-1] == {"role": "assistant", "content": ""}


def test_csv_strings_and_json_message_cells(tmp_path):
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "good", "bad"])
        writer.writerow(["[INST] what? [/INST]", "this", "that"])
        writer.writerow([json.dumps([{"role": "user", "content": "q"}]), "a", "b"])
        writer.writerow(["x", "c", "d"])
    columns = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    splits, found = load(path, columns=columns, validation={"split": 0.34})
    assert found == columns
    rows = all_rows(splits)
    assert rows["line"].tolist() == [2, 3, 4]
    assert rows.loc[0, "prompt"] == [{"role": "user", "content": "[INST] what? [/INST]"}]
    assert rows.loc[1, "prompt"] == [{"role": "user", "content": "q"}]


def test_gzip_parquet_validation_and_test_files(tmp_path):
    train = jsonl(tmp_path / "train.jsonl.gz", string_rows(6), compress=True)
    pd.DataFrame(string_rows(3)).to_parquet(tmp_path / "valid.parquet")
    test = tmp_path / "test.json"
    test.write_text(json.dumps(string_rows(2)), encoding="utf-8")
    splits, _ = load(train, validation=str(tmp_path / "valid.parquet"), test=str(test))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 3, 2)
    assert splits.validation["line"].tolist() == [1, 2, 3] and splits.test["line"].tolist() == [1, 2]
    assert list(splits.frames()) == ["train", "validation", "test"]
    assert splits.sources["test"] == str(test)


def test_seeded_split_is_reproducible_and_seed_dependent(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", string_rows(40))
    lines = lambda seed: load_preference_splits(spec(path), DROP, seed=seed)[0].validation["line"].tolist()
    assert lines(3) == lines(3) and len(lines(3)) == 8
    assert lines(3) != lines(4)


def test_drop_duplicates(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", string_rows(5) + string_rows(2))
    splits, _ = load(path, drop_duplicates=True)
    assert len(splits.train) + len(splits.validation) == 5
    assert splits.notes == [f"dropped 2 duplicate pairs from {path}"]


# --- bad pairs -------------------------------------------------------------------------------------------

def bad_rows():
    rows = string_rows(10)
    rows[2] = {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}
    rows[4]["rejected"] = "   "
    rows[5]["chosen"] = None
    rows[7]["rejected"] = rows[7]["chosen"] + " "
    return rows


def test_bad_pairs_are_dropped_counted_and_named(tmp_path):
    rows = bad_rows()
    rows[2] = {"prompt": [{"role": "user", "content": "q"}],
               "chosen": [{"role": "user", "content": "more"}, {"role": "assistant", "content": "x"}],
               "rejected": [{"role": "assistant", "content": "y"}]}
    path = jsonl(tmp_path / "p.jsonl", rows)
    splits, _ = load(path, validation={"split": 0.2})
    assert len(splits.train) + len(splits.validation) == 6
    assert sorted(all_rows(splits)["line"]) == [1, 2, 4, 7, 9, 10]
    assert splits.notes == [f"dropped 4 of 10 pairs of {path}: 1 prompt_mismatch (line 3); "
                            f"2 empty_reply (lines 5, 6); 1 identical_replies (line 8)"]
    findings = splits.findings
    assert [(f.code, f.severity, f.count) for f in findings.findings] == [
        ("prompt_mismatch", "warning", 1), ("empty_reply", "warning", 2), ("identical_replies", "warning", 1)]
    assert findings.by_code("empty_reply").examples == [{"file": str(path), "line": 5}, {"file": str(path), "line": 6}]
    assert findings.by_code("empty_reply").message == (f"2 pairs dropped: the chosen or the rejected reply is empty "
                                                       f"({path} lines 5, 6)")
    assert findings.to_dict()["summary"] == {"error": 0, "warning": 3, "info": 0}


@pytest.mark.parametrize("index, problem", [
    (4, "the chosen or the rejected reply is empty"),
    (7, "chosen and rejected are the same reply, so there is no preference to learn"),
])
def test_invalid_pairs_error_names_file_and_line(tmp_path, index, problem):
    rows = string_rows(10)
    rows[index] = bad_rows()[index]
    path = jsonl(tmp_path / "p.jsonl", rows)
    assert error_of(path, ERROR) == (f"{path}, line {index + 1}: {problem}; fix the row, or set "
                                     f"preference.invalid_pairs: drop")


def test_prompt_mismatch_error(tmp_path):
    rows = [{"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: a\n\nAssistant: y"}] * 3
    rows.append({"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"})
    path = jsonl(tmp_path / "p.jsonl", rows)
    assert error_of(path, ERROR) == (f"{path}, line 4: chosen and rejected do not share a prompt (they differ "
                                     f"before the final reply); fix the row, or set preference.invalid_pairs: drop")


def test_nothing_left_is_an_error(tmp_path):
    rows = [{"prompt": "q", "chosen": "same", "rejected": "same"}] * 3
    path = jsonl(tmp_path / "p.jsonl", rows)
    assert error_of(path) == (f"{path}: no valid pairs left: all 3 pairs were dropped (3 identical_replies); "
                              f"see preference.invalid_pairs")


# --- malformed rows --------------------------------------------------------------------------------------

@pytest.mark.parametrize("row, message", [
    ({"chosen": "just text", "rejected": "other"},
     "chosen is a plain string, but with no prompt column each side must be a whole dialogue (a list of "
     "messages, or '\\n\\nHuman: ...\\n\\nAssistant: ...' text); map data.columns.prompt if the file has one"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: x\n\nHuman: more", "rejected": "\n\nHuman: a\n\nAssistant: y"},
     "chosen does not end with an assistant turn (the reply)"),
    ({"chosen": [{"role": "assistant", "content": "x"}], "rejected": [{"role": "assistant", "content": "y"}]},
     "the turn before the final reply must be a user turn (the prompt ends with nothing)"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}],
      "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "y"}]},
     "chosen message 2 content must be a string"),
    ({"chosen": [{"role": "bot", "content": "a"}], "rejected": "x"},
     "chosen message 1 has role 'bot'; roles are system, user, assistant"),
    ({"chosen": 5, "rejected": "x"}, "chosen must be a string or a list of {role, content} messages, found int"),
])
def test_malformed_rows_are_errors_naming_file_and_line(tmp_path, row, message):
    good = {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: a\n\nAssistant: y"}
    path = jsonl(tmp_path / "p.jsonl", [good, good, row])
    assert error_of(path) == f"{path}, line 3: {message}"


def test_malformed_prompts(tmp_path):
    rows = string_rows(3)
    rows[1]["prompt"] = "  "
    path = jsonl(tmp_path / "p.jsonl", rows)
    assert error_of(path) == f"{path}, line 2: the prompt is empty"
    rows[1]["prompt"] = [{"role": "user"}]
    assert error_of(jsonl(path, rows)) == f"{path}, line 2: prompt message 1 must be an object with 'role' and 'content'"
    rows[1]["prompt"] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert error_of(jsonl(path, rows)) == (f"{path}, line 2: the turn before the final reply must be a user turn "
                                           f"(the prompt ends with an assistant turn)")


def test_a_missing_column_is_an_error(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "other": "b"}] * 3)
    assert error_of(path).startswith(f"{path}: key 'rejected' (data.columns.rejected) not found; keys are: ")


# --- the shared HH-RLHF harmless test split --------------------------------------------------------------

HH_MISMATCH = [1255, 1689, 1951, 1953, 2037]
HH_EMPTY = [87, 517, 926, 1104]  # the chosen reply is "" (the dialogue ends with "\n\nAssistant: ")


@pytest.mark.shared_data
def test_hh_rlhf_harmless_pairs(shared_data):
    path = shared_data / "hh_rlhf_harmless" / "harmless-base-test.jsonl.gz"
    splits, columns = load_preference_splits(spec(path, validation={"split": 0.1}), DROP, seed=7)
    assert columns == {"chosen": "chosen", "rejected": "rejected"}
    rows = all_rows(splits)
    assert len(rows) == 2312 - 5 - 4 == 2303
    assert (len(splits.validation), len(splits.train)) == (231, 2072)
    mismatch, empty = splits.findings.by_code("prompt_mismatch"), splits.findings.by_code("empty_reply")
    assert mismatch.count == 5 and [e["line"] for e in mismatch.examples] == HH_MISMATCH
    assert empty.count == 4 and [e["line"] for e in empty.examples] == HH_EMPTY
    assert splits.findings.by_code("identical_replies") is None
    assert not set(rows["line"]) & set(HH_MISMATCH + HH_EMPTY)
    assert splits.notes == [f"dropped 9 of 2312 pairs of {path}: 4 empty_reply (lines 87, 517, 926, 1104); "
                            f"5 prompt_mismatch (lines 1255, 1689, 1951, 1953, 2037)"]
    assert all(p[-1]["role"] == "user" and p[0]["role"] == "user" for p in rows["prompt"])
    assert all(c.strip() and r.strip() and c != r for c, r in zip(rows["chosen"], rows["rejected"]))
    again, _ = load_preference_splits(spec(path, validation={"split": 0.1}), DROP, seed=7)
    assert again.validation["line"].tolist() == splits.validation["line"].tolist()
    assert again.train["line"].tolist() == splits.train["line"].tolist()
    with pytest.raises(DataError) as info:
        load_preference_splits(spec(path), ERROR, seed=7)
    assert str(info.value) == (f"{path}, line 87: the chosen or the rejected reply is empty; fix the row, "
                               f"or set preference.invalid_pairs: drop")


def test_findings_add_up_over_the_files(tmp_path):
    rows = bad_rows()
    rows[2] = string_rows(3)[2]
    train = jsonl(tmp_path / "train.jsonl", rows)
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps(string_rows(3) + [{"prompt": "q", "chosen": "", "rejected": "x"}]), encoding="utf-8")
    splits, _ = load(train, validation=str(valid))
    assert (len(splits.train), len(splits.validation)) == (7, 3)
    assert splits.notes[1] == f"dropped 1 of 4 pairs of {valid}: 1 empty_reply (item 4)"
    empty = splits.findings.by_code("empty_reply")
    assert empty.count == 3
    assert empty.message == (f"3 pairs dropped: the chosen or the rejected reply is empty ({train} lines 5, 6; "
                             f"{valid} item 4)")
    assert empty.examples[-1] == {"file": str(valid), "line": 4}


def test_default_columns_are_found_in_a_csv_or_tsv_header(tmp_path):
    tsv = tmp_path / "p.tsv"
    tsv.write_text("chosen\trejected\tprompt\n" + "".join(f"yes {i}\tno {i}\tq {i}\n" for i in range(4)), encoding="utf-8")
    splits, columns = load(tsv, validation={"split": 0.25})
    assert columns == {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    assert all_rows(splits).loc[1, "prompt"] == [{"role": "user", "content": "q 1"}]
    hh = tmp_path / "hh.csv"
    with hh.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chosen", "rejected"])
        writer.writerows([["\n\nHuman: hi\n\nAssistant: hello", "\n\nHuman: hi\n\nAssistant: go"]] * 2)
    splits, columns = load(hh, validation={"split": 0.5})
    assert columns == {"chosen": "chosen", "rejected": "rejected"}
    assert all_rows(splits)["line"].tolist() == [2, 11]  # each record spans 9 physical lines (4 line breaks in each field)
    assert all_rows(splits).loc[0, "prompt"] == [{"role": "user", "content": "hi"}]
