# make demo: install what is missing, build, serve a demo mailbox on 127.0.0.1:1110.
# make test: install what is missing, build, run every test (Swift units, then the
#            end-to-end suite against the built binaries with real clients).
# make sanitize: the Swift unit tests again under AddressSanitizer (make asan) and
#            ThreadSanitizer (make tsan), each in its own build folder.
# make fuzz: libFuzzer targets (Fuzz/, issue 16) built with the fuzzer and AddressSanitizer,
#            each run FUZZ_SECONDS seconds (default 60; FUZZ_TARGETS="fuzz-proxy ..." picks
#            some); fails on a crash, a sanitizer report, a hang or a broken invariant.
# make bench-sql: release build, then logins/s with users from PostgreSQL (Benchmarks/sql_logins.py,
#            as root; BENCH_ARGS="--runs 5").
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
# Every build enforces Package.swift's module table (ARCHITECTURE.md): a target that imports a
# module of this package it does not list as a dependency fails to build. SwiftPM's check is
# off unless asked for, and it accepts any target reachable through the dependencies;
# scripts/check_imports.py (check-imports, run before every build) holds each target to its
# direct dependencies, finds declared dependencies no file imports, and keeps the pure targets
# off Glibc.
SWIFT_BUILD_FLAGS := --explicit-target-dependency-import-check error
# Build and run-time needs.
# libpq-dev: the PostgreSQL client library for passdb=sql (issue 15). python3: the module
# table check (scripts/check_imports.py) before every build.
BUILD_PACKAGES := libsystemd-dev libssl-dev libcrypt-dev libpq-dev pkg-config openssl python3
# What the tests drive: real clients and real systemd tools; HAProxy and ip(8) for the
# two-host test in network namespaces (Tests/e2e/test_haproxy.py); Prometheus and promtool
# for the metrics endpoint (Tests/e2e/test_metrics.py).
TEST_PACKAGES := systemd curl mpop fetchmail getmail6 python3 haproxy iproute2 fail2ban prometheus mutt perl
# Dovecot beside pop3d on one Maildir (Tests/e2e/test_uidl_dovecot.py): dovecot-imapd, and
# dovecot-pop3d unpacked, not installed (DOVECOT_POP3_DIR), because Debian's courier-pop
# conflicts with it (both provide pop3-server) and installing one removes the other.
TEST_PACKAGES += dovecot-core dovecot-imapd
DOVECOT_POP3_DIR := /var/cache/pop3d-tests/dovecot-pop3d
# Courier's POP3 server, run by Tests/e2e/test_uidl_courier.py on the same Maildir as pop3d
# (issue 14): couriertcpd, authdaemond and userdb come from these packages; courier-pop
# itself conflicts with dovecot-pop3d (both are a "pop3-server"), so its package is not
# installed: `courier-pop` below unpacks it into .build/courier-pop (COURIER_POP_ROOT).
TEST_PACKAGES += courier-base courier-authdaemon courier-authlib-userdb
COURIER_POP_ROOT := .build/courier-pop
# Whether haproxy was installed before this run (read when make starts, before test-deps).
HAPROXY_WAS_INSTALLED := $(shell dpkg -s haproxy >/dev/null 2>&1 && echo yes)
FAIL2BAN_WAS_INSTALLED := $(shell dpkg -s fail2ban >/dev/null 2>&1 && echo yes)
PROMETHEUS_WAS_INSTALLED := $(shell dpkg -s prometheus >/dev/null 2>&1 && echo yes)
DOVECOT_WAS_INSTALLED := $(shell dpkg -s dovecot-core >/dev/null 2>&1 && echo yes)
COURIER_WAS_INSTALLED := $(shell dpkg -s courier-authdaemon >/dev/null 2>&1 && echo yes)
POSTGRESQL_WAS_INSTALLED := $(shell dpkg -s postgresql >/dev/null 2>&1 && echo yes)

.PHONY: demo test deps test-deps postgres-deps bench-deps bench-sql build release unit e2e clean check-imports \
	sanitize asan tsan fuzz fuzz-build

# Installs only what is missing, so a prepared machine never touches apt. $(2): more
# apt-get install options.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing; fi
endef

# dovecot-pop3d of dovecot-core's exact version, unpacked (apt-get download, dpkg-deb -x),
# unless it is installed.
define dovecot_pop3d_unpack
	@if [ ! -x /usr/lib/dovecot/pop3 ] && [ ! -x $(DOVECOT_POP3_DIR)/usr/lib/dovecot/pop3 ]; then \
	  v="$$(dpkg-query -W -f '$${Version}' dovecot-core)" && mkdir -p $(DOVECOT_POP3_DIR) && \
	  cd $(DOVECOT_POP3_DIR) && apt-get download -qq "dovecot-pop3d=$$v" && \
	  dpkg-deb -x dovecot-pop3d_*.deb . && rm -f dovecot-pop3d_*.deb; fi
endef

deps:
	$(call apt_install,$(BUILD_PACKAGES))
	@pkg-config --exists libsystemd || { echo "libsystemd not found by pkg-config"; exit 1; }
	@pkg-config --exists openssl || { echo "OpenSSL not found by pkg-config"; exit 1; }
	@pkg-config --exists libpq || { echo "libpq not found by pkg-config"; exit 1; }

# PostgreSQL's server for the SQL user database tests (Tests/SQLTests, issue 15): each test
# runs a throwaway cluster of its own (initdb into a temporary folder, Unix socket only,
# stopped by PID), never the system's. Debian's postinst creates and starts the cluster
# 15/main: stopped at once (systemd, else pg_ctlcluster) and disabled, as haproxy's is.
postgres-deps:
	$(call apt_install,postgresql)
ifneq ($(POSTGRESQL_WAS_INSTALLED),yes)
	-@if [ -d /run/systemd/system ]; then systemctl stop postgresql.service; \
	elif command -v pg_lsclusters >/dev/null; then pg_lsclusters -h | while read v c rest; do \
	  pg_ctlcluster "$$v" "$$c" stop; done; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet postgresql.service; fi
endif

test-deps: deps postgres-deps
	@# prometheus alone first, without its Recommends: prometheus-node-exporter and its
	@# collectors (smartmontools, nvme-cli, ipmitool...) would bring services and timers
	@# enabled for the next boot that no test uses.
	$(call apt_install,prometheus,--no-install-recommends)
	$(call apt_install,$(TEST_PACKAGES))
ifneq ($(HAPROXY_WAS_INSTALLED),yes)
	@# Debian's haproxy postinst enables haproxy.service and starts it (deb-systemd-invoke
	@# start; invoke-rc.d without systemd). The tests never use the system service: they run
	@# their own haproxy with their own config in network namespaces. So a haproxy this run
	@# installed is stopped at once (systemd, else by its PID file) and disabled again (the
	@# unit's symlink would start it at the next boot, systemd running now or not).
	-@if [ -d /run/systemd/system ]; then systemctl stop haproxy.service; \
	elif [ -s /run/haproxy.pid ]; then kill "$$(cat /run/haproxy.pid)"; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet haproxy.service; fi
endif
ifneq ($(FAIL2BAN_WAS_INSTALLED),yes)
	@# The tests only run fail2ban-regex on pop3d's log (Tests/e2e/test_fail2ban.py); a
	@# fail2ban server this run's install started is stopped and disabled, as haproxy's is.
	-@if [ -d /run/systemd/system ]; then systemctl stop fail2ban.service; \
	elif [ -S /run/fail2ban/fail2ban.sock ]; then fail2ban-client stop; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet fail2ban.service; fi
endif
ifneq ($(PROMETHEUS_WAS_INSTALLED),yes)
	@# The tests run their own Prometheus (own config, data folder and port, stopped by PID;
	@# Tests/e2e/test_metrics.py) and promtool; the prometheus server Debian's postinst
	@# started on :9090 is stopped (systemd, else by the init script's PID file) and
	@# disabled, as haproxy's is.
	-@if [ -d /run/systemd/system ]; then systemctl stop prometheus.service; \
	elif [ -s /run/prometheus/prometheus.pid ]; then kill "$$(cat /run/prometheus/prometheus.pid)"; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet prometheus.service; fi
endif
ifneq ($(DOVECOT_WAS_INSTALLED),yes)
	@# The tests run their own Dovecot (own config, base_dir and ports, stopped by PID); the
	@# system's Dovecot that Debian's postinst started is stopped and disabled, as haproxy's is.
	-@if [ -d /run/systemd/system ]; then systemctl stop dovecot.service dovecot.socket; \
	elif [ -s /run/dovecot/master.pid ]; then kill "$$(cat /run/dovecot/master.pid)"; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet dovecot.service dovecot.socket; fi
endif
	$(dovecot_pop3d_unpack)
ifneq ($(COURIER_WAS_INSTALLED),yes)
	@# Debian's courier-authdaemon postinst enables and starts authdaemond. The Courier test
	@# runs its own (own configuration and socket, in a private mount namespace), never the
	@# system's: stopped at once (systemd, else its own stop command) and disabled, as
	@# haproxy's is.
	-@if [ -d /run/systemd/system ]; then systemctl stop courier-authdaemon.service; \
	elif [ -s /run/courier/authdaemon/pid ]; then /usr/sbin/authdaemond stop; fi; \
	if command -v systemctl >/dev/null; then systemctl disable --quiet courier-authdaemon.service; fi
endif
	@# Courier's pop3d binaries, unpacked, not installed (see COURIER_POP_ROOT).
	@if [ ! -x $(COURIER_POP_ROOT)/usr/lib/courier/courier/courierpop3d ]; then \
	  rm -rf $(COURIER_POP_ROOT) && mkdir -p $(COURIER_POP_ROOT) && cd $(COURIER_POP_ROOT) && \
	  { apt-get download courier-pop 2>/dev/null || { apt-get update -qq && apt-get download courier-pop; }; } && \
	  dpkg-deb -x courier-pop_*.deb . && rm -f courier-pop_*.deb; fi
	@$(PYTHON) -m pytest --version >/dev/null 2>&1 || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pytest; }

# Benchmarks (run as root, on the release build). bench-deps: what they need beyond the build:
# PostgreSQL's server (postgres-deps), Dovecot with its pgsql driver and Dovecot's POP3
# binaries (unpacked as for the tests) for Benchmarks/sql_logins.py (issue 15). Installing
# dovecot-pgsql runs dovecot-core's trigger, which restarts the system's Dovecot: a
# policy-rc.d that refuses (exit 101) keeps every postinst and trigger from starting it
# during the install, as Benchmarks/compare.sh does, and a Dovecot this run installed is
# disabled, as test-deps does. The benchmarks run their own Dovecot and cluster.
BENCH_PACKAGES := dovecot-core dovecot-pgsql

bench-deps: deps postgres-deps
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; policy=/usr/sbin/policy-rc.d; made=0; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && made=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; status=$$?; \
	  if [ $$made = 1 ]; then rm -f $$policy; fi; exit $$status; fi
ifneq ($(DOVECOT_WAS_INSTALLED),yes)
	-@if command -v systemctl >/dev/null; then systemctl disable --quiet dovecot.service dovecot.socket; fi
endif
	$(dovecot_pop3d_unpack)
	@id pop3bench >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pop3bench

# Logins/s with users from PostgreSQL: pop3d with a passwd-file, with SQL (auth cache warm and
# off), Dovecot with pgsql and with a passwd-file; BENCH_ARGS="--runs 5" and so on.
bench-sql: release bench-deps
	$(PYTHON) Benchmarks/sql_logins.py $(BENCH_ARGS)

check-imports:
	$(PYTHON) scripts/check_imports.py

build: deps check-imports
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

release: deps check-imports
	$(SWIFT) build -c release $(SWIFT_BUILD_FLAGS)

demo: release
	.build/release/pop3d demo

unit: build postgres-deps
	$(SWIFT) test --no-parallel $(SWIFT_BUILD_FLAGS)

e2e: build test-deps
	$(PYTHON) -m pytest -q Tests/e2e

test: test-deps check-imports
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)
	$(SWIFT) test --no-parallel $(SWIFT_BUILD_FLAGS)
	$(PYTHON) -m pytest -q Tests/e2e

# Sanitizers (issue 16): the unit tests built and run again with -sanitize=address (with
# LeakSanitizer) and -sanitize=thread. Each has its own scratch folder (.build-asan,
# .build-tsan): an instrumented build in .build would replace the normal one and the next
# `swift build` would rebuild everything. --no-parallel as `unit` (some tests lower the
# process's RLIMIT_NOFILE or fork). --disable-xctest: every test is swift-testing, and the
# empty XCTest pass only adds XCTest's own leaks at exit. A report fails the run: ASan stops at
# the first error, LeakSanitizer fails the exit, TSan reports every race and exits 66. No
# suppression file.
SANITIZER_TEST := $(SWIFT) test --no-parallel --disable-xctest
ASAN_OPTIONS ?= detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1
TSAN_OPTIONS ?= halt_on_error=0:second_deadlock_stack=1

asan: deps postgres-deps
	ASAN_OPTIONS=$(ASAN_OPTIONS) $(SANITIZER_TEST) --sanitize=address --scratch-path .build-asan

# TSAN_FILTER: a --filter for `make tsan`; empty runs every suite (3.5 min of tests on 2
# cores). TSAN_FILTER=threaded (what CI runs) takes the suites that start threads: the worker
# pools and their eventfd hand-offs (WorkerPoolTests), the reactor's TLS and timer tests, the
# in-process server's loop thread (POP3ServerTests), the two-thread cold login and the
# deadline threads of the Maildrop tests, libpq (SQLTests). The other suites run on one
# thread, where ThreadSanitizer has nothing to compare.
TSAN_FILTER ?=
TSAN_THREADED := WorkerPoolTests|ReactorTests|POP3ServerTests|MaildropTests|SQLTests
tsan_filter = $(if $(filter threaded,$(TSAN_FILTER)),$(TSAN_THREADED),$(TSAN_FILTER))

tsan: deps postgres-deps
	TSAN_OPTIONS=$(TSAN_OPTIONS) $(SANITIZER_TEST) --sanitize=thread --scratch-path .build-tsan \
	  $(if $(tsan_filter),--filter '$(tsan_filter)')

sanitize: asan tsan


# Fuzzing (Fuzz/README.md). Its own package, so the server is never built with the fuzzer's
# instrumentation; -enable-testing lets the targets reach Maildrop's and Auth's internal
# parsers (@testable import).
# Each target is built by name: a plain `swift build` of the package would also link the
# main package's executables, whose own main clashes with libFuzzer's.
FUZZ_SECONDS ?= 60
FUZZ_ALL_TARGETS := fuzz-session fuzz-sasl fuzz-proxy fuzz-passwd fuzz-maildir-name fuzz-size-cache \
	fuzz-login-index fuzz-dovecot-uidlist fuzz-courier-sizelist fuzz-imported-uidls
FUZZ_TARGETS ?= $(FUZZ_ALL_TARGETS)
FUZZ_BUILD_FLAGS := -c release --package-path Fuzz \
	-Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing

fuzz-build: deps
	@set -e; for t in $(FUZZ_TARGETS); do $(SWIFT) build $(FUZZ_BUILD_FLAGS) --product $$t; done

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh $(FUZZ_TARGETS)

clean:
	rm -rf .build .build-asan .build-tsan Fuzz/.build
