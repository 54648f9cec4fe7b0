# fxsession — see README.md. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.6.1
FUZZSCALE ?= 1
# Packages to test; the bench/ module is separate and run by `make bench`.
PKGS ?= ./...

.PHONY: all test deps lint fuzz vet demo bench help

all: test

# `make` alone lists the targets.
.DEFAULT_GOAL := help

help:
	@echo "usage: make TARGET"
	@echo "  demo         run the demo shop on http://localhost:8080 (file store in ./var/sessions; ARGS=\"-store memory\" ...)"
	@echo "  test         what CI runs: install what the tests need, vet, tidy, every test with -race, importer, short fuzz runs"
	@echo "  lint         gofmt check, go vet, staticcheck"
	@echo "  vet          go vet"
	@echo "  fuzz         every fuzz target, briefly"
	@echo "  deps         install redis-server, postgresql and chromium when missing"
	@echo "  bench        benchmarks against scs, gorilla/sessions and a dig scope (bench/); rewrites docs/performance.md"
	@echo "  loadtest     the demo, an scs server and a floor server under wrk on one redis-server; rewrites docs/performance.md"
	@echo "  reliability  the reliability checks at full size and long fuzz runs (about 15 min); rewrites docs/reliability.md"
	@echo "  importer     fxsession built and tested as an importing application gets it (test/importer)"
	@echo "  tidy         check that go mod tidy would change no go.mod or go.sum"
	@echo "  help         this list (what \`make\` alone does)"

deps:
	@scripts/deps.sh

# The demo shop on http://localhost:8080, file store in ./var/sessions.
# Pass flags with ARGS, e.g. make demo ARGS="-store memory -addr :9090".
demo:
	$(GO) run ./cmd/demo serve $(ARGS)

vet:
	$(GO) vet $(PKGS)

test: deps vet tidy
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	@$(MAKE) --no-print-directory importer
	@FUZZSCALE=$(FUZZSCALE) scripts/fuzz.sh

fuzz:
	@FUZZSCALE=$(FUZZSCALE) scripts/fuzz.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

.PHONY: loadtest

# Side-by-side benchmarks against scs, gorilla/sessions and a per-request dig
# scope (bench/, its own module); rewrites docs/performance.md. Defaults:
# COUNT=10 rounds, BENCHTIME=1s, BENCH=. (about six minutes on two cores).
bench:
	bench/run.sh

# The demo and an equivalent scs server on one redis-server under wrk (installs
# wrk when missing, as root); rewrites the load-test section of docs/performance.md.
loadtest:
	bench/loadtest.sh

# The reliability checks at full size (internal/reliability, build tag
# reliability: demo processes, Redis and file faults, 100,000 hostile cookies),
# then every fuzz target at FUZZSCALE (default 12 here) times the count-based
# budgets of make test; rewrites the table of docs/reliability.md. Takes about a quarter of an hour.
.PHONY: reliability
reliability: deps
	@FUZZSCALE=$(if $(filter command line environment,$(origin FUZZSCALE)),$(FUZZSCALE),12) internal/reliability/run.sh

# fxsession as an importing application gets it: test/importer is a module of its
# own (upstream msgpack, no replace but the one that finds this checkout) whose
# test feeds every checked-in fuzz seed through the public API under a 3 GiB
# address-space limit. Nested modules are not part of ./... above.
# go.mod and go.sum of every module are tidy: `go mod tidy` would change nothing.
.PHONY: tidy
tidy:
	$(GO) mod tidy -diff
	cd bench && $(GO) mod tidy -diff
	cd test/importer && $(GO) mod tidy -diff

.PHONY: importer
importer:
	cd test/importer && $(GO) vet ./... && $(GO) test -count=1 ./...
