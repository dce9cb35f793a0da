"""The inspect tables of a token classification recipe (cli/token_tables.py), reached through print_inspection."""

from __future__ import annotations

from tunesmith.cli.tables import print_inspection
from tunesmith.config.recipe import DataSpec
from tunesmith.data.token_data import load_token_splits
from tunesmith.data.token_stats import inspect_token_splits


def test_token_inspection_tables(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "train.conll").write_text("John B-PER\nleft O\n\nJohn B-PER\nleft O\n\nParis I-LOC\n", encoding="utf-8")
    (tmp_path / "dev.conll").write_text("Acme B-ORG\n", encoding="utf-8")
    spec = DataSpec(train=str(tmp_path / "train.conll"), validation=str(tmp_path / "dev.conll"))
    print_inspection(inspect_token_splits(load_token_splits(spec, seed=0)))
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in out.splitlines() if line.count("│") == 4}
    assert rows["LOC"] == ["1", "0"] and rows["PER"] == ["2", "0"] and rows["ORG"] == ["0", "1"]
    assert rows["sentences"] == ["3", "1"] and rows["words"] == ["5", "1"]
    for code in ("repaired_sequences", "missing_type", "unseen_type", "duplicates"):
        assert code in out
    assert f"e.g. {tmp_path / 'train.conll'}:7: Paris" in out
    assert "note: entity type ORG in" in out
