#!/usr/bin/env bash
# Fails when the protos under contracts/ break wire or source compatibility
# (buf breaking, FILE rules from buf.yaml) compared with a base commit:
#
#   scripts/check-breaking.sh            # base chosen as below
#   scripts/check-breaking.sh <git-ref>  # explicit base (also BREAKING_BASE=<git-ref>)
#
# Base, when none is given:
#   1. the merge-base of HEAD and origin/main, when HEAD is not already on it
#      (a pull request: everything the branch changed);
#   2. HEAD, when contracts/ or buf.yaml have uncommitted changes (local work);
#   3. HEAD~1 (a push to main: what the last commit changed).
# The check is skipped, with a message and exit status 0, when there is no such
# commit (new repository, or a shallow clone: fetch with depth 0 to check) or
# when the base has no contracts/ yet (nothing to be compatible with). An
# explicit base that is not a commit here is an error (exit status 2).
#
# The base tree is taken with `git archive` rather than buf's own `.git#ref=`
# input, which clones the repository and is unreliable on shallow clones.
set -euo pipefail

cd "$(dirname "$0")/.."

skip() {
  echo "check-breaking: skipped: $*" >&2
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
  elif [ -n "$(git status --porcelain -- contracts buf.yaml)" ]; then
    base_ref="HEAD"
  elif git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
    base_ref="HEAD~1"
  else
    skip "no earlier commit to compare with${shallow_hint}"
  fi
fi

if ! base_sha="$(git rev-parse --verify --quiet "${base_ref}^{commit}")"; then
  # An explicit base that does not resolve is a mistake, not a reason to skip.
  echo "check-breaking: '${base_ref}' is not a commit in this clone${shallow_hint}" >&2
  exit 2
fi

if [ -z "$(git ls-tree -d "$base_sha" contracts)" ]; then
  skip "base ${base_sha:0:12} has no contracts/ yet"
fi

against="$(mktemp -d)"
trap 'rm -rf "$against"' EXIT

git archive "$base_sha" contracts | tar -x -C "$against"
if git cat-file -e "${base_sha}:buf.yaml" 2>/dev/null; then
  git show "${base_sha}:buf.yaml" >"$against/buf.yaml"
else
  # Same module layout as today, so file paths line up.
  cp buf.yaml "$against/buf.yaml"
fi

echo "check-breaking: contracts/ against ${base_ref} (${base_sha:0:12})" >&2
npx --no-install buf breaking --against "$against"
echo "check-breaking: no breaking changes" >&2
