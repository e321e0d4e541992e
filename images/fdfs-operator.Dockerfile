# fdfs-operator image: the operator as a statically linked binary on an empty base.
#
#   images/build.sh fdfs-operator                      # binary built on the host
#   docker build -f images/fdfs-operator.Dockerfile .  # binary built in a Rust image (needs network)

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BINARIES=source

FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p fdfs-operator --bin fdfs-operator \
 && mkdir -p /out/bin \
 && cp target/x86_64-unknown-linux-gnu/release/fdfs-operator /out/bin/ \
 && strip /out/bin/*

FROM scratch AS prebuilt
COPY bin/ /out/bin/

FROM ${BINARIES} AS binaries

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="fdfs-operator" \
      org.opencontainers.image.description="Kubernetes operator for FastDFS-compatible clusters (FdfsCluster, StorageGroup)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /out/bin/ /usr/local/bin/
ENV PATH=/usr/local/bin
USER 65532:65532
# /metrics and /healthz (FDFS_OPERATOR_LISTEN).
EXPOSE 8080
ENTRYPOINT ["fdfs-operator"]
