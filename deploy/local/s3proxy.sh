#!/usr/bin/env bash
# S3Proxy on 127.0.0.1 with a filesystem blobstore under .stack/s3proxy/blobs: the real S3 API
# the object store's S3 backend is tested against (ADR 0027). Its jars come from Maven like
# Kafka's (deploy/local/s3proxy-pom.xml).
#
#   s3proxy.sh start    fetch the jars if missing, start, wait until it answers
#   s3proxy.sh stop     SIGTERM (SIGKILL after 15 s)
#   s3proxy.sh status   exit 0 when it runs
#
# Port: DUETIME_S3_PORT (default 18110). Bucket "duetime". Once started, .stack/s3proxy/env
# holds the DUETIME_OBJECTS_* settings that reach it (mode 0600; the secret is generated).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DIR="$REPO/.stack/s3proxy"
LIBS="$DIR/libs"
BLOBS="$DIR/blobs"
PID_FILE="$DIR/s3proxy.pid"
LOG="$DIR/s3proxy.log"
PORT="${DUETIME_S3_PORT:-18110}"
BUCKET=duetime
IDENTITY=duetime

log() { printf '[s3proxy] %s\n' "$*"; }
die() {
    printf '[s3proxy] ERROR: %s\n' "$*" >&2
    exit 1
}

running() {
    local pid
    [[ -s $PID_FILE ]] || return 1
    pid=$(head -n1 "$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q org.gaul.s3proxy.Main
}

answers() { curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/"; }

fetch_jars() {
    compgen -G "$LIBS/s3proxy-*.jar" >/dev/null && return 0
    command -v mvn >/dev/null || die "jars missing in $LIBS and 'mvn' is not installed"
    log "fetching jars with maven into $LIBS (log: $DIR/mvn.log)"
    local tmp="$DIR/libs.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/s3proxy-pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$DIR/mvn.log" 2>&1; then
        rm -rf "$tmp"
        tail -n 20 "$DIR/mvn.log" >&2
        die "maven could not fetch the S3Proxy jars"
    fi
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
}

start() {
    mkdir -p "$DIR" "$BLOBS/$BUCKET"
    if running; then
        log "already running (pid $(head -n1 "$PID_FILE"))"
        return 0
    fi
    answers && die "127.0.0.1:$PORT is in use by a process this script did not start (set DUETIME_S3_PORT)"
    fetch_jars
    local secret
    (
        umask 077
        if [[ ! -s $DIR/secret ]]; then python3 -c 'import secrets; print(secrets.token_hex(24))' >"$DIR/secret"; fi
        secret=$(cat "$DIR/secret")
        cat >"$DIR/s3proxy.conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$IDENTITY
s3proxy.credential=$secret
jclouds.provider=filesystem
jclouds.filesystem.basedir=$BLOBS
CONF
        cat >"$DIR/env" <<ENV
DUETIME_OBJECTS_BACKEND=s3
DUETIME_OBJECTS_BUCKET=$BUCKET
DUETIME_OBJECTS_ENDPOINT=http://127.0.0.1:$PORT
DUETIME_OBJECTS_ACCESS_KEY_ID=$IDENTITY
DUETIME_OBJECTS_SECRET_ACCESS_KEY=$secret
ENV
    )
    log "starting on 127.0.0.1:$PORT (log: $LOG)"
    setsid nohup java -Xmx256m -Dlogback.configurationFile="$SCRIPT_DIR/s3proxy-logback.xml" \
        -cp "$LIBS/*" org.gaul.s3proxy.Main --properties "$DIR/s3proxy.conf" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + 60))
    until answers; do
        running || { tail -n 20 "$LOG" >&2; die "S3Proxy exited"; }
        ((SECONDS < deadline)) || { stop; die "S3Proxy not answering after 60 s"; }
        sleep 0.5
    done
    log "ready (pid $(head -n1 "$PID_FILE"))"
}

stop() {
    running || { rm -f "$PID_FILE"; log "not running"; return 0; }
    local pid i
    pid=$(head -n1 "$PID_FILE")
    kill "$pid"
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$PID_FILE"
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) running ;;
    *)
        sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
