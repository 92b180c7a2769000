# Two commands a learner needs:  make lab   and   make test
# Both create the virtual environment on first use (python3 and make are all
# a fresh Debian machine needs) and reinstall when the dependencies change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: help install lab instructor lint test test-fast chromium postgresql redis lock bench learner site slides clean

help:
	@echo "make lab    - set up (first time) and open JupyterLab at lesson 00 (the learners' edition, learner/)"
	@echo "make instructor - JupyterLab on notebooks/ (committed outputs, for presenting)"
	@echo "make test   - set up (first time) and run every test: lint and types first, then unit, browser, notebooks"
	@echo "make lint   - ruff (lint) and mypy (types) only"
	@echo "make bench  - the benchmarks (mock API server, messaging transports, client framework, fleet on Redis, push gateway on PostgreSQL)"
	@echo "make learner - the learners' copy of the lessons in learner/ (no outputs, solutions hidden)"
	@echo "make site  - the course website in build/site/ (from the committed outputs; offline; open build/site/index.html)"
	@echo "make slides - one offline reveal.js deck per lesson in build/slides/ (from the committed outputs)"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; we never
# download a browser of Playwright's own).
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "Installing Debian's chromium for the browser tests..."; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) && $(CHROMIUM) --version

# Debian's PostgreSQL binaries for the messaging app's PostgreSQL tests: each
# test session runs a throwaway server of its own (initdb + pg_ctl in a temp
# folder, a free port). The package would also create and start a system
# cluster "main" on port 5432, which nothing here uses: the drop-in below
# tells postgresql-common not to create it, on first install.
PG_INITDB = $(wildcard /usr/lib/postgresql/*/bin/initdb)
postgresql:
	@test -n "$(PG_INITDB)" || { \
	  echo "Installing Debian's postgresql for the database tests (no system cluster)..."; \
	  $(SUDO) mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo "create_main_cluster = false" | \
	    $(SUDO) tee /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf >/dev/null && \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null && \
	  "$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/postgres" --version

# Debian's redis-server for the fleet tests (lesson 11): each test module and
# notebook runs a throwaway server of its own (course.redis_server: a free
# port, a temp folder, nothing saved). The package also installs a system
# service on port 6379, which nothing here uses: it is disabled and stopped.
redis:
	@test -x /usr/bin/redis-server || { \
	  echo "Installing Debian's redis-server for the fleet tests (no system service)..."; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null && \
	  { $(SUDO) systemctl disable --now redis-server >/dev/null 2>&1 || true; }; }
	@/usr/bin/redis-server --version

# JupyterLab at the repository root (so the lessons' links to ../README.md
# work). `make lab` opens the learners' edition, learner/ (no outputs; it adds
# lessons that are missing and never overwrites one, which may hold your
# work); `make instructor` opens notebooks/ (committed outputs; every
# exercise's hint() and solution() ready to call). As root (a container)
# Jupyter needs --allow-root. Kernels get CurveZMQ keys (transport_encryption):
# without them ipykernel warns at every start that it runs over plain TCP.
LAB_ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
LAB = $(BIN)/jupyter lab $(LAB_ROOT_FLAG) --ServerApp.root_dir=. --ServerApp.ip=127.0.0.1 \
	--MappingKernelManager.transport_encryption=auto

lab: $(STAMP)
	$(BIN)/python tools/nbtool.py learner --out learner --keep-existing
	$(LAB) --LabApp.default_url=/lab/tree/learner/00_start_here.ipynb

instructor: $(STAMP)
	$(LAB) --LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb

# The lint and type gate (configured in pyproject.toml); make test runs it first.
lint: $(STAMP)
	$(BIN)/ruff check course server tools tests docs
	$(BIN)/mypy

test: lint chromium postgresql redis
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the notebooks (quicker while developing).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(STAMP) postgresql redis
	$(BIN)/python -m course.benchmarks.mockapi
	$(BIN)/python -m course.benchmarks.messaging
	$(BIN)/python -m course.bench
	$(BIN)/python -m course.benchmarks.fleet
	$(BIN)/python -m course.benchmarks.push

# The learners' copy of the lessons, to hand out: learner/ (not committed).
learner: $(STAMP)
	$(BIN)/python tools/nbtool.py learner --out learner

# The course website in build/site/: the README, every lesson with its
# committed outputs (nothing is executed), the references (docs/site.md).
# Built afresh each time, warnings as errors, with no network needed.
site: $(STAMP)
	rm -rf build/site build/.site-doctrees
	$(BIN)/python -m sphinx -b html -c docs -W --keep-going -q -d build/.site-doctrees . build/site
	@echo "The site is in build/site/: open build/site/index.html"

# One reveal.js deck per lesson, build/slides/NN_name.slides.html (open
# build/slides/index.html), from the committed outputs: nothing is executed and
# nothing is downloaded (reveal.js is vendored in slides/vendor/reveal.js;
# `python tools/slides.py vendor` refreshes it from npm at the pinned version).
slides: $(STAMP)
	$(BIN)/python tools/slides.py build --out build/slides

# Re-pin requirements.lock after changing pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 \
	  --no-header --annotation-style line -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info learner
