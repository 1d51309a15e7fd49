# syntax=docker/dockerfile:1.7
# credtrail-aggregator: audit webhook, agent stream, detection, store and query API.
# Build from the repository root:  docker build -f deploy/docker/aggregator.Dockerfile -t credtrail/aggregator:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# protoc comes from the protoc-bin-vendored crate and SQLite is bundled: nothing to install.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p credtrail-aggregator \
 && install -D -m 0755 target/release/credtrail-aggregator /out/credtrail-aggregator \
 && install -d -o 65532 -g 65532 /out/data

# glibc, libgcc and CA roots, no shell; uid 65532 as the Deployment's securityContext expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/credtrail-aggregator /usr/local/bin/credtrail-aggregator
COPY --from=build --chown=65532:65532 /out/data /var/lib/credtrail
USER 65532:65532
EXPOSE 8443 9443 8080 9090
VOLUME ["/var/lib/credtrail"]
ENTRYPOINT ["/usr/local/bin/credtrail-aggregator"]
CMD ["serve"]
