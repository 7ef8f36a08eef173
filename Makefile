# The two commands of the README. Both set up .venv first (torch's CPU build before anything
# else, so no dependency pulls a multi-GB CUDA build), then do their job.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch 2.13.0 is the CPU build on this project's machines; elsewhere, e.g.
#   make TORCH="torch --index-url https://download.pytorch.org/whl/cpu" test
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/tollgate demo --dir tollgate-demo

# the dashboard's browser tests drive Debian's chromium (Playwright's own browser download is not used)
test: setup
	$(VENV)/bin/ruff check .
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder

lint: setup
	$(VENV)/bin/ruff check .

# the benchmarks (bench/, run by hand: under 20 minutes; `$(PY) bench/run_all.py --smoke` checks them in seconds)
.PHONY: bench
bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) tollgate-demo .pytest_cache .ruff_cache
