# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
APT_PACKAGES := ffmpeg

.PHONY: demo test install system-deps bench clean

# The virtual environment, with the package and its pinned dependencies. Rebuilt when the pins change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian packages the tests use (ffmpeg's ffprobe checks that generated files are standard media).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The main job on the embedded synthetic cohort.
demo: $(VENV)/.installed
	$(VENV)/bin/symptomfuse synth --out $(DEMO_OUT)/cohort --people 48 --seed 0
	$(VENV)/bin/symptomfuse curate $(DEMO_OUT)/cohort/manifest.csv --out $(DEMO_OUT)/curated --labels healthy,parkinsons

test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/curate_bench.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
