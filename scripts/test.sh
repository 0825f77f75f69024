#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is
# missing (PostgreSQL, the tansu Kafka broker, kcat, Chromium and
# playwright-core, pyarrow and DuckDB, stress-ng, Tesseract, promtool), starts a throwaway
# PostgreSQL on a port of its own, runs every test of the workspace against
# it (and SQLite), then stops it. The Kafka test starts its own broker.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p witness-api  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

need_build_tools
need_kafka_broker
need_browser
need_gstreamer
need_load_tools
need_ocr
need_promtool
need_python_clients
need_face_test_set

# vendor/rtc is exactly the published rtc plus its patches.
scripts/vendor-rtc.sh --check

start_postgres
export WITNESS_TEST_PG_URL="$PG_URL"

# --no-fail-fast: one CI run reports every failing test binary, not only the first.
cargo test --workspace --all-targets --no-fail-fast "$@"
# Doc examples are tests too (cargo test --all-targets skips them).
cargo test --workspace --doc "$@"
