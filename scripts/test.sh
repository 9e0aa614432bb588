#!/usr/bin/env bash
# The test suite: installs missing system packages, then runs every test in the
# workspace (unit, property, in-process cluster and multi-process tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
