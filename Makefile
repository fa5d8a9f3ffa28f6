# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-output

.PHONY: demo test install clean

install: $(STAMP)

# uv (from PyPI, into the venv) downloads and installs the wheels in parallel, where pip fetches
# them one after another: on a fresh machine that is most of `make demo`'s time. pip stays the
# fallback where no uv wheel installs.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.4' || echo "uv did not install: installing with pip"
	if [ -x $(VENV)/bin/uv ]; then \
		$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[all,bench,test]'; \
	else \
		$(PY) -m pip install --quiet -e '.[all,bench,test]'; \
	fi
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 tests src/pixelmill --doctest-modules

# The Gaussian is sigma 8, 49 x 49 (sigma alone would give 65 x 65, slower): a 5 x 5 one is
# invisible on a contact sheet's thumbnails of 2000-pixel photos. The last lines say where
# everything is and what the quick bench found.
demo: $(STAMP)
	$(VENV)/bin/pixelmill sample-library $(DEMO_DIR)/library --count 24 --max-pixels 4000000
	$(VENV)/bin/pixelmill run $(DEMO_DIR)/library -o $(DEMO_DIR)/results \
		--op invert --op gaussian:size=49,sigma=8 --op sobel --sheet
	$(VENV)/bin/pixelmill bench --quick -o $(DEMO_DIR)/bench
	@echo
	@echo "Demo outputs: $(CURDIR)/$(DEMO_DIR)/results (one folder per operation, manifest.json, contact-sheet.png)"
	@echo "Benchmark:    $(CURDIR)/$(DEMO_DIR)/bench/report.md (plots, results.csv, results.json)"
	@$(PY) -c "import json, sys; t = json.load(open(sys.argv[1]))['targets']; \
		c = {k: sum(1 for x in t if x['status'] == k) for k in ('pass', 'miss', 'not measured')}; \
		print(f\"Quick bench: {c['pass']} of {len(t)} targets pass, {c['miss']} miss, {c['not measured']} not measured.\"); \
		print('A quick run (a 12-photo library, 1-2 MP images, few repeats) is only indicative: the targets are'); \
		print('judged on the full run (pixelmill bench -o DIR, about 45 minutes), whose results README.md gives.')" \
		$(DEMO_DIR)/bench/results.json

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
