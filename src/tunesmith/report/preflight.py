"""The report's preflight section: the checks run before the first step and what they found (eval.json
"preflight", written by tunesmith/preflight/)."""

from __future__ import annotations


def section_preflight(data, table, esc) -> str:
    preflight = data.eval.get("preflight")
    if not isinstance(preflight, dict):
        return ""
    checks = preflight.get("checks") or []
    findings = [f for f in preflight.get("findings") or [] if isinstance(f, dict)]
    if not checks:
        return '<p class="note">preflight checks were turned off (preflight.enabled: false).</p>'
    summary = preflight.get("summary") or {}
    head = (f"<p>{len(checks)} checks ran before the first step ({esc(', '.join(checks))}): "
            f"{summary.get('error', 0)} errors, {summary.get('warning', 0)} warnings, {summary.get('info', 0)} notes."
            + (f" Left out after an error: {esc(', '.join(preflight['skipped']))}." if preflight.get("skipped") else "")
            + (f" Errors ignored (preflight.ignore): {esc(', '.join(preflight['ignored']))}."
               if preflight.get("ignored") else "") + "</p>")
    if not findings:
        return head
    rows = [[f.get("severity"), f.get("code"), f.get("message")] for f in findings]
    return head + table(["severity", "code", "finding"], rows)
