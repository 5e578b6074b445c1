# hear-gram: `make demo` sets up and runs the demo, `make test` runs the tests.
# Both create .venv when it is missing. Every pip call uses constraints.txt (exact torch pin).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
WORK ?= work

.PHONY: install test test-fast lint demo suite bench bench-suite bench-resample validate naturalistic-hear naturalistic-hear-bench localization seld pretrain-demo pretrain-report gpu-check clean-work

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt requirements-hear.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-hear.txt
	$(PIP) install -q -c constraints.txt --no-deps heareval==2021.1.3 hearvalidator==2021.0.2 torchaudio==2.11.0
	# slab only for its bundled MIT KEMAR HRTF data file (read without importing slab)
	$(PIP) install -q -c constraints.txt --no-deps slab==1.8.2
	# the X-ARES and MTEB adapters' extras: their tests run in make test, never skipped
	$(PIP) install -q -c constraints.txt -e ".[dev,xares,mteb]"
	touch $(STAMP)

# the tests in TEST_JOBS processes (pytest-xdist; 2 = the cores CI and our machines have)
TEST_JOBS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_JOBS)

test-fast: install
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow"

# ruff, and the import layers of .importlinter (import-linter's lint-imports)
lint: install
	$(VENV)/bin/lint-imports .importlinter
	$(VENV)/bin/ruff check hear_gram naturalistic_hear localization_tasks tests
	$(VENV)/bin/ruff format --check hear_gram naturalistic_hear localization_tasks tests

# a small hear_gram.suite run on synthetic tasks (< 200 lines of output; logs under WORK/demo/suite)
demo: install
	$(PY) -m hear_gram.demo --out $(WORK)/demo

bench: install
	$(PY) -m hear_gram.bench --out $(WORK)/bench/bench.json

# wall time and disk per phase of a small suite run (synthetic tasks, random 2-layer GRAM-T; dry +
# nat-binaural + localization, binaural only), per-unit overhead; set-up and run in WORK/bench/suite/
bench-suite: install
	$(PY) -m hear_gram.bench_suite --out $(WORK)/bench/suite.json

# time, peak RSS and 1 kHz-sine SNR of resampling 1 s of audio, HEAR rates and coprime pairs
bench-resample: install
	$(PY) -m hear_gram.bench --resample --out $(WORK)/bench/resample.json

# hear-validator on all five modules with full-depth random weights (released layout)
validate: install
	mkdir -p $(WORK)/validate
	for m in gram-t gram-t-time gram-t-ambisonic gram-m; do \
	  $(PY) -m hear_gram.checkpoints random --preset $$m --out $(WORK)/validate/$$m.safetensors || exit 1; done
	$(VENV)/bin/hear-validator hear_gram -m $(WORK)/validate/gram-t.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t -m $(WORK)/validate/gram-t.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t_time -m $(WORK)/validate/gram-t-time.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_t_ambisonic -m $(WORK)/validate/gram-t-ambisonic.safetensors -d cpu
	$(VENV)/bin/hear-validator hear_gram.gram_m -m $(WORK)/validate/gram-m.safetensors -d cpu

# Nat-HEAR: re-render HEAR tasks as naturalistic scenes (arXiv 2506.00934, scene simulation).
# make naturalistic-hear TASKS=/data/hear/tasks OUT=/data/nat-hear FORMAT=binaural [WORKERS=2] [SEED=0]
TASKS ?= tasks
OUT ?= $(WORK)/nat-hear
FORMAT ?= binaural
WORKERS ?= 2
SEED ?= 0
naturalistic-hear: install
	$(PY) -m naturalistic_hear --tasks-dir $(TASKS) --out $(OUT)/$(FORMAT) --format $(FORMAT) \
	  --jobs $(WORKERS) --seed $(SEED)

# clips per second and scene-bank build time on an ESC-50-sized task (2000 x 5 s)
naturalistic-hear-bench: install
	$(PY) -m naturalistic_hear.bench

# Localization and T60 tasks (arXiv 2506.00934, scene simulation) from ESC-50 and Speech Commands 5h under TASKS, scored
# with the DSP baselines, chance and GRAM-T (give weights: GRAM_T=... GRAM_T_AMBISONIC=...; CLS
# pooling): a suite run (conditions localization and t60) on the models file it writes to
# $(WORK)/localization/models.toml; report in $(WORK)/localization/report/. LOCALIZATION_ARGS: e.g. --jobs 2
GRAM_T ?=
GRAM_T_AMBISONIC ?=
LOCALIZATION_ARGS ?=
localization: install
	mkdir -p $(WORK)/localization
	printf '%s\n' '[[model]]' 'name = "dsp"' 'module = "localization_tasks.baselines.gcc_phat"' \
	  'formats = ["binaural", "ambisonic"]' '[model.ambisonic]' \
	  'module = "localization_tasks.baselines.intensity_vector"' \
	  '[[model]]' 'name = "chance"' 'module = "chance"' > $(WORK)/localization/models.toml
	$(if $(GRAM_T),printf '%s\n' '[[model]]' 'name = "gram-t"' 'module = "hear_gram.gram_t"' \
	  'weights = "$(abspath $(GRAM_T))"' 'formats = ["binaural"]' '[model.options]' \
	  'strategy = "cls"' 'precision = "bf16"' >> $(WORK)/localization/models.toml)
	$(if $(GRAM_T_AMBISONIC),printf '%s\n' '[[model]]' 'name = "gram-t-ambisonic"' \
	  'module = "hear_gram.gram_t_ambisonic"' 'weights = "$(abspath $(GRAM_T_AMBISONIC))"' \
	  'formats = ["ambisonic"]' '[model.options]' 'strategy = "cls"' 'precision = "bf16"' \
	  >> $(WORK)/localization/models.toml)
	$(PY) -m hear_gram.suite --models $(WORK)/localization/models.toml --tasks-dir $(TASKS) \
	  --out $(WORK)/localization --conditions localization,t60 $(LOCALIZATION_ARGS)

# SELD: a suite run of the conditions seld-ambisonic and seld-binaural on two synthetic 3-fold
# tasks (FOA and binaural, SELD_CLIPS clips per fold, 1-2 overlapping events of the built-in
# toy classes, distances in the labels), scored with the DCASE 2024 metrics (binaural: DCASE 2025
# stereo) for chance, the classical reference (intensity vectors on FOA, GCC-PHAT on binaural),
# the zero predictor, a SELDnet-style CRNN and GRAM-T with a BiGRU head: Ambisonic on FOA,
# binaural on binaural (GRAM_T_AMBISONIC=... / GRAM_T=...; random weights when not given), each
# trained row over SELD_SEEDS seeds (mean +- sd). Models file $(WORK)/seld/models.toml; report in
# $(WORK)/seld/report/. SELD_ARGS: more suite options, e.g. --seld-epochs 10 --jobs 2; or
# SELD_ARGS="--seld-source esc50-v2.0.0-full" TASKS=... for tasks built from a HEAR task's sounds.
SELD_CLIPS ?= 20
SELD_SEEDS ?= 3
SELD_ARGS ?=
SELD_TASKS = $(WORK)/seld/tasks-$(SELD_CLIPS)
seld: install
	mkdir -p $(WORK)/seld
	$(PY) -m localization_tasks.seld.synth --out $(SELD_TASKS) --format ambisonic --clips-per-fold $(SELD_CLIPS) --extra-rate 32000 --quiet
	$(PY) -m localization_tasks.seld.synth --out $(SELD_TASKS) --format binaural --clips-per-fold $(SELD_CLIPS) --extra-rate 32000 --quiet
	$(if $(GRAM_T_AMBISONIC),,test -f $(WORK)/seld/gram-t-ambisonic-random.safetensors || $(PY) -m hear_gram.checkpoints random --preset gram-t-ambisonic --out $(WORK)/seld/gram-t-ambisonic-random.safetensors)
	$(if $(GRAM_T),,test -f $(WORK)/seld/gram-t-random.safetensors || $(PY) -m hear_gram.checkpoints random --preset gram-t --out $(WORK)/seld/gram-t-random.safetensors)
	printf '%s\n' '[[model]]' 'name = "chance"' 'module = "chance"' 'formats = ["ambisonic", "binaural"]' \
	  '[[model]]' 'name = "reference"' 'module = "reference"' 'formats = ["ambisonic", "binaural"]' \
	  '[[model]]' 'name = "zero"' 'module = "zero"' 'formats = ["ambisonic", "binaural"]' \
	  '[[model]]' 'name = "crnn"' 'module = "crnn"' 'formats = ["ambisonic", "binaural"]' \
	  '[[model]]' 'name = "gram-t-ambisonic"' 'module = "hear_gram.gram_t_ambisonic"' \
	  'weights = "$(abspath $(or $(GRAM_T_AMBISONIC),$(WORK)/seld/gram-t-ambisonic-random.safetensors))"' \
	  'formats = ["ambisonic"]' '[[model]]' 'name = "gram-t"' 'module = "hear_gram.gram_t"' \
	  'weights = "$(abspath $(or $(GRAM_T),$(WORK)/seld/gram-t-random.safetensors))"' \
	  'formats = ["binaural"]' > $(WORK)/seld/models.toml
	$(PY) -m hear_gram.suite --models $(WORK)/seld/models.toml --tasks-dir $(TASKS) \
	  --out $(WORK)/seld --conditions seld-ambisonic,seld-binaural --seld-dir $(SELD_TASKS) \
	  --seld-seeds $(SELD_SEEDS) $(SELD_ARGS)

# HEAR tasks to the paper's table (HEAR, Nat-HEAR, localization, T60) for the models of MODELS:
# make suite MODELS=models.toml TASKS=/data/hear/tasks [SUITE_ARGS="--jobs 4 --grid fast"]
# writes $(WORK)/suite/report/ (REPORT.md, results.csv, results.json, figures); reruns resume
MODELS ?= models.toml
SUITE_ARGS ?=
suite: install
	$(PY) -m hear_gram.suite --models $(MODELS) --tasks-dir $(TASKS) --out $(WORK)/suite $(SUITE_ARGS)

# GRAM pretraining at demo scale on CPU: a small GRAM-T on an offline corpus, scenes from a
# 1000-scene train-pool bank (rendered once, ~2 min on 2 cores); ~11-13 min on 2 quiet cores
pretrain-demo: install
	$(PY) -m hear_gram.pretrain --config demo-cpu out_dir=$(WORK)/pretrain/demo-cpu bank_dir=$(WORK)/pretrain/banks

# Naturalistic vs clean (lambda 1) vs random init at demo scale, 3 seeds each, through the HEAR
# tools: writes $(WORK)/pretrain-report/REPORT.md + figures. Trains the 6 runs first when missing
# (~9 min each on 2 quiet cores), reuses finished ones. REPORT_ARGS: e.g. --seeds 2 --no-classification
pretrain-report: install
	$(PY) -m hear_gram.pretrain.report --out $(WORK)/pretrain-report --run-dir $(WORK)/pretrain/demo-cpu $(REPORT_ARGS)

# GPU readiness on one CUDA device, about 8 min on an H100/H200, with the packages already there
# (no install step: a lent GPU machine may have no network): fused-vs-reference GRAM-M, embedding
# throughput fp32/bf16/fp16, paper-binaural pretraining steps at batch 96 in bf16 -> one JSON.
# DRY_RUN=1: the same script on the CPU at tiny sizes (< 1 min). GPU_PY: the interpreter to use.
DRY_RUN ?=
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) -m hear_gram.gpu_check \
	  --out $(WORK)/gpu-check/gpu-check.json $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

clean-work:
	rm -rf $(WORK)
