#!/usr/bin/env bash
# Renders a recorded run as the HTML page (`virtlab report RUN.json -o
# page.html`) and takes a 1024x768 screenshot of it in headless Chromium,
# as a projector shows it: the picture in README.md and guide chapter 9.
# Nothing is drawn by hand: run this again after changing the page.
#
#   scripts/screenshot.sh [RUN.json [OUT.png]]
#
# RUN.json defaults to the recorded run of the golden tests
# (compare/tests/golden/full.json), OUT.png to guides/src/report.png.
# Needs chromium (scripts/setup.sh installs it). PREFERS=dark takes the
# dark style instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${1:-$root/compare/tests/golden/full.json}"
out="${2:-$root/guides/src/report.png}"

if ! command -v chromium >/dev/null 2>&1; then
    echo "screenshot.sh: chromium is not installed (apt install chromium, or scripts/setup.sh)" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo run --quiet --manifest-path "$root/Cargo.toml" -p virtlab-compare --bin virtlab -- \
    report "$run" -o "$tmp/report.html"

dark=()
[ "${PREFERS:-light}" = dark ] && dark=(--force-dark-mode)
# --no-sandbox: Chromium's sandbox refuses to run as root; the page is our
# own file. A private profile directory, so that a running browser does
# not get the job.
timeout 300 chromium --headless --disable-gpu --no-sandbox --user-data-dir="$tmp/profile" \
    --hide-scrollbars --window-size=1024,768 "${dark[@]}" \
    --screenshot="$out" "file://$tmp/report.html" >/dev/null 2>"$tmp/chromium.log" || {
    cat "$tmp/chromium.log" >&2
    exit 1
}
[ -s "$out" ] || { echo "screenshot.sh: chromium wrote no $out" >&2; cat "$tmp/chromium.log" >&2; exit 1; }
echo "screenshot.sh: wrote $out" >&2
