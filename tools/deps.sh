#!/bin/sh
# Install every Debian package fogfabric needs to build, test and demo.
# Idempotent: does nothing when all are present.
set -eu
PKGS="build-essential pkg-config libmicrohttpd-dev libjansson-dev
libsqlite3-dev libgnutls28-dev nettle-dev libcurl4-gnutls-dev libcmocka-dev
libvirt-dev libguestfs-dev libpq-dev postgresql libxml2-dev libnl-3-dev libnl-genl-3-dev libnl-route-3-dev
libnftables-dev libreadline-dev libpci-dev pciutils pci.ids libvirt-daemon libvirt-daemon-driver-qemu
libvirt-clients qemu-system-x86 qemu-utils wireguard-go wireguard-tools
iproute2 nftables busybox-static linux-image-cloud-amd64 cpio curl sqlite3
xorriso syslinux syslinux-common mtools dosfstools procps psmisc iperf3 clang
nginx-light wrk systemd debhelper lintian prometheus
mmdebstrap e2fsprogs fdisk openssh-client dnsmasq-base bind9-dnsutils
ansible ansible-lint haproxy openssl
libsystemd-dev"
# libsystemd-dev and libnftables-dev: only for test_agent_contract, which
# builds the agent of the previous contract from git history (that agent
# still linked both).
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
# node and npm for the OpenAPI checks (Debian's, unless some node is there)
command -v npm >/dev/null || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
sh tools/npm-deps.sh
