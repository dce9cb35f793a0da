"""docs/errors.md lists every error a user can see: each `raise <TunesmithError subclass>(message)` in src/ must have
its message (its longest literal part) in the document. A new error without an entry fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tunesmith"
DOC = ROOT / "docs" / "errors.md"


def _user_errors() -> set[str]:
    """Names of the TunesmithError subclasses defined anywhere in the package."""
    names = {"TunesmithError"}
    classes = [(node.name, [ast.unparse(b) for b in node.bases])
               for path in SRC.rglob("*.py") for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for name, bases in classes:
            if name not in names and any(b.split(".")[-1] in names for b in bases):
                names.add(name)
                grew = True
    return names


def _literal_parts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp):
        return _literal_parts(node.left) + _literal_parts(node.right)
    return []


def raise_sites() -> list[tuple[str, str]]:
    """(file:line, the longest literal part of the message) of each raise of a user-facing error."""
    errors, sites = _user_errors(), []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.exc if isinstance(node, ast.Raise) else None
            if isinstance(call, ast.Call) and ast.unparse(call.func).split(".")[-1] in errors and call.args:
                parts = [p.strip(" ;:,.") for p in _literal_parts(call.args[0])]
                longest = max(parts, key=len, default="")
                if len(longest) >= 12:  # messages built entirely from values (e.g. re-raised text) have none
                    sites.append((f"{path.relative_to(ROOT)}:{node.lineno}", longest))
    return sites


def test_every_user_facing_error_is_in_docs_errors_md():
    doc = DOC.read_text(encoding="utf-8").replace("\\|", "|")
    sites = raise_sites()
    assert len(sites) > 100  # the scan finds the raise sites at all
    missing = [f"{where}: {text!r}" for where, text in sites if text not in doc]
    assert not missing, "errors missing from docs/errors.md (add a row: message, cause, fix):\n" + "\n".join(missing)
