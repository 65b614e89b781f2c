#!/usr/bin/env bash
# Fails when openapi.yaml breaks its clients compared with a base commit (oasdiff breaking, ERR level),
# unless the change is listed as deliberate in .openapi-deliberate-breaking.txt; warnings are printed.
#
#   scripts/check-openapi-breaking.sh            # base chosen as below
#   scripts/check-openapi-breaking.sh <git-ref>  # explicit base (also BREAKING_BASE=<git-ref>)
#
# The base is chosen as scripts/check-breaking.sh chooses it for the protos:
#   1. the merge-base of HEAD and origin/main, when HEAD is not already on it (a pull request);
#   2. HEAD, when openapi.yaml has uncommitted changes (local work);
#   3. HEAD~1 (a push to main: what the last commit changed).
# Skipped, with a message and exit status 0, when there is no such commit or the base has no
# openapi.yaml. An explicit base that is not a commit here is an error (exit status 2).
#
# oasdiff is the pinned OASDIFF_VERSION, built once with `go install` through the Go module proxy into
# a cache folder (OASDIFF=<path> uses another binary).
set -euo pipefail

cd "$(dirname "$0")/.."

OASDIFF_VERSION=v1.38.0
deliberate=.openapi-deliberate-breaking.txt

skip() {
  echo "check-openapi-breaking: skipped: $*" >&2
  exit 0
}

git rev-parse --is-inside-work-tree >/dev/null 2>&1 || skip "not a git work tree"
git rev-parse --verify --quiet HEAD >/dev/null || skip "no commits yet"

shallow_hint=""
if [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
  shallow_hint=" (shallow clone: fetch with depth 0 to compare against history)"
fi

base_ref="${1:-${BREAKING_BASE:-}}"
if [ -z "$base_ref" ]; then
  head_sha="$(git rev-parse HEAD)"
  merge_base=""
  if git rev-parse --verify --quiet origin/main >/dev/null; then
    merge_base="$(git merge-base HEAD origin/main 2>/dev/null || true)"
  fi
  if [ -n "$merge_base" ] && [ "$merge_base" != "$head_sha" ]; then
    base_ref="$merge_base"
  elif [ -n "$(git status --porcelain -- openapi.yaml)" ]; then
    base_ref="HEAD"
  elif git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
    base_ref="HEAD~1"
  else
    skip "no earlier commit to compare with${shallow_hint}"
  fi
fi

if ! base_sha="$(git rev-parse --verify --quiet "${base_ref}^{commit}")"; then
  echo "check-openapi-breaking: '${base_ref}' is not a commit in this clone${shallow_hint}" >&2
  exit 2
fi
git cat-file -e "${base_sha}:openapi.yaml" 2>/dev/null || skip "base ${base_sha:0:12} has no openapi.yaml yet"

oasdiff="${OASDIFF:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-jobs/oasdiff-${OASDIFF_VERSION}/oasdiff}"
if [ ! -x "$oasdiff" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "check-openapi-breaking: oasdiff ${OASDIFF_VERSION} is not installed and Go is not on PATH to build it (install Go, or set OASDIFF)" >&2
    exit 2
  fi
  echo "check-openapi-breaking: installing oasdiff ${OASDIFF_VERSION} (go install, Go module proxy)" >&2
  GOBIN="$(dirname "$oasdiff")" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" go install "github.com/oasdiff/oasdiff@${OASDIFF_VERSION}"
fi

# A git revision rather than a temporary file: oasdiff names the base in each line it prints, and a
# path starting with "/" there would be taken for the API path when the line is listed as deliberate.
base="${base_sha}:openapi.yaml"

# Every breaking change, then those not listed as deliberate: the second run decides.
found="$("$oasdiff" breaking "$base" openapi.yaml --color never -f singleline | grep -cE '^(error|warning) at ' || true)"
echo "check-openapi-breaking: openapi.yaml against ${base_ref} (${base_sha:0:12}): ${found} breaking change(s) found" >&2
if "$oasdiff" breaking "$base" openapi.yaml --color never --fail-on ERR --err-ignore "$deliberate" --warn-ignore "$deliberate"; then
  echo "check-openapi-breaking: no breaking change left unlisted in ${deliberate}" >&2
else
  echo "check-openapi-breaking: openapi.yaml breaks clients (above). Make the change compatible, or, if it is" >&2
  echo "  deliberate, add these lines to ${deliberate} with the reason:" >&2
  "$oasdiff" breaking "$base" openapi.yaml --color never -f singleline --err-ignore "$deliberate" | grep -E '^error at ' >&2 || true
  exit 1
fi
