# telemetry-collector build, test and run targets. See README.md.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'
PROTOC ?= protoc
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin

# Packages whose tests run under the race detector (the concurrent core).
RACE_PKGS := ./agent/... ./plugins/... ./sdk/... ./inputs/mq_service/... ./mq/...

.PHONY: all build telemetry-collector mq-service telemetry-streamer plugins example-plugins \
	run run-collector test test-unit test-race test-examples test-faults fuzz lint vet fmt-check script-check proto clean \
	bench bench-micro

all: build

build: telemetry-collector mq-service telemetry-streamer plugins example-plugins

telemetry-collector:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/telemetry-collector ./cmd/telemetry-collector

mq-service:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/mq-service ./cmd/mq-service

telemetry-streamer:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/telemetry-streamer ./cmd/telemetry-streamer

# Every built-in plugin is served by one binary, chosen by name at launch.
plugins:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/plugins/telemetry-plugins ./cmd/telemetry-plugins

# The third-party example processor is its own module (examples/cluster_label).
example-plugins:
	cd examples/cluster_label && $(GO) build -trimpath -o ../../$(BIN)/plugins/cluster-label .

# Runs the collector alone with the shipped configuration.
run-collector: telemetry-collector plugins
	$(BIN)/telemetry-collector --config conf/telemetry-collector.toml

# The main job on a self-contained default: a throwaway PostgreSQL (unless
# DATABASE_URL is set), mq-service, the collector, and the real datasets
# replayed through the streamer. Ctrl-C stops everything.
run: build
	./scripts/run.sh

test: test-unit test-race test-examples

test-unit:
	$(GO) test -count=1 ./...

test-race:
	$(GO) test -count=1 -race $(RACE_PKGS)

test-examples:
	cd examples/cluster_label && $(GO) test -count=1 ./...

# The fault-injection suite (internal/faults, build tag "faults"): real
# PostgreSQL, mq-service and plugin processes, killed, stopped and starved
# mid-stream. See README.md, "Delivery guarantees". About 3-4 minutes.
test-faults:
	$(GO) test -tags faults -count=1 -timeout 15m -v ./internal/faults/

# Every fuzz target of the parsers, the mq.v1 and plugin-protocol codecs
# and the config loader, FUZZTIME each (default 10s), after its committed
# seed corpus.
fuzz:
	./scripts/fuzz.sh

# End-to-end throughput (internal/bench, build tag bench): its own PostgreSQL,
# mq-service and collector (every plugin out of process), >= 2M samples per
# workload, the pgx COPY ceiling of the same rows, peak RSS. Settings:
# BENCH_SAMPLES, BENCH_GPUS, BENCH_WORKLOADS (scrape,dcgm-csv,gpu-tel-json).
bench: build
	E2E_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -tags bench -run TestBench -v -count=1 -timeout 60m ./internal/bench

# Every microbenchmark (parsers, gpu_normalize, dedup, wire encode/decode,
# processor hop over real gRPC, output row building, agent), ns/sample and
# allocs/sample. Never part of `make test`.
BENCH_MICRO_PKGS ?= ./...
bench-micro:
	$(GO) test -run XXX -bench . -benchmem $(BENCH_MICRO_PKGS)

lint: vet fmt-check script-check

vet:
	$(GO) vet ./...
	cd examples/cluster_label && $(GO) vet ./...

# The CI scripts' own tests.
script-check:
	bash scripts/fuzz_test.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Regenerates the checked-in protobuf code. Needs protoc (Debian:
# protobuf-compiler); the Go generators are installed at pinned versions.
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	cd internal/pluginpb && PATH="$(GOBIN_DIR):$$PATH" $(PROTOC) -I. --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative plugin.proto
	cd mq/mqpb && PATH="$(GOBIN_DIR):$$PATH" $(PROTOC) -I. -I/usr/include --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative mq.proto

clean:
	rm -rf $(BIN)
