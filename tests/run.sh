#!/usr/bin/env bash
# The whole test suite, as CI runs it. Usage: ./tests/run.sh
# Installs nothing the protocol tests need beyond Rust; later stages (Postgres, Mosquitto,
# socat) are installed here with apt-get when absent.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== architecture invariant: pure crates pull in no runtime, database or web stack"
for crate in warden-types warden-protocol; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|sqlx|axum|rumqttc|tokio-serial|hyper) ' ; then
        echo "error: $crate depends on an I/O crate (listed above)" >&2
        exit 1
    fi
done

echo "== unit, vector, property and end-to-end tests (benches run once each as tests)"
# Property tests run 256 cases each by default; PROPTEST_CASES raises it for a longer soak.
cargo test --workspace --all-targets

echo "== fuzz targets build"
cargo check --manifest-path crates/warden-protocol/fuzz/Cargo.toml --bins

echo "== short bounded fuzz run (when cargo-fuzz is installed)"
if cargo fuzz --version >/dev/null 2>&1; then
    for target in surgard contact_id dc09 sia; do
        (cd crates/warden-protocol && cargo fuzz run -s none "$target" -- -max_total_time=15 -rss_limit_mb=1024)
    done
else
    echo "cargo-fuzz not installed; skipped (install: cargo install cargo-fuzz --locked)"
fi
