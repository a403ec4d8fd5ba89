# ec2hub: `make up` runs the platform on the local cloud, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up airflow test install install-test system-packages system-packages-test lint clean

# Everything installs into the repository: .venv for Python, node_modules for the proxy.
# The local cloud boots its instances from this venv, so it also carries the user environment (the
# "AMI"): the same pinned requirements the real AMI and the user image install.
# Less than pip installs: what the environment is better without (slow-imports.txt says why).
SLOW_IMPORTS = $(shell grep -v '^\#' images/user/slow-imports.txt)
$(VENV)/.installed: pyproject.toml images/user/requirements.txt images/user/slow-imports.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[local]' -r images/user/requirements.txt
	$(VENV)/bin/pip uninstall --quiet --yes $(SLOW_IMPORTS)
	touch $@

# The local cloud's instances boot a thin venv over .venv whose users' own packages (`pip install
# --user`, `%pip install`) land in their homes, as on the AMI (localcloud/ami.py).
$(VENV)/ami/.built: $(VENV)/.installed localcloud/ami.py
	$(PY) -m localcloud.ami

# JupyterLab's settings that the hub decides for every user (no question about Jupyter news): the
# same file the user image and the AMI install. Copied on its own, so a change to it reinstalls nothing.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): images/user/overrides.json
	install -D -m 0644 $< $@

# What the session costs, in JupyterLab's status bar (images/labextension): a prebuilt extension built
# from npm packages locked to this JupyterLab's, copied where JupyterLab finds prebuilt extensions (the
# local cloud's instances see .venv's share through .venv/ami). The AMI and the user image build it alike.
LAB_COSTS_SRC := images/labextension
LAB_COSTS := $(VENV)/share/jupyter/labextensions/@ec2hub/costs
$(LAB_COSTS_SRC)/node_modules/.installed: $(LAB_COSTS_SRC)/package.json $(LAB_COSTS_SRC)/package-lock.json
	cd $(LAB_COSTS_SRC) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(LAB_COSTS)/package.json: $(LAB_COSTS_SRC)/node_modules/.installed $(wildcard $(LAB_COSTS_SRC)/src/*.js) \
		$(wildcard $(LAB_COSTS_SRC)/style/*.css) | $(VENV)/.installed
	rm -rf $(LAB_COSTS_SRC)/dist $(LAB_COSTS)
	cd $(LAB_COSTS_SRC) && npm run --silent build
	install -d $(LAB_COSTS) && cp -r $(LAB_COSTS_SRC)/dist/. $(LAB_COSTS)/

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# checkov (Terraform checks) pins boto3 below the project's, so it gets a venv of its own.
CHECKOV_VERSION := 3.3.30
.venv-checkov/.installed:
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# Apache Airflow (pipelines/: the ec2hub provider) pins what clashes with the hub's venv, so it gets a venv
# of its own, installed from a lock (Airflow's published constraints are not reachable from here:
# pipelines/requirements-airflow.txt says how it was made), then the provider itself.
.venv-airflow/.installed: pipelines/requirements-airflow.txt pipelines/pyproject.toml
	$(PYTHON) -m venv .venv-airflow
	.venv-airflow/bin/pip install --quiet --upgrade pip
	.venv-airflow/bin/pip install --quiet -r pipelines/requirements-airflow.txt
	.venv-airflow/bin/pip install --quiet --no-deps -e pipelines
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# s3fs-fuse mounts users' S3 folders on the instances, Graphviz draws Dask's task graphs, git serves
# JupyterLab's Git panel (Debian packages; installed when root).
system-packages:
	@{ command -v s3fs && command -v dot && command -v git; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs graphviz git >/dev/null; \
	  else \
	    echo "missing: s3fs, graphviz or git (apt-get install s3fs graphviz git): no ~/s3 mount, task graphs or Git panel"; \
	  fi; }

# The browser tests drive Debian's chromium (never a browser downloaded by a test tool).
# The LDAP tests run their own slapd: the package is told to create no directory of its own, so the
# system slapd service has nothing to serve and never needs to run.
system-packages-test: system-packages
	@command -v chromium >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v packer >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq packer >/dev/null; }
	@{ [ -x /usr/sbin/slapd ] && command -v ldapsearch >/dev/null; } || { \
	  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections && \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null; }

install: system-packages $(VENV)/.installed $(VENV)/ami/.built $(LAB_OVERRIDES) $(LAB_COSTS)/package.json node_modules/.installed

install-test: install system-packages-test $(VENV)/.installed-test .venv-checkov/.installed .venv-airflow/.installed

up: install
	$(PY) -m localcloud.up

# Apache Airflow standalone beside `make up` (run that first, in another terminal), with the WISDM
# pipeline and its connection to the hub made for the admin (localcloud/airflow.py).
airflow: install .venv-airflow/.installed
	$(PY) -m localcloud.airflow

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest on three workers (pytest-xdist), each taking whole test modules (a module's stack is its own):
# a stack spends most of its time waiting on boots and kernels, so three share two cores well.
test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 3 --dist loadfile
	.venv-airflow/bin/python -m pytest pipelines/tests

clean:
	rm -rf $(VENV) node_modules $(LAB_COSTS_SRC)/node_modules $(LAB_COSTS_SRC)/dist
