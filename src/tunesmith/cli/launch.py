"""`tunesmith train RECIPE --processes N [--accelerate-config FILE]`: the same training in N processes, launched
through Accelerate's launcher (the forms it stands for, also supported as they are:
`accelerate launch --multi_gpu --num_processes N -m tunesmith train RECIPE` and
`torchrun --nproc_per_node N -m tunesmith train RECIPE`). How the processes share the work: train/distributed.py.

Before anything starts, in one line each (exit 2): the recipe and the run directory (as `train` checks them),
then what the machine lacks: more processes than GPUs (one process per GPU) or, without a CUDA GPU, than CPU
cores; an Accelerate config this machine cannot run (MULTI_GPU, FSDP or DeepSpeed without a GPU, DeepSpeed
without the deepspeed package) or tunesmith does not support (FSDP version 1 or sharded state dicts, ZeRO stage 3,
Megatron, TPU; mixed_precision, which is the recipe's train.precision; train/sharding.py).

Then this process starts Accelerate's launcher (cli/accelerate_launch.py: Accelerate's own
`launch_command`, whose failures end without a launcher traceback) in a session of its own,
passes SIGINT/SIGTERM on to it once (the launcher passes them to every rank, which save one checkpoint together
and stop) and, dying by any signal (SIGKILL included), takes the launcher and the ranks with it (PR_SET_PDEATHSIG).
Its exit status is the run's: rank 0's (0, 2 for a user error, 3 for a quality gate, 130/143 after a signal), else
the first failing rank's, which each rank writes into a directory named by $TUNESMITH_EXIT_DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tunesmith.cli.arg_types import positive_int
from tunesmith.errors import RecipeError, one_line

EXIT_DIR = "TUNESMITH_EXIT_DIR"          # where each rank writes its exit status (rank-R)
COMMAND = "TUNESMITH_COMMAND"            # the user's command line, for the resume hint of an interrupted run
LAUNCHER_PID = "TUNESMITH_LAUNCHER_PID"  # this process (train/checkpoint.py's test hook signals it)
SHUTDOWN_TIMEOUT_S = "120"               # torchrun's wait for the ranks' checkpoint after a signal (its default: 30)
SUPPORTED = {"MULTI_GPU", "NO", "FSDP", "DEEPSPEED"}
SHARDED = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}


def add_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--processes", type=positive_int, metavar="N",
                       help="train in N processes through Accelerate's launcher: one per GPU, or CPU processes over "
                            "gloo without a GPU (see docs/scaling.md)")
    train.add_argument("--accelerate-config", metavar="FILE",
                       help="an Accelerate config file (accelerate config) for the launcher: multi-GPU, "
                            "multi-machine, FSDP and DeepSpeed settings; implies a launch")


def check_launch(args, world_size: int) -> tuple[int, object | None]:
    """(processes, the Accelerate config or None) for `args`, or RecipeError naming what does not fit. One
    process and no config: `train` runs in this process, as without --processes."""
    if world_size > 1:
        raise RecipeError(f"--processes / --accelerate-config: this process is already one of {world_size} started by "
                          f"a launcher (WORLD_SIZE={world_size}); leave them out under accelerate launch / torchrun")
    config = read_accelerate_config(args.accelerate_config) if args.accelerate_config else None
    processes = args.processes
    if config is not None:
        configured = config.num_processes if config.num_processes and config.num_processes > 0 else None
        if processes and configured and processes != configured:
            raise RecipeError(f"--processes {processes} but --accelerate-config {args.accelerate_config} says "
                              f"num_processes: {configured}; give one of them")
        processes = processes or configured
        if not processes:
            raise RecipeError(f"--accelerate-config {args.accelerate_config} does not set num_processes; add "
                              f"--processes N")
    check_machine(processes, config, args.accelerate_config)
    return processes, config


def read_accelerate_config(path: str):
    """The Accelerate config at `path` (YAML or JSON, as `accelerate config` writes it), read by Accelerate itself,
    then checked against what tunesmith supports."""
    from accelerate.commands.config.config_args import load_config_from_file

    where = f"--accelerate-config {path}"
    if not Path(path).is_file():
        raise RecipeError(f"{where}: no such file")
    try:
        config = load_config_from_file(path)
    except Exception as exc:  # noqa: BLE001 - YAML/JSON syntax, unknown keys, bad values: Accelerate's own message
        raise RecipeError(f"{where}: not a valid Accelerate config ({one_line(exc)})") from None
    kind = str(getattr(config.distributed_type, "value", config.distributed_type))
    environment = str(getattr(config.compute_environment, "value", config.compute_environment))
    if environment != "LOCAL_MACHINE":
        raise RecipeError(f"{where}: compute_environment {environment} is not supported; tunesmith launches on "
                          f"local machines (LOCAL_MACHINE), one launch per machine")
    if kind in SHARDED:
        check_sharded_config(config, kind, where)
    if kind == "MULTI_CPU":
        raise RecipeError(f"{where}: distributed_type MULTI_CPU: on CPUs leave the config out; --processes N starts "
                          f"N CPU processes over gloo")
    if kind not in SUPPORTED:
        raise RecipeError(f"{where}: distributed_type {kind} is not supported; tunesmith runs on CUDA GPUs "
                          f"(MULTI_GPU) and CPUs (--processes N without a config)")
    if config.mixed_precision not in (None, "no"):
        raise RecipeError(f"{where}: mixed_precision {config.mixed_precision}: the recipe's train.precision decides "
                          f"the number format; set mixed_precision: 'no' and train.precision in the recipe")
    return config


def check_sharded_config(config, kind: str, where: str) -> None:
    """RecipeError for an FSDP / DeepSpeed / Megatron config this machine cannot run or tunesmith cannot honour
    (train/sharding.py; each process checks the plugin Accelerate builds from it again)."""
    import torch

    from tunesmith.train.sharding import deepspeed_problem, fsdp_problem, machine_problem, test_hook_enabled

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not (kind == "FSDP" and test_hook_enabled() and not gpus):
        problem = machine_problem(SHARDED[kind], gpus)
        if problem:
            raise RecipeError(f"{where}: distributed_type {kind}: {problem}")
    if kind == "FSDP":
        fsdp = config.fsdp_config or {}  # Accelerate's defaults for what the file leaves out
        version = fsdp.get("fsdp_version", 1)
        problem = fsdp_problem(version, fsdp.get("fsdp_state_dict_type", "SHARDED_STATE_DICT" if str(version) == "2"
                                                 else "FULL_STATE_DICT"),
                               fsdp.get("fsdp_cpu_ram_efficient_loading", True), where)
    else:
        deepspeed = config.deepspeed_config or {}
        problem = deepspeed_problem(deepspeed.get("zero_stage", 2), [], where) if "zero_stage" in deepspeed else None
    if problem:
        raise RecipeError(problem)


def check_machine(processes: int, config, config_path: str | None) -> None:
    """RecipeError when this machine cannot run `processes` processes: one per CUDA GPU, or per CPU core."""
    import torch

    machines = max(int(getattr(config, "num_machines", 1) or 1), 1)
    local = max(processes // machines, 1)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config is not None and str(getattr(config.distributed_type, "value", "")) == "MULTI_GPU" and not gpus:
        raise RecipeError(f"--accelerate-config {config_path}: distributed_type MULTI_GPU needs CUDA GPUs and this "
                          f"machine has none; on CPUs leave the config out (--processes N)")
    if gpus:
        if local > gpus:
            raise RecipeError(f"--processes {processes}: {local} processes on this machine, which has {gpus} CUDA "
                              f"GPU(s); one process per GPU: at most --processes {gpus * machines}")
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if local > cores:
        raise RecipeError(f"--processes {processes}: this machine has {cores} CPU core(s) and no CUDA GPU; more "
                          f"processes than cores only slow training down: at most --processes {cores}")


def child_argv(args) -> list[str]:
    """The `tunesmith train ...` arguments each rank runs: the user's, without the launch options."""
    argv = ["train", args.recipe]
    for override in args.overrides:
        argv += ["--set", override]
    argv += ["--output", args.output] if args.output else []
    argv += ["--resume"] if args.resume else []
    argv += ["--overwrite"] if args.overwrite else []
    return argv


def launcher_argv(args, processes: int) -> list[str]:
    """`accelerate launch` arguments: the config's settings, else one machine, N processes, any free port."""
    if args.accelerate_config:
        options = ["--config_file", args.accelerate_config]
    else:
        options = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "0"]
    return [*options, "--num_processes", str(processes), "-m", "tunesmith", *child_argv(args)]


def launch(args, argv: list[str], processes: int) -> int:
    """Run the training in `processes` processes; the run's exit status (module doc)."""
    from tunesmith.train.distributed import die_with_parent

    with tempfile.TemporaryDirectory(prefix="tunesmith-exit-") as exit_dir:
        env = dict(os.environ)
        env.update({EXIT_DIR: exit_dir, LAUNCHER_PID: str(os.getpid()),
                    COMMAND: shlex.join(["tunesmith", *argv])})
        env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_S)
        env.setdefault("OMP_NUM_THREADS", str(threads_per_process(processes)))
        command = [sys.executable, "-m", "tunesmith.cli.accelerate_launch", *launcher_argv(args, processes)]
        launcher = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_parent)
        received: list[int] = []

        def forward(signum, frame):  # once each: the launcher passes it on to every rank
            if signum not in received:
                received.append(signum)
                with contextlib.suppress(ProcessLookupError):
                    launcher.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = launcher.wait()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return run_status(Path(exit_dir), code, received)


def threads_per_process(processes: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(processes, 1))


def run_status(exit_dir: Path, launcher_code: int, received: list[int]) -> int:
    """Rank 0's exit status if it failed, else the first failing rank's, else the launcher's (a signal it
    died of, or that this process passed on, as 128 + the signal number)."""
    statuses = {}
    for path in exit_dir.glob("rank-*"):
        with contextlib.suppress(OSError, ValueError):
            statuses[int(path.name.removeprefix("rank-"))] = int(path.read_text().strip())
    failed = [code for _, code in sorted(statuses.items()) if code]
    if failed:
        return failed[0]  # rank 0 sorts first
    if launcher_code == 0:
        return 0
    if received:
        return 128 + received[0]
    return launcher_code if launcher_code > 0 else 128 - launcher_code


def record_exit(code: int) -> None:
    """A rank started by `--processes`: write its exit status for the process that launched it."""
    directory = os.environ.get(EXIT_DIR)
    if directory:
        with contextlib.suppress(OSError):
            Path(directory, f"rank-{os.environ.get('RANK', '0')}").write_text(f"{code}\n")


def resume_hint(argv: list[str], world_size: int) -> str:
    """The command that continues an interrupted run: the user's own (`--processes` included) plus --resume."""
    command = os.environ.get(COMMAND)
    words = shlex.split(command) if command else ["tunesmith", *argv]
    hint = shlex.join([*words, *([] if "--resume" in words else ["--resume"])])
    if world_size > 1 and not command:
        hint += f" (launched the same way, in {world_size} processes)"
    return hint
