# Both `make test` and `make e2e` bootstrap their own virtual environment on a fresh machine
# (only Python 3.11 and make are needed). The venv is rebuilt when pyproject.toml changes.
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= profiles/sim.yaml
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-nightly e2e lint bench soak clean venv

venv: $(STAMP)

# After the install, the table of the kubernetes client's models that the sim's unknown-field check reads
# instead of importing the models in every process that serves its API (harness/sim/api/fieldcheck.py;
# written into the venv, never into git). Then `sync`: the install leaves about 0.5 GB of dirty pages
# that the kernel would write back 30 s later, in the middle of `make test`'s serial phase, whose tests
# judge latencies (on fresh clones the capacity-sweep test took 53-64 s instead of 25, measuring low
# and sweeping again: docs/benchmarks.md, sixth round).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m harness.sim.api.fieldcheck --write-table
	sync
	touch $(STAMP)

# Bytecode is cached (in __pycache__/, ignored by git) even where PYTHONDONTWRITEBYTECODE is set:
# a test run starts hundreds of Python processes (sims, suites, CLIs) that import the harness, and
# pytest rewrites every test module's asserts in each worker; without the cache that was 43 of
# 340 CPU-seconds on the 2-core machine (docs/benchmarks.md).
unexport PYTHONDONTWRITEBYTECODE

# Two phases. The few tests that judge latencies or rates (marker `serial`) run first, alone, so that
# no other test's CPU use is in their figures; that phase also collects every test once, which writes
# pytest's assertion-rewrite cache (each xdist worker would otherwise rewrite all test modules itself:
# 10 CPU-seconds each on a fresh clone). Then the rest, which mostly wait on subprocesses, servers and
# the simulated cluster, on TEST_WORKERS xdist workers (more workers than cores: a worker waiting on a sim
# leaves its core to another), the longest tests first on every worker (tests/kit/order.py). Both
# phases always run and the target fails if either did; a phase that PYTEST_ARGS (say `-k`) leaves
# empty (pytest's exit 5) is not a failure. The serial phase prints its tests' durations: its length has
# varied between runs (41-86 s on fresh clones, almost all of it the capacity-sweep test sweeping again;
# docs/benchmarks.md, sixth round), and the log shows which test took it.
TEST_WORKERS ?= 5
test: $(STAMP)
	@status=0; \
	$(BIN)/python -m pytest tests/ -p no:xdist -m "serial and not nightly" --durations=5 $(PYTEST_ARGS) \
		|| { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	$(BIN)/python -m pytest tests/ -n $(TEST_WORKERS) --dist worksteal -m "not serial and not nightly" $(PYTEST_ARGS) \
		|| { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	exit $$status

# Minutes: repeated end-to-end runs (20 signals at random moments of e2e runs, tests/runs/test_interrupted_runs.py).
test-nightly: $(STAMP)
	$(BIN)/python -m pytest tests/ -p no:xdist -m nightly $(PYTEST_ARGS)

# Seconds, no cluster and no MLServer: the pure rules and in-process checks (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/ -m fast -q $(PYTEST_ARGS)

e2e: $(STAMP)
	$(BIN)/python -m pytest suites/ --profile $(PROFILE) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check harness suites tests conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports

# wrk, the reference the bench measures the load client against, is a Debian package. Where it is not
# on PATH, the bench fetches the pinned wrk and the LuaJIT library it links into the venv
# (`apt-get download` + `dpkg-deb -x`: no root, nothing installed system-wide) and runs it through a
# wrapper that points the dynamic linker there. Without apt it says what to install.
WRK_VERSION ?= 4.1.0-3+b2
WRK_ROOT := $(abspath $(VENV))/opt/wrk
.PHONY: wrk
wrk: $(STAMP)
	@if command -v wrk >/dev/null 2>&1 || test -x $(BIN)/wrk; then exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || { \
		echo "make: wrk is not on PATH and there is no apt-get/dpkg-deb to fetch it; install wrk $(WRK_VERSION) and run make bench again" >&2; exit 2; }; \
	rm -rf $(WRK_ROOT) && mkdir -p $(WRK_ROOT)/debs && cd $(WRK_ROOT)/debs && \
	timeout 300 apt-get download -q wrk=$(WRK_VERSION) libluajit-5.1-2 >download.log 2>&1 || { \
		echo "make: apt-get download wrk=$(WRK_VERSION) libluajit-5.1-2 failed (see $(WRK_ROOT)/debs/download.log); run apt-get update, or install wrk, and run make bench again" >&2; exit 2; }; \
	for deb in *.deb; do dpkg-deb -x "$$deb" $(WRK_ROOT)/root || exit 2; done; \
	lib=$$(dirname "$$(find $(WRK_ROOT)/root -name 'libluajit-5.1.so.2*' | head -n 1)"); \
	printf '#!/bin/sh\n# wrk %s from Debian, unpacked by make (Makefile, target wrk)\nLD_LIBRARY_PATH=%s exec %s "$$@"\n' \
		"$(WRK_VERSION)" "$$lib" "$(WRK_ROOT)/root/usr/bin/wrk" > $(abspath $(BIN))/wrk; \
	chmod +x $(abspath $(BIN))/wrk; \
	$(abspath $(BIN))/wrk --version 2>&1 | head -n 1 | grep -q '^wrk' || { echo "make: the unpacked wrk does not run: $$($(abspath $(BIN))/wrk --version 2>&1 | head -n 1)" >&2; rm -f $(abspath $(BIN))/wrk; exit 2; }; \
	echo "make: wrk $(WRK_VERSION) unpacked into $(WRK_ROOT)"

bench: $(STAMP) wrk
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m harness.commands.bench --out docs/benchmarks.md

soak: $(STAMP)
	$(BIN)/python -m tests.soak --iterations 20 --profile $(PROFILE)

# The GPU proof on a host with an NVIDIA GPU and no Kubernetes (harness/commands/gpu_smoke.py): NVML vs nvidia-smi,
# the real tritonserver with a KIND_GPU instance, and the three views; without a GPU it says so in one line.
.PHONY: gpu-smoke
GPU_SMOKE_ARGS ?=
gpu-smoke: $(STAMP)
	$(BIN)/python -m harness.commands.gpu_smoke $(GPU_SMOKE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache reports artifacts

# Re-measure tests/durations.json, which orders `make test`'s workers (longest first: tests/kit/order.py).
.PHONY: test-durations
test-durations: $(STAMP)
	$(BIN)/python -m pytest tests/ -n $(TEST_WORKERS) --dist worksteal -m "not serial and not nightly" \
		--record-durations tests/durations.json $(PYTEST_ARGS)
