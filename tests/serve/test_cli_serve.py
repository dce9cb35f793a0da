"""`tunesmith serve` on the command line: bad arguments are one line and exit 2 before any model loads; a real
server process answers and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve_helpers import request
from tunesmith.cli import main

REPO = Path(__file__).resolve().parents[2]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_another_host_needs_an_api_key(classifier_run, capsys, monkeypatch):
    monkeypatch.delenv("TUNESMITH_API_KEY", raising=False)
    assert main(["serve", str(classifier_run), "--host", "0.0.0.0"]) == 2
    assert one_error_line(capsys) == ("error: --host 0.0.0.0 serves other machines: give --api-key KEY (or set "
                                      "TUNESMITH_API_KEY), or serve on 127.0.0.1")


def test_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"error: {tmp_path}: recipe.yaml is missing; is this a tunesmith run directory?"
    assert main(["serve", str(tmp_path / "absent")]) == 2
    assert one_error_line(capsys) == f"error: {tmp_path / 'absent'}: no such run or export directory"


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tmp_path), "--port", str(port)]) == 2  # tmp_path is no run: never reached
    assert one_error_line(capsys) == f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"


@pytest.mark.parametrize("argv,message", [
    (["--port", "70000"], "argument --port: must be a port number from 0 to 65535 (got '70000')"),
    (["--max-batch-size", "0"], "argument --max-batch-size: must be a whole number >= 1 (got '0')"),
    (["--batch-window-ms", "-1"], "argument --batch-window-ms: must be a finite number >= 0 (got '-1')"),
])
def test_bad_numbers_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "run", *argv])
    assert exit_.value.code == 2 and message in one_error_line(capsys)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_serves_until_sigterm(classifier_run):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TUNESMITH_API_KEY": "s3cret"}
    process = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "serve", str(classifier_run), "--port",
                                str(port), "--model-name", "spam"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(f"http://127.0.0.1:{port}/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            time.sleep(0.2)
        status, body = request(f"http://127.0.0.1:{port}/v1/predict", {"texts": ["great wonderful film"]},
                               headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and body["model"] == "spam" and body["predictions"][0]["prediction"] == "pos"
        assert request(f"http://127.0.0.1:{port}/v1/predict", {"texts": ["x"]})[0] == 401  # the key from the env
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    # uvicorn shuts down gracefully, then ends by the signal it caught (as a process killed by SIGTERM does)
    assert process.returncode == -signal.SIGTERM and "Application shutdown complete" in err, err
    assert f"serving spam (classification) on http://127.0.0.1:{port}: POST /v1/predict" in out
    assert "API key required" in out and "Traceback" not in err
