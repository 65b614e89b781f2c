#!/usr/bin/env bash
# Prints the folder holding the pinned protoc-gen-go and protoc-gen-go-grpc, building them first (once)
# with `go install` through the Go module proxy into a cache folder, as scripts/check-openapi-breaking.sh
# does for oasdiff. `npm run generate` puts that folder on PATH for `buf generate --template
# agents/go/buf.gen.yaml`, whose plugins are local (no Buf Schema Registry).
#
# PROTOC_GEN_GO_DIR=<dir> uses plugins already there instead.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12     # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2  # google.golang.org/grpc/cmd/protoc-gen-go-grpc

dir="${PROTOC_GEN_GO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-jobs/protoc-gen-go-${PROTOC_GEN_GO_VERSION}-grpc-${PROTOC_GEN_GO_GRPC_VERSION}}"
if [ ! -x "$dir/protoc-gen-go" ] || [ ! -x "$dir/protoc-gen-go-grpc" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "protoc-plugins: protoc-gen-go is not installed and Go is not on PATH to build it (install Go, or set PROTOC_GEN_GO_DIR)" >&2
    exit 2
  fi
  echo "protoc-plugins: installing protoc-gen-go ${PROTOC_GEN_GO_VERSION} and protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION} (go install, Go module proxy)" >&2
  mkdir -p "$dir"
  # Outside any module, so the agent's go.mod neither constrains nor records the plugins.
  cd "$dir"
  GOBIN="$dir" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
  GOBIN="$dir" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
fi
echo "$dir"
