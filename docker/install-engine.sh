#!/usr/bin/env bash
# Installs what `make image-test` needs, from Debian/Ubuntu packages, where it is missing: podman (the container
# engine), runc (podman's default runtime, crun, cannot set its rlimits on some VMs) and debootstrap (the CPU image's
# base). Run as root; CI runs it before `make image-test`. Where it cannot install (not root, no apt), it says why and
# exits 0: `make image-test` then skips with its own reason, or uses docker where docker runs.
set -euo pipefail
missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[install-engine] podman, runc and debootstrap are installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
  echo "[install-engine] missing ${missing[*]}, and this is not root with apt-get: not installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null; then
  echo "[install-engine] installed ${missing[*]}"
else
  echo "[install-engine] apt-get could not install ${missing[*]}: make image-test will say what it lacks"
fi
