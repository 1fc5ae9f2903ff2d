# A static sluice binary on a distroless base, as a non-root user.
#   docker build -t sluice .
#   docker run -p 8080:8080 -p 9090:9090 sluice serve --brokers kafka:9092 \
#     --http-addr 0.0.0.0:8080 --scaler-addr 0.0.0.0:9090
# Without --brokers the embedded broker keeps its data in /data (mount a
# volume there); it is for one machine only (deploy/kubernetes/README.md).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/sluicehq/sluice.Version=${VERSION}" -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /sluice
# The API, dashboard and /metrics; KEDA's external scaler.
EXPOSE 8080 9090
VOLUME /data
WORKDIR /data
USER 65532:65532
# The container runtime's probe; on Kubernetes, deployment.yaml wires
# /readyz and /healthz as the readiness and liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --retries=6 CMD ["/sluice", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/sluice"]
CMD ["serve", "--http-addr", "0.0.0.0:8080", "--data-dir", "/data"]
