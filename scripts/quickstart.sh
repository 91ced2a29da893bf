#!/usr/bin/env bash
# The README's quick start. Installs what a fresh Debian machine lacks (apt packages for the native build,
# npm packages from the lock file), builds TypeScript and the native addon, then either serves the bundled
# trained demo model (fixtures/trained) with its three adapters or runs the whole test suite.
#   bash scripts/quickstart.sh serve [extra serve flags]
#   bash scripts/quickstart.sh test  [extra vitest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-}"
[ $# -gt 0 ] && shift
case "$mode" in
  serve|test) ;;
  *) echo "usage: bash scripts/quickstart.sh serve|test [args...]" >&2; exit 2 ;;
esac

# Native build: a compiler, CMake, OpenBLAS (CPU GEMM) and Gloo (CPU collectives). The tests also drive
# Debian's python3-grpcio as an independent gRPC client and Debian's prometheus as a real scraper.
packages=(build-essential cmake libopenblas-dev libgloo-dev)
[ "$mode" = test ] && packages+=(python3-grpcio prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "quickstart: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "quickstart: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
case "$mode" in
  serve)
    npm run --silent build
    demo=fixtures/trained
    adapters=$(cd "$demo/adapters" && for d in */; do printf '%s=%s,' "${d%/}" "$demo/adapters/${d%/}"; done)
    exec node dist/client/cli.js serve --model-id "$demo/model" --lora-adapters "${adapters%,}" "$@"
    ;;
  test)
    exec npm test -- "$@"   # npm's pretest builds first
    ;;
esac
