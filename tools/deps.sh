#!/usr/bin/env bash
# Install the Debian packages kvstore needs to build, test, fuzz and benchmark.
# Idempotent and silent when everything is present; runs apt-get update once
# before installing. Needs root (or sudo) only when something is missing.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git        # toolchain
  liburing-dev libmimalloc-dev libxxhash-dev  # runtime libraries
  liblua5.1-0-dev lua-cjson-dev lua-bitop-dev # scripting (EVAL): Lua 5.1, cjson, bit
  libedit-dev                                 # kvcli line editing
  libcriterion-dev                            # unit tests
  python3 python3-pytest python3-redis        # system tests (Debian's python3)
  redis-server redis-tools                    # reference server, redis-benchmark
  clang libclang-rt-14-dev clang-format       # fuzzing, format check
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# redis-server's package starts a daemon where an init system runs; tests start
# their own servers on free ports, so that one is not needed.
