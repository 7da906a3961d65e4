#!/usr/bin/env bash
# Set up the services the DeepRecall test suite needs on a Debian 12 machine:
#   - a Docker engine (vfs storage) and an offline-built image deeprecall-sandbox:py3
#   - PostgreSQL 15 with pgvector (built from Debian trixie source) on 127.0.0.1:55433
#   - bubblewrap
#   - chromium and a font (the trace viewer's browser test loads its page headless)
#   - redis-server on 127.0.0.1:56379 (the server's shared rate limits, cost caps and answer cache)
#
# Usage: scripts/services.sh {apt|docker|postgres|redis|all|env|check-docker}
# Every subcommand is idempotent: a second run only checks and takes seconds.
# Needs root. See scripts/README.md.
set -Eeuo pipefail

# ---------------------------------------------------------------- settings
IMAGE="${DEEPRECALL_TEST_DOCKER_IMAGE:-deeprecall-sandbox:py3}"
PG_PORT="${DEEPRECALL_PG_PORT:-55433}"
PG_HOST=127.0.0.1
PG_DATA="${DEEPRECALL_PG_DATA:-/tmp/deeprecall-pg}"
PG_LOG="${PG_DATA}.log"
PG_SOCKDIR=/tmp
PG_BIN=/usr/lib/postgresql/15/bin
PG_DSN="postgresql://postgres@${PG_HOST}:${PG_PORT}/postgres"
REDIS_PORT="${DEEPRECALL_REDIS_PORT:-56379}"
REDIS_DIR="${DEEPRECALL_REDIS_DIR:-/tmp/deeprecall-redis}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
CACHE_DIR="${DEEPRECALL_CACHE_DIR:-/var/cache/deeprecall}"
DOCKERD_LOG=/tmp/deeprecall-dockerd.log
SUITE=bookworm
ROOTFS_TAR="${CACHE_DIR}/rootfs-${SUITE}-minbase-python3.tar"
APT_PACKAGES=(docker.io bubblewrap debootstrap postgresql postgresql-server-dev-15 make gcc libc6-dev
              chromium fonts-dejavu-core redis-server)

# ---------------------------------------------------------------- helpers
log() { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[services] ERROR: command failed (exit %s) at %s line %s: %s\n" "$?" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" >&2' ERR

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, dockerd, runuser postgres)"; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; run '$0 apt' first"; }

# One lock per step, so two concurrent runs of the same step do not collide.
# The lock fd must not leak into the daemons we start (they would hold the
# lock forever), hence unlock() after each step and close_fds() for daemons.
LOCK_FD=
lock() {
    mkdir -p "$CACHE_DIR"
    exec {LOCK_FD}>"$CACHE_DIR/.lock-$1"
    flock -w 900 "$LOCK_FD" || die "timed out waiting for lock $CACHE_DIR/.lock-$1"
}
unlock() {
    if [ -n "$LOCK_FD" ]; then exec {LOCK_FD}>&-; LOCK_FD=; fi
}

# Close every file descriptor above 2 of the current (sub)shell. Use as
# `( close_fds; exec cmd ) &` so that no intermediate shell lingers.
close_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

mirror() {
    local m=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^https?:/){print $i; exit}}' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || die "could not find a Debian mirror in /etc/apt/sources.list.d/debian.sources"
    printf '%s\n' "$m"
}

# ---------------------------------------------------------------- apt
cmd_apt() {
    need_root
    lock apt
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt: all packages present (${APT_PACKAGES[*]})"
        unlock
        return 0
    fi
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    for p in "${missing[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || die "apt: package $p still not installed"
    done
    log "apt: done"
    unlock
}

# ---------------------------------------------------------------- docker
dockerd_running() {
    local pid
    [ -s /var/run/docker.pid ] || return 1
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        log "docker: engine already running"
        return 0
    fi
    if dockerd_running; then
        log "docker: dockerd (pid $(cat /var/run/docker.pid)) is running but not ready yet; waiting"
    else
        need_cmd dockerd
        log "docker: starting dockerd --storage-driver=vfs (log: $DOCKERD_LOG)"
        # setsid + nohup: the daemon must outlive this script and its process group.
        ( close_fds; exec setsid nohup dockerd --storage-driver=vfs >"$DOCKERD_LOG" 2>&1 </dev/null ) &
    fi
    local i
    for i in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            log "docker: engine ready after ${i}s"
            return 0
        fi
        sleep 1
    done
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    die "docker: engine not ready after 60s (see $DOCKERD_LOG)"
}

build_rootfs_tar() {
    [ -s "$ROOTFS_TAR" ] && { log "docker: using cached rootfs $ROOTFS_TAR"; return 0; }
    need_cmd debootstrap
    local m work keyring=()
    m=$(mirror)
    work=$(mktemp -d /tmp/deeprecall-rootfs.XXXXXX)
    [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] \
        && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    log "docker: debootstrap --variant=minbase --include=python3 $SUITE from $m"
    if ! debootstrap "${keyring[@]}" --variant=minbase --include=python3 "$SUITE" "$work/root" "$m" \
            >"$work.debootstrap.log" 2>&1; then
        tail -n 30 "$work.debootstrap.log" >&2 || true
        rm -rf "$work"
        die "docker: debootstrap failed (full log: $work.debootstrap.log)"
    fi
    # Trim what a sandbox never needs: vfs copies the whole rootfs on every `docker run`.
    rm -rf "$work"/root/usr/share/{doc,man,info,locale}/* \
           "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/cache/apt/*.bin \
           "$work"/root/var/lib/apt/lists/* "$work"/root/var/log/* "$work"/root/debootstrap
    tar --numeric-owner -C "$work/root" -cf "$ROOTFS_TAR.tmp" . || { rm -rf "$work"; die "docker: tar of rootfs failed"; }
    mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$work" "$work.debootstrap.log"
    log "docker: cached rootfs $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

cmd_docker() {
    need_root
    lock docker
    need_cmd docker
    start_dockerd
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        log "docker: image $IMAGE present"
    else
        build_rootfs_tar
        log "docker: importing $IMAGE"
        docker import --change 'CMD ["python3"]' "$ROOTFS_TAR" "$IMAGE" >/dev/null \
            || die "docker: docker import of $ROOTFS_TAR failed"
    fi
    local out
    out=$(echo hi | docker run --rm -i --network none "$IMAGE" python3 -c 'import sys;print(sys.stdin.read())') \
        || die "docker: test run of $IMAGE failed"
    [ "$out" = "hi" ] || die "docker: test run of $IMAGE printed '$out', expected 'hi'"
    log "docker: $IMAGE runs (stdin -> python3 -> stdout ok)"
    check_hardened || die "docker: hardened 'docker run' failed; see the per-flag report above"
    unlock
}

# The flags the sandbox backend runs containers with. Try them together, and
# when that fails, one by one, so the failing flag is named.
HARDEN_FLAGS=(--read-only --tmpfs /tmp --user 65534:65534 --memory 256m --pids-limit 64 --cpus 1 --network none)
check_hardened() {
    local out
    if out=$(echo hi | docker run --rm -i "${HARDEN_FLAGS[@]}" "$IMAGE" \
            python3 -c 'import os,sys;open("/tmp/x","w").write("ok");print(sys.stdin.read().strip(), os.getuid())' 2>&1) \
       && [ "$out" = "hi 65534" ]; then
        log "docker: hardened run ok: ${HARDEN_FLAGS[*]}"
        return 0
    fi
    log "docker: hardened run FAILED: $out"
    local f
    for f in "--read-only" "--tmpfs /tmp" "--user 65534:65534" "--memory 256m" \
             "--pids-limit 64" "--cpus 1" "--network none"; do
        # shellcheck disable=SC2086
        if out=$(docker run --rm $f "$IMAGE" python3 -c 'print("ok")' 2>&1) && [ "$out" = ok ]; then
            log "docker:   flag ok:     $f"
        else
            log "docker:   flag FAILED: $f -> $out"
        fi
    done
    return 1
}

cmd_check_docker() {
    need_cmd docker
    docker info >/dev/null 2>&1 || die "docker engine not running; run '$0 docker'"
    check_hardened
}

# ---------------------------------------------------------------- postgres
build_pgvector() {
    if [ -f /usr/share/postgresql/15/extension/vector.control ]; then
        log "postgres: pgvector already installed"
        return 0
    fi
    need_cmd make
    [ -x "$PG_BIN/pg_config" ] || die "postgres: $PG_BIN/pg_config missing; run '$0 apt' (postgresql-server-dev-15)"
    local m W O src
    m=$(mirror)
    W="$CACHE_DIR/pgvector"
    mkdir -p "$W/lists/partial" "$W/cache/archives/partial" "$W/src"
    src=$(ls "$W"/src/pgvector_*.orig.tar.* 2>/dev/null | head -n1 || true)
    if [ -z "$src" ]; then
        log "postgres: fetching pgvector source from Debian trixie ($m)"
        echo "deb-src $m trixie main" >"$W/src.list"
        O=(-o "Dir::Etc::SourceList=$W/src.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$W/lists" -o "Dir::Cache=$W/cache" -o APT::Sandbox::User=root)
        apt-get -qq "${O[@]}" update || die "postgres: apt-get update of trixie deb-src failed"
        (cd "$W/src" && apt-get -qq "${O[@]}" source --download-only pgvector) \
            || die "postgres: apt-get source pgvector failed"
        src=$(ls "$W"/src/pgvector_*.orig.tar.* 2>/dev/null | head -n1 || true)
        [ -n "$src" ] || die "postgres: no pgvector_*.orig.tar.* downloaded into $W/src"
    else
        log "postgres: using cached source $src"
    fi
    local build
    build=$(mktemp -d /tmp/deeprecall-pgvector.XXXXXX)
    tar -xf "$src" -C "$build" || die "postgres: cannot unpack $src"
    local dir
    dir=$(ls -d "$build"/pgvector-*/ | head -n1)
    [ -n "$dir" ] || die "postgres: unexpected layout in $src"
    log "postgres: building $(basename "$dir")"
    make -C "$dir" -j"$(nproc)" PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" with_llvm=no >"$build.log" 2>&1 \
        || { tail -n 30 "$build.log" >&2; die "postgres: pgvector build failed (log: $build.log)"; }
    make -C "$dir" install PG_CONFIG="$PG_BIN/pg_config" with_llvm=no >>"$build.log" 2>&1 \
        || { tail -n 30 "$build.log" >&2; die "postgres: pgvector install failed (log: $build.log)"; }
    [ -f /usr/share/postgresql/15/extension/vector.control ] \
        || die "postgres: vector.control not installed by 'make install'"
    rm -rf "$build" "$build.log"
    log "postgres: pgvector installed"
}

as_pg() { runuser -u postgres -- "$@"; }

start_postgres() {
    id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' user; run '$0 apt'"
    [ -x "$PG_BIN/initdb" ] || die "postgres: $PG_BIN/initdb missing; run '$0 apt'"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "postgres: initdb $PG_DATA"
        install -d -m 700 -o postgres -g postgres "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres --no-sync -E UTF8 >/dev/null \
            || die "postgres: initdb failed"
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "postgres: server already running ($PG_DATA)"
    else
        if "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT"; then
            die "postgres: port $PG_PORT is served by another server, not $PG_DATA"
        fi
        touch "$PG_LOG" && chown postgres:postgres "$PG_LOG"
        log "postgres: starting on $PG_HOST:$PG_PORT (log: $PG_LOG)"
        ( close_fds; exec runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
            -o "-c listen_addresses=$PG_HOST -p $PG_PORT -k $PG_SOCKDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null ) \
            || { tail -n 20 "$PG_LOG" >&2; die "postgres: pg_ctl start failed (log: $PG_LOG)"; }
    fi
    local psql=(env PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$PG_DSN")
    "${psql[@]}" -c "CREATE EXTENSION IF NOT EXISTS vector" \
        || die "postgres: CREATE EXTENSION vector failed"
    local d
    d=$("${psql[@]}" -At -c "SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector") \
        || die "postgres: vector query failed"
    [ "$d" = "2" ] || die "postgres: vector distance check returned '$d', expected 2"
    log "postgres: ready, pgvector $("${psql[@]}" -At -c "SELECT extversion FROM pg_extension WHERE extname='vector'")"
}

cmd_postgres() {
    need_root
    lock postgres
    build_pgvector
    start_postgres
    unlock
    echo "$PG_DSN"
}

# ---------------------------------------------------------------- redis
# A throwaway server of our own on its own port (not the distribution's service): no persistence, so a test run
# never reads a previous run's counters.
cmd_redis() {
    need_cmd redis-server
    need_cmd redis-cli
    lock redis
    if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
        log "redis: server already running on 127.0.0.1:$REDIS_PORT"
    else
        mkdir -p "$REDIS_DIR"
        log "redis: starting on 127.0.0.1:$REDIS_PORT (log: $REDIS_DIR/redis.log)"
        ( close_fds; exec redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --save "" \
            --appendonly no --daemonize yes --logfile "$REDIS_DIR/redis.log" --pidfile "$REDIS_DIR/redis.pid" ) \
            || die "redis: redis-server failed to start"
        local i
        for i in $(seq 1 50); do
            [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ] && break
            sleep 0.1
        done
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ] \
            || { tail -n 20 "$REDIS_DIR/redis.log" >&2; die "redis: no PONG on port $REDIS_PORT"; }
    fi
    unlock
    log "redis: ready, $(redis-server --version | awk '{print $3}')"
    echo "$REDIS_URL"
}

# ---------------------------------------------------------------- env / all
cmd_env() {
    printf 'export DEEPRECALL_TEST_PG_DSN=%q\n' "$PG_DSN"
    printf 'export DEEPRECALL_TEST_REDIS_URL=%q\n' "$REDIS_URL"
    printf 'export DEEPRECALL_TEST_DOCKER_IMAGE=%q\n' "$IMAGE"
}

cmd_all() {
    local t0=$SECONDS self
    self=$(readlink -f "$0")
    cmd_apt
    log "all: apt took $((SECONDS - t0))s; starting docker and postgres in parallel"
    local t1=$SECONDS
    ( set +eE; trap - ERR; bash "$self" docker 2>&1 | sed -u 's/^/[docker] /'; exit "${PIPESTATUS[0]}" ) &
    local pid_docker=$!
    ( set +eE; trap - ERR; bash "$self" postgres 2>&1 | sed -u 's/^/[postgres] /'; exit "${PIPESTATUS[0]}" ) &
    local pid_pg=$!
    local rc_docker=0 rc_pg=0
    wait "$pid_docker" || rc_docker=$?
    wait "$pid_pg" || rc_pg=$?
    log "all: docker+postgres took $((SECONDS - t1))s (total $((SECONDS - t0))s)"
    [ $rc_docker -eq 0 ] || die "all: docker step failed (exit $rc_docker)"
    [ $rc_pg -eq 0 ] || die "all: postgres step failed (exit $rc_pg)"
    cmd_redis >/dev/null
    log "all: ready. image: $IMAGE"
    echo "$PG_DSN"
}

case "${1:-}" in
    apt)          cmd_apt ;;
    docker)       cmd_docker ;;
    postgres)     cmd_postgres ;;
    redis)        cmd_redis ;;
    all)          cmd_all ;;
    env)          cmd_env ;;
    check-docker) cmd_check_docker ;;
    *) echo "usage: $0 {apt|docker|postgres|redis|all|env|check-docker}" >&2; exit 2 ;;
esac
