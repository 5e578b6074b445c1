# hear-gram: `make demo` sets up and runs the demo, `make test` runs the tests.
# Both create .venv when it is missing. Every pip call uses constraints.txt (exact torch pin).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
WORK ?= work

.PHONY: install test test-fast lint demo bench validate naturalistic-hear naturalistic-hear-bench localization pretrain-demo pretrain-report clean-work

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt requirements-hear.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-hear.txt
	$(PIP) install -q -c constraints.txt --no-deps heareval==2021.1.3 hearvalidator==2021.0.2 torchaudio==2.11.0
	# slab only for its bundled MIT KEMAR HRTF data file (read without importing slab)
	$(PIP) install -q -c constraints.txt --no-deps slab==1.8.2
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check hear_gram naturalistic_hear localization_tasks tests
	$(VENV)/bin/ruff format --check hear_gram naturalistic_hear localization_tasks tests

demo: install
	$(PY) -m hear_gram.demo --work $(WORK)/demo

bench: install
	$(PY) -m hear_gram.bench --out $(WORK)/bench/bench.json

# hear-validator on all five modules with full-depth random weights (released layout)
validate: install
	mkdir -p $(WORK)/validate
	for m in gram-t gram-t-time gram-t-ambisonic gram-m; do \
	  $(PY) -m hear_gram.checkpoints random --model $$m --out $(WORK)/validate/$$m.safetensors || exit 1; done
	$(VENV)/bin/hear-validator hear_gram -m $(WORK)/validate/gram-t.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t -m $(WORK)/validate/gram-t.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t_time -m $(WORK)/validate/gram-t-time.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t_ambisonic -m $(WORK)/validate/gram-t-ambisonic.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_m -m $(WORK)/validate/gram-m.safetensors -d cpu

# Nat-HEAR: re-render HEAR tasks as naturalistic scenes (REFERENCE §5).
# make naturalistic-hear TASKS=/data/hear/tasks OUT=/data/nat-hear FORMAT=binaural [WORKERS=2] [SEED=0]
TASKS ?= tasks
OUT ?= $(WORK)/nat-hear
FORMAT ?= binaural
WORKERS ?= 2
SEED ?= 0
naturalistic-hear: install
	$(PY) -m naturalistic_hear --tasks-dir $(TASKS) --out $(OUT)/$(FORMAT) --format $(FORMAT) \
	  --workers $(WORKERS) --seed $(SEED)

# clips per second and scene-bank build time on an ESC-50-sized task (2000 x 5 s)
naturalistic-hear-bench: install
	$(PY) -m naturalistic_hear.bench

# Localization and T60 tasks (REFERENCE §5) from ESC-50 and Speech Commands 5h under TASKS, scored
# with the DSP baselines, chance and GRAM-T (give weights: GRAM_T=... GRAM_T_AMBISONIC=...)
GRAM_T ?=
GRAM_T_AMBISONIC ?=
localization: install
	$(PY) -m localization_tasks.suite --tasks-dir $(TASKS) --work $(WORK)/localization \
	  $(if $(GRAM_T),--gram-t $(GRAM_T)) $(if $(GRAM_T_AMBISONIC),--gram-t-ambisonic $(GRAM_T_AMBISONIC))

# GRAM pretraining at demo scale on CPU: a small GRAM-T on an offline corpus, scenes from a
# 1000-scene train-pool bank (rendered once, ~2 min on 2 cores); ~11-13 min on 2 quiet cores
pretrain-demo: install
	$(PY) -m hear_gram.pretrain --config demo-cpu out_dir=$(WORK)/pretrain/demo-cpu bank_dir=$(WORK)/pretrain/banks

# Naturalistic vs clean (lambda 1) vs random init at demo scale, 3 seeds each, through the HEAR
# tools: writes $(WORK)/pretrain-report/REPORT.md + figures. Trains the 6 runs first when missing
# (~9 min each on 2 quiet cores), reuses finished ones. REPORT_ARGS: e.g. --seeds 2 --no-classification
pretrain-report: install
	$(PY) -m hear_gram.pretrain.report --work $(WORK)/pretrain-report --run-dir $(WORK)/pretrain/demo-cpu $(REPORT_ARGS)

clean-work:
	rm -rf $(WORK)
