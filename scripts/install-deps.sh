#!/usr/bin/env bash
# Installs the Debian packages HydraLM builds with, when they are missing. Idempotent: prints what it installs,
# installs nothing when everything is present. Run as root (or with sudo available) on a fresh Debian/Ubuntu.
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is not a Debian package here: when /usr/local/cuda/bin/nvcc exists the
# build compiles the CUDA backend, otherwise it builds the CPU-only project.
set -euo pipefail

required=(g++ cmake ninja-build pkg-config libeigen3-dev libyaml-cpp-dev libfmt-dev doctest-dev
          libopenmpi-dev openmpi-bin ccache)

missing=()
for pkg in "${required[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#required[@]} packages present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: apt-get not found; install them with your package manager and re-run" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: not root and no password-less sudo; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
