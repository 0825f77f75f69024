#!/usr/bin/env bash
# The benchmarks behind BENCHMARKS.md, on SQLite and on a throwaway
# PostgreSQL started here (default settings but for the port).
#
#   scripts/bench.sh              # every bench
#   BENCH_RUNS=3 scripts/bench.sh # fewer runs per median
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_build_tools
need_gstreamer
need_kafka_broker
apt_install wrk
need_python_clients
need_face_test_set
start_postgres
export WITNESS_BENCH_PG_URL="$PG_URL"
cargo bench --bench event_store
cargo bench --bench routing
cargo bench --bench rebuild
cargo bench --bench relay
cargo bench --bench http_messages
cargo bench --bench ws_fanout
cargo bench --bench sfu_load
cargo bench --bench reports
cargo bench --bench face
