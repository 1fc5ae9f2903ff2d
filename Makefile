# Sluice. `make run` starts a node on the embedded broker; `make test` runs
# every test (with -race); `make bench` runs the side-by-side benchmarks.
GO ?= go
BIN := bin/sluice

.PHONY: all build run test test-short bench soak vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

run: build
	./$(BIN) serve

# The main module, then 10 s of each fuzz target (the spec decoder, the
# publish decoder, the batch response parser, the registry and dead-letter
# state record decoders; each starts from its corpus in testdata/fuzz),
# then the dashboard's browser tests (a module of their own, so that
# chromedp is no dependency of Sluice).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePublish$$' -fuzztime 10s ./api
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 10s ./handlers
	$(GO) test -run '^$$' -fuzz '^FuzzParseBatchReply$$' -fuzztime 10s ./handlers
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 10s ./registry
	$(GO) test -run '^$$' -fuzz '^FuzzCheckState$$' -fuzztime 10s ./dlq
	cd dashboard/browsertest && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...

test-short:
	$(GO) test -count=1 -short ./...

# -mod=readonly: the benchmark never rewrites bench/go.mod.
bench:
	cd bench && $(GO) run -mod=readonly ./cmd/sluicebench

# The chaos soak (10 minutes; SLUICE_SOAK_DURATION overrides), then the long
# form of the fleet-churn test: 200,000 messages a run at 3,000 a second, 50
# runs in a row, with nodes built without the race detector (production
# speed). SLUICE_CHURN_MESSAGES, SLUICE_CHURN_RUNS and SLUICE_CHURN_RATE
# override.
soak:
	SLUICE_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run Soak -v ./e2e
	SLUICE_E2E_RACE=0 SLUICE_CHURN_MESSAGES=$${SLUICE_CHURN_MESSAGES:-200000} SLUICE_CHURN_RUNS=$${SLUICE_CHURN_RUNS:-50} \
		SLUICE_CHURN_RATE=$${SLUICE_CHURN_RATE:-3000} $(GO) test -count=1 -timeout 0 -run TestChurnFleet -v ./e2e

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin sluice-data
