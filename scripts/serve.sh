#!/usr/bin/env bash
# Runs Witness on the embedded default: SQLite under ./data/, recordings on
# local disk, no broker. Installs the build tools it needs when missing.
#
#   scripts/serve.sh                           # http://127.0.0.1:8080
#   scripts/serve.sh --listen 0.0.0.0:8080     # extra arguments go to `witness serve`
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_build_tools
need_gstreamer
need_face_models
cargo build --release --bin witness
exec target/release/witness serve "$@"
