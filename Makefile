# kembar — the two commands of the README, and the benchmarks.
# Each target sets up what it needs itself (Debian packages, a venv), idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEB_PACKAGES := python3-venv python3-dev gcc iproute2 e2fsprogs util-linux fuse3 libfuse3-dev pkg-config fio nftables iputils-ping iputils-arping curl chromium chromium-driver

# Run by the lab on its nodes, not on this machine: the original (Heartbeat, beside kembar in
# `kembar lab experiment failover --against heartbeat`) and the LAMP stack (`kembar lab up
# --stack lamp`).  Installed without starting their services here (a policy-rc.d that
# refuses, for the install only, unless the machine has one already).
LAB_PACKAGES := heartbeat kmod apache2 libapache2-mod-php php-mysql mariadb-server mariadb-client
# Only for `make bench` (a peer measured beside kembar), installed the same way.
BENCH_PACKAGES := keepalived

# $(call quiet_install,PACKAGES): apt-get install the missing ones, their services not started
define quiet_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (services not started):$$missing"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
	fi
endef

setup: $(STAMP)

# The package: dist/kembar-<version>-py3-none-any.whl, with the console command `kembar`
# (docs/install.md installs it on two servers; `make test` builds it and tests it).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL   := dist/kembar-$(VERSION)-py3-none-any.whl
wheel:
	@test -x $(PY) || $(MAKE) --no-print-directory setup
	@rm -rf build dist/kembar-*.whl  # build/: setuptools would pack stale modules from it
	@$(PY) -m pip wheel -q --no-deps -w dist . >/dev/null
	@echo "built $(WHEEL)"

deb:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml | deb
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

test: deb lab-deb $(STAMP) wheel
	$(PY) -m mypy --no-error-summary
	KEMBAR_WHEEL=$(WHEEL) $(PY) -m pytest -q

demo: deb lab-deb $(STAMP)
	$(PY) -m kembar.demo

lab-deb:
	$(call quiet_install,$(LAB_PACKAGES))

bench-deb:
	$(call quiet_install,$(BENCH_PACKAGES))

bench: deb lab-deb bench-deb $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .hypothesis
