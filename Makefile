# Phoenyra EMS — the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DATA ?= .demo-data
DEB_TEST_PACKAGES := mosquitto socat chromium systemd
# `make image`: Debian's own image tools (image/README.md); arm64 on another machine also needs user-mode QEMU.
ARCH ?= amd64
DEB_IMAGE_PACKAGES := mmdebstrap genimage dosfstools mtools e2fsprogs fdisk xz-utils arch-test systemd \
                      $(if $(filter arm64,$(ARCH)),qemu-user-static binfmt-support)
# `make image-test`: the amd64 image on QEMU with UEFI firmware; debugfs (e2fsprogs) adds the test shell.
DEB_IMAGE_TEST_PACKAGES := qemu-system-x86 ovmf e2fsprogs fdisk

.PHONY: demo test lint bench deps-system clean wheel image image-test brotli

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Debian packages the tests drive for real (MQTT broker, serial pty pair, headless browser).
deps-system:
	@missing=""; for p in $(DEB_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(BIN)/python
	$(BIN)/pip install -q .
	@echo ""
	@echo "  Phoenyra EMS demo (simulated household: 8 kWp PV, 10 kWh battery)"
	@echo "  Dashboard: http://127.0.0.1:8080"
	@$(BIN)/ems --log-level WARNING user reset-password admin --data-dir $(DEMO_DATA)
	@echo "  Data:      $(DEMO_DATA)/ (config ems.yaml, history.db, users.json)   Stop: Ctrl-C"
	@echo ""
	$(BIN)/ems run --data-dir $(DEMO_DATA)

test: deps-system $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q

# The gate before the suite: ruff (rules in pyproject.toml) and mypy on ems/ with zero errors.
lint:
	$(BIN)/ruff check ems tests bench
	$(BIN)/mypy

bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py

# Brotli copies of the large vendored files, `<file>.<content hash>.br` (see ems/api/static_files.py): after
# updating one of them. A test fails while a copy is missing or stale.
BROTLI_FILES := web/static/vendor/chartjs/chart.umd.min.js
brotli: $(BIN)/python
	$(BIN)/pip install -q brotli
	$(BIN)/python -c 'import sys; from ems.api.static_files import write_brotli_copies; \
	  write_brotli_copies(sys.argv[1:])' $(BROTLI_FILES)

wheel: $(BIN)/python
	$(BIN)/pip install -q build
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

# A flashable SD-card image (Debian bookworm + the EMS), as root: build/image/phoenyra-ems-<version>-$(ARCH).img[.xz].
image: $(BIN)/python
	@$(MAKE) --no-print-directory deps-system DEB_TEST_PACKAGES="$(DEB_IMAGE_PACKAGES)"
	PYTHON=$(abspath $(BIN)/python) image/build.sh $(ARCH)

# Boots the amd64 image under QEMU (KVM when usable, else TCG: minutes) and checks it from the host.
image-test:
	@$(MAKE) --no-print-directory deps-system DEB_TEST_PACKAGES="$(DEB_IMAGE_TEST_PACKAGES)"
	@ls build/image/phoenyra-ems-*-amd64.img >/dev/null 2>&1 || $(MAKE) --no-print-directory image ARCH=amd64
	$(PYTHON) image/test_image.py $(IMAGE_TEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache $(DEMO_DATA)
