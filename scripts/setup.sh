#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build cbdc, and nothing else.
# Idempotent: run it as often as you like. Needs root (or sudo) only when something is
# missing.
set -euo pipefail

need_apt=()
# librocksdb-sys generates its bindings with bindgen, which loads libclang at build time.
# Only libclang itself counts: libclang-cpp (a C++ library some images carry) does not.
# Any one match will do (`ls` of all the patterns failed whenever one of them matched
# nothing, so every run reinstalled).
have_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
      /usr/lib/x86_64-linux-gnu/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
have_libclang || need_apt+=(libclang-dev)
# RocksDB is C++; the cc crate needs a C++ compiler.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)

if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (stable, 1.85 or newer) with rustup first" >&2
  exit 1
fi
