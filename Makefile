# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
APT_PACKAGES := ffmpeg chromium chromium-driver iproute2

.PHONY: demo fsdd tasks uci real test install system-deps bench clean

# The virtual environment, with the package and its pinned dependencies. Rebuilt when the pins change.
# tools/install.py installs with uv (about 40 s on 2 cores; with pip's package sources on this machine), or
# with pip (1-3 minutes) where uv is not to be had. No download cache is kept outside .venv.
$(VENV)/.installed: pyproject.toml constraints.txt tools/install.py
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	if [ -n "$$avail" ] && [ "$$avail" -lt 3500000 ]; then \
	  echo "warning: $$((avail / 1024)) MB free here; the environment needs about 3 GB (2.6 GB installed, more while it unpacks)" >&2; \
	fi
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	$(PY) tools/install.py
	touch $@

install: $(VENV)/.installed

# The tests' own packages (the dev extra: pytest, selenium, Ray), which the demo does without.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) tools/install.py --dev
	touch $@

# Debian packages the tests use (ffmpeg's ffprobe checks that generated files are standard media; the browser
# test drives Debian's headless Chromium through chromedriver inside a network namespace made with iproute2).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

SF := $(VENV)/bin/symptomfuse

# The main job on the embedded synthetic cohort: data, every model, the evaluation report.
demo: $(VENV)/.installed
	$(SF) synth --out $(DEMO_OUT)/cohort --people 48 --seed 0
	$(SF) curate $(DEMO_OUT)/cohort/manifest.csv --out $(DEMO_OUT)/curated --labels healthy,parkinsons
	$(SF) train $(DEMO_OUT)/curated --out $(DEMO_OUT)/run --epochs 15 --patience 5 --fusion-epochs 20 \
	  --fusion-modalities audio,keypoints --baselines lr
	# The evaluation runs beside export and the live stream (export ranks the models from the predictions
	# itself), which saves about 10 s; its table is shown when the stream ends, and either failing fails.
	# Live: export the fold in which P001 was a test person, then stream one of P001's recordings in real time.
	@echo "evaluate: running beside export and stream; its table follows the stream"
	TQDM_DISABLE=1 $(SF) evaluate $(DEMO_OUT)/run > $(DEMO_OUT)/evaluate.log 2>&1 & evaluate=$$!; \
	  $(SF) export $(DEMO_OUT)/run --out $(DEMO_OUT)/model --person P001 && \
	  $(SF) stream $(DEMO_OUT)/cohort/recordings/P001_s1.mp4 --model $(DEMO_OUT)/model --realtime; \
	  live=$$?; wait $$evaluate; evaluated=$$?; echo; cat $(DEMO_OUT)/evaluate.log; \
	  test $$evaluated -eq 0 || echo "evaluate failed (above)" >&2; test $$live -eq 0 && test $$evaluated -eq 0

# Bring your own data: an audio-only, 10-class classifier on real speech (FSDD), split by speaker.
fsdd: $(VENV)/.installed
	$(SF) curate data/fsdd/manifest.csv --out $(DEMO_OUT)/fsdd_curated --modalities audio --window 1.0 \
	  --hop 0.5 --pad-short --label-scope recording
	$(SF) train $(DEMO_OUT)/fsdd_curated --out $(DEMO_OUT)/fsdd_run --modalities audio --fusion-modalities "" \
	  --folds 6 --epochs 25 --patience 5 --encoder-args '{"audio": {"peak_norm": true}}' --baselines lr
	$(SF) evaluate $(DEMO_OUT)/fsdd_run

# Fusion across separately recorded tasks: a voice recording and a hand recording per session, some people
# missing one task; each person's tasks fused (--unit person).
tasks: $(VENV)/.installed
	$(SF) synth --out $(DEMO_OUT)/tasks/cohort --people 48 --seed 0 --tasks separate
	$(SF) curate $(DEMO_OUT)/tasks/cohort/manifest.csv --out $(DEMO_OUT)/tasks/curated --labels healthy,parkinsons \
	  --modalities audio,keypoints
	$(SF) train $(DEMO_OUT)/tasks/curated --out $(DEMO_OUT)/tasks/run --unit person --epochs 15 --patience 5 \
	  --fusion-epochs 20 --baselines lr
	$(SF) evaluate $(DEMO_OUT)/tasks/run

# Bring your own table: UCI Parkinsons (real people), person-grouped, beside scikit-learn baselines and the leaky split.
uci: $(VENV)/.installed
	$(PY) benchmarks/real/uci_parkinsons.py

# Real people: UCI Parkinsons, UFNet speech + smile under the paper's split, finger tapping (about 8 minutes).
real: $(VENV)/.installed
	$(PY) benchmarks/real/uci_parkinsons.py
	$(PY) benchmarks/real/ufnet.py
	$(PY) benchmarks/real/finger_tapping.py
	$(PY) benchmarks/real/report.py --docs docs/img/real

# SYMPTOMFUSE_REQUIRE_BROWSER=1: the headless-Chromium test fails, rather than skips, when it cannot run.
test: $(VENV)/.installed-dev system-deps
	SYMPTOMFUSE_REQUIRE_BROWSER=1 $(PY) -m pytest -q --durations=15

# Every performance benchmark, each figure against its floor measured in the same run (11-17 minutes):
# benchmarks/results/all.json and all.md, the README's performance table.
bench: $(VENV)/.installed system-deps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
