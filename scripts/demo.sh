#!/usr/bin/env bash
# The main job on the embedded default: installs missing system packages, builds `cbdc`,
# starts a whole 2PC cluster in one process (2 shard groups, 1 coordinator group,
# 1 sentinel, RocksDB under a fresh directory) and runs a scripted mint, payment, double
# spend and retry through the public gRPC API. Extra arguments go to `cbdc dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir="$(mktemp -d -t cbdc-demo.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
RUST_LOG="${RUST_LOG:-warn}" cargo run --locked --bin cbdc -- dev --dir "$dir/cluster" --demo "$@"
