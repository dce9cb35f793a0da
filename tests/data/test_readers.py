"""read_table / infer_format: formats, line numbers, and every user-facing error."""

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.readers import FORMATS, infer_format, read_table
from tunesmith.errors import DataError

SMS = Path(__file__).resolve().parents[2] / "data" / "sms_spam" / "SMSSpamCollection"
SMS_ARGS = dict(format="tsv", header=False, columns={"label": 0, "text": 1})


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def error_of(path, **kwargs) -> str:
    kwargs.setdefault("columns", {"text": "text", "label": "label"})
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the shipped SMS Spam file ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sms() -> pd.DataFrame:
    return read_table(SMS, **SMS_ARGS)


def test_sms_reads_all_rows_with_class_counts(sms):
    assert len(sms) == 5574
    assert list(sms.columns) == ["label", "text", "line"]
    assert sms["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert sms["line"].tolist() == list(range(1, 5575))
    assert sms["line"].dtype == "int64"


def test_sms_line_numbers_point_at_the_source_line(sms):
    lines = SMS.read_text(encoding="utf-8").split("\n")
    for n in (1, 100, 2500, 5574):
        row = sms[sms["line"] == n].iloc[0]
        label, text = lines[n - 1].split("\t")
        assert (row["label"], row["text"]) == (label, text)
    assert sms.loc[sms["line"] == 100, "text"].item() == "I see a cup of coffee animation"


def test_sms_keeps_stray_quotes_literally(sms):
    quoted = sms[sms["text"].str.contains('"', regex=False)]
    assert len(quoted) > 0
    assert all(isinstance(t, str) for t in sms["text"])


def test_sms_with_an_explicit_quoting_none_matches_auto(sms):
    again = read_table(SMS, quoting="none", **SMS_ARGS)
    pd.testing.assert_frame_equal(again, sms)


# --- csv / tsv -------------------------------------------------------------------------------------

def test_csv_multiline_quoted_field_keeps_line_numbers(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nhello,a\n"two\nline\nfield",b\nafter,a\n')
    df = read_table(path, columns={"text": "text", "label": "label"})
    assert df["text"].tolist() == ["hello", "two\nline\nfield", "after"]
    assert df["line"].tolist() == [2, 3, 6]
    assert df["label"].tolist() == ["a", "b", "a"]


def test_csv_crlf_and_blank_lines(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\r\nx,1\r\n\r\n   \r\ny,2\r\n")
    df = read_table(path, columns={"text": "text", "label": "label"})
    assert df["text"].tolist() == ["x", "y"]
    assert df["line"].tolist() == [2, 5]
    assert df["label"].tolist() == [1, 2]  # numbers, as the same labels read from json (data/labels.py)


def test_header_by_index_and_extra_roles(tmp_path):
    path = write(tmp_path, "d.csv", "id,premise,hypothesis,gold\n7,a cat,an animal,entail\n")
    df = read_table(path, columns={"text": 1, "text_pair": "hypothesis", "label": 3, "id": "id"},
                    header=True)
    assert list(df.columns) == ["text", "text_pair", "label", "id", "line"]
    assert df.iloc[0].tolist() == ["a cat", "an animal", "entail", "7", 2]


def test_no_header_by_index(tmp_path):
    path = write(tmp_path, "d.csv", "pos,great film\nneg,dull\n")
    df = read_table(path, columns={"label": 0, "text": 1})  # header auto: False (ints)
    assert df[["label", "text"]].values.tolist() == [["pos", "great film"], ["neg", "dull"]]
    assert df["line"].tolist() == [1, 2]


def test_header_names_are_matched_ignoring_surrounding_spaces(tmp_path):
    path = write(tmp_path, "d.csv", "text , label\nx,y\n")
    df = read_table(path, columns={"text": "text", "label": "label"})
    assert df.iloc[0][["text", "label"]].tolist() == ["x", "y"]


def test_tsv_quoting_minimal_and_custom_delimiter(tmp_path):
    tsv = write(tmp_path, "d.tsv", 'label\ttext\nham\t"a\tb"\n')
    assert read_table(tsv, columns={"text": "text", "label": "label"}, quoting="minimal")["text"][0] == "a\tb"
    assert read_table(tsv, columns={"text": "text", "label": "label"}, extra_fields="ignore")["text"][0] == '"a'
    semi = write(tmp_path, "d.txt", "label;text\nham;hi\n")
    df = read_table(semi, format="csv", delimiter=";", columns={"text": "text", "label": "label"})
    assert df.iloc[0][["text", "label"]].tolist() == ["hi", "ham"]


def test_bom_is_stripped(tmp_path):
    path = write(tmp_path, "d.csv", "\ufefftext,label\nhi,a\n".encode("utf-8"))
    df = read_table(path, columns={"text": "text", "label": "label"})
    assert df.iloc[0][["text", "label"]].tolist() == ["hi", "a"]


def test_other_encoding(tmp_path):
    path = write(tmp_path, "d.tsv", "spam\tcaf\xe9\n".encode("latin-1"))
    df = read_table(path, columns={"label": 0, "text": 1}, encoding="latin-1")
    assert df["text"][0] == "café"


def test_long_fields_are_allowed(tmp_path):
    long = "w" * 300_000
    path = write(tmp_path, "d.csv", f'text,label\n"{long}",a\n')
    assert len(read_table(path, columns={"text": "text", "label": "label"})["text"][0]) == 300_000


# --- jsonl / json / parquet / txt ------------------------------------------------------------------

def test_jsonl_round_trip_keeps_label_types(tmp_path):
    rows = [{"sentence": "good", "y": 1}, {"sentence": "bad", "y": 0, "extra": [1]}]
    text = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    df = read_table(write(tmp_path, "d.jsonl", text), columns={"text": "sentence", "label": "y"})
    assert df["text"].tolist() == ["good", "bad"]
    assert df["label"].tolist() == [1, 0]
    assert df["label"].dtype == "int64"
    assert df["line"].tolist() == [1, 3]


def test_jsonl_bool_and_str_labels_and_numeric_text(tmp_path):
    text = '{"t": 5, "l": true}\n{"t": "x", "l": false}\n'
    df = read_table(write(tmp_path, "d.jsonl", text), columns={"text": "t", "label": "l"})
    assert df["text"].tolist() == ["5", "x"]
    assert df["label"].tolist() == [True, False]


def test_json_array_round_trip(tmp_path):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": "x"}]
    df = read_table(write(tmp_path, "d.json", json.dumps(rows, indent=2)),
                    columns={"text": "text", "label": "label"})
    assert df[["text", "label"]].values.tolist() == [["a", "x"], ["b", "y"], ["c", "x"]]
    assert df["line"].tolist() == [1, 2, 3]


def test_parquet_round_trip_by_name_and_index(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"review": ["fine", "meh", "bad"], "stars": [5, 3, 1]}).to_parquet(path)
    df = read_table(path, columns={"text": "review", "label": 1})
    assert df["text"].tolist() == ["fine", "meh", "bad"]
    assert df["label"].tolist() == [5, 3, 1]
    assert df["line"].tolist() == [1, 2, 3]


def test_optional_role_missing_reads_as_empty(tmp_path):
    text = '{"a": "x", "l": 1, "b": "p"}\n{"a": "y", "l": 2}\n'
    df = read_table(write(tmp_path, "d.jsonl", text), columns={"text": "a", "text_pair": "b", "label": "l"})
    assert df["text_pair"].tolist() == ["p", ""]


def test_txt_one_example_per_line(tmp_path):
    path = write(tmp_path, "corpus.txt", "first line\n\nsecond\u2028same line\r\n")
    df = read_table(path, columns={"text": 0}, required=("text",))
    assert df["text"].tolist() == ["first line", "second\u2028same line"]
    assert df["line"].tolist() == [1, 3]


# --- infer_format ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [("a.csv", "csv"), ("a.TSV", "tsv"), ("a.tab", "tsv"),
                                      ("a.jsonl", "jsonl"), ("a.json", "json"),
                                      ("a.parquet", "parquet"), ("a.txt", "txt")])
def test_infer_format_from_extension(name, fmt):
    assert infer_format(Path(name), None) == fmt


def test_infer_format_explicit_wins_and_is_checked():
    assert infer_format(Path("SMSSpamCollection"), "tsv") == "tsv"
    assert infer_format(Path("a.csv"), "JSONL") == "jsonl"
    with pytest.raises(DataError, match=r"a\.csv: unsupported format 'xlsx'.*csv, tsv, jsonl"):
        infer_format(Path("a.csv"), "xlsx")


def test_infer_format_unknown_extension():
    with pytest.raises(DataError) as info:
        infer_format(Path("data/SMSSpamCollection"), None)
    message = str(info.value)
    assert message.startswith("data/SMSSpamCollection: cannot tell the format")
    assert "set data.format to one of " + ", ".join(FORMATS) in message


# --- errors ----------------------------------------------------------------------------------------

def test_missing_file_and_directory(tmp_path):
    assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'} does not exist"
    assert error_of(tmp_path).startswith(f"{tmp_path} is a directory")


def test_unsupported_format_for_the_file(tmp_path):
    path = write(tmp_path, "d.xlsx", "x")
    assert "cannot tell the format" in error_of(path)


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.parquet", "d.txt"])
def test_zero_byte_file_is_empty(tmp_path, name):
    path = write(tmp_path, name, b"")
    kwargs = {"columns": {"text": 0}, "required": ("text",)} if name.endswith(".txt") else {}
    assert error_of(path, **kwargs) == f"{path} is empty"


def test_blank_lines_only_and_header_only(tmp_path):
    assert error_of(write(tmp_path, "blank.jsonl", "\n \n")).endswith("blank.jsonl is empty")
    path = write(tmp_path, "h.csv", "text,label\n\n")
    assert error_of(path) == f"{path} has a header but no rows"


def test_column_not_found_lists_columns_and_suggests(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,hi\n")
    message = error_of(path, columns={"text": "txt", "label": "label"})
    assert message == (f"{path}: column 'txt' (data.columns.text) not found; columns are: label, text; "
                       f"did you mean 'text'?")
    message = error_of(path, columns={"text": "text", "label": "category"})
    assert "column 'category' (data.columns.label) not found; columns are: label, text" in message
    assert "did you mean" not in message


def test_jsonl_key_not_found_suggests(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"sentence": "a", "label": 1}\n')
    message = error_of(path, columns={"text": "sentance", "label": "label"})
    assert "key 'sentance' (data.columns.text) not found; keys are: sentence, label" in message
    assert "did you mean 'sentence'?" in message


def test_parquet_column_not_found_and_index_out_of_range(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a"], "label": ["b"]}).to_parquet(path)
    assert "columns are: text, label; did you mean 'label'?" in error_of(path, columns={"text": "text", "label": "Label"})
    assert "column index 2 (data.columns.label) is out of range" in error_of(path, columns={"text": 0, "label": 2})


def test_index_out_of_range(tmp_path):
    path = write(tmp_path, "d.tsv", "ham\thi\n")
    message = error_of(path, columns={"label": 0, "text": 2})
    assert message.startswith(f"{path}: column index 2 (data.columns.text) is out of range")
    assert "the first row (line 1) has 2 columns" in message
    with_header = write(tmp_path, "h.csv", "label,text\nham,hi\n")
    assert "the header has 2 columns (0 to 1): label, text" in error_of(
        with_header, columns={"label": 0, "text": 5}, header=True)


def test_name_without_header_is_an_error(tmp_path):
    path = write(tmp_path, "d.csv", "ham,hi\n")
    message = error_of(path, columns={"label": 0, "text": "text"}, header=False)
    assert "data.columns.text names a column" in message and "data.header: true" in message


def test_too_few_fields_names_the_line(tmp_path):
    path = write(tmp_path, "d.tsv", "ham\thi\nspam\n")
    assert error_of(path, columns={"label": 0, "text": 1}) == (
        f"{path}, line 2: expected at least 2 tab-separated fields, found 1")
    csv_path = write(tmp_path, "d.csv", "label,text\nham,hi\n\nspam\n")
    assert error_of(csv_path).startswith(f"{csv_path}, line 4: expected at least 2 comma-separated")


def test_empty_required_value_names_line_and_role(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhi,ham\nyo,  \n")
    assert error_of(path) == f"{path}, line 3: empty label"
    path = write(tmp_path, "e.tsv", "ham\thi\nspam\t\n")
    assert error_of(path, columns={"label": 0, "text": 1}) == f"{path}, line 2: empty text"
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n{"text": "c", "label": null}\n')
    assert error_of(path).startswith(f"{path}, line 2: empty label (the object has no key 'label')")
    path = write(tmp_path, "d.json", '[{"text": "a", "label": 1}, {"text": "", "label": 0}]')
    assert error_of(path) == f"{path}, item 2: empty text"


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "d.tsv", b"ham\tok\nspam\t\xff\xfe bad\n")
    message = error_of(path, columns={"label": 0, "text": 1})
    assert message.startswith(f"{path}, line 2: not valid utf-8 text (byte 0xff at column 6)")
    assert "convert the file to UTF-8 or set data.encoding" in message


def test_messages_stay_on_one_line(tmp_path):
    path = write(tmp_path, "d.csv", '"multi\nline",text\nham,hi\n')
    message = error_of(path, columns={"label": "label", "text": "text"})
    assert "columns are: multi\\nline, text" in message


def test_unknown_encoding(tmp_path):
    path = write(tmp_path, "d.tsv", "ham\tok\n")
    assert "unknown encoding 'klingon'" in error_of(path, columns={"label": 0, "text": 1}, encoding="klingon")


def test_bad_json(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n')
    assert error_of(path).startswith(f"{path}, line 2: invalid JSON")
    path = write(tmp_path, "e.jsonl", '{"text": "a", "label": 1}\n["b", 2]\n')
    assert error_of(path).startswith(f"{path}, line 2: expected a JSON object, found an array")
    path = write(tmp_path, "d.json", '{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n')
    message = error_of(path)
    assert message.startswith(f"{path}, line 2: invalid JSON") and "data.format: jsonl" in message
    path = write(tmp_path, "e.json", '{"text": "a", "label": 1}')
    assert error_of(path).startswith(f"{path}: expected a JSON array of objects, found an object")
    path = write(tmp_path, "f.json", '[{"text": "a", "label": 1}, 3]')
    assert error_of(path) == f"{path}, item 2: expected a JSON object, found a number"
    path = write(tmp_path, "g.json", "[]")
    assert error_of(path).startswith(f"{path} is empty")


def test_index_column_for_json_is_an_error(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n')
    assert "fields are named, not numbered; keys are: text, label" in error_of(path, columns={"text": 0, "label": "label"})


def test_label_of_wrong_type(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": [1]}\n')
    assert error_of(path) == f"{path}, line 1: label must be a string or a number, found an array"


def test_corrupt_parquet(tmp_path):
    path = write(tmp_path, "d.parquet", b"PAR1 this is not parquet at all")
    assert error_of(path).startswith(f"{path}: cannot read as parquet")


def test_unclosed_quote_names_the_starting_line(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nok,a\n"never closed,b\nmore,c\n')
    message = error_of(path)
    assert message.startswith(f"{path}, line 3: a quoted field that starts here is never closed")
    assert "data.quoting: none" in message


def test_txt_has_no_label(tmp_path):
    path = write(tmp_path, "d.txt", "hello\n")
    assert "a txt file holds only text" in error_of(path)
    assert "no columns for: label" in error_of(path, columns={"text": 0, "label": 1}, required=("text",))


def test_bad_options(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,y\n")
    assert "unknown quoting 'smart'" in error_of(path, quoting="smart")
    assert "data.delimiter must be one character" in error_of(path, delimiter="::")
    assert "data.columns.label must be a column name or a 0-based column index" in error_of(
        path, columns={"text": "text", "label": -1})
    assert "data.columns.label is not set" in error_of(path, columns={"text": "text"})


# --- property: arbitrary bytes only ever raise DataError -------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(alphabet='ab\t,"\n\r{}[]:\\ \x00\ufeffé', max_size=80).map(str.encode)),
       fmt=st.sampled_from(["csv", "tsv", "jsonl", "json", "txt"]),
       by_index=st.booleans())
def test_random_bytes_raise_only_data_errors(tmp_path, data, fmt, by_index):
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(data)
    if fmt == "txt":
        kwargs = {"columns": {"text": 0}, "required": ("text",)}
    else:
        kwargs = {"columns": {"label": 0, "text": 1} if by_index else {"label": "a", "text": "b"}}
    try:
        df = read_table(path, **kwargs)
    except DataError as err:
        assert "\n" not in str(err)
        return
    assert len(df) > 0
    assert df["line"].is_monotonic_increasing
    assert all(isinstance(t, str) and t.strip() for t in df["text"])


# --- rows wider than the header, repeated header names ---------------------------------------------

def test_a_row_with_more_fields_than_the_header_is_an_error(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\npos,fine\nneg,I hated every minute, and more words\n")
    assert error_of(path) == (
        f"{path}, line 3: 3 comma-separated fields, but the header (line 1) has 2; if a field holds a comma, "
        f"put that field in double quotes; to drop extra trailing fields, set data.extra_fields: ignore")
    shifted = write(tmp_path, "t.csv", "text,label\nfine,pos\nI hated it, really,neg\n")
    assert "t.csv, line 3: 3 comma-separated fields, but the header (line 1) has 2" in error_of(shifted)
    quoted = write(tmp_path, "q.csv", 'label,text\nneg,"I hated every minute, and more words"\n')
    assert read_table(quoted, columns={"text": "text", "label": "label"})["text"].tolist() == [
        "I hated every minute, and more words"]


def test_extra_fields_without_a_header_and_with_quoting_none(tmp_path):
    path = write(tmp_path, "d.tsv", "pos\tgood\nneg\tbad\tstray\n")
    assert error_of(path, columns={"label": 0, "text": 1}) == (
        f"{path}, line 2: 3 tab-separated fields, but the first row (line 1) has 2; if a field holds a tab, "
        f"put that field in double quotes and set data.quoting: minimal; to drop extra trailing fields, "
        f"set data.extra_fields: ignore")
    df = read_table(path, columns={"label": 0, "text": 1}, extra_fields="ignore")
    assert df[["label", "text"]].values.tolist() == [["pos", "good"], ["neg", "bad"]]
    assert "unknown extra_fields 'maybe' (data.extra_fields)" in error_of(
        path, columns={"label": 0, "text": 1}, extra_fields="maybe")


def test_a_repeated_header_name_is_an_error(tmp_path):
    path = write(tmp_path, "d.csv", "text,text,label\na,b,pos\n")
    assert error_of(path) == (f"{path}, line 1: the header names column 'text' twice (0-based columns 0 and 1); "
                              f"rename one of them")
    blanks = write(tmp_path, "b.csv", "text,label,,\na,pos,,\n")  # unnamed trailing columns are no names
    assert read_table(blanks, columns={"text": "text", "label": "label"})["text"].tolist() == ["a"]


def test_stsb_ragged_rows_read_with_extra_fields_ignore(shared_data):
    stsb = shared_data / "stsb"
    args = dict(format="tsv", header=False, quoting="none", columns={"label": 4, "text": 5, "text_pair": 6})
    df = read_table(stsb / "sts-train.csv", extra_fields="ignore", **args)
    assert len(df) == 5749
    first = df.iloc[0]
    assert (first["label"], first["text"], first["text_pair"]) == (5, "A plane is taking off.",
                                                                   "An air plane is taking off.")
    lines = (stsb / "sts-train.csv").read_text(encoding="utf-8").split("\n")
    ragged = next(n for n, line in enumerate(lines, 1) if line.count("\t") == 8)
    assert f"sts-train.csv, line {ragged}: 9 tab-separated fields, but the first row (line 1) has 7" in error_of(
        stsb / "sts-train.csv", **args)


# --- pipes, /proc files and symlink loops ---------------------------------------------------------

def _fifo_with(tmp_path: Path, name: str, content: bytes) -> tuple[Path, threading.Thread]:
    path = tmp_path / name
    os.mkfifo(path)

    def feed():
        with open(path, "wb") as pipe:  # blocks until the reader opens the pipe
            pipe.write(content)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return path, writer


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_named_pipe_is_read_as_a_stream(tmp_path):
    path, writer = _fifo_with(tmp_path, "pipe", b"label,text\npos,good film\nneg,dull\n")
    df = read_table(path, format="csv", columns={"text": "text", "label": "label"})
    writer.join(5)
    assert df[["label", "text"]].values.tolist() == [["pos", "good film"], ["neg", "dull"]]
    empty, writer = _fifo_with(tmp_path, "empty", b"")
    assert error_of(empty, format="csv") == f"{empty} is empty"
    writer.join(5)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_parquet_through_a_named_pipe(tmp_path):
    source = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["fine", "bad"], "label": ["pos", "neg"]}).to_parquet(source)
    path, writer = _fifo_with(tmp_path, "pipe", source.read_bytes())
    df = read_table(path, format="parquet", columns={"text": "text", "label": "label"})
    writer.join(5)
    assert df["text"].tolist() == ["fine", "bad"]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="no /proc")
def test_a_proc_file_is_not_empty():
    df = read_table("/proc/self/status", format="txt", columns={"text": 0}, required=("text",))
    assert df["text"].iloc[0].startswith("Name:")


def test_a_symlink_loop_is_named_as_such(tmp_path):
    loop = tmp_path / "loop.csv"
    loop.symlink_to(tmp_path / "other.csv")
    (tmp_path / "other.csv").symlink_to(loop)
    assert error_of(loop) == f"{loop} is a symlink loop (following its links leads back to it); point it at a real file"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "missing.csv")
    assert error_of(dangling) == f"{dangling} does not exist"


# --- one label per number, in every format --------------------------------------------------------

def test_labels_equal_as_numbers_read_as_one_value_in_every_format(tmp_path):
    jsonl = write(tmp_path, "d.jsonl", '{"t": "a", "l": 1}\n{"t": "b", "l": "1"}\n{"t": "c", "l": 1.0}\n'
                                       '{"t": "d", "l": "1.0"}\n{"t": "e", "l": 2.5}\n{"t": "f", "l": "pos"}\n')
    assert read_table(jsonl, columns={"text": "t", "label": "l"})["label"].tolist() == [1, 1, 1, 1, 2.5, "pos"]
    csv_file = write(tmp_path, "d.csv", "text,label\na,1\nb, 1.0 \nc,2.50\nd,007\n")
    assert read_table(csv_file, columns={"text": "text", "label": "label"})["label"].tolist() == [1, 1, 2.5, 7]
    parquet = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [1.0, 2.5]}).to_parquet(parquet)
    assert read_table(parquet, columns={"text": "text", "label": "label"})["label"].tolist() == [1, 2.5]


# --- gzip: read transparently, the format from the suffix before .gz --------------------------------

def test_gzip_files_read_as_the_format_before_gz(tmp_path):
    import gzip

    rows = [{"text": "hello", "label": "a"}, {"text": "world", "label": "b"}]
    jsonl = tmp_path / "pairs.jsonl.gz"
    jsonl.write_bytes(gzip.compress(("\n".join(json.dumps(r) for r in rows) + "\n").encode()))
    csv_gz = tmp_path / "x.CSV.GZ"
    csv_gz.write_bytes(gzip.compress(b"text,label\nhello,a\n\nworld,b\n"))
    parquet = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    parquet_gz = tmp_path / "t.parquet.gz"
    parquet_gz.write_bytes(gzip.compress(parquet.read_bytes()))
    assert infer_format(jsonl, None) == "jsonl" and infer_format(csv_gz, None) == "csv"
    columns = {"text": "text", "label": "label"}
    for path, lines in ((jsonl, [1, 2]), (csv_gz, [2, 4]), (parquet_gz, [1, 2])):
        frame = read_table(path, columns=columns)
        assert frame["text"].tolist() == ["hello", "world"], path
        assert frame["label"].tolist() == ["a", "b"] and frame["line"].tolist() == lines


def test_gzip_errors_name_the_file(tmp_path):
    import gzip

    bare = write(tmp_path, "data.gz", gzip.compress(b"x"))
    assert error_of(bare) == (f"{bare}: cannot tell the format of this file (no extension before .gz); "
                              f"set data.format to one of {', '.join(FORMATS)}")
    broken = write(tmp_path, "cut.jsonl.gz", gzip.compress(b'{"text": "a", "label": 1}\n' * 50)[:30])
    message = error_of(broken)
    assert message.startswith(f"{broken}: cannot decompress this .gz file (")
    assert message.endswith("); check that it is a complete gzip file")
    not_gzip = write(tmp_path, "plain.csv.gz", "text,label\na,1\n")
    assert error_of(not_gzip).startswith(f"{not_gzip}: cannot decompress this .gz file (")
    empty = write(tmp_path, "empty.csv.gz", gzip.compress(b""))
    assert error_of(empty) == f"{empty} is empty"
    forced = write(tmp_path, "forced.gz", gzip.compress(b"text\tlabel\nhi\t1\n"))
    assert read_table(forced, format="tsv", columns={"text": "text", "label": "label"})["text"].tolist() == ["hi"]
