# The two entry points of a fresh machine: `make demo` and `make test`.
# Both install what they need: Debian packages (hack/install-deps.sh), the testbed's
# Go-built binaries (hack/testbed.sh build, cached outside the repo) and the Python venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

FAULT ?=

.PHONY: setup deps testbed lint unit test demo crd lock clean

# Two distributions: the product (the operator's wheel and image) and the lab (testbed, simulator,
# demo; development only), both editable.
# The runtime dependencies come from requirements.lock, hash-checked, as in the image: the tests
# run on exactly what ships.
$(VENV)/.installed: pyproject.toml lab/pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q -e '.[test,dev]' -e ./lab
	touch $@

# Re-pin the runtime dependencies (after a change to [project].dependencies, or to take updates).
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet --custom-compile-command 'make lock' -o requirements.lock

setup: $(VENV)/.installed

deps:
	bash hack/install-deps.sh

testbed: deps
	bash hack/testbed.sh build

lint: setup
	$(VENV)/bin/ruff check operator lab tests bench
	$(VENV)/bin/ruff format --check operator lab tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

unit: setup
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

test: setup testbed lint
	. hack/testbed-env.sh && $(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup testbed
	. hack/testbed-env.sh && $(VENV)/bin/checkout-gates demo $(if $(FAULT),--fault $(FAULT))

crd: setup
	$(VENV)/bin/checkout-gates crd > crds/checkoutrollouts.gates.checkout.dev.yaml
	$(VENV)/bin/checkout-gates crd --freeze > crds/checkoutfreezes.gates.checkout.dev.yaml
	cp crds/checkoutrollouts.gates.checkout.dev.yaml crds/checkoutfreezes.gates.checkout.dev.yaml charts/checkout-gates/crds/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
