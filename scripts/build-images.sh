#!/usr/bin/env bash
# Builds the images sandbox-docker's tests and sandboxes run on, into the Docker
# Engine that DOCKER_HOST (or the docker CLI's default) names:
#
#   sandbox-docker/busybox:latest        Debian's busybox-static in an empty
#                                        rootfs, one symlink per applet (~2 MB).
#   sandbox-docker/debian-docker:bookworm  a Debian bookworm minbase rootfs with
#                                        docker.io, docker-compose (1.29.2, the
#                                        Python one bookworm ships),
#                                        ca-certificates and busybox-static
#                                        (~450 MB), made by debootstrap, for
#                                        Docker-in-Docker.
#
# Usage:  DOCKER_HOST=unix:///path/docker.sock scripts/build-images.sh [busybox|debian-docker|all]
#         (default: all)
#
# Idempotent and safe to run twice, even at once: an image already in the
# engine is not rebuilt (FORCE=1 rebuilds it); the debootstrap rootfs is kept
# as a tarball in the cache dir, so only the first build downloads and
# unpacks Debian (~1 min), later ones only import (~10 s); builds into one
# cache dir are serialized with flock.
#
# Environment:
#   DOCKER_HOST           the engine to build into (as for the docker CLI)
#   DOCKER                the docker CLI (default: docker)
#   BUSYBOX               a statically linked busybox (default: busybox on PATH)
#   DEBIAN_MIRROR         default: the URI of this machine's own Debian apt
#                         source (scripts/apt-source.sh)
#   SANDBOX_DOCKER_CACHE  cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-docker)
#   FORCE=1               rebuild images that are present (the cache is kept)
#
# Needs: bash, tar, the docker CLI; for busybox: busybox-static; for
# debian-docker: root, debootstrap and network access to the mirror.
set -euo pipefail

readonly BUSYBOX_IMAGE=sandbox-docker/busybox:latest
readonly DEBIAN_IMAGE=sandbox-docker/debian-docker:bookworm
readonly SUITE=bookworm
readonly VARIANT=minbase
readonly INCLUDE=docker.io,docker-compose,ca-certificates,busybox-static
readonly IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

DOCKER=${DOCKER:-docker}
MIRROR=${DEBIAN_MIRROR:-}
CACHE=${SANDBOX_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-docker}

log() { printf '%s build-images: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# Paths removed on exit, however the script ends.
CLEANUP=()
cleanup() {
  local path
  for path in "${CLEANUP[@]}"; do remove_tree "$path"; done
}
trap cleanup EXIT

# Skips an image the engine already has, unless FORCE=1.
wanted() {
  if [[ ${FORCE:-0} != 1 ]] && present "$1"; then
    log "$1 is present; not rebuilt (FORCE=1 rebuilds it)"
    return 1
  fi
}

# Mount points at or below $1, deepest first.
mounts_under() {
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}

# Unmounts whatever is mounted at or below $1 (debootstrap mounts /proc, /sys
# and, in a container, binds /dev) and removes it, never crossing into a
# mount that is still there.
remove_tree() {
  local dir=$1 point
  [[ -e $dir ]] || return 0
  while read -r point; do
    umount -l "$point" 2>/dev/null || true
  done < <(mounts_under "$dir")
  if [[ -n $(mounts_under "$dir") ]]; then
    log "warning: mounts remain under $dir; left in place"
    return 0
  fi
  rm -rf --one-file-system -- "$dir"
}

build_busybox() {
  wanted "$BUSYBOX_IMAGE" || return 0
  local busybox=${BUSYBOX:-$(command -v busybox || true)}
  [[ -n $busybox && -x $busybox ]] ||
    die "no busybox found; install busybox-static (apt-get install -y --no-install-recommends busybox-static)"
  if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; install busybox-static"
  fi

  local started=$SECONDS work
  work=$(mktemp -d)
  CLEANUP+=("$work")
  local root=$work/rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,root,var/tmp,tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  cp "$busybox" "$root/bin/busybox"
  local applet
  for applet in $("$root/bin/busybox" --list-full); do
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    "$DOCKER" import --change "ENV PATH=$IMAGE_PATH" --change 'CMD ["sh"]' - "$BUSYBOX_IMAGE" >/dev/null
  log "$BUSYBOX_IMAGE imported in $((SECONDS - started)) s"
}

# The rootfs's cache key: a change to the package list makes a new tarball,
# and an engine holding the image of another list rebuilds it.
ROOTFS_KEY=$(printf '%s %s %s' "$SUITE" "$VARIANT" "$INCLUDE" | sha256sum | cut -c1-12)
readonly ROOTFS_KEY ROOTFS_LABEL=sandbox-docker.rootfs

# The image is present and made from this package list.
current_debian() {
  [[ $("$DOCKER" image inspect --format "{{index .Config.Labels \"$ROOTFS_LABEL\"}}" \
    "$DEBIAN_IMAGE" 2>/dev/null) == "$ROOTFS_KEY" ]]
}

wanted_debian() {
  if [[ ${FORCE:-0} != 1 ]] && current_debian; then
    log "$DEBIAN_IMAGE is present; not rebuilt (FORCE=1 rebuilds it)"
    return 1
  fi
  if present "$DEBIAN_IMAGE" && ! current_debian; then
    log "$DEBIAN_IMAGE is present from another package list; rebuilt with $INCLUDE"
  fi
}

build_debian_docker() {
  wanted_debian || return 0
  mkdir -p "$CACHE"
  # One build per cache dir at a time; the second waits, then finds the
  # tarball (and, into the same engine, the image).
  exec 9>"$CACHE/.build-images.lock"
  flock 9
  wanted_debian || return 0

  local key=$ROOTFS_KEY tarball started=$SECONDS
  tarball=$CACHE/debian-docker-$SUITE-$key.tar

  if [[ -s $tarball ]]; then
    log "using the cached rootfs $tarball"
  else
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
    command -v debootstrap >/dev/null ||
      die "debootstrap is not installed (apt-get install -y --no-install-recommends debootstrap)"
    if [[ -z $MIRROR ]]; then
      # shellcheck source=apt-source.sh
      . "$(dirname "${BASH_SOURCE[0]}")/apt-source.sh"
      MIRROR=$(debian_mirror)
      [[ -n $MIRROR ]] || die "no Debian source in /etc/apt to take a mirror from; set DEBIAN_MIRROR"
    fi
    local rootfs
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    CLEANUP+=("$rootfs" "$tarball.partial")
    log "debootstrap $SUITE ($VARIANT, +$INCLUDE) from $MIRROR"
    debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $CACHE/debootstrap.log: $(tail -n 3 "$CACHE/debootstrap.log")"
    log "debootstrap took $((SECONDS - started)) s"
    # Downloaded packages and indexes are not needed in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
    mv -- "$tarball.partial" "$tarball"
    remove_tree "$rootfs"
  fi

  local import_started=$SECONDS
  "$DOCKER" import --change "ENV PATH=$IMAGE_PATH" --change 'CMD ["/bin/bash"]' \
    --change "LABEL $ROOTFS_LABEL=$key" - "$DEBIAN_IMAGE" <"$tarball" >/dev/null
  log "$DEBIAN_IMAGE imported in $((SECONDS - import_started)) s ($((SECONDS - started)) s in all)"
}

case ${1:-all} in
  busybox) build_busybox ;;
  debian-docker) build_debian_docker ;;
  all)
    build_busybox
    build_debian_docker
    ;;
  *) die "unknown image '$1'; expected busybox, debian-docker or all" ;;
esac
