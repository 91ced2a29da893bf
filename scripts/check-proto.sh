#!/usr/bin/env bash
# Proto checks that run before the tests (npm's pretest), offline: buf needs no remote deps or plugins here.
#   1. buf lint: STANDARD rules (buf.yaml).
#   2. buf breaking against the main branch of this clone: the wire contract may not change by accident.
#      A deliberate break (e.g. string -> enum) fails until it has landed on main; set
#      LORASERVE_ALLOW_BREAKING=1 for that one change and say so in its commit.
#   3. gen/ drift: regenerate and fail if the checked-in code differs from what the protos produce.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npx buf lint
if git rev-parse --verify --quiet main >/dev/null; then
  if [ "${LORASERVE_ALLOW_BREAKING:-}" = 1 ]; then
    echo "check-proto: LORASERVE_ALLOW_BREAKING=1, buf breaking skipped" >&2
  else
    npx buf breaking --against '.git#branch=main'
  fi
else
  echo "check-proto: no local main branch, buf breaking skipped" >&2
fi
npx buf generate
if [ -n "$(git status --porcelain gen/)" ]; then
  git status --porcelain gen/ >&2
  echo "check-proto: gen/ differs from the protos; run npm run generate and commit gen/" >&2
  exit 1
fi
