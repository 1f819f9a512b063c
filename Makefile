# cocoon: the two commands a new machine needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root) and build what they run.

CARGO ?= cargo
COCOON := target/release/cocoon

.PHONY: all deps fixtures launcher build release lint test demo bench

all: build

deps:
	@bash scripts/install-deps.sh

# Real test images built with umoci/skopeo/debootstrap, cached outside git.
fixtures: deps
	@bash scripts/fixtures.sh
	@bash scripts/models.sh

# The launcher runs as PID 1 in any base image, so it is linked statically;
# an explicit --target keeps the static flag off build scripts and proc-macros.
LAUNCHER_TARGET := x86_64-unknown-linux-gnu
launcher: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p cocoon-launcher --target $(LAUNCHER_TARGET)

build: deps launcher
	$(CARGO) build --workspace

release: deps launcher
	$(CARGO) build --release -p cocoon-cli
	cp target/$(LAUNCHER_TARGET)/release/cocoon-launcher target/release/cocoon-launcher

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps fixtures launcher lint
	$(CARGO) test --workspace

demo: fixtures release
	@bash scripts/demo.sh $(COCOON)

bench: fixtures release
	@bash bench/run.sh $(COCOON)
