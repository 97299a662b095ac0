#!/usr/bin/env bash
# Build the test-bed's systemd container images without any registry:
#   debootstrap (minbase) -> `docker import` -> a small Dockerfile layer that adds
#   systemd, python3 and what a cloud image of that release ships.
#
# Usage: scripts/testbed/build-image.sh [debian12|ubuntu2204|ubuntu2404]...
#        (default: debian12).  Prints one line "<os> <image>" per image.
#
# Cache, by content hash: the debootstrapped root is tagged
# ai4os-testbed-rootfs:<os>-<h1> (h1 = SHA-256 of suite, mirror, keyring,
# variant); the final image ai4os-testbed:<os>-<h2> (h2 = SHA-256 of the root's
# tag and the Dockerfile text).  Existing tags are reused (no rebuild); the
# moving tag ai4os-testbed:<os> points at the current build.
# AI4OS_TESTBED_REBUILD=1 forces both steps.
#
# Mirrors (no registry host name is written in this repository):
#   Debian: AI4OS_TESTBED_DEBIAN_MIRROR, default: the first Debian URI this
#           machine's apt sources use.
#   Ubuntu: AI4OS_TESTBED_UBUNTU_MIRROR (required for ubuntu*; needs the
#           ubuntu-keyring package).  CI builds Debian 12 only.
set -euo pipefail

repo_name=${AI4OS_TESTBED_IMAGE:-ai4os-testbed}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "build-image: $*" >&2; exit 1; }

debian_mirror() {
    if [[ -n ${AI4OS_TESTBED_DEBIAN_MIRROR:-} ]]; then
        echo "$AI4OS_TESTBED_DEBIAN_MIRROR"; return
    fi
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources \
            | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    if [[ -z $uri ]]; then
        uri=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://\S+/debian/? +bookworm' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
              | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | head -n1 || true)
    fi
    [[ -n $uri ]] || die "no Debian mirror found in /etc/apt; set AI4OS_TESTBED_DEBIAN_MIRROR"
    echo "${uri%/}"
}

# os -> "suite mirror keyring-option"
os_params() {
    case $1 in
        debian12) echo "bookworm $(debian_mirror) -" ;;
        ubuntu2204|ubuntu2404)
            [[ -n ${AI4OS_TESTBED_UBUNTU_MIRROR:-} ]] \
                || die "$1 needs AI4OS_TESTBED_UBUNTU_MIRROR (an Ubuntu archive URL)"
            [[ -r /usr/share/keyrings/ubuntu-archive-keyring.gpg ]] \
                || die "$1 needs the ubuntu-keyring package (apt-get install ubuntu-keyring)"
            local suite=jammy; [[ $1 == ubuntu2404 ]] && suite=noble
            echo "$suite ${AI4OS_TESTBED_UBUNTU_MIRROR%/} /usr/share/keyrings/ubuntu-archive-keyring.gpg" ;;
        *) die "unknown test-bed OS '$1' (debian12, ubuntu2204, ubuntu2404)" ;;
    esac
}

# The layer on top of the debootstrapped root: what a cloud image carries
# (sshd, python3, sudo) plus systemd as PID 1.  Apt lists are kept so roles can
# install packages without a forced cache update.
dockerfile() {
    cat <<DOCKERFILE
FROM $1
ENV container=docker DEBIAN_FRONTEND=noninteractive
RUN apt-get update \\
 && apt-get install -y --no-install-recommends \\
      systemd systemd-sysv dbus python3 python3-apt sudo openssh-server \\
      ca-certificates iproute2 procps kmod \\
 && apt-get clean \\
 && rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id \\
 && rm -f /lib/systemd/system/multi-user.target.wants/getty.target \\
          /etc/systemd/system/getty.target.wants/* \\
 && systemctl mask systemd-udevd.service systemd-udevd-kernel.socket \\
      systemd-udevd-control.socket \\
      sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \\
      systemd-remount-fs.service getty.target console-getty.service
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
DOCKERFILE
}

build_one() {
    local os=$1 suite mirror keyring rootfs_hash rootfs_tag hash tag tmp
    read -r suite mirror keyring <<<"$(os_params "$os")"
    # Two cache keys: the root file system depends only on what debootstrap
    # gets; the image on that root plus the Dockerfile text.
    rootfs_hash=$(echo "minbase $os $suite $mirror $keyring" | sha256sum | cut -c1-16)
    rootfs_tag="$repo_name-rootfs:$os-$rootfs_hash"
    hash=$( { echo "$rootfs_tag"; dockerfile "$rootfs_tag"; } | sha256sum | cut -c1-16)
    tag="$repo_name:$os-$hash"

    if [[ -z ${AI4OS_TESTBED_REBUILD:-} ]] && docker image inspect "$tag" >/dev/null 2>&1; then
        docker tag "$tag" "$repo_name:$os"
        echo "$os $tag"
        return
    fi
    if [[ -n ${AI4OS_TESTBED_REBUILD:-} ]] || ! docker image inspect "$rootfs_tag" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
        tmp=$(mktemp -d /var/tmp/ai4os-testbed.XXXXXX)
        # shellcheck disable=SC2064
        trap "rm -rf '$tmp'" RETURN
        local kopt=()
        [[ $keyring != - ]] && kopt=(--keyring="$keyring")
        echo "build-image: debootstrap $suite from $mirror" >&2
        debootstrap --variant=minbase "${kopt[@]}" "$suite" "$tmp/root" "$mirror" >&2 \
            || die "debootstrap $suite failed (see output above)"
        tar -C "$tmp/root" --numeric-owner -c . | docker import - "$rootfs_tag" >/dev/null
    fi
    echo "build-image: building $tag" >&2
    dockerfile "$rootfs_tag" | docker build -q --label "ai4os.testbed.hash=$hash" \
        -t "$tag" -t "$repo_name:$os" - >&2
    echo "$os $tag"
}

main() {
    docker info >/dev/null 2>&1 || die "docker is not reachable (start it: $here/dockerd.sh)"
    [[ $# -gt 0 ]] || set -- debian12
    local os
    for os in "$@"; do build_one "$os"; done
}

main "$@"
