#!/usr/bin/env bash
# Installs what the tests need on a Debian machine, then runs every test.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages of the stock clients the compatibility tests drive.
debs=()
command -v kcat >/dev/null 2>&1 || debs+=(kcat)
/usr/bin/python3 -c 'import kafka' >/dev/null 2>&1 || debs+=(python3-kafka)
/usr/bin/python3 -c 'import confluent_kafka' >/dev/null 2>&1 || debs+=(python3-confluent-kafka)
# kafka-python's snappy, lz4 and zstd codecs.
/usr/bin/python3 -c 'import snappy' >/dev/null 2>&1 || debs+=(python3-snappy)
/usr/bin/python3 -c 'import lz4' >/dev/null 2>&1 || debs+=(python3-lz4)
/usr/bin/python3 -c 'import zstandard' >/dev/null 2>&1 || debs+=(python3-zstandard)
command -v node >/dev/null 2>&1 || debs+=(nodejs)
command -v npm >/dev/null 2>&1 || debs+=(npm)
command -v ip >/dev/null 2>&1 || debs+=(iproute2)
if [ ${#debs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${debs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
fi

# kafkajs, pinned by compat-tests/js/package-lock.json.
if ! (cd compat-tests/js && npm ls --depth=0 >/dev/null 2>&1); then
  echo "installing kafkajs (npm ci)"
  npm ci --prefix compat-tests/js --no-audit --no-fund >/dev/null
fi

export GOFLAGS="${GOFLAGS:-} -mod=readonly"

# Every stage runs even when an earlier one fails, so one run shows all the
# failures (a failing vet must not hide the compatibility results).
failed=()
stage() {
  local name=$1; shift
  echo "== $name"
  if ! "$@"; then
    failed+=("$name")
    echo "== $name: FAILED"
  fi
}

stage "go vet" go vet ./...
# Pinned so that every machine runs the same checks.
stage "staticcheck" go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
stage "unit tests (race detector)" go test -count=1 -race ./internal/... ./kproto/... ./coordinator/... ./broker/... ./streams/... ./cmd/...
# The benchmark runner's tests drive local clusters with faults (network
# cuts in namespaces when run as root) and a seeded chaos run: on their own.
stage "benchmark runner (local clusters, faults, seeded chaos)" go test -count=1 -race -timeout 15m ./bench/...
stage "compatibility tests (broker processes and stock clients)" go test -count=1 -timeout 20m ./compat-tests/...

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED stages (${#failed[@]}):"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "all stages passed"
