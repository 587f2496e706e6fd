# The two commands a fresh machine needs (README.md):
#   make demo   set up everything, then run the offline demo (digits -> int8 -> firmware -> QEMU -> report)
#   make test   set up everything, then run the test suite
# Set-up is idempotent: apt packages (when run as root or with sudo), a venv in .venv, tinyq with
# extras. [qat] brings full `tensorflow` beside [convert]'s tensorflow-cpu (same version; the
# last installed wins and both work, measured), so the QAT tests run too.

PYTHON  ?= python3
VENV    ?= .venv
EXTRAS  ?= convert,qat,dev
APT_PKGS = gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
BIN      = $(VENV)/bin
OUT     ?= out/demo

.PHONY: setup system-packages venv demo test lint clean

setup: system-packages venv

system-packages:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	    && [ -f /usr/lib/arm-none-eabi/newlib/libc.a -o -d /usr/lib/arm-none-eabi/lib ]; then \
	  echo "system packages: present"; \
	else \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "system packages: installing $(APT_PKGS)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'

demo: setup
	$(BIN)/python examples/digits/train.py --out $(OUT)
	$(BIN)/tinyq deploy $(OUT)/digits.keras --calib $(OUT)/calib.npz --data $(OUT)/test.npz \
	    --board mps2-an386 --emulator qemu -o $(OUT)/deploy --report $(OUT)/report.md \
	    --json $(OUT)/report.json --force

test: setup
	$(BIN)/ruff check tinyq tests examples benchmarks
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check tinyq tests examples benchmarks

clean:
	rm -rf out build dist .pytest_cache
