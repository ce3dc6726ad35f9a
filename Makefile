# Everything runs inside .venv, which `make setup` creates (idempotent).
.PHONY: setup build build-symlink test lint demo bench gpu-check clean

setup:
	./scripts/setup.sh

build: setup
	./scripts/build.sh

build-symlink: setup
	./scripts/build.sh --symlink-install

test: setup
	./scripts/test.sh $(ARGS)

lint: setup
	./scripts/run.sh ruff check .

demo: setup
	./scripts/run.sh python -m superpoint_ros.tools.demo $(ARGS)

bench: setup
	./scripts/run.sh python -m superpoint_ros.tools.bench $(ARGS)

# No setup: the GPU machine runs it with its own python3 from a plain copy of the tree.
gpu-check:
	./scripts/gpu_check.sh $(ARGS)

clean:
	rm -rf .ws

# Minutes of overload against the node in its own process; `ARGS="--duration 60"` for a short one.
.PHONY: soak
soak: setup
	./scripts/run.sh python -m superpoint_ros.tools.soak $(ARGS)
