# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-output

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,bench,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 tests src/pixelmill --doctest-modules

demo: $(STAMP)
	$(VENV)/bin/pixelmill sample-library $(DEMO_DIR)/library --count 24 --max-pixels 4000000
	$(VENV)/bin/pixelmill run $(DEMO_DIR)/library -o $(DEMO_DIR)/results \
		--op invert --op gaussian --op sobel --sheet
	$(VENV)/bin/pixelmill bench --quick -o $(DEMO_DIR)/bench
	@echo
	@echo "Demo outputs: $(CURDIR)/$(DEMO_DIR)/results (manifest.json, contact sheet)"
	@echo "Benchmark:    $(CURDIR)/$(DEMO_DIR)/bench/report.md (plots, results.csv, results.json)"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
