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

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 -short ./...

bench:
	cd bench && $(GO) run -mod=mod ./cmd/sluicebench

soak:
	SLUICE_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run Soak -v ./e2e

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin sluice-data
