#!/usr/bin/env bash
# Installs what virtlab needs on a Debian/Ubuntu machine: a Rust toolchain
# (when cargo is missing) and the distribution packages its tests and
# demonstrations use. With --linux it also builds the minimal Linux guest
# kernel from Debian's kernel source (scripts/guest-kernel.sh; cached, ~7
# minutes the first time on 2 cores). Safe to run again; does nothing that
# is already done.
set -euo pipefail

linux=0
[ "${1:-}" = "--linux" ] && linux=1

say() { printf 'virtlab setup: %s\n' "$*" >&2; }

# Debian packages: busybox-static gives containers an interactive shell and
# the isolation tests their tools; qemu-system-x86 boots the same minikernel
# as a peer (and checks that the minikernel does not depend on our VMM);
# binutils' objdump checks the kernel's code; bubblewrap and runc are the
# container peers of `virtlab compare --peers`; skopeo, umoci and podman read
# and write the OCI images virtlab stores, and the image tests check virtlab
# against them. chromium (headless) opens the HTML report of `virtlab
# compare --html` in its browser test and takes README's screenshot
# (scripts/screenshot.sh); tmux is the real terminal the test of `virtlab
# race` drives.
packages=(busybox-static qemu-system-x86 binutils bubblewrap runc crun cpio skopeo umoci podman chromium tmux)
# The Linux guest kernel is built from source: Debian's kernel source and
# its build tools.
if [ "$linux" = 1 ]; then
    packages+=(linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "please install these packages with your package manager: ${missing[*]}"
    elif [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        say "not root and no sudo: install these packages as root: ${missing[*]}"
    else
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        say "installing ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    elif command -v curl >/dev/null 2>&1; then
        say "installing the Rust toolchain with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        say "cargo is missing: install Rust 1.85 or newer (https://rustup.rs), then run this again"
        exit 1
    fi
fi

if [ ! -e /dev/kvm ]; then
    say "note: /dev/kvm is missing, so VM runs will be skipped: enable VT-x/AMD-V or nested virtualization"
elif [ ! -w /dev/kvm ]; then
    say "note: /dev/kvm is not writable for you: sudo usermod -aG kvm \$USER (then log in again), or run as root"
fi

if [ "$linux" = 1 ]; then
    # Reuses the cached build when source, config fragment and patches match.
    "$(cd "$(dirname "$0")/.." && pwd)/scripts/guest-kernel.sh" build
fi
