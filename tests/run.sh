#!/usr/bin/env bash
# The whole test suite, as CI runs it:   ./tests/run.sh
# Installs what it needs when missing (PostgreSQL, Mosquitto, socat via apt-get), starts a
# throwaway PostgreSQL cluster for the per-test databases, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages"
./tests/deps.sh

echo "== postgres for the tests"
DATABASE_URL=$(./tests/pg.sh start)
export DATABASE_URL
# Queries are checked at compile time against the committed .sqlx/ data, never a live
# database: a query missing from .sqlx/ fails the build (regenerate with
# `cargo sqlx prepare --workspace -- --tests`).
export SQLX_OFFLINE=true

echo "== architecture invariant: pure crates pull in no runtime, database or web stack"
for crate in warden-types warden-protocol warden-core; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|sqlx|axum|rumqttc|rumqttd|tokio-serial|hyper) '; then
        echo "error: $crate depends on an I/O crate (listed above)" >&2
        exit 1
    fi
done

echo "== architecture invariant: the production build links no simulator"
if cargo tree -p wardend -e normal --no-default-features --features embedded-broker --prefix none | grep -E '^warden-sim '; then
    echo "error: wardend without the demo feature links warden-sim" >&2
    exit 1
fi
cargo check -p wardend --no-default-features --features embedded-broker

echo "== supply chain: cargo deny (licences, bans, sources; advisories when the database is reachable)"
if ! cargo deny --version >/dev/null 2>&1; then
    cargo install cargo-deny --locked --version 0.20.2 --quiet
fi
cargo deny check licenses bans sources
# The RustSec advisory database is a git repository on github.com; a machine that cannot
# reach it (this CI's network allows only package registries) says so instead of passing
# silently.
if git ls-remote --exit-code https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
    cargo deny check advisories
else
    echo "WARNING: github.com unreachable: the RustSec advisory database cannot be fetched; advisories NOT checked"
fi

echo "== console UI modules type-check (TypeScript, no build step in the product)"
./tests/typecheck-console.sh

echo "== unit, vector, property, integration and end-to-end tests (benches run once as tests)"
# Property tests run 256 cases each by default; PROPTEST_CASES raises it for a longer soak.
cargo test --workspace --all-targets

echo "== fuzz targets build"
cargo check --manifest-path crates/warden-protocol/fuzz/Cargo.toml --bins

echo "== short bounded fuzz run: every parser target, 10 s each (libFuzzer, no sanitizer: stable Rust)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi
fuzz_log=$(mktemp)
for target in surgard contact_id dc09 sia scaip signal_path; do
    # The whole output only when a target fails (the crash, its input and artifact path).
    if ! (cd crates/warden-protocol && cargo fuzz run -s none "$target" -- -max_total_time=10 -rss_limit_mb=1024) >"$fuzz_log" 2>&1; then
        cat "$fuzz_log"
        echo "fuzz target $target failed" >&2
        exit 1
    fi
    echo "$target: $(grep -E '^Done [0-9]+ runs' "$fuzz_log")"
done
rm -f "$fuzz_log"
