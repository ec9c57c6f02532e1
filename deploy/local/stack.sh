#!/usr/bin/env bash
# duetime local stack (no containers): Kafka (KRaft), PostgreSQL, Redis, the duetime services
# and an nginx gateway, all on 127.0.0.1, all state under <repo>/.stack/.
#
#   stack.sh up                  start everything that is not running yet, wait until ready
#   stack.sh down                stop everything, in reverse order
#   stack.sh start <component>   start one component (and wait until it is ready)
#   stack.sh stop <component>    SIGTERM, wait up to 15 s, then SIGKILL
#   stack.sh kill <component>    SIGKILL (crash simulation); it stays down until `start`
#   stack.sh restart <component>
#   stack.sh status [component]  exit 0 when it (default: everything `up` starts) runs, else 1
#   stack.sh logs <component>    follow its log
#   stack.sh reload gateway      re-render nginx.conf and reload nginx (keys take effect)
#   stack.sh deps                install the system packages the stack and its tests need
#
# Components: kafka postgres redis job_service search_service writer watcher dispatcher
# executor supervisord gateway (alias nginx) prometheus. A second (third, …) instance of a
# service is <service>-<n>, e.g. executor-2: same service, port = base + 10*(n-1), own pid file
# and log. The services run under supervisord (ADR 0034): one that exits without stack.sh
# stopping or killing it is restarted, with backoff while it keeps crashing; their logs rotate
# (DUETIME_SERVICE_LOG_MAX_BYTES, default 50MB; DUETIME_SERVICE_LOG_BACKUPS, default 5).
# command_executor (sandboxed command jobs, ADR 0026/0031) is started by `up` only with
# DUETIME_COMMAND_EXECUTOR=1 (port DUETIME_COMMAND_EXECUTOR_PORT, 18107); `start` starts it anyway.
#
# DUETIME_EXECUTORS=n (1..9, default 1) makes `up` start n executor processes (executor-2, …).
# DUETIME_STACK_INFRA_ONLY=1 makes `up` start only kafka, postgres, redis and the gateway.
# Ports: DUETIME_{KAFKA,KAFKA_CONTROLLER,POSTGRES,REDIS,GATEWAY}_PORT and
# DUETIME_{JOB_SERVICE,SEARCH_SERVICE,WRITER,WATCHER,DISPATCHER,EXECUTOR}_PORT,
# DUETIME_PROMETHEUS_PORT (18090; DUETIME_PROMETHEUS=0 leaves Prometheus out of `up`).
# DUETIME_REDIS_MAXMEMORY (default 1gb): Redis refuses writes beyond it (noeviction; ADR 0013).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
STACK="$REPO/.stack"
LOGS="$STACK/logs"
RUN="$STACK/run"
NGINX_DIR="$STACK/nginx"
KAFKA_DIR="$STACK/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
PG_DIR="$STACK/pg"
REDIS_DIR="$STACK/redis"
API_KEYS_FILE="$STACK/api_keys"
ID_SECRET_FILE="$STACK/id_secret"
GATEWAY_SECRET_FILE="$STACK/gateway_secret"
NJS_MODULE="${DUETIME_NJS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}"
ENV_FILE="$STACK/env"
# Generated passwords of the Kafka principals, the Postgres role and the Redis user (mode 0600).
CREDENTIALS_FILE="$STACK/credentials"
PY="${DUETIME_PYTHON:-$REPO/.venv/bin/python}"
# supervisord and supervisorctl come with the venv (the `stack` extra of pyproject.toml).
SUPERVISORD="$(dirname "$PY")/supervisord"
SUPERVISORCTL="$(dirname "$PY")/supervisorctl"
SUPERVISOR_DIR="$STACK/supervisor"
SUPERVISOR_CONF="$SUPERVISOR_DIR/supervisord.conf"
SUPERVISOR_PROGRAMS="$SUPERVISOR_DIR/programs"
SUPERVISOR_SOCK="$RUN/supervisor.sock"
SERVICE_LOG_MAX_BYTES="${DUETIME_SERVICE_LOG_MAX_BYTES:-50MB}"
SERVICE_LOG_BACKUPS="${DUETIME_SERVICE_LOG_BACKUPS:-5}"

KAFKA_PORT="${DUETIME_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${DUETIME_KAFKA_CONTROLLER_PORT:-19093}"
POSTGRES_PORT="${DUETIME_POSTGRES_PORT:-15432}"
REDIS_PORT="${DUETIME_REDIS_PORT:-16379}"
# A full Redis must refuse writes loudly, never evict: an evicted due-set key is a lost firing.
REDIS_MAXMEMORY="${DUETIME_REDIS_MAXMEMORY:-1gb}"
GATEWAY_PORT="${DUETIME_GATEWAY_PORT:-18080}"
PROMETHEUS_PORT="${DUETIME_PROMETHEUS_PORT:-18090}"
PROMETHEUS_DIR="$STACK/prometheus"
PROMETHEUS_TARGETS="$PROMETHEUS_DIR/targets.json"

INFRA=(kafka postgres redis)
SERVICES=(job_service search_service writer watcher dispatcher executor)
# Off unless enabled: `up` starts them only when DUETIME_COMMAND_EXECUTOR=1.
OPTIONAL_SERVICES=(command_executor)
# How many executor processes `up` starts (executor, executor-2, …): the executor is the
# busiest process, and one Python process uses one core.
EXECUTORS=${DUETIME_EXECUTORS:-1}
[[ $EXECUTORS =~ ^[1-9]$ ]] || { echo "DUETIME_EXECUTORS must be 1..9, not '$EXECUTORS'" >&2; exit 2; }

KAFKA_READY_TIMEOUT="${DUETIME_KAFKA_READY_TIMEOUT:-90}"
PG_READY_TIMEOUT="${DUETIME_POSTGRES_READY_TIMEOUT:-60}"
REDIS_READY_TIMEOUT="${DUETIME_REDIS_READY_TIMEOUT:-30}"
SERVICE_READY_TIMEOUT="${DUETIME_SERVICE_READY_TIMEOUT:-30}"
GATEWAY_READY_TIMEOUT="${DUETIME_GATEWAY_READY_TIMEOUT:-15}"
STOP_TIMEOUT="${DUETIME_STOP_TIMEOUT:-15}"

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[stack] ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

service_base_port() {
    case "$1" in
        job_service) echo "${DUETIME_JOB_SERVICE_PORT:-18101}" ;;
        search_service) echo "${DUETIME_SEARCH_SERVICE_PORT:-18102}" ;;
        writer) echo "${DUETIME_WRITER_PORT:-18103}" ;;
        watcher) echo "${DUETIME_WATCHER_PORT:-18104}" ;;
        dispatcher) echo "${DUETIME_DISPATCHER_PORT:-18105}" ;;
        executor) echo "${DUETIME_EXECUTOR_PORT:-18106}" ;;
        command_executor) echo "${DUETIME_COMMAND_EXECUTOR_PORT:-18107}" ;;
        *) return 1 ;;
    esac
}

is_service_name() {
    local s
    for s in "${SERVICES[@]}" "${OPTIONAL_SERVICES[@]}"; do [[ $1 == "$s" ]] && return 0; done
    return 1
}

# Canonical component name, or die. Accepts aliases and <service>-<n> instances.
canonical() {
    local c=$1
    case "$c" in
        nginx | gateway) echo gateway ;;
        supervisor | supervisord) echo supervisord ;;
        pg | postgresql | postgres) echo postgres ;;
        kafka | redis | prometheus) echo "$c" ;;
        *)
            if is_service_name "$c"; then
                echo "$c"
            elif [[ $c =~ ^([a-z_]+)-([0-9]+)$ ]] && is_service_name "${BASH_REMATCH[1]}"; then
                if ((10#${BASH_REMATCH[2]} <= 1)); then
                    echo "${BASH_REMATCH[1]}"
                else
                    echo "${BASH_REMATCH[1]}-$((10#${BASH_REMATCH[2]}))"
                fi
            else
                die "unknown component '$c' (kafka postgres redis ${SERVICES[*]} supervisord gateway prometheus, or <service>-<n>)"
            fi
            ;;
    esac
}

is_service_instance() { [[ $1 =~ ^([a-z_]+)(-[0-9]+)?$ ]] && is_service_name "${BASH_REMATCH[1]}"; }
instance_service() { echo "${1%%-*}"; }
instance_port() {
    local inst=$1 svc n=1 base
    svc=$(instance_service "$inst")
    [[ $inst == *-* ]] && n=${inst##*-}
    base=$(service_base_port "$svc")
    echo $((base + 10 * (n - 1)))
}

component_port() {
    case "$1" in
        kafka) echo "$KAFKA_PORT" ;;
        postgres) echo "$POSTGRES_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        gateway) echo "$GATEWAY_PORT" ;;
        prometheus) echo "$PROMETHEUS_PORT" ;;
        supervisord) echo "" ;;
        *) instance_port "$1" ;;
    esac
}

component_log() { echo "$LOGS/$1.log"; }
pid_file() { echo "$RUN/$1.pid"; }

# Text that must appear in the command line of a component's process: protects against a
# stale pid file whose pid now belongs to some unrelated process.
cmdline_marker() {
    case "$1" in
        kafka) echo "kafka.Kafka" ;;
        postgres) echo "postgres" ;;
        redis) echo "redis-server" ;;
        gateway) echo "nginx" ;;
        prometheus) echo "prometheus" ;;
        supervisord) echo "supervisord" ;;
        *) echo "duetime" ;;
    esac
}

read_pid() {
    local f
    f=$(pid_file "$1")
    [[ -s $f ]] || return 1
    local pid
    pid=$(head -n1 "$f" | tr -d '[:space:]')
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    echo "$pid"
}

pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    # A zombie answers kill -0 but is gone.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [[ -n $state && $state != Z && $state != X ]]
}

# Running = pid file, live pid, and the process is what we think it is.
is_running() {
    local name=$1 pid cmd
    pid=$(read_pid "$name") || return 1
    pid_alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $cmd == *"$(cmdline_marker "$name")"* ]]
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

ensure_port_free() {
    local name=$1 port=$2 var=$3
    if port_open "$port"; then
        die "$name: port 127.0.0.1:$port is already in use by a process this script did not start (set $var to use another port)"
    fi
}

log_offset() {
    local f=$1
    if [[ -f $f ]]; then stat -c %s "$f"; else echo 0; fi
}

# fail_start <name> <reason> <log> [more logs...]: name the component and its log, show the tail.
fail_start() {
    local name=$1 reason=$2
    shift 2
    local f
    printf '[stack] ERROR: %s did not start: %s (log: %s)\n' "$name" "$reason" "${1:-none}" >&2
    for f in "$@"; do
        [[ -f $f ]] || continue
        printf '[stack] last 20 lines of %s:\n' "$f" >&2
        tail -n 20 "$f" | sed 's/^/    /' >&2
    done
    exit 1
}

# wait_ready <name> <timeout-seconds> <check-function> <log> [more logs...]
wait_ready() {
    local name=$1 timeout=$2 check=$3
    shift 3
    local deadline=$((SECONDS + timeout))
    while ! "$check"; do
        if ! is_running "$name"; then
            # A supervised service would be started again and again: stop that too.
            stop_component "$name" >/dev/null 2>&1 || true
            rm -f "$(pid_file "$name")"
            fail_start "$name" "the process exited" "$@"
        fi
        if ((SECONDS >= deadline)); then
            warn "$name not ready after ${timeout}s; stopping it"
            stop_component "$name" >/dev/null 2>&1 || true
            fail_start "$name" "not ready after ${timeout}s" "$@"
        fi
        sleep 0.5
    done
}

# The processes that make up a running component: its pid, the members of the process group it
# leads (every component is started with setsid), and its direct children (postgres backends
# run in sessions of their own).
family_pids() {
    local pid=$1
    {
        echo "$pid"
        pgrep -g "$pid" 2>/dev/null || true
        pgrep -P "$pid" 2>/dev/null || true
    } | sort -un
}

# signal_component <signal> <pid> [family pids...]
signal_component() {
    local sig=$1 pid=$2 p
    shift 2
    kill -s "$sig" -- "-$pid" 2>/dev/null || kill -s "$sig" "$pid" 2>/dev/null || true
    for p in "$@"; do
        [[ $p == "$pid" ]] && continue
        if pid_alive "$p"; then kill -s "$sig" "$p" 2>/dev/null || true; fi
    done
}

# wait_gone <timeout> <pids...>: true once none of the pids is alive.
wait_gone() {
    local timeout=$1 deadline p alive
    shift
    deadline=$((SECONDS + timeout))
    while :; do
        alive=0
        for p in "$@"; do
            if pid_alive "$p"; then
                alive=1
                break
            fi
        done
        ((alive == 0)) && return 0
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# prerequisites
# ---------------------------------------------------------------------------------------------

pg_bin_dir() {
    local d
    if [[ -n ${DUETIME_PG_BIN:-} ]]; then
        [[ -x $DUETIME_PG_BIN/pg_ctl ]] && echo "$DUETIME_PG_BIN" && return 0
        return 1
    fi
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    if [[ -n $d && -x $d/pg_ctl && -x $d/initdb && -x $d/postgres ]]; then
        echo "$d"
        return 0
    fi
    if have pg_ctl && have initdb; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    return 1
}

nginx_bin() {
    if have nginx; then
        command -v nginx
    elif [[ -x /usr/sbin/nginx ]]; then
        echo /usr/sbin/nginx
    else
        return 1
    fi
}

ensure_packages() {
    local missing=()
    pg_bin_dir >/dev/null || missing+=(postgres)
    { have redis-server && have redis-cli; } || missing+=(redis)
    nginx_bin >/dev/null || missing+=(nginx)
    # njs: the gateway hashes API keys and signs tenant assertions with it (ADR 0017).
    [[ -f $NJS_MODULE ]] || missing+=(njs)
    # Prometheus scrapes every service and evaluates deploy/prometheus/rules (promtool tests them).
    { have prometheus && have promtool; } || missing+=(prometheus)
    # bubblewrap: the command executor's sandbox (ADR 0026); prlimit (util-linux) sets its limits.
    have bwrap || missing+=(bubblewrap)
    ((${#missing[@]} == 0)) && return 0
    log "missing: ${missing[*]} — installing postgresql redis-server nginx-light libnginx-mod-http-js bubblewrap with apt-get"
    local sudo=()
    if ! is_root; then
        have sudo || die "need root (or sudo) to apt-get install postgresql redis-server nginx-light libnginx-mod-http-js bubblewrap"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql redis-server nginx-light libnginx-mod-http-js bubblewrap
    # Without the exporters and other recommends Debian adds to it.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus
    pg_bin_dir >/dev/null || die "postgres binaries still missing after apt-get install"
    { have redis-server && have redis-cli; } || die "redis-server still missing after apt-get install"
    nginx_bin >/dev/null || die "nginx still missing after apt-get install"
    [[ -f $NJS_MODULE ]] || die "$NJS_MODULE still missing after apt-get install (set DUETIME_NJS_MODULE)"
    { have prometheus && have promtool; } || die "prometheus still missing after apt-get install"
    have bwrap || die "bwrap still missing after apt-get install bubblewrap"
}

ensure_tools() {
    local t
    for t in curl python3 timeout setsid pgrep flock; do
        have "$t" || die "'$t' is required but not installed"
    done
}

ensure_dirs() {
    mkdir -p "$LOGS" "$RUN" "$KAFKA_DIR" "$PG_DIR" "$REDIS_DIR" "$NGINX_DIR" "$PROMETHEUS_DIR" \
        "$SUPERVISOR_PROGRAMS"
    # The postgres OS user must be able to traverse .stack to reach .stack/pg.
    chmod 755 "$STACK"
}

# ---------------------------------------------------------------------------------------------
# kafka
# ---------------------------------------------------------------------------------------------

kafka_java_opts() {
    echo "-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true"
}

ensure_kafka_libs() {
    if compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null &&
        compgen -G "$KAFKA_LIBS/log4j-slf4j-impl-*.jar" >/dev/null; then
        return 0
    fi
    have mvn || die "kafka: jars missing in $KAFKA_LIBS and 'mvn' is not installed"
    log "kafka: fetching jars with maven into $KAFKA_LIBS (log: $LOGS/kafka-mvn.log)"
    local tmp="$KAFKA_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/kafka-pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$LOGS/kafka-mvn.log" 2>&1; then
        rm -rf "$tmp"
        fail_start kafka "maven could not fetch the Kafka jars" "$LOGS/kafka-mvn.log"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || fail_start kafka "no kafka_2.13 jar after maven" "$LOGS/kafka-mvn.log"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
}

# Kafka authenticates every client (SASL/SCRAM-SHA-256 on the client listener) and authorizes
# with ACLs (ADR 0015). Principals: admin (the broker itself and this script: the only super
# user), duetime-services (the services: duetime.* topics and duetime-* groups), duetime-target
# (the executor's Kafka targets: any topic but duetime.* and __*), ingress-<tenant> (WRITE on
# duetime.ingress.<tenant> alone). The controller listener stays on loopback and takes PLAIN
# from the broker (SCRAM users live in the metadata log, which a controller cannot read yet
# when it must authenticate).
KAFKA_SERVICES_USER=duetime-services
KAFKA_TARGET_USER=duetime-target

# The stack's tenants (from the API keys file): each gets an ingress topic and principal.
stack_tenants() {
    {
        printf '%s\n' dev tenant-b  # the dev environment's test tenants (ensure_dev_keys)
        if [[ -f $API_KEYS_FILE ]]; then sed -n 's/^"[0-9a-f]\{64\}"[[:space:]]*"\([A-Za-z0-9][A-Za-z0-9_.-]*\)";.*/\1/p' "$API_KEYS_FILE"; fi
    } | sort -u
}

kafka_users() {
    printf '%s\n' admin "$KAFKA_SERVICES_USER" "$KAFKA_TARGET_USER"
    stack_tenants | sed 's/^/ingress-/'
}

write_kafka_properties() {
    local admin_pw
    admin_pw=$(credential kafka-admin)
    (
        umask 077
        cat >"$KAFKA_DIR/server.properties" <<EOF
# generated by deploy/local/stack.sh — edits are overwritten on the next start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=CLIENT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=CLIENT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin_pw" user_admin="$admin_pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=$KAFKA_DIR/data
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
        cat >"$KAFKA_DIR/admin.properties" <<EOF
# generated by deploy/local/stack.sh: the admin principal, for kafka's command line tools
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
EOF
    )
}

kafka_java() {
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka-log4j2.properties" "$@"
}

# Storage formatted by an older stack has no SCRAM users: nobody could log in. It is local
# development data, so it is formatted again (topics are recreated by `duetime topics`).
KAFKA_AUTH_MARKER_NAME=duetime-scram-users
reformat_kafka_without_scram() {
    local data="$KAFKA_DIR/data"
    if [[ -f $data/meta.properties && ! -f $data/$KAFKA_AUTH_MARKER_NAME ]]; then
        log "kafka: $data was formatted without SCRAM users (before Kafka authentication): wiping and formatting it again (local dev data only)"
        rm -rf "$data"
        mkdir -p "$data"
    fi
}

format_kafka_storage() {
    local logf=$1 user scram=()
    [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
    if [[ ! -s $KAFKA_DIR/cluster.id ]]; then
        # Never one starting with "-": kafka-storage would read it as an option (1 id in 64).
        python3 -c 'import base64, os
while (i := base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")).startswith("-"): pass
print(i)' >"$KAFKA_DIR/cluster.id"
    fi
    for user in $(kafka_users); do
        scram+=(--add-scram "SCRAM-SHA-256=[name=$user,password=$(credential "kafka-$user")]")
    done
    log "kafka: formatting storage (cluster id $(<"$KAFKA_DIR/cluster.id"); SCRAM users: $(kafka_users | xargs))"
    if ! kafka_java kafka.tools.StorageTool format -t "$(<"$KAFKA_DIR/cluster.id")" \
        -c "$KAFKA_DIR/server.properties" "${scram[@]}" >>"$logf" 2>&1; then
        fail_start kafka "storage format failed" "$logf"
    fi
    kafka_users >"$KAFKA_DIR/data/$KAFKA_AUTH_MARKER_NAME"
}

# Tenants added to the API keys file after the storage was formatted get their SCRAM user now.
add_missing_scram_users() {
    local marker="$KAFKA_DIR/data/$KAFKA_AUTH_MARKER_NAME" user
    for user in $(kafka_users); do
        grep -qx "$user" "$marker" 2>/dev/null && continue
        log "kafka: adding SCRAM user $user"
        kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --command-config "$KAFKA_DIR/admin.properties" --alter --entity-type users \
            --entity-name "$user" --add-config "SCRAM-SHA-256=[password=$(credential "kafka-$user")]" \
            >>"$LOGS/kafka-acls.log" 2>&1 || die "kafka: could not add SCRAM user $user (log: $LOGS/kafka-acls.log)"
        echo "$user" >>"$marker"
    done
}

kafka_acl() {
    kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --command-config "$KAFKA_DIR/admin.properties" --add --force "$@" >>"$LOGS/kafka-acls.log" 2>&1 ||
        die "kafka: creating ACLs failed (log: $LOGS/kafka-acls.log)"
}

# The ACLs, created once per storage and again whenever the tenants change (adding an ACL that
# exists is a no-op, so a repeat is harmless).
ensure_kafka_acls() {
    local marker="$KAFKA_DIR/data/duetime-acls" want tenant
    want="v1 $(stack_tenants | xargs)"
    [[ -f $marker && $(<"$marker") == "$want" ]] && return 0
    log "kafka: creating ACLs (log: $LOGS/kafka-acls.log)"
    kafka_acl --allow-principal "User:$KAFKA_SERVICES_USER" --operation Read --operation Write \
        --operation Describe --operation Create --operation DescribeConfigs --operation AlterConfigs \
        --topic duetime. --resource-pattern-type prefixed
    kafka_acl --allow-principal "User:$KAFKA_SERVICES_USER" --operation Read --operation Describe \
        --group duetime- --resource-pattern-type prefixed
    # A DENY beats any ALLOW: the target principal never reaches duetime's or Kafka's topics.
    kafka_acl --allow-principal "User:$KAFKA_TARGET_USER" --operation Write --operation Describe \
        --topic '*'
    kafka_acl --deny-principal "User:$KAFKA_TARGET_USER" --operation All \
        --topic duetime. --topic __ --resource-pattern-type prefixed
    for tenant in $(stack_tenants); do
        kafka_acl --allow-principal "User:ingress-$tenant" --operation Write --operation Describe \
            --topic "duetime.ingress.$tenant"
    done
    echo "$want" >"$marker"
}

kafka_secure() {
    add_missing_scram_users
    ensure_kafka_acls
}

KAFKA_LOG_OFFSET=0
kafka_ready() {
    port_open "$KAFKA_PORT" &&
        tail -c +"$((KAFKA_LOG_OFFSET + 1))" "$(component_log kafka)" 2>/dev/null | grep -q 'Kafka Server started'
}

start_kafka() {
    local logf
    logf=$(component_log kafka)
    if is_running kafka && [[ ! -f $KAFKA_DIR/data/$KAFKA_AUTH_MARKER_NAME ]]; then
        log "kafka: running without authentication (started by an older stack.sh): restarting it with SASL"
        stop_component kafka
    fi
    if is_running kafka; then
        log "kafka: already running (pid $(read_pid kafka))"
        KAFKA_LOG_OFFSET=0
        wait_ready kafka "$KAFKA_READY_TIMEOUT" port_open_kafka "$logf"
        kafka_secure
        return 0
    fi
    rm -f "$(pid_file kafka)"
    ensure_port_free kafka "$KAFKA_PORT" DUETIME_KAFKA_PORT
    ensure_port_free kafka "$KAFKA_CONTROLLER_PORT" DUETIME_KAFKA_CONTROLLER_PORT
    have java || die "kafka: 'java' (17+) is required but not installed"
    ensure_kafka_libs
    mkdir -p "$KAFKA_DIR/data"
    ensure_credentials
    write_kafka_properties
    local cp="$KAFKA_LIBS/*" l4j="$SCRIPT_DIR/kafka-log4j2.properties"
    reformat_kafka_without_scram
    format_kafka_storage "$logf"
    KAFKA_LOG_OFFSET=$(log_offset "$logf")
    log "kafka: starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    # shellcheck disable=SC2046
    setsid nohup java $(kafka_java_opts) -Dlog4j2.configurationFile="$l4j" -cp "$cp" \
        kafka.Kafka "$KAFKA_DIR/server.properties" >>"$logf" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file kafka)"
    wait_ready kafka "$KAFKA_READY_TIMEOUT" kafka_ready "$logf"
    kafka_secure
    log "kafka: ready (pid $(read_pid kafka))"
}
port_open_kafka() { port_open "$KAFKA_PORT"; }

# ---------------------------------------------------------------------------------------------
# postgres
# ---------------------------------------------------------------------------------------------

as_pg() {
    if is_root; then
        (cd "$PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$PG_DIR" && "$@")
    fi
}

postgres_ready() {
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U duetime -d postgres -t 2 >/dev/null 2>&1
}

adopt_postgres() {
    # A postmaster on our data dir without our pid file (e.g. the pid file was removed): adopt it.
    local pm="$PG_DIR/data/postmaster.pid" pid
    [[ -f $pm ]] || return 1
    pid=$(head -n1 "$pm" | tr -d '[:space:]')
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *postgres* ]] || return 1
    echo "$pid" >"$(pid_file postgres)"
}

# After a postmaster was SIGKILLed its pid can linger as a zombie (when PID 1 does not reap
# orphans, as on these VMs); postgres then sees "another postmaster (PID n)" and refuses to start.
# Remove postmaster.pid only when that postmaster is dead or a zombie AND no live process still
# works in the data directory (orphaned backends would still hold shared memory).
clear_stale_postmaster_pid() {
    local data="$PG_DIR/data" pm pid p cwd
    pm="$data/postmaster.pid"
    [[ -f $pm ]] || return 0
    pid=$(head -n1 "$pm" | tr -d '[:space:]')
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    pid_alive "$pid" && return 0
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null || true)
        if [[ $cwd == "$data" ]] && pid_alive "${p#/proc/}"; then
            warn "postgres: process ${p#/proc/} still runs in $data; not touching postmaster.pid"
            return 0
        fi
    done
    log "postgres: removing stale postmaster.pid (postmaster $pid is gone)"
    rm -f "$pm"
}

start_postgres() {
    local logf data="$PG_DIR/data"
    logf=$(component_log postgres)
    PGBIN=$(pg_bin_dir) || die "postgres binaries not found"
    ensure_credentials
    if is_running postgres || adopt_postgres; then
        log "postgres: already running (pid $(read_pid postgres))"
        wait_ready postgres "$PG_READY_TIMEOUT" postgres_ready "$logf"
        write_pg_hba
        as_pg "$PGBIN/pg_ctl" reload -D "$data" -s >/dev/null 2>&1 || true
        set_postgres_password
        create_database
        return 0
    fi
    rm -f "$(pid_file postgres)"
    ensure_port_free postgres "$POSTGRES_PORT" DUETIME_POSTGRES_PORT
    clear_stale_postmaster_pid
    mkdir -p "$PG_DIR/run"
    touch "$logf"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "postgres: the 'postgres' OS user does not exist (install postgresql)"
        chown postgres: "$PG_DIR" "$PG_DIR/run" "$logf"
        [[ -d $data ]] && chown -R postgres: "$data"
        chmod 755 "$PG_DIR"
        if ! runuser -u postgres -- test -x "$PG_DIR" -a -w "$PG_DIR"; then
            die "postgres: the 'postgres' OS user cannot reach $PG_DIR — every parent directory of the repo must be world-traversable (chmod o+x)"
        fi
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        log "postgres: initdb in $data"
        rm -rf "$data"
        if ! as_pg "$PGBIN/initdb" -D "$data" -U duetime --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C >>"$logf" 2>&1; then
            fail_start postgres "initdb failed" "$logf"
        fi
    fi
    cat >"$data/duetime.conf" <<EOF
# generated by deploy/local/stack.sh — edits are overwritten on the next start
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = '$PG_DIR/run'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = on
EOF
    is_root && chown postgres: "$data/duetime.conf"
    write_pg_hba
    if ! grep -q "^include_if_exists = 'duetime.conf'" "$data/postgresql.conf"; then
        printf "\n# duetime local stack settings\ninclude_if_exists = 'duetime.conf'\n" >>"$data/postgresql.conf"
    fi
    log "postgres: starting on 127.0.0.1:$POSTGRES_PORT"
    if ! as_pg "$PGBIN/pg_ctl" start -D "$data" -l "$logf" -w -t "$PG_READY_TIMEOUT" -s 9>&-; then
        fail_start postgres "pg_ctl start failed" "$logf"
    fi
    adopt_postgres || fail_start postgres "no postmaster.pid after pg_ctl start" "$logf"
    wait_ready postgres "$PG_READY_TIMEOUT" postgres_ready "$logf"
    set_postgres_password
    create_database
    log "postgres: ready (pid $(read_pid postgres))"
}

# Over TCP every client logs in with a password (scram-sha-256); the Unix socket, which only
# the postgres OS user (and root) can open (unix_socket_permissions 0700), keeps trust for this
# script's own admin steps. Rewritten on every start, so a data directory made by an older
# stack (trust everywhere) is locked down too.
write_pg_hba() {
    local data="$PG_DIR/data"
    cat >"$data/pg_hba.conf" <<EOF
# generated by deploy/local/stack.sh — edits are overwritten on the next start
local   all   duetime                 trust
host    all   all       127.0.0.1/32  scram-sha-256
host    all   all       ::1/128       scram-sha-256
EOF
    is_root && chown postgres: "$data/pg_hba.conf"
    chmod 600 "$data/pg_hba.conf"
}

# psql as the superuser over the Unix socket.
pg_admin() {
    as_pg env PGCONNECT_TIMEOUT=5 "$PGBIN/psql" -X -q -h "$PG_DIR/run" -p "$POSTGRES_PORT" -U duetime "$@"
}

set_postgres_password() {
    pg_admin -d postgres -v ON_ERROR_STOP=1 \
        -c "ALTER ROLE duetime PASSWORD '$(credential postgres)'" >/dev/null 2>>"$(component_log postgres)" ||
        fail_start postgres "cannot set the duetime role's password" "$(component_log postgres)"
}

create_database() {
    local exists
    exists=$(pg_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'duetime'" \
        2>>"$(component_log postgres)") ||
        fail_start postgres "cannot query pg_database" "$(component_log postgres)"
    if [[ $exists != 1 ]]; then
        log "postgres: creating database duetime"
        pg_admin -d postgres -c "CREATE DATABASE duetime" >/dev/null \
            2>>"$(component_log postgres)" || fail_start postgres "createdb duetime failed" "$(component_log postgres)"
    fi
}

stop_postgres() {
    local data="$PG_DIR/data"
    PGBIN=$(pg_bin_dir) || PGBIN=""
    if [[ -n $PGBIN && -f $data/postmaster.pid ]]; then
        as_pg "$PGBIN/pg_ctl" stop -D "$data" -m fast -w -t "$STOP_TIMEOUT" -s >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------------------------

# redis-cli as the duetime ACL user (the default user is off).
redis_cli() {
    REDISCLI_AUTH=$(credential redis) timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --user duetime "$@"
}

# Logged in as duetime (redis-cli goes on as `default` when AUTH fails, so PING would not tell).
redis_ready() {
    [[ $(redis_cli ACL WHOAMI 2>/dev/null) == duetime ]]
}

# Redis: one ACL user with a password; the default (passwordless) user is disabled.
# Disabled, but with every permission: Redis replays its append-only file as the default user
# and, up to 7.4 at least, checks the ACL of each command of a MULTI/EXEC it replays (valkey
# issue 3983). A default user without permissions made every replayed transaction fail with
# NOPERM — and Lua scripts' effects are written as MULTI/EXEC — so a plain restart silently
# dropped done flags, leases and loads (runs fired twice, ADR 0035). "off" is what keeps
# clients out: nobody can authenticate as a disabled user.
write_redis_config() {
    (
        umask 077
        cat >"$REDIS_DIR/redis.conf" <<EOF
# generated by deploy/local/stack.sh — edits are overwritten on the next start
user default off ~* &* +@all
user duetime on >$(credential redis) ~* &* +@all
EOF
    )
}

# A Redis started by an older stack runs without ACLs, or with a default user that cannot
# replay its own AOF (write_redis_config): give it the same users live.
secure_running_redis() {
    if redis_ready; then
        redis_cli ACL SETUSER default off '~*' '&*' +@all >/dev/null
        return 0
    fi
    if [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
        log "redis: running without authentication; adding the duetime ACL user and disabling the default user"
        timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ACL SETUSER duetime on ">$(credential redis)" \
            '~*' '&*' +@all >/dev/null
        redis_cli ACL SETUSER default off '~*' '&*' +@all >/dev/null
    fi
}

start_redis() {
    local logf
    logf=$(component_log redis)
    if is_running redis; then
        log "redis: already running (pid $(read_pid redis))"
        ensure_credentials
        secure_running_redis
        wait_ready redis "$REDIS_READY_TIMEOUT" redis_ready "$logf"
        return 0
    fi
    rm -f "$(pid_file redis)"
    ensure_port_free redis "$REDIS_PORT" DUETIME_REDIS_PORT
    mkdir -p "$REDIS_DIR"
    ensure_credentials
    write_redis_config
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    setsid nohup redis-server "$REDIS_DIR/redis.conf" --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --dir "$REDIS_DIR" --appendonly yes --appendfsync everysec --save '' --daemonize no \
        --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy noeviction \
        >>"$logf" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file redis)"
    wait_ready redis "$REDIS_READY_TIMEOUT" redis_ready "$logf"
    log "redis: ready (pid $(read_pid redis))"
}

# ---------------------------------------------------------------------------------------------
# API keys, env
# ---------------------------------------------------------------------------------------------

random_key() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

# ensure_secret <file>: a random secret of this stack, created once, readable by its owner only.
ensure_secret() {
    if [[ ! -s $1 ]]; then
        (umask 077; random_key >"$1")
    fi
}

# credential <name>: the generated password stored under <name> in the credentials file,
# created on first use. Passwords are hex, so they need no quoting in any config format.
credential() {
    local name=$1 value
    if [[ -f $CREDENTIALS_FILE ]]; then
        value=$(awk -v n="$name" '$1 == n {print $2; exit}' "$CREDENTIALS_FILE")
        [[ -n $value ]] && { echo "$value"; return 0; }
    fi
    value=$(random_key)
    (umask 077; echo "$name $value" >>"$CREDENTIALS_FILE")
    echo "$value"
}

ensure_credentials() {
    local name
    (umask 077; touch "$CREDENTIALS_FILE")
    chmod 600 "$CREDENTIALS_FILE"
    for name in postgres redis; do credential "$name" >/dev/null; done
    for name in $(kafka_users); do credential "kafka-$name" >/dev/null; done
}

# The value of VAR in the env file, or nothing.
env_file_value() {
    [[ -f $ENV_FILE ]] || return 0
    sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1
}

# What every service process gets. Only the executor also gets the target principal
# (service_env); the admin and ingress passwords never reach a service.
load_common_env() {
    set_aside_plaintext_keys
    # The key job ids are signed with (ADR 0009), and the one the gateway signs tenant assertions
    # with (ADR 0017): both shared by job_service and search_service.
    ensure_secret "$ID_SECRET_FILE"
    ensure_secret "$GATEWAY_SECRET_FILE"
    ensure_credentials
    DUETIME_ID_SECRET=$(<"$ID_SECRET_FILE")
    DUETIME_GATEWAY_SECRET=$(<"$GATEWAY_SECRET_FILE")
    export DUETIME_ID_SECRET DUETIME_GATEWAY_SECRET
    # A development environment: its two test keys are kept in plaintext in the env file.
    export DUETIME_ENV=dev
    export DUETIME_API_KEYS_FILE="$API_KEYS_FILE"
    export DUETIME_URL="http://127.0.0.1:$GATEWAY_PORT"
    export DUETIME_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    export DUETIME_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT DUETIME_KAFKA_SASL_MECHANISM=SCRAM-SHA-256
    export DUETIME_KAFKA_USERNAME="$KAFKA_SERVICES_USER"
    DUETIME_KAFKA_PASSWORD=$(credential "kafka-$KAFKA_SERVICES_USER")
    export DUETIME_KAFKA_PASSWORD
    DUETIME_INGRESS_TENANTS=$(stack_tenants | paste -sd, -)
    export DUETIME_INGRESS_TENANTS
    export DUETIME_POSTGRES_DSN="postgresql://duetime:$(credential postgres)@127.0.0.1:$POSTGRES_PORT/duetime"
    export DUETIME_REDIS_URL="redis://duetime:$(credential redis)@127.0.0.1:$REDIS_PORT/0"
    # Webhooks may reach loopback only on the test sinks' ports (18900-18999) and the
    # benchmarks' (28000-28999): never this stack's own services, Kafka, Postgres or Redis.
    export DUETIME_EGRESS_ALLOW="127.0.0.1/32:18900-18999,127.0.0.1/32:28000-28999"
}

# Extra environment of one service ($1, on port $2): the executor publishes Kafka targets as
# their principal; each command executor gets sandbox uids and a scratch directory of its own,
# so two instances (or two stacks on one machine) never share a uid whose processes they kill.
service_env() {
    # The dashboard's overview reads installation-wide numbers from the stack's Prometheus.
    if [[ $1 == search_service && ${DUETIME_PROMETHEUS:-1} != 0 ]]; then
        echo "DUETIME_PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"
    fi
    if [[ $1 == command_executor ]]; then
        echo "DUETIME_SANDBOX_FIRST_UID=$((300000 + $2 * 100))"
        echo "DUETIME_SANDBOX_SCRATCH_DIR=/var/tmp/duetime-sandbox-$2"
        echo "DUETIME_OBJECTS_ROOT=$STACK/objects"
    fi
    if [[ $1 == search_service || $1 == job_service ]]; then
        echo "DUETIME_OBJECTS_ROOT=$STACK/objects"
    fi
    if [[ $1 == executor ]]; then
        echo "DUETIME_KAFKA_TARGET_USERNAME=$KAFKA_TARGET_USER"
        echo "DUETIME_KAFKA_TARGET_PASSWORD=$(credential "kafka-$KAFKA_TARGET_USER")"
    fi
}

create_api_key() {
    "$PY" -m duetime keys --keys-file "$API_KEYS_FILE" --no-reload create --tenant "$1" \
        2>>"$LOGS/keys.log"
}

# A keys file from before hashed keys (plaintext "<key> <tenant>" lines) is set aside: the
# services refuse to read it and nginx could not include it. ensure_dev_keys makes new keys.
set_aside_plaintext_keys() {
    if [[ -s $API_KEYS_FILE ]] && grep -qv '^\(#\|"\|$\)' "$API_KEYS_FILE"; then
        warn "moving the old plaintext keys file to $API_KEYS_FILE.plaintext-old; new dev keys follow"
        mv "$API_KEYS_FILE" "$API_KEYS_FILE.plaintext-old"
        chmod 600 "$API_KEYS_FILE.plaintext-old"
    fi
}

# True when the key's hash is in the keys file (not revoked, not from an older .stack).
key_known() {
    [[ -n $1 && -s $API_KEYS_FILE ]] || return 1
    grep -q "^\"$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)\"" "$API_KEYS_FILE"
}

# The dev environment's test keys for tenants dev and tenant-b. The keys file holds only their
# hashes (like every key's); the plaintext is kept in the env file (0600) for tests and scripts.
ensure_dev_keys() {
    DUETIME_API_KEY=$(env_file_value DUETIME_API_KEY)
    DUETIME_API_KEY_B=$(env_file_value DUETIME_API_KEY_B)
    if ! key_known "$DUETIME_API_KEY" || ! key_known "$DUETIME_API_KEY_B"; then
        ensure_python
        log "creating the dev environment's API keys (tenants dev, tenant-b; hashes in $API_KEYS_FILE)"
        DUETIME_API_KEY=$(create_api_key dev) || die "could not create an API key (log: $LOGS/keys.log)"
        DUETIME_API_KEY_B=$(create_api_key tenant-b) || die "could not create an API key (log: $LOGS/keys.log)"
    fi
    write_env_file
}

# .stack/env is for the tests and the operator at this machine (mode 0600): it also holds the
# admin, target and ingress principals' passwords, which the security tests log in with.
write_env_file() {
    load_common_env
    local tmp="$ENV_FILE.tmp.$$" tenant ingress=()
    for tenant in $(stack_tenants); do
        ingress+=("$tenant:$(credential "kafka-ingress-$tenant")")
    done
    (
        umask 077
        cat >"$tmp" <<EOF
DUETIME_ENV=dev
DUETIME_URL=$DUETIME_URL
DUETIME_API_KEY=$DUETIME_API_KEY
DUETIME_API_KEY_B=$DUETIME_API_KEY_B
DUETIME_API_KEYS_FILE=$DUETIME_API_KEYS_FILE
DUETIME_GATEWAY_SECRET=$DUETIME_GATEWAY_SECRET
DUETIME_JOB_SERVICE_URL=http://127.0.0.1:$(service_base_port job_service)
DUETIME_SEARCH_SERVICE_URL=http://127.0.0.1:$(service_base_port search_service)
DUETIME_PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
DUETIME_KAFKA_BOOTSTRAP=$DUETIME_KAFKA_BOOTSTRAP
DUETIME_KAFKA_SECURITY_PROTOCOL=$DUETIME_KAFKA_SECURITY_PROTOCOL
DUETIME_KAFKA_SASL_MECHANISM=$DUETIME_KAFKA_SASL_MECHANISM
DUETIME_KAFKA_USERNAME=$DUETIME_KAFKA_USERNAME
DUETIME_KAFKA_PASSWORD=$DUETIME_KAFKA_PASSWORD
DUETIME_KAFKA_TARGET_USERNAME=$KAFKA_TARGET_USER
DUETIME_KAFKA_TARGET_PASSWORD=$(credential "kafka-$KAFKA_TARGET_USER")
DUETIME_KAFKA_ADMIN_USERNAME=admin
DUETIME_KAFKA_ADMIN_PASSWORD=$(credential kafka-admin)
DUETIME_KAFKA_INGRESS_PASSWORDS=$(IFS=,; echo "${ingress[*]}")
DUETIME_INGRESS_TENANTS=$DUETIME_INGRESS_TENANTS
DUETIME_POSTGRES_DSN=$DUETIME_POSTGRES_DSN
DUETIME_REDIS_URL=$DUETIME_REDIS_URL
EOF
    )
    mv "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
# python steps and services
# ---------------------------------------------------------------------------------------------

ensure_python() {
    [[ -x $PY ]] || die "python not found at $PY (the Makefile creates the venv: run 'make venv' / 'make up')"
}

run_python_step() {
    local step=$1 logf="$LOGS/$1.log"
    ensure_python
    load_common_env
    log "running: python -m duetime $step"
    echo "=== $(date -Is) python -m duetime $step" >>"$logf"
    if ! (cd "$REPO" && PYTHONUNBUFFERED=1 timeout 300 "$PY" -m duetime "$step" >>"$logf" 2>&1 </dev/null 9>&-); then
        printf '[stack] ERROR: "python -m duetime %s" failed (log: %s)\n' "$step" "$logf" >&2
        printf '[stack] last 20 lines of %s:\n' "$logf" >&2
        tail -n 20 "$logf" | sed 's/^/    /' >&2
        exit 1
    fi
}

SERVICE_PORT=""
# Started and connected is what `start` waits for. A consumer's /readyz also says "caught up"
# (ADR 0033) — for orchestrators; one restarted behind a long backlog catches up while it
# runs, and waiting for that here would fail its start (and a fault test's nemesis with it).
service_ready() {
    local body
    body=$(curl -sS -m 2 "http://127.0.0.1:$SERVICE_PORT/readyz" 2>/dev/null) || return 1
    body=${body//\"ready\":false/}
    body=${body//\"caught_up\":false/}
    body=${body//\"notifier_caught_up\":false/}
    [[ $body == *'"checks"'* && $body != *':false'* ]]
}

start_service() {
    local inst=$1 svc port logf
    svc=$(instance_service "$inst")
    port=$(instance_port "$inst")
    logf=$(component_log "$inst")
    SERVICE_PORT=$port
    if is_running "$inst"; then
        if [[ $(supervisor_state "$inst") =~ ^(STARTING|RUNNING)$ ]]; then
            log "$inst: already running (pid $(read_pid "$inst"))"
            wait_ready "$inst" "$SERVICE_READY_TIMEOUT" service_ready "$logf"
            return 0
        fi
        # Started by an older stack.sh, or left running by a supervisord that was killed: nothing
        # would restart it after a crash, so it is stopped (by its pid) and started supervised.
        warn "$inst: runs (pid $(read_pid "$inst")) without supervisord; restarting it under supervisord"
        stop_unsupervised "$inst"
    fi
    rm -f "$(pid_file "$inst")"
    ensure_python
    ensure_port_free "$inst" "$port" "DUETIME_$(tr '[:lower:]' '[:upper:]' <<<"$svc")_PORT"
    load_common_env
    start_supervisord
    echo "=== $(date -Is) stack.sh: starting $svc as $inst on 127.0.0.1:$port" >>"$logf"
    log "$inst: starting on 127.0.0.1:$port (supervised)"
    # Everything shares two cores here (ADR 0042). Lateness is made at the instant, by the
    # executor: it goes first (-5; left at 0 where raising a priority is not permitted). The
    # job service stays at 0: at 10 it got a small share while the creating client, Kafka and
    # nginx were busy, and jobs created ahead were stored after their instant. Persisting,
    # loading, searching and tenants' commands yield (10). DUETIME_EXECUTOR_NICE,
    # DUETIME_JOB_SERVICE_NICE and DUETIME_WRITER_NICE override theirs, for A/B runs.
    local niceness=0
    case "$svc" in
        watcher|search_service|command_executor) niceness=10 ;;
        writer) niceness=${DUETIME_WRITER_NICE:-10} ;;
        job_service) niceness=${DUETIME_JOB_SERVICE_NICE:-0} ;;
        executor) niceness=${DUETIME_EXECUTOR_NICE:--5} ;;
    esac
    local extra_env
    mapfile -t extra_env < <(service_env "$svc" "$port")
    # The service gets this command's environment, as a child of it would, on this start and on
    # every restart supervisord makes (supervised_service.py reads it; 0600: it holds passwords).
    (umask 077; env "${extra_env[@]}" DUETIME_HTTP_PORT="$port" DUETIME_INSTANCE="$inst" PYTHONUNBUFFERED=1 \
        env -0 >"$RUN/$inst.env")
    rm -f "$RUN/$inst.restarts"  # a start by hand does not wait out a crash backoff
    write_program_config "$inst" "$niceness"
    ctl update "$inst" >>"$logf" 2>&1 ||
        fail_start "$inst" "supervisord did not take its program" "$(component_log supervisord)"
    if ! ctl start "$inst" >>"$logf" 2>&1; then
        ctl stop "$inst" >/dev/null 2>&1 || true
        fail_start "$inst" "supervisord could not start it" "$logf" "$(component_log supervisord)"
    fi
    wait_ready "$inst" "$SERVICE_READY_TIMEOUT" service_ready "$logf"
    log "$inst: ready (pid $(read_pid "$inst"))"
    write_prometheus_targets
}

# ---------------------------------------------------------------------------------------------
# supervisord: keeps the services running (ADR 0034)
# ---------------------------------------------------------------------------------------------
#
# supervisord runs each service instance as a program of the same name, through
# supervised_service.py (the start's environment, the real pid in .stack/run/<inst>.pid, a
# crash-loop backoff), starts it again whenever it exits without supervisorctl stopping it, and
# rotates its log. Kafka, Postgres, Redis, nginx and Prometheus stay plain pid-file processes.

ctl() { "$SUPERVISORCTL" -c "$SUPERVISOR_CONF" "$@"; }

supervisord_ready() { [[ -S $SUPERVISOR_SOCK ]] && ctl pid >/dev/null 2>&1; }

# The state supervisord has for an instance (RUNNING, STARTING, BACKOFF, STOPPING, STOPPED,
# EXITED, FATAL), or nothing when supervisord does not run or does not know it.
supervisor_state() {
    is_running supervisord || return 0
    # supervisorctl status exits 3 for anything not RUNNING: the state is the answer, not an error.
    { ctl status "$1" 2>/dev/null || true; } | awk -v n="$1" '$1 == n {print $2}'
}

# supervisord will start it again by itself (or is about to stop it): stop it through supervisord.
is_supervised() { [[ $(supervisor_state "$1") =~ ^(STARTING|RUNNING|BACKOFF|STOPPING|EXITED)$ ]]; }

write_supervisor_config() {
    mkdir -p "$SUPERVISOR_PROGRAMS"
    cat >"$SUPERVISOR_CONF.tmp.$$" <<CONF
; generated by deploy/local/stack.sh — edits are overwritten on the next start
[unix_http_server]
file=$SUPERVISOR_SOCK
chmod=0700

[supervisord]
logfile=$(component_log supervisord)
logfile_maxbytes=10MB
logfile_backups=3
pidfile=$(pid_file supervisord)
nodaemon=true
silent=true
directory=$REPO
childlogdir=$LOGS

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$SUPERVISOR_SOCK

; Kubernetes' liveness probe for the local stack: a service that stops answering /healthz is
; killed, and started again like any crash (deploy/local/liveness.py).
[eventlistener:liveness]
command="$PY" "$SCRIPT_DIR/liveness.py"
events=TICK_5
directory=$REPO
autorestart=true
stderr_logfile=$(component_log liveness)
stderr_logfile_maxbytes=1MB
stderr_logfile_backups=2
stdout_logfile=NONE

[include]
files = $SUPERVISOR_PROGRAMS/*.conf
CONF
    mv "$SUPERVISOR_CONF.tmp.$$" "$SUPERVISOR_CONF"
}

# One service instance as a supervisord program. autorestart=true: any exit supervisorctl did not
# ask for is a crash (Kubernetes' restartPolicy: Always). startsecs=1: up for a second counts as
# started; supervisord's own backoff covers quicker deaths, supervised_service.py the crash loops
# after that. Signals go to the process group (the service leads its own).
write_program_config() {
    local inst=$1 niceness=$2 f="$SUPERVISOR_PROGRAMS/$1.conf"
    cat >"$f.tmp.$$" <<CONF
; generated by deploy/local/stack.sh — edits are overwritten on the next start
[program:$inst]
command="$PY" "$SCRIPT_DIR/supervised_service.py" $inst --nice $niceness
directory=$REPO
autostart=false
autorestart=true
startsecs=1
startretries=10
stopsignal=TERM
stopwaitsecs=$STOP_TIMEOUT
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$(component_log "$inst")
stdout_logfile_maxbytes=$SERVICE_LOG_MAX_BYTES
stdout_logfile_backups=$SERVICE_LOG_BACKUPS
CONF
    mv "$f.tmp.$$" "$f"
}

start_supervisord() {
    local logf
    logf=$(component_log supervisord)
    if is_running supervisord; then
        wait_ready supervisord "$GATEWAY_READY_TIMEOUT" supervisord_ready "$logf"
        return 0
    fi
    rm -f "$(pid_file supervisord)"
    [[ -x $SUPERVISORD ]] || die "supervisord not found at $SUPERVISORD (make setup installs it into the venv)"
    write_supervisor_config
    rm -f "$SUPERVISOR_SOCK"  # left by a supervisord that was killed
    log "supervisord: starting (socket $SUPERVISOR_SOCK)"
    (cd "$REPO" && exec setsid nohup "$SUPERVISORD" -c "$SUPERVISOR_CONF" >>"$logf" 2>&1 </dev/null 9>&-) &
    echo $! >"$(pid_file supervisord)"
    wait_ready supervisord "$GATEWAY_READY_TIMEOUT" supervisord_ready "$logf"
    log "supervisord: ready (pid $(read_pid supervisord))"
}

# stop_supervised <instance> [KILL]: stop the program through supervisord (SIGTERM to its group,
# SIGKILL after STOP_TIMEOUT), so nothing starts it again until `stack.sh start`. With KILL it
# dies by SIGKILL as in a crash: frozen first (SIGSTOP), supervisord told to stop it (the SIGTERM
# it sends stays pending on the frozen process), then SIGKILL. It runs no code after the SIGSTOP,
# and supervisord, which asked for the stop, does not restart it.
stop_supervised() {
    local inst=$1 sig=${2:-TERM} pid family=() bg state i
    pid=$(ctl pid "$inst" 2>/dev/null || true)
    [[ $pid =~ ^[1-9][0-9]*$ ]] || pid=""
    [[ -n $pid ]] && mapfile -t family < <(family_pids "$pid")
    if [[ $sig != KILL ]]; then
        log "$inst: stopping (pid ${pid:-none}, supervised)"
        ctl stop "$inst" >/dev/null 2>&1 || warn "$inst: supervisorctl stop failed (state $(supervisor_state "$inst"))"
    else
        log "$inst: SIGKILL (pid ${pid:-none}); supervisord will not restart it"
        [[ -n $pid ]] && signal_component STOP "$pid" "${family[@]}"
        ctl stop "$inst" >/dev/null 2>&1 &
        bg=$!
        if [[ -n $pid ]]; then
            for ((i = 0; i < 100; i++)); do
                state=$(supervisor_state "$inst")
                [[ $state == RUNNING || $state == STARTING ]] || break
                sleep 0.1
            done
            signal_component KILL "$pid" "${family[@]}"
        fi
        wait "$bg" || true
    fi
    if ((${#family[@]} > 0)) && ! wait_gone 5 "${family[@]}"; then
        warn "$inst: pid $pid still present"
        return 1
    fi
    # The start's environment holds passwords: kept only while supervisord may need it.
    rm -f "$(pid_file "$inst")" "$RUN/$inst.env" "$RUN/$inst.restarts"
    [[ $sig == KILL ]] || log "$inst: stopped"
}

# ---------------------------------------------------------------------------------------------
# gateway (nginx)
# ---------------------------------------------------------------------------------------------

render_gateway_config() {
    local user_directive=""
    [[ -f $NJS_MODULE ]] || die "gateway: njs module $NJS_MODULE missing (apt-get install libnginx-mod-http-js, or set DUETIME_NJS_MODULE)"
    [[ -s $API_KEYS_FILE ]] || die "gateway: no keys file $API_KEYS_FILE (make up creates it)"
    is_root && user_directive="user root;"
    sed -e "s|@NGINX_DIR@|$NGINX_DIR|g" \
        -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g" \
        -e "s|@JOB_SERVICE_PORT@|$(service_base_port job_service)|g" \
        -e "s|@SEARCH_SERVICE_PORT@|$(service_base_port search_service)|g" \
        -e "s|@USER_DIRECTIVE@|$user_directive|g" \
        -e "s|@NJS_MODULE@|$NJS_MODULE|g" \
        -e "s|@GATEWAY_JS@|$SCRIPT_DIR/gateway.js|g" \
        -e "s|@API_KEYS_FILE@|$API_KEYS_FILE|g" \
        "$SCRIPT_DIR/nginx.conf.template" >"$NGINX_DIR/nginx.conf.tmp.$$"
    mv "$NGINX_DIR/nginx.conf.tmp.$$" "$NGINX_DIR/nginx.conf"
}

nginx_args() { echo "-p $NGINX_DIR/ -e $NGINX_DIR/error.log -c $NGINX_DIR/nginx.conf"; }

gateway_ready() {
    curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/healthz" 2>/dev/null
}

start_gateway() {
    local logf ngx
    logf=$(component_log gateway)
    if is_running gateway; then
        log "gateway: already running (pid $(read_pid gateway))"
        wait_ready gateway "$GATEWAY_READY_TIMEOUT" gateway_ready "$logf" "$NGINX_DIR/error.log"
        return 0
    fi
    rm -f "$(pid_file gateway)"
    ensure_port_free gateway "$GATEWAY_PORT" DUETIME_GATEWAY_PORT
    ngx=$(nginx_bin) || die "nginx not installed"
    mkdir -p "$NGINX_DIR"
    load_common_env
    ensure_dev_keys
    render_gateway_config
    # shellcheck disable=SC2046
    if ! "$ngx" -t -q $(nginx_args) >>"$logf" 2>&1; then
        fail_start gateway "nginx -t rejected $NGINX_DIR/nginx.conf" "$logf" "$NGINX_DIR/error.log"
    fi
    log "gateway: starting nginx on 127.0.0.1:$GATEWAY_PORT"
    # shellcheck disable=SC2046
    # `env DUETIME_GATEWAY_SECRET;` in nginx.conf hands this one variable to gateway.js.
    setsid nohup env DUETIME_GATEWAY_SECRET="$DUETIME_GATEWAY_SECRET" "$ngx" $(nginx_args) \
        >>"$logf" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file gateway)"
    wait_ready gateway "$GATEWAY_READY_TIMEOUT" gateway_ready "$logf" "$NGINX_DIR/error.log"
    log "gateway: ready (pid $(read_pid gateway))"
}

# Re-render nginx.conf and SIGHUP nginx: new workers read the keys file again. nginx keeps the
# old configuration (and logs why) when the new one does not load.
reload_gateway() {
    local ngx
    is_running gateway || die "gateway is not running"
    ngx=$(nginx_bin) || die "nginx not installed"
    load_common_env
    render_gateway_config
    # shellcheck disable=SC2046
    "$ngx" -t -q $(nginx_args) || die "nginx -t rejected $NGINX_DIR/nginx.conf; the gateway keeps its old configuration"
    kill -HUP "$(read_pid gateway)"
    log "gateway: reloaded (pid $(read_pid gateway))"
}

# ---------------------------------------------------------------------------------------------
# prometheus
# ---------------------------------------------------------------------------------------------

# Every service, and every extra instance that has a pid file (executor-2), for Prometheus's
# file_sd: it re-reads the file by itself, so an instance started later is scraped without a
# reload. The base services are always listed: one that is down must show as `up == 0`.
write_prometheus_targets() {
    local inst first=1
    mkdir -p "$PROMETHEUS_DIR"
    {
        echo "["
        for inst in "${SERVICES[@]}" $(running_optional) $(extra_instances); do
            ((first)) || echo ","
            first=0
            printf '  {"targets": ["127.0.0.1:%s"], "labels": {"service": "%s", "instance": "%s"}}' \
                "$(instance_port "$inst")" "$(instance_service "$inst")" "$inst"
        done
        echo
        echo "]"
    } >"$PROMETHEUS_TARGETS.tmp.$$"
    mv "$PROMETHEUS_TARGETS.tmp.$$" "$PROMETHEUS_TARGETS"
}

render_prometheus_config() {
    sed -e "s|@RULES_DIR@|$REPO/deploy/prometheus/rules|g" \
        -e "s|@TARGETS_FILE@|$PROMETHEUS_TARGETS|g" \
        -e "s|@PROMETHEUS_PORT@|$PROMETHEUS_PORT|g" \
        "$REPO/deploy/prometheus/prometheus.yml.template" >"$PROMETHEUS_DIR/prometheus.yml"
}

prometheus_ready() {
    curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 2>/dev/null
}

start_prometheus() {
    local logf
    logf=$(component_log prometheus)
    write_prometheus_targets
    if is_running prometheus; then
        log "prometheus: already running (pid $(read_pid prometheus))"
        wait_ready prometheus "$GATEWAY_READY_TIMEOUT" prometheus_ready "$logf"
        return 0
    fi
    rm -f "$(pid_file prometheus)"
    have prometheus || die "prometheus not installed (make up installs it with apt-get)"
    ensure_port_free prometheus "$PROMETHEUS_PORT" DUETIME_PROMETHEUS_PORT
    render_prometheus_config
    promtool check config "$PROMETHEUS_DIR/prometheus.yml" >>"$logf" 2>&1 ||
        fail_start prometheus "promtool check config rejected $PROMETHEUS_DIR/prometheus.yml" "$logf"
    log "prometheus: starting on 127.0.0.1:$PROMETHEUS_PORT"
    setsid nohup prometheus --config.file="$PROMETHEUS_DIR/prometheus.yml" \
        --storage.tsdb.path="$PROMETHEUS_DIR/data" --storage.tsdb.retention.time=2d \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle \
        >>"$logf" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file prometheus)"
    wait_ready prometheus "$GATEWAY_READY_TIMEOUT" prometheus_ready "$logf"
    log "prometheus: ready (pid $(read_pid prometheus)), http://127.0.0.1:$PROMETHEUS_PORT"
}

# ---------------------------------------------------------------------------------------------
# generic start / stop / kill / status
# ---------------------------------------------------------------------------------------------

start_component() {
    local name=$1
    ensure_dirs
    case "$name" in
        kafka) start_kafka ;;
        postgres) start_postgres ;;
        redis) start_redis ;;
        gateway) start_gateway ;;
        prometheus) start_prometheus ;;
        supervisord) start_supervisord ;;
        *) start_service "$name" ;;
    esac
}

# stop_component <name> [KILL]. A supervised service goes through supervisord (stop_supervised);
# everything else, and a service supervisord does not run, is signalled by its pid file.
stop_component() {
    if is_service_instance "$1" && is_supervised "$1"; then
        stop_supervised "$@" || return 1
        # Only a copy outside supervisord (an older stack's) would still have a live pid file.
        is_running "$1" || return 0
    fi
    stop_unsupervised "$@"
}

stop_unsupervised() {
    local name=$1 sig=${2:-TERM} pid
    if [[ $name == postgres ]] && ! is_running postgres; then
        adopt_postgres || true
    fi
    if ! is_running "$name"; then
        if [[ -f $(pid_file "$name") ]]; then
            log "$name: not running (removing stale pid file)"
            rm -f "$(pid_file "$name")"
        else
            log "$name: not running"
        fi
        return 0
    fi
    local family
    pid=$(read_pid "$name")
    mapfile -t family < <(family_pids "$pid")
    if [[ $sig == KILL ]]; then
        log "$name: SIGKILL (pid $pid)"
        signal_component KILL "$pid" "${family[@]}"
        wait_gone 5 "${family[@]}" || warn "$name: pid $pid still present after SIGKILL"
        rm -f "$(pid_file "$name")"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    if [[ $name == postgres ]]; then
        stop_postgres
    else
        signal_component TERM "$pid"
    fi
    if ! wait_gone "$STOP_TIMEOUT" "${family[@]}"; then
        warn "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        mapfile -t family < <(printf '%s\n' "${family[@]}"; family_pids "$pid")
        signal_component KILL "$pid" "${family[@]}"
        wait_gone 5 "${family[@]}" || {
            warn "$name: pid $pid survived SIGKILL"
            return 1
        }
    fi
    rm -f "$(pid_file "$name")"
    log "$name: stopped"
}

# Optional services (command_executor) that have a pid file.
running_optional() {
    local s
    for s in "${OPTIONAL_SERVICES[@]}"; do [[ -f $RUN/$s.pid ]] && echo "$s"; done
    return 0
}

# Extra service instances (executor-2, ...) that have pid files.
extra_instances() {
    local f n
    for f in "$RUN"/*-[0-9]*.pid; do
        [[ -e $f ]] || continue
        n=$(basename "$f" .pid)
        is_service_instance "$n" && echo "$n"
    done
    return 0
}

all_components() {
    local extra
    mapfile -t extra < <(extra_instances)
    echo "${INFRA[@]}" supervisord "${SERVICES[@]}" "${OPTIONAL_SERVICES[@]}" "${extra[@]}" gateway prometheus
}

# A service's line ends with what supervisord says of it (BACKOFF: waiting to restart it).
status_line() {
    local name=$1 pid port state ready="" where supervised=""
    port=$(component_port "$name")
    where="127.0.0.1:$port"
    [[ $name == supervisord ]] && where=$(basename "$SUPERVISOR_SOCK")
    is_service_instance "$name" && supervised=$(supervisor_state "$name")
    supervised=${supervised:+supervisord: $supervised}
    if is_running "$name"; then
        pid=$(read_pid "$name")
        state="running"
        if [[ -z $port ]]; then ready=""; elif port_open "$port"; then ready="listening"; else ready="not listening"; fi
        printf '%-16s %-10s pid %-8s %-16s %-14s %s\n' "$name" "$state" "$pid" "$where" "$ready" "$supervised"
        return 0
    fi
    if [[ $supervised =~ (STARTING|RUNNING|BACKOFF|EXITED)$ ]]; then
        state="restarting"  # crashed; supervisord starts it again after its backoff
    elif [[ -f $(pid_file "$name") ]]; then state="stale-pid"; else state="stopped"; fi
    printf '%-16s %-10s %-12s %-16s %-14s %s\n' "$name" "$state" "" "$where" "" "$supervised"
    return 1
}

cmd_status() {
    if (($# > 0)); then
        local name
        name=$(canonical "$1") || exit 2
        status_line "$name"
        return
    fi
    local c down=()
    for c in $(all_components); do status_line "$c" || down+=("$c"); done
    [[ -f $ENV_FILE ]] && echo "env: $ENV_FILE"
    # Exit 0 only when everything `up` starts is running (extra instances do not count).
    local expected=("${INFRA[@]}" gateway)
    [[ ${DUETIME_STACK_INFRA_ONLY:-0} == 1 ]] || expected+=(supervisord "${SERVICES[@]}")
    for c in "${down[@]}"; do
        if [[ " ${expected[*]} " == *" $c "* ]]; then
            return 1
        fi
    done
    return 0
}

# ---------------------------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------------------------

cmd_up() {
    ensure_packages
    ensure_tools
    ensure_dirs
    local c
    for c in "${INFRA[@]}"; do start_component "$c"; done
    if [[ ${DUETIME_STACK_INFRA_ONLY:-0} == 1 ]]; then
        log "DUETIME_STACK_INFRA_ONLY=1: skipping migrate, topics and the services"
    else
        run_python_step migrate
        run_python_step topics
        start_component supervisord
        for c in "${SERVICES[@]}"; do start_component "$c"; done
        local n
        for ((n = 2; n <= EXECUTORS; n++)); do start_component "executor-$n"; done
        if [[ ${DUETIME_COMMAND_EXECUTOR:-0} == 1 ]]; then
            for c in "${OPTIONAL_SERVICES[@]}"; do start_component "$c"; done
        fi
    fi
    start_component gateway
    [[ ${DUETIME_PROMETHEUS:-1} == 0 ]] || start_component prometheus
    cat <<EOF

duetime local stack is up (a development environment: DUETIME_ENV=dev).
  gateway   $DUETIME_URL
  dashboard $DUETIME_URL/ui (log in with an API key)
  API keys  stored hashed in $API_KEYS_FILE; create one (printed once) with
              make key TENANT=<tenant>   (python -m duetime keys create --tenant <tenant>)
            the dev environment's test keys (tenants dev, tenant-b) are in the env file
  env file  $ENV_FILE   (set -a; . $ENV_FILE; set +a)
  logs      $LOGS/ (the services' rotate at $SERVICE_LOG_MAX_BYTES, $SERVICE_LOG_BACKUPS kept)
  services  supervised: a crashed one restarts by itself (deploy/local/stack.sh status)
  metrics   http://127.0.0.1:$PROMETHEUS_PORT (Prometheus; rules in deploy/prometheus)

try:
  KEY=\$(make -s key TENANT=me)
  curl -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' -d '{"seconds":10,"url":"http://127.0.0.1:18999/hook"}' $DUETIME_URL/timers
EOF
}

cmd_down() {
    [[ -d $RUN ]] || {
        log "nothing to stop ($RUN does not exist)"
        return 0
    }
    local c failed=() i
    local order=(prometheus gateway)
    for c in $(extra_instances | sort -r); do order+=("$c"); done
    order+=("${OPTIONAL_SERVICES[@]}")
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do order+=("${SERVICES[i]}"); done
    order+=(supervisord)
    for ((i = ${#INFRA[@]} - 1; i >= 0; i--)); do order+=("${INFRA[i]}"); done
    for c in "${order[@]}"; do
        stop_component "$c" || failed+=("$c")
    done
    if ((${#failed[@]} > 0)); then
        die "could not stop: ${failed[*]}"
    fi
    log "stack is down"
}

usage() {
    sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

take_lock() {
    mkdir -p "$RUN"
    exec 9>"$RUN/.lock"
    if ! flock -w 600 9; then die "another stack.sh is still running (lock $RUN/.lock)"; fi
}

main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case "$cmd" in
        up)
            take_lock
            cmd_up
            ;;
        down)
            take_lock
            cmd_down
            ;;
        start | stop | kill | restart)
            (($# == 1)) || die "usage: stack.sh $cmd <component>"
            local name
            name=$(canonical "$1") || exit 2
            take_lock
            case "$cmd" in
                start)
                    ensure_tools
                    start_component "$name"
                    ;;
                stop) stop_component "$name" ;;
                kill) stop_component "$name" KILL ;;
                restart)
                    stop_component "$name"
                    ensure_tools
                    start_component "$name"
                    ;;
            esac
            ;;
        status) cmd_status "$@" ;;
        deps)
            # What the stack and its tests need from the system (make test-stack runs it even
            # when a stack is already up, so the sandbox tests find bwrap on a fresh machine).
            take_lock
            ensure_packages
            ensure_tools
            ;;
        reload)
            [[ $# == 1 && $(canonical "$1") == gateway ]] || die "usage: stack.sh reload gateway"
            take_lock
            reload_gateway
            ;;
        logs)
            (($# == 1)) || die "usage: stack.sh logs <component>"
            local name
            name=$(canonical "$1") || exit 2
            exec tail -n 50 -F "$(component_log "$name")"
            ;;
        -h | --help | help | "") usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
