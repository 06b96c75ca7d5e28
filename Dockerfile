# The image the Helm chart (helm/wiretrail) runs: one binary for the node agent
# (`wiretrail agent`) and the ingest+query server (`wiretrail up`).
#   docker build -t REGISTRY/wiretrail:0.1.0 .
# Not built by the test suite (no container engine on the development machines); see
# helm/wiretrail/README.md.

# --- build -----------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# RocksDB's bindings are generated with libclang (RocksDB itself is C++, g++ is in the image);
# clang also compiles the eBPF TLS probes (agent/build.rs, `clang -target bpf`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the binary (dev.sh builds all targets to share one build with the tests; a fresh
# image build has nothing to share). --locked: the versions Cargo.lock pins.
RUN cargo build --release --locked --bin wiretrail \
 && install -D -m 0755 target/release/wiretrail /out/wiretrail

# --- run -------------------------------------------------------------------------------
# debian-slim rather than distroless: the binary links libstdc++ (RocksDB), S3 over HTTPS
# needs CA certificates, and the agent's `--filter` loads libpcap at run time.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libpcap0.8 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --home-dir /data --no-create-home wiretrail \
 && mkdir -p /data && chown 65532:65532 /data
COPY --from=build /out/wiretrail /usr/local/bin/wiretrail
# The server runs as this user; the agent's pod runs as root with only the capabilities it
# needs (see the chart).
USER 65532:65532
EXPOSE 8899 8900 8901 9100
ENTRYPOINT ["/usr/local/bin/wiretrail"]
CMD ["up", "--data", "/data", "--listen", "0.0.0.0:8899", "--flight-listen", "0.0.0.0:8900", "--flight-sql-listen", "0.0.0.0:8901", "--no-capture"]
