# fdfs-node image: the tracker/storage node (`fdfs-node`) and the FastDFS CLI (`fdfs`), as
# statically linked binaries on an empty base. Nothing else is in it: no shell, no libc.
#
# Two ways to fill it (see images/README.md):
#   images/build.sh fdfs-node                      # binaries built on the host, BINARIES=prebuilt
#   docker build -f images/fdfs-node.Dockerfile .  # binaries built in a Rust image (needs network)

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
# source: build in RUST_IMAGE from the repository (the build context is the repository root).
# prebuilt: take bin/ from the build context (images/build.sh stages it).
ARG BINARIES=source

FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p fdfs-node --bins \
 && mkdir -p /out/bin /out/data \
 && cp target/x86_64-unknown-linux-gnu/release/fdfs-node target/x86_64-unknown-linux-gnu/release/fdfs /out/bin/ \
 && strip /out/bin/*

FROM scratch AS prebuilt
COPY bin/ /out/bin/
COPY data/ /out/data/

FROM ${BINARIES} AS binaries

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="fdfs-node" \
      org.opencontainers.image.description="FastDFS-compatible tracker and storage node, and the fdfs CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /out/bin/ /usr/local/bin/
# Default data directory, writable by the image's user (Kubernetes mounts a volume here).
COPY --from=binaries --chown=65532:65532 /out/data/ /var/lib/fdfs/
ENV PATH=/usr/local/bin
USER 65532:65532
WORKDIR /var/lib/fdfs
# 22122 tracker (FastDFS protocol), 23000 storage (FastDFS protocol), 8888 storage HTTP.
EXPOSE 22122 23000 8888
ENTRYPOINT ["fdfs-node"]
CMD ["--help"]
