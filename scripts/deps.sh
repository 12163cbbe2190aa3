#!/usr/bin/env bash
# Build-time system dependencies: `protoc` (the ChirpStack API crate compiles its Protobuf
# definitions). Installed with apt-get when missing and running as root; otherwise a clear message.
set -euo pipefail

if command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing protobuf-compiler (protoc) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq protobuf-compiler >/dev/null
    exit 0
fi
echo "deps: protoc is missing: install your system's protobuf compiler (Debian/Ubuntu: sudo apt-get install protobuf-compiler)" >&2
exit 1
