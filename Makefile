# cocoon: the two commands a new machine needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root) and build what they run.

CARGO ?= cargo
COCOON := target/release/cocoon

.PHONY: all deps fixtures launcher infer-server build release lint test demo bench

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

# The inference server goes into images that hold nothing else (cocoon infer
# image), so it is static too, built the same way.
infer-server: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p cocoon-infer --bin cocoon-infer --target $(LAUNCHER_TARGET)

build: deps launcher
	$(CARGO) build --workspace

release: deps launcher infer-server
	$(CARGO) build --release -p cocoon-cli
	cp target/$(LAUNCHER_TARGET)/release/cocoon-launcher target/release/cocoon-launcher
	cp target/$(LAUNCHER_TARGET)/release/cocoon-infer target/release/cocoon-infer

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps fixtures launcher infer-server lint
	$(CARGO) test --workspace

demo: fixtures release
	@bash scripts/demo.sh $(COCOON)

bench: fixtures release
	@bash bench/run.sh $(COCOON)
