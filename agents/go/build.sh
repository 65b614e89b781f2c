#!/usr/bin/env bash
# Builds the Go agent as one static binary: agents/go/bin/agent-jobs-agent-go (gitignored).
#   agents/go/build.sh          build
#   agents/go/build.sh test     go vet and go test, then build
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
if [ "${1:-}" = "test" ]; then
  go vet ./...
  go test ./...
fi
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/agent-jobs-agent-go .
echo "built $(pwd)/bin/agent-jobs-agent-go" >&2
