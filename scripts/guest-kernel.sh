#!/usr/bin/env bash
# Provisions virtlab's Linux guest kernel, into virtlab's cache directory
# (never /boot):
#
#   scripts/guest-kernel.sh [build] [--source DIR|TARBALL] [--jobs N]
#       Builds the minimal kernel: `make tinyconfig`, then guest/linux/virtlab.config
#       merged on top, guest/linux/*.patch applied, `make vmlinux bzImage`.
#       Source: --source, else $VIRTLAB_KERNEL_SOURCE, else Debian's
#       /usr/src/linux-source-6.1.tar.xz (apt-get install linux-source-6.1
#       flex bison bc libelf-dev libssl-dev build-essential).
#       Result: $cache/guest-kernel/current/{vmlinux,bzImage,config,info}.
#       A build with the same source, fragment and patches is reused.
#   scripts/guest-kernel.sh cloud
#       Unpacks Debian's linux-image-cloud-amd64 (apt-get download + dpkg -x)
#       into $cache/guest-kernel/cloud/ (the fallback: a stock kernel, much
#       slower to boot, see guides).
#   scripts/guest-kernel.sh path
#       Prints the cached minimal kernel's vmlinux, or fails.
#
# $cache is $XDG_CACHE_HOME/virtlab or ~/.cache/virtlab, as for the virtlab
# binary. Takes ~7 minutes on 2 cores; progress goes to stderr, the full log
# to $cache/guest-kernel/<key>/build.log.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/virtlab"
[ -n "${XDG_CACHE_HOME:-}" ] || cache="$HOME/.cache/virtlab"
base="$cache/guest-kernel"
fragment="$root/guest/linux/virtlab.config"

say() { printf 'guest-kernel: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

cmd=build
case "${1:-}" in
    build|cloud|path) cmd="$1"; shift ;;
esac
source_arg="${VIRTLAB_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}"
jobs="$(nproc 2>/dev/null || echo 2)"
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_arg="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

if [ "$cmd" = path ]; then
    [ -f "$base/current/vmlinux" ] || die "no minimal kernel built yet: run scripts/guest-kernel.sh"
    readlink -f "$base/current/vmlinux"
    exit 0
fi

if [ "$cmd" = cloud ]; then
    mkdir -p "$base/cloud"
    cd "$base/cloud"
    command -v apt-get >/dev/null || die "apt-get not found: the cloud kernel fallback is Debian-only"
    # The meta package depends on the versioned image package; fetch that.
    pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    [ -n "$pkg" ] || die "apt-cache does not know linux-image-cloud-amd64 (run apt-get update)"
    say "downloading $pkg"
    rm -f ./*.deb
    # As root, apt's download sandbox user cannot write here; download as root.
    apt-get -o APT::Sandbox::User=root download "$pkg" >&2
    rm -rf root && mkdir root
    dpkg -x ./*.deb root
    rm -f ./*.deb
    img="$(ls root/boot/vmlinuz-* | head -n1)"
    [ -n "$img" ] || die "no vmlinuz in $pkg"
    ln -sf "$img" vmlinuz
    say "unpacked $img"
    readlink -f vmlinuz
    exit 0
fi

# ---- build
for tool in make gcc flex bison bc; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install build-essential flex bison bc libelf-dev libssl-dev"
done
[ -e "$source_arg" ] || die "no kernel source at $source_arg: apt-get install linux-source-6.1, or pass --source DIR|TARBALL"

# The cache key: the source's identity, the fragment and the patches.
src_id="$(stat -c '%n %s %Y' "$source_arg")"
key="$( { echo "$src_id"; cat "$fragment" "$root"/guest/linux/*.patch; } | sha256sum | cut -c1-16)"
dir="$base/$key"
if [ -f "$dir/vmlinux" ]; then
    say "up to date: $dir (same source, fragment and patches)"
    ln -sfn "$key" "$base/current"
    echo "$dir/vmlinux"
    exit 0
fi
mkdir -p "$dir"
log="$dir/build.log"
: > "$log"

src="$dir/src"
if [ ! -f "$src/Makefile" ]; then
    rm -rf "$src"
    if [ -d "$source_arg" ]; then
        say "copying the kernel tree $source_arg"
        mkdir -p "$src"
        cp -a "$source_arg"/. "$src"/
    else
        say "unpacking $source_arg (~30 s)"
        mkdir -p "$dir/unpack"
        tar -xf "$source_arg" -C "$dir/unpack"
        mv "$dir/unpack"/* "$src"
        rmdir "$dir/unpack"
    fi
    for p in "$root"/guest/linux/*.patch; do
        say "applying $(basename "$p")"
        patch -p1 -d "$src" < "$p" >> "$log" || die "patch $(basename "$p") does not apply to this source (see $log)"
    done
fi

out="$dir/build"
mkdir -p "$out"
say "configuring: tinyconfig + guest/linux/virtlab.config"
make -C "$src" O="$out" tinyconfig >> "$log" 2>&1 || die "make tinyconfig failed (see $log)"
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment" >> "$log" 2>&1 \
    || die "merging the fragment failed (see $log)"
make -C "$src" O="$out" olddefconfig >> "$log" 2>&1 || die "make olddefconfig failed (see $log)"
# Every option of the fragment must have survived (a missing dependency
# silently drops one).
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qxF "$line" "$out/.config" || { say "warning: $line did not stick"; missing=1; } ;;
        "# CONFIG_"*" is not set")
            opt="${line#\# }"
            opt="${opt%% *}"
            if grep -q "^$opt=" "$out/.config"; then say "warning: $opt is still set"; missing=1; fi ;;
    esac
done < "$fragment"
[ "$missing" = 0 ] || say "some options differ from the fragment (see above); building anyway"

say "building vmlinux and bzImage with $jobs jobs (~7 min on 2 cores); log: $log"
start=$(date +%s)
make -C "$src" O="$out" -j"$jobs" vmlinux bzImage >> "$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    n=$(grep -c '^  CC ' "$log" || true)
    say "  $(( $(date +%s) - start )) s: $n files compiled"
done
wait "$pid" || die "the kernel build failed; last lines of $log:
$(tail -n 20 "$log")"

cp "$out/vmlinux" "$dir/vmlinux.tmp" && mv "$dir/vmlinux.tmp" "$dir/vmlinux"
cp "$out/arch/x86/boot/bzImage" "$dir/bzImage"
cp "$out/.config" "$dir/config"
{
    echo "source: $source_arg"
    echo "version: $(make -s -C "$src" O="$out" kernelversion 2>/dev/null)"
    echo "fragment: guest/linux/virtlab.config"
    echo "patches: $(cd "$root/guest/linux" && ls ./*.patch | xargs -n1 basename | tr '\n' ' ')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s"
} > "$dir/info"
ln -sfn "$key" "$base/current"
say "done in $(( $(date +%s) - start )) s: $dir/vmlinux ($(du -h "$dir/vmlinux" | cut -f1)), bzImage $(du -h "$dir/bzImage" | cut -f1)"
echo "$dir/vmlinux"
