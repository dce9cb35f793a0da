"""The `tunesmith report` and `tunesmith compare` commands (argument parsing and what they run)."""

from __future__ import annotations


def add_parsers(commands) -> None:
    report = commands.add_parser("report", help="(re)write RUN/report.html from a run directory")
    report.add_argument("run", help="run directory written by `tunesmith train`")

    compare = commands.add_parser("compare", help="recipe differences and metrics of runs side by side")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories")
    compare.add_argument("--html", metavar="FILE", help="also write the comparison as a self-contained HTML page")


def cmd_report(args) -> int:
    from tunesmith.cli.tables import console
    from tunesmith.report import write_report

    path = write_report(args.run)
    console.print(f"wrote {path}")
    return 0


def cmd_compare(args) -> int:
    from tunesmith.cli.tables import console, print_compare
    from tunesmith.report.compare import load_runs, write_compare_html

    runs = load_runs(args.runs)
    print_compare(runs)
    if args.html:
        console.print(f"wrote {write_compare_html(runs, args.html)}")
    return 0


COMMANDS = {"report": cmd_report, "compare": cmd_compare}
