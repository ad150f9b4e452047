# Two commands do all set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# tensorflow-cpu here; `make TF_EXTRA=gpu ...` installs tensorflow[and-cuda] instead.
TF_EXTRA ?= cpu

.PHONY: demo test lint data clean

$(STAMP): setup.py constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian install it with: apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(TF_EXTRA),test]'
	@touch $(STAMP)

# The real Fashion-MNIST files from Debian's package, where apt can install them.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null \
	  || echo "note: could not install dataset-fashion-mnist; see README.md (Data)"; \
	else echo "note: run 'sudo apt-get install dataset-fashion-mnist' for the offline Fashion-MNIST files"; fi

# Trains a small EfficientNetV2 on the real Fashion-MNIST offline (about 7 minutes on 2 CPU
# cores), evaluating after each epoch; leaves checkpoints, log.csv and curves.png in runs/demo.
# Rerunning resumes (or, when finished, re-evaluates); `rm -rf runs/demo` starts afresh.
demo: $(STAMP) data
	$(BIN)/python main.py --mode=traineval --model_name=custom \
	  --dataset_cfg=fashion_mnist --config_file=hparams/demo.yaml --model_dir=runs/demo

# Test files run in parallel (pytest-xdist), one file per worker at a time so that each file's
# shared fixtures are built once; TEST_WORKERS=1 runs them one after another.
TEST_WORKERS ?= 2
test: $(STAMP) data
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# ruff and mypy (from the test extra), configured in pyproject.toml: mypy fails the lint only
# on an import it cannot resolve (it does not enforce types).
lint: $(STAMP)
	$(BIN)/ruff check .
	@$(BIN)/mypy > $(VENV)/mypy.txt 2>&1; \
	  if grep "import-not-found" $(VENV)/mypy.txt; then echo "lint: unresolved imports (above)"; exit 1; \
	  else echo "mypy: every import resolves"; fi

clean:
	rm -rf $(VENV) build *.egg-info
