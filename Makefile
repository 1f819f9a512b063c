# cocoon: the two commands a new machine needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root) and build what they run.

CARGO ?= cargo
COCOON := target/release/cocoon

.PHONY: all deps fixtures build release lint test demo bench clean-fixtures

all: build

deps:
	@bash scripts/install-deps.sh

# Real test images built with umoci/skopeo/debootstrap, cached outside git.
fixtures: deps
	@bash scripts/fixtures.sh

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release -p cocoon-cli

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps fixtures lint
	$(CARGO) test --workspace

demo: fixtures release
	@bash scripts/demo.sh $(COCOON)

bench: fixtures release
	@bash bench/run.sh $(COCOON)
