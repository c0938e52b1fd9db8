#!/usr/bin/env bash
# One command for a demonstration on a fresh Debian machine with Rust:   ./deploy/demo.sh
# Installs PostgreSQL/Mosquitto/socat when missing, builds wardend and runs `wardend demo`:
# a private Postgres, an embedded MQTT broker, a simulated Sur-Gard receiver on a
# pseudo-terminal and a simulated MQTT fleet. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/deps.sh
SQLX_OFFLINE=true cargo build --release --bin wardend
exec ./target/release/wardend demo "$@"
