"""Loading what to serve (a run of a predicting or generating task, or an export directory) and running
uvicorn: in the foreground (`tunesmith serve`) or on a background thread (tests, benchmarks/serve_load.py)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path

from tunesmith.artifacts import RunDir
from tunesmith.errors import RecipeError, RunError
from tunesmith.models.exported import is_export_dir
from tunesmith.recipes.predict import read_run_recipe

LOCAL_HOSTS = {"localhost"}


def is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, api_key: str | None) -> None:
    """Serving beyond this machine needs an API key."""
    if not is_local(host) and not api_key:
        raise RecipeError(f"--host {host} serves other machines: give --api-key KEY (or set TUNESMITH_API_KEY), "
                          f"or serve on 127.0.0.1")


def check_port(host: str, port: int) -> None:
    """The address can be listened on (before the model loads: a taken port is one line, not a late log)."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind((host, port))
    except OSError as exc:
        raise RecipeError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def load_service(path, *, name: str | None = None):
    """A PredictService or GenerateService for a run or export directory (the model loaded)."""
    from tunesmith.tasks import make_task

    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run or export directory")
    name = name or (path.name if path.name not in ("", ".") else path.resolve().name)
    if not is_export_dir(path) and make_task(read_run_recipe(RunDir(path))).inference == "generate":
        from tunesmith.recipes.generate import TrainedLM
        from tunesmith.serve.generator import GenerateService

        return GenerateService(TrainedLM(path), name)
    from tunesmith.recipes.predict import TrainedRun
    from tunesmith.serve.predictor import PredictService

    return PredictService(TrainedRun(path), name)


def uvicorn_server(app, host: str, port: int, log_level: str = "info"):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "info",
                            timeout_graceful_shutdown=5, lifespan="on")
    return uvicorn.Server(config)


class BackgroundServer:
    """uvicorn on a daemon thread: `with BackgroundServer(app) as server: server.url` (port 0: a free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.server = uvicorn_server(app, host, port, log_level)
        self.thread = threading.Thread(target=self.server.run, name="tunesmith-serve", daemon=True)
        self.host = host
        self.port = None

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RunError(f"the server did not start on {self.host}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
