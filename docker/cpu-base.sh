#!/usr/bin/env bash
# Makes the CPU image's base without a registry and imports it into a container engine:
# Debian bookworm (debootstrap --variant=minbase) with Python 3.11, venv, g++ and the Python headers (torch.compile's
# CPU backend, which vLLM's CPU sampler uses), libnuma1 (vLLM's CPU kernels link it) and this machine's CA
# certificates (so that pip inside the build trusts the same network as pip here), a venv at /opt/venv first on PATH
# (Debian's own Python is "externally managed", PEP 668) and torch 2.13.0, CPU build, in it.
#
#   docker/cpu-base.sh "podman --root ..." TAG            # make the base and import it (root: debootstrap, chroot)
#   docker/cpu-base.sh --tar FILE                         # make it only: a tar of its root file system (root)
#   docker/cpu-base.sh "podman --root ..." TAG FILE       # import a FILE that --tar made
#
# (the split lets CI make the base while its tests run, before any container engine is used: .ci/run)
# torch comes from `pip download` on this machine, so from wherever pip here finds the CPU build; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu. A CUDA build is refused. DEBIAN_MIRROR picks the mirror.
set -euo pipefail
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
torch_version=$(sed -n 's/^torch==//p' "$(dirname "$0")/../constraints.txt")
rootfs="" tarball=""
trap 'rm -rf "$rootfs" ${rootfs:+"$rootfs.log"} "$tarball"' EXIT  # also on SIGTERM (a step out of time)

# make_base FILE: debootstrap the base into a temporary root, then write that root as a tar to FILE
make_base() {
  local out=$1 start=$SECONDS packages=python3,python3-venv,python3-dev,ca-certificates,g++,libnuma1
  rootfs=$(mktemp -d /var/tmp/etr-cpu-base.XXXXXX)
  chmod 755 "$rootfs"  # it becomes the image's /: mktemp's 0700 would let no user but root run anything there
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" \
    > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  echo "[cpu-base] debootstrap: $((SECONDS - start)) s"

  # this machine's extra CA certificates (none on most machines): Debian's store plus these, as here
  if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates > /dev/null 2>&1
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs/etc/pip.conf"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"

  mkdir "$rootfs/tmp/wheels"
  python3 -m pip download -q --no-deps --dest "$rootfs/tmp/wheels" "torch==$torch_version"
  local wheel
  wheel=$(cd "$rootfs/tmp/wheels" && ls torch-*.whl)
  case $wheel in
    *+cpu*) ;;
    *) echo "error: pip found $wheel, not a CPU build of torch $torch_version: set" \
            "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu and rerun" >&2; exit 1 ;;
  esac
  # a clean environment in the chroot: this machine's PIP_* settings name paths that exist only here
  local in_base=(chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
  "${in_base[@]}" python3 -m venv /opt/venv
  "${in_base[@]}" /opt/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check "/tmp/wheels/$wheel"
  rm -rf "$rootfs/tmp/wheels" "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  : > "$rootfs/etc/resolv.conf"  # the engine provides its own at run time

  tar -C "$rootfs" -c . > "$out"
  rm -rf "$rootfs"
  echo "[cpu-base] $out: $((SECONDS - start)) s"
}

# import_base ENGINE TAG FILE: the tar as an image, with the base's environment
import_base() {
  # shellcheck disable=SC2086 # ENGINE is a command line ("podman --root ...")
  $1 import --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' - "$2" < "$3" > /dev/null
  echo "[cpu-base] $2 imported"
}

usage="usage: $0 ENGINE TAG [FILE] | $0 --tar FILE"
if [ "${1:-}" = --tar ]; then
  [ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
  make_base "$2"
elif [ $# -eq 3 ]; then
  import_base "$1" "$2" "$3"
elif [ $# -eq 2 ]; then
  tarball=$(mktemp /var/tmp/etr-cpu-base.XXXXXX.tar)
  make_base "$tarball"
  import_base "$1" "$2" "$tarball"
else
  echo "$usage" >&2; exit 2
fi
