"""`python -m tunesmith.cli.accelerate_launch ACCELERATE-LAUNCH-ARGS`: Accelerate's own launcher (`accelerate launch`,
through its launch_command), as `tunesmith train --processes N` starts it (cli/launch.py). A rank that failed has
printed its own error line, and a signal was passed on to every rank: the launcher's exit status says so, without
the launcher's traceback on top."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Accelerate's launcher on `argv` (`accelerate launch` arguments); the exit status of the first rank that
    failed, 128 + the signal that stopped the launcher, or 0."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
