#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, every crate's tests, and
# a build of the benchmarks. Tests that need /dev/kvm or root skip loudly
# where those are missing; set VIRTLAB_REQUIRE_KVM=1 and VIRTLAB_REQUIRE_ROOT=1
# (as CI does) to turn any such skip into a failure. The set-up builds the
# Linux guest kernel once (cached), for the test that boots it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh --linux
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo bench --no-run"
cargo bench --workspace --no-run --quiet
echo "== cargo test"
cargo test --workspace --no-fail-fast
