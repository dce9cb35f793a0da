"""What every data inspection returns (classification's inspection.Report, multi_label's LabelSetInspection,
token_classification's TokenInspection): findings with a severity, and the three ways cli/tables and
RUN/inspect.json read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One finding: a code (`inspect.fail_on` names it), its severity, one line, how many rows, examples."""

    code: str
    severity: str
    message: str
    count: int = 0
    examples: list = field(default_factory=list)


class FindingsReport:
    """Mixed into an inspection dataclass with a `findings` list."""

    findings: list[Finding]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["summary"] = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        return out

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    def by_code(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def summary(self) -> dict:
        """eval.json "inspect": the counts per severity and "severity: code" of each finding."""
        return {**self.to_dict()["summary"], "findings": [f"{f.severity}: {f.code}" for f in self.findings]}

    def echo_findings(self, echo, *, counts: bool = True) -> None:
        """What `train` prints: each error and warning on a line (errors first), then the counts."""
        for finding in self.findings:
            if finding.severity in ("error", "warning"):
                echo(f"{finding.severity}: [{finding.code}] {finding.message}")
        if counts:
            summary = self.to_dict()["summary"]
            echo(f"inspect: {summary['error']} errors, {summary['warning']} warnings, {summary['info']} notes "
                 f"(all in RUN/inspect.json; `tunesmith inspect RECIPE` shows them)")


def promote_failures(findings: list[Finding], fail_on) -> list[Finding]:
    """`inspect.fail_on`: the findings with those codes (and rows behind them) become errors; errors first."""
    codes = set(fail_on)
    for finding in findings:
        if finding.code in codes and finding.count > 0:
            finding.severity = "error"
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return findings
