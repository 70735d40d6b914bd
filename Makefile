# `make run` and `make test` set up .venv on first use (Ray included: requirements-ray.txt)
# and reinstall only when the requirements change (the stamp file is older than them).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8501

.PHONY: run run-public dev test lint bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt requirements-ray.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-ray.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.port $(PORT)

# Reachable from other machines: no login, so visitors see short error messages only.
run-public: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.address 0.0.0.0 \
		--client.showErrorDetails type

# For people editing the code: reload the app when a file is saved.
dev: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.fileWatcherType auto \
		--server.runOnSave true

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The speed goals, measured side by side (minutes; not part of `make test`).
BENCHES := bench_profile_cache.py bench_vs_torchvision.py trainer_vs_textbook.py train_zoo.py
bench: $(STAMP)
	for b in $(BENCHES); do $(PY) benchmarks/$$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
