"""Helpers of the server tests: plain HTTP (urllib: no client library between the test and the wire) and training
a tiny run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune


def request(url: str, body=None, *, method: str | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON body) of one request; `body` is bytes as given, or JSON-encoded."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode("utf-8")
    sent = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=sent, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def quiet(*_args, **_kwargs):
    pass


def train(raw: dict) -> Path:
    """Train a recipe (no baselines, no report.html); its run directory."""
    raw["baselines"] = False
    raw.setdefault("report", {})["html"] = False
    finetune(validate_recipe(raw), echo=quiet)
    return Path(raw["output"])
