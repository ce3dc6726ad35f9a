# Everything runs inside .venv, which `make setup` creates (idempotent).
.PHONY: setup build build-symlink test lint demo bench clean

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
	./scripts/run.sh python -m superpoint_ros.demo $(ARGS)

bench: setup
	./scripts/run.sh python -m superpoint_ros.bench $(ARGS)

clean:
	rm -rf .ws

# Minutes of overload against the node in its own process; `ARGS="--duration 60"` for a short one.
.PHONY: soak
soak: setup
	./scripts/run.sh python -m superpoint_ros.soak $(ARGS)
