#!/usr/bin/env bash
# Builds the fdfs-node and fdfs-operator images from binaries built on this machine:
# statically linked (glibc, +crt-static) for x86_64-unknown-linux-gnu, copied onto an empty
# (scratch) base. No base image is pulled, so this works without access to a registry.
#
#   images/build.sh                  # both images
#   images/build.sh fdfs-node        # one of them
#
# Environment:
#   IMAGE_PREFIX      image name prefix (default localhost); images are PREFIX/NAME:TAG
#   IMAGE_TAG         tag (default: the workspace version in Cargo.toml)
#   CONTAINER_ENGINE  podman (default) or docker
#   CARGO_TARGET_DIR, CARGO_BUILD_JOBS   passed to cargo as usual
#   IMAGE_BINARIES_DIR  take the binaries from this directory instead of building them; they
#                     must already be static (CI builds its tests that way and packs those)
# Prints one line per image built: `image NAME`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

target_triple=x86_64-unknown-linux-gnu
engine="${CONTAINER_ENGINE:-podman}"
prefix="${IMAGE_PREFIX:-localhost}"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
tag="${IMAGE_TAG:-$version}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(fdfs-node fdfs-operator)

command -v "$engine" >/dev/null || { echo "build.sh: $engine is not installed (Debian: apt-get install podman)" >&2; exit 1; }
command -v readelf >/dev/null || { echo "build.sh: readelf is needed (Debian: binutils)" >&2; exit 1; }

for image in "${images[@]}"; do
    case "$image" in
        fdfs-node) package=fdfs-node; bins=(fdfs-node fdfs) ;;
        fdfs-operator) package=fdfs-operator; bins=(fdfs-operator) ;;
        *) echo "build.sh: unknown image '$image' (fdfs-node or fdfs-operator)" >&2; exit 2 ;;
    esac
    if [ -n "${IMAGE_BINARIES_DIR:-}" ]; then
        built_dir="$IMAGE_BINARIES_DIR"
    else
        bin_args=()
        for b in "${bins[@]}"; do bin_args+=(--bin "$b"); done
        # An explicit --target keeps the static flag away from build scripts and proc macros.
        RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --release --locked --target "$target_triple" -p "$package" "${bin_args[@]}" >&2
        built_dir="$target_dir/$target_triple/release"
    fi

    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    mkdir -p "$context/bin" "$context/data"
    for b in "${bins[@]}"; do
        built="$built_dir/$b"
        # A binary for scratch must not need a loader or shared libraries.
        if readelf -l "$built" | grep -q 'INTERP' || readelf -d "$built" | grep -q 'NEEDED'; then
            echo "build.sh: $built is not statically linked" >&2
            exit 1
        fi
        cp "$built" "$context/bin/$b"
        if command -v strip >/dev/null; then strip "$context/bin/$b"; fi
    done

    name="$prefix/$image:$tag"
    "$engine" build --quiet \
        --build-arg BINARIES=prebuilt \
        --build-arg VERSION="$version" \
        --build-arg REVISION="$revision" \
        -f "$repo/images/$image.Dockerfile" -t "$name" "$context" >&2
    rm -rf "$context"
    trap - EXIT
    echo "image $name"
done
