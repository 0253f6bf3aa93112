# make demo: install what is missing, build, serve a demo mailbox on 127.0.0.1:1110.
# make test: install what is missing, build, run every test.
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libsystemd-dev libssl-dev libcrypt-dev pkg-config systemd openssl curl python3

.PHONY: demo test deps test-deps build release clean

# Installs only what is missing, so a prepared machine does not touch apt.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@pkg-config --exists libsystemd || { echo "libsystemd not found by pkg-config"; exit 1; }

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

demo: release
	.build/release/pop3d demo

test: deps
	$(SWIFT) build
	$(SWIFT) test

clean:
	rm -rf .build
