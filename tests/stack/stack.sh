#!/usr/bin/env bash
# The Kong Pulsar local stack, without Docker: a real Apache Pulsar broker
# (token authentication + authorization on) and moto for the AWS APIs.
#
#   stack.sh setup    install/resolve everything (idempotent, fast when done)
#   stack.sh up       start the stack, or reuse the one already running
#   stack.sh down     stop it; no process is left behind
#   stack.sh status   what is running
#   stack.sh test     setup + up + the whole test suite + down (if it started it)
#   stack.sh validate check the deployment artifacts (tests/stack/validate.sh)
#   stack.sh run      setup + up + demo tenant/policy + `cargo lambda watch`
#   stack.sh cluster-up      a multi-broker Pulsar cluster beside the stack:
#                            ZooKeeper, a bookie, two brokers, a proxy
#                            (reused when running; env in cluster/cluster.env)
#   stack.sh cluster-down    stop it; no process is left behind
#   stack.sh cluster-status  what of it is running
#   stack.sh cluster-restart broker1|broker2   bring back a killed or paused broker
#   stack.sh cluster-token   a token of the cluster's key: cluster-token <role> [ttl]
#
# Everything the stack writes lives under $KP_STACK_DIR (default target/stack);
# tools live under .venv (Python) and Maven's own cache (~/.m2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/stack
STACK_DIR=${KP_STACK_DIR:-$ROOT/target/stack}
TOOLS_DIR=$ROOT/.tools
VENV=$ROOT/.venv

PULSAR_PORT=${KP_PULSAR_PORT:-6650}
PULSAR_HTTP_PORT=${KP_PULSAR_HTTP_PORT:-8080}
PULSAR_TLS_PORT=${KP_PULSAR_TLS_PORT:-6651}
BOOKIE_PORT=${KP_BOOKIE_PORT:-3181}
MOTO_PORT=${KP_MOTO_PORT:-5000}
LAMBDA_PORT=${KP_LAMBDA_PORT:-9000}
SUPERUSER_ROLE=kp-superuser
PULSAR_START_TIMEOUT=${KP_PULSAR_START_TIMEOUT:-180}
# How long a started broker may take to store its first message, and the disk
# usage at which its bookie stops writing (see standalone.conf.in).
PULSAR_WRITABLE_TIMEOUT=${KP_PULSAR_WRITABLE_TIMEOUT:-60}
BOOKIE_DISK_THRESHOLD=${KP_BOOKIE_DISK_THRESHOLD:-0.999}
# How the broker verifies tokens: HS256 with a shared key (the default), or
# RS256 with only the public half (what production setups prefer; a test
# starts such a broker to prove RS256 rotation).
TOKEN_ALG=${KP_TOKEN_ALG:-HS256}

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- set-up ---

apt_install() { # apt_install <package>...: only as root on Debian-like hosts
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] ||
    die "missing $*; install it with your package manager (Debian: apt-get install $*)"
  if [ ! -f "$TOOLS_DIR/.apt-updated" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    mkdir -p "$TOOLS_DIR" && touch "$TOOLS_DIR/.apt-updated"
  fi
  say "installing $* (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$TOOLS_DIR/apt.log" 2>&1 ||
    die "apt-get install $* failed; see $TOOLS_DIR/apt.log"
}

# The JVM: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH.
JAVA=java
check_java() {
  if [ -n "${JAVA_HOME:-}" ]; then
    JAVA=$JAVA_HOME/bin/java
    [ -x "$JAVA" ] || die "JAVA_HOME is set to $JAVA_HOME but there is no $JAVA; unset it or point it at a Java 17+ installation"
  else
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
  fi
  local v
  v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] && [ "$v" -ge 17 ] ||
    die "Apache Pulsar 4 needs Java 17 or newer; '$JAVA -version' says: $("$JAVA" -version 2>&1 | head -1)"
}

setup_python() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  command -v python3 >/dev/null || apt_install python3 python3-venv
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" 2>/dev/null ||
    { apt_install python3-venv && python3 -m venv "$VENV"; } ||
    die "could not create the Python virtualenv at $VENV"
  say "installing Python tools into .venv (moto, cargo-lambda, pulsar-client)"
  mkdir -p "$TOOLS_DIR"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
    >"$TOOLS_DIR/pip.log" 2>&1 || die "pip could not install tests/stack/requirements.txt; see $TOOLS_DIR/pip.log"
  echo "$want" >"$stamp"
}

# Resolves the pinned pulsar-broker and its runtime dependencies with Maven
# (into ~/.m2) and records the classpath; redone only when pom.xml changes or
# a jar has gone missing from the cache.
# KP_PULSAR_VERSION overrides the version pinned in pom.xml (to try another 4.x).
PULSAR_VERSION=${KP_PULSAR_VERSION:-$(sed -n 's:.*<pulsar.version>\(.*\)</pulsar.version>.*:\1:p' "$HERE/pom.xml")}
pulsar_classpath_file() { echo "$TOOLS_DIR/pulsar-$PULSAR_VERSION-$(sha256sum "$HERE/pom.xml" | cut -c1-12).classpath"; }
# The cluster's proxy: the broker's classpath plus pom.xml's `proxy` profile
# (pulsar-proxy at its own pinned version; see pom.xml for why it differs).
PULSAR_PROXY_VERSION=${KP_PULSAR_PROXY_VERSION:-$(sed -n 's:.*<pulsar.proxy.version>\(.*\)</pulsar.proxy.version>.*:\1:p' "$HERE/pom.xml")}
proxy_classpath_file() { echo "$TOOLS_DIR/pulsar-proxy-$PULSAR_PROXY_VERSION-$PULSAR_VERSION-$(sha256sum "$HERE/pom.xml" | cut -c1-12).classpath"; }

# resolve_classpath <file> <log> <what> [maven args]: nothing to do when
# <file> lists jars that are all in the cache.
resolve_classpath() {
  local cp_file=$1 log=$2 what=$3
  shift 3
  if [ -s "$cp_file" ]; then
    local missing
    missing=$(tr ':' '\n' <"$cp_file" | while read -r jar; do [ -f "$jar" ] || echo "$jar"; done | head -1)
    [ -z "$missing" ] && return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  mkdir -p "$TOOLS_DIR"
  say "resolving $what from Maven Central (first time only)"
  if ! mvn -q -B -f "$HERE/pom.xml" -Dpulsar.version="$PULSAR_VERSION" "$@" dependency:build-classpath \
      -Dmdep.outputFile="$cp_file.tmp" -Dmdep.includeScope=runtime >"$log" 2>&1; then
    rm -f "$cp_file.tmp"
    local why
    why=$(grep -m1 '\[ERROR\]' "$log" | sed -e 's/^.*\[ERROR\] //' -e 's/^Failed to execute goal on project [^:]*: //' | cut -c1-300)
    die "Maven could not resolve $what and its dependencies: ${why:-see the log}. Full log: $log"
  fi
  mv "$cp_file.tmp" "$cp_file"
}

setup_pulsar() {
  check_java
  resolve_classpath "$(pulsar_classpath_file)" "$TOOLS_DIR/mvn-$PULSAR_VERSION.log" "Apache Pulsar $PULSAR_VERSION"
}

# Only `cluster-up` needs the proxy: `make test` and `make run` do not wait
# for (or depend on) resolving it.
setup_proxy() {
  resolve_classpath "$(proxy_classpath_file)" "$TOOLS_DIR/mvn-proxy-$PULSAR_PROXY_VERSION.log" \
    "the Pulsar proxy $PULSAR_PROXY_VERSION" \
    -Pproxy -Dpulsar.proxy.version="$PULSAR_PROXY_VERSION"
}

setup_protoc() { command -v protoc >/dev/null || apt_install protobuf-compiler; }

setup_rust() {
  command -v cargo >/dev/null || die "Rust is not installed; install it with rustup (https://rustup.rs)"
}

cmd_setup() {
  local t0=$SECONDS
  setup_rust
  setup_protoc
  command -v curl >/dev/null || apt_install curl
  command -v openssl >/dev/null || apt_install openssl
  setup_python
  setup_pulsar
  say "set-up complete ($((SECONDS - t0))s)"
}

# ------------------------------------------------------------- processes ---

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_owner() {
  command -v ss >/dev/null && ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -1
}

require_free_port() { # require_free_port <port> <what> [variables that choose ports]
  if port_in_use "$1"; then
    local who
    who=$(port_owner "$1")
    die "port $1 (needed for $2) is already in use${who:+ by $who}. Stop that process or choose another port (${3:-KP_PULSAR_PORT, KP_PULSAR_HTTP_PORT, KP_PULSAR_TLS_PORT, KP_BOOKIE_PORT, KP_MOTO_PORT})."
  fi
}

stop_pid() { # stop_pid <pidfile> <name>: TERM the process group, KILL after 20s
  local pidfile=$1 name=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop in 20s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "$name stopped"
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# mint_token <role> [ttl-seconds]: a Pulsar token signed with this stack's
# key (HS256, or RS256 when the broker was started with KP_TOKEN_ALG=RS256);
# without a TTL it never expires (the super-user's, for the stack's lifetime).
mint_token() {
  local alg header payload sig
  if [ -f "$STACK_DIR/token-private.pem" ]; then alg=RS256; else alg=HS256; fi
  header=$(printf '{"alg":"%s","typ":"JWT"}' "$alg" | b64url)
  if [ -n "${2:-}" ]; then
    payload=$(printf '{"sub":"%s","exp":%d}' "$1" "$(($(date +%s) + $2))" | b64url)
  else
    payload=$(printf '{"sub":"%s"}' "$1" | b64url)
  fi
  if [ "$alg" = RS256 ]; then
    sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$STACK_DIR/token-private.pem" -binary | b64url)
  else
    sig=$(printf '%s.%s' "$header" "$payload" |
      openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(od -An -vtx1 "$STACK_DIR/token-secret.key" | tr -d ' \n')" -binary | b64url)
  fi
  printf '%s.%s.%s' "$header" "$payload" "$sig"
}

admin_get() { # admin_get <path>: GET on the admin API as the super-user; prints the body
  curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$STACK_DIR/superuser.token")" \
    "http://127.0.0.1:$PULSAR_HTTP_PORT$1"
}

# make_tls: a throw-away CA and the broker's server certificate for the TLS
# listener (127.0.0.1/localhost), new every broker start like the token key.
# The CA key is kept so tests can issue client certificates from it (it is
# what the rotate function's CA secret holds in production). RSA keys: every
# TLS stack (JDK, OpenSSL, aws-lc) accepts them; PKCS#8 is what Pulsar reads.
make_tls() {
  local d=$STACK_DIR/tls
  rm -rf "$d"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=kong-pulsar test CA" \
      -keyout ca.key.pem -out ca.cert.pem \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key.pem -out broker.csr.pem
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext
    openssl x509 -req -in broker.csr.pem -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial \
      -days 30 -extfile broker.ext -out broker.cert.pem
    rm -f broker.csr.pem broker.ext ca.cert.srl
    chmod 600 ca.key.pem broker.key.pem
  ) >"$STACK_DIR/tls.log" 2>&1 || die "openssl could not create the test TLS certificates; see $STACK_DIR/tls.log"
}

pulsar_ready() { admin_get /admin/v2/namespaces/public 2>/dev/null | grep -q '"public/default"'; }

# The admin API answers before storage takes writes. brokers/health produces
# and reads back a heartbeat message, so a bookie that cannot write (a full
# disk turns it read-only) is reported here, by name, instead of surfacing as
# produce timeouts in every test. With "started", a failing broker is stopped.
require_pulsar_writable() {
  local t0=$SECONDS
  until curl -fsS --max-time 30 -H "Authorization: Bearer $(cat "$STACK_DIR/superuser.token")" \
      "http://127.0.0.1:$PULSAR_HTTP_PORT/admin/v2/brokers/health" 2>/dev/null | grep -q ok; do
    if [ $((SECONDS - t0)) -ge "$PULSAR_WRITABLE_TIMEOUT" ]; then
      [ "${1:-}" = started ] && stop_pid "$STACK_DIR/pulsar.pid" Pulsar
      die "Pulsar answers but cannot store messages (its health check fails). Disk where its data lives:
$(df -h "$STACK_DIR" | tail -n 1)
Last storage warnings: $(grep -E 'almost full|readOnly true|Not enough' "$STACK_DIR/pulsar/logs/pulsar.log" 2>/dev/null | tail -n 3)
Logs in $STACK_DIR/pulsar/logs"
    fi
    sleep 1
  done
}

start_pulsar() {
  local pidfile=$STACK_DIR/pulsar.pid
  if pid_alive "$pidfile"; then
    pulsar_ready || die "a Pulsar started by this stack is running (pid $(cat "$pidfile")) but not answering; run '$0 down' and retry"
    require_pulsar_writable
    say "Pulsar already running (pid $(cat "$pidfile")); reusing it"
    return 0
  fi
  require_free_port "$PULSAR_PORT" "Pulsar's binary protocol"
  require_free_port "$PULSAR_HTTP_PORT" "Pulsar's admin API"
  require_free_port "$PULSAR_TLS_PORT" "Pulsar's TLS listener"
  require_free_port "$BOOKIE_PORT" "Pulsar's embedded bookie"

  # A fresh broker every start: new data directory, new signing key.
  rm -rf "$STACK_DIR/pulsar"
  mkdir -p "$STACK_DIR/pulsar/data" "$STACK_DIR/pulsar/logs"
  rm -f "$STACK_DIR/token-secret.key" "$STACK_DIR/token-private.pem" "$STACK_DIR/token-public.der"
  local token_key_setting
  case "$TOKEN_ALG" in
    HS256)
      head -c 32 /dev/urandom >"$STACK_DIR/token-secret.key"
      chmod 600 "$STACK_DIR/token-secret.key"
      token_key_setting="tokenSecretKey=file://$STACK_DIR/token-secret.key" ;;
    RS256)
      (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$STACK_DIR/token-private.pem" 2>/dev/null) || die "openssl could not create an RSA key"
      # Pulsar reads the public key as DER (what `pulsar tokens create-key-pair` writes).
      openssl pkey -in "$STACK_DIR/token-private.pem" -pubout -outform DER \
        -out "$STACK_DIR/token-public.der" 2>/dev/null || die "openssl could not export the RSA public key"
      token_key_setting="tokenPublicKey=file://$STACK_DIR/token-public.der" ;;
    *) die "KP_TOKEN_ALG must be HS256 or RS256, not '$TOKEN_ALG'" ;;
  esac
  mint_token "$SUPERUSER_ROLE" >"$STACK_DIR/superuser.token"
  chmod 600 "$STACK_DIR/superuser.token"
  make_tls
  sed -e "s|@BROKER_PORT@|$PULSAR_PORT|" -e "s|@WEB_PORT@|$PULSAR_HTTP_PORT|" \
      -e "s|@BROKER_TLS_PORT@|$PULSAR_TLS_PORT|" -e "s|@TLS_DIR@|$STACK_DIR/tls|" \
      -e "s|@TOKEN_KEY_SETTING@|$token_key_setting|" \
      -e "s|@SUPERUSER_ROLE@|$SUPERUSER_ROLE|" \
      -e "s|@SUPERUSER_TOKEN_FILE@|$STACK_DIR/superuser.token|" \
      -e "s|@DISK_THRESHOLD@|$BOOKIE_DISK_THRESHOLD|" \
      "$HERE/standalone.conf.in" >"$STACK_DIR/pulsar/standalone.conf"

  local t0=$SECONDS
  say "starting Apache Pulsar on 127.0.0.1:$PULSAR_PORT (TLS :$PULSAR_TLS_PORT, admin :$PULSAR_HTTP_PORT)"
  # JVM flags as Pulsar's own bin/pulsar sets them.
  (cd "$STACK_DIR/pulsar" && exec setsid "$JAVA" \
    -Xms128m -Xmx512m -XX:MaxDirectMemorySize=256m -XX:+UseG1GC -XX:TieredStopAtLevel=1 \
    -Djava.net.preferIPv4Stack=true -Dio.netty.tryReflectionSetAccessible=true \
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED \
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
    -Dlog4j.configurationFile="$HERE/log4j2.properties" -Dpulsar.log.dir="$STACK_DIR/pulsar/logs" \
    -Dlog4j2.is.webapp=false -Dlog4j.shutdownHookEnabled=false -Dzookeeper.snapshot.trust.empty=true \
    -cp "$(cat "$(pulsar_classpath_file)")" \
    org.apache.pulsar.PulsarStandaloneStarter --config "$STACK_DIR/pulsar/standalone.conf" \
    --metadata-dir "$STACK_DIR/pulsar/data/metadata" --bookkeeper-dir "$STACK_DIR/pulsar/data/bookkeeper" \
    --bookkeeper-port "$BOOKIE_PORT" --no-functions-worker --no-stream-storage \
    >"$STACK_DIR/pulsar/logs/stdout.log" 2>&1) &
  echo $! >"$pidfile"

  while ! pulsar_ready; do
    if ! pid_alive "$pidfile"; then
      rm -f "$pidfile"
      die "Pulsar exited during start-up. Last lines of its log:
$(tail -n 15 "$STACK_DIR/pulsar/logs/stdout.log" "$STACK_DIR/pulsar/logs/pulsar.log" 2>/dev/null | grep -v '^$' | tail -n 15)"
    fi
    if [ $((SECONDS - t0)) -ge "$PULSAR_START_TIMEOUT" ]; then
      stop_pid "$pidfile" Pulsar
      die "Pulsar did not become ready within ${PULSAR_START_TIMEOUT}s; logs in $STACK_DIR/pulsar/logs"
    fi
    sleep 1
  done
  require_pulsar_writable started
  local rss
  rss=$(ps -o rss= -p "$(cat "$pidfile")" 2>/dev/null | awk '{printf "%d MiB", $1/1024}')
  say "Pulsar ready in $((SECONDS - t0))s (RSS ${rss:-?})"
}

moto_ready() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/data.json" 2>/dev/null; }

start_moto() {
  local pidfile=$STACK_DIR/moto.pid
  if pid_alive "$pidfile"; then
    say "moto already running (pid $(cat "$pidfile")); reusing it"
    return 0
  fi
  require_free_port "$MOTO_PORT" "moto (AWS emulator)"
  say "starting moto on 127.0.0.1:$MOTO_PORT"
  setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STACK_DIR/moto.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    moto_ready && return 0
    pid_alive "$pidfile" || die "moto exited during start-up: $(tail -n 5 "$STACK_DIR/moto.log")"
    sleep 0.5
  done
  die "moto did not answer within 30s; see $STACK_DIR/moto.log"
}

write_env() {
  cat >"$STACK_DIR/stack.env" <<ENV
# Written by tests/stack/stack.sh up: how to reach the running local stack.
PULSAR_SERVICE_URL=pulsar://127.0.0.1:$PULSAR_PORT
PULSAR_ADMIN_URL=http://127.0.0.1:$PULSAR_HTTP_PORT
KP_STACK_SUPERUSER_ROLE=$SUPERUSER_ROLE
KP_STACK_SUPERUSER_TOKEN_FILE=$STACK_DIR/superuser.token
KP_STACK_TOKEN_ALG=$([ -f "$STACK_DIR/token-private.pem" ] && echo RS256 || echo HS256)
KP_STACK_TOKEN_SECRET_FILE=$STACK_DIR/token-secret.key
KP_STACK_TOKEN_PRIVATE_KEY_FILE=$STACK_DIR/token-private.pem
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
ENV
  # Only a broker rendered with the TLS listener has one: a stack started
  # before it existed, and reused, must not claim it.
  local conf=$STACK_DIR/pulsar/standalone.conf port
  port=$(sed -n 's/^brokerServicePortTls=//p' "$conf" 2>/dev/null)
  if [ -n "$port" ] && [ -f "$STACK_DIR/tls/ca.cert.pem" ]; then
    cat >>"$STACK_DIR/stack.env" <<ENV
PULSAR_TLS_SERVICE_URL=pulsar+ssl://127.0.0.1:$port
KP_STACK_TLS_CA_CERT_FILE=$STACK_DIR/tls/ca.cert.pem
KP_STACK_TLS_CA_KEY_FILE=$STACK_DIR/tls/ca.key.pem
ENV
  fi
}

cmd_up() {
  mkdir -p "$STACK_DIR"
  start_moto
  start_pulsar
  write_env
  say "stack up; environment in $STACK_DIR/stack.env"
}

cmd_down() {
  stop_pid "$STACK_DIR/lambda.pid" "cargo lambda watch"
  stop_pid "$STACK_DIR/demo-issuer.pid" "demo issuer"
  stop_pid "$STACK_DIR/moto.pid" moto
  stop_pid "$STACK_DIR/pulsar.pid" Pulsar
}

cmd_status() {
  local name
  for name in pulsar moto demo-issuer lambda; do
    if pid_alive "$STACK_DIR/$name.pid"; then echo "$name: running (pid $(cat "$STACK_DIR/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

stack_running() { pid_alive "$STACK_DIR/pulsar.pid" && pid_alive "$STACK_DIR/moto.pid"; }

load_env() { set -a; . "$STACK_DIR/stack.env"; set +a; }

cmd_test() {
  local t0=$SECONDS started=0
  cmd_setup
  stack_running || started=1
  if [ "$started" = 1 ]; then trap 'cmd_down' EXIT; fi
  cmd_up
  load_env
  PATH="$VENV/bin:$PATH"
  cd "$ROOT"
  say "deployment artifacts (template, Kong config, events, release build)"
  "$HERE/validate.sh"
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  say "cargo build (the function binaries the end-to-end tests run)"
  cargo build --workspace --bins --quiet
  # The cluster tests share one multi-broker cluster; started after the
  # builds so its five JVMs do not compete with them for the two cores.
  local cluster_started=0
  cluster_running || cluster_started=1
  if [ "$cluster_started" = 1 ]; then
    if [ "$started" = 1 ]; then trap 'cmd_cluster_down; cmd_down' EXIT; else trap 'cmd_cluster_down' EXIT; fi
  fi
  setup_proxy
  cmd_cluster_up
  say "cargo test"
  cargo test --workspace --no-fail-fast
  say "all tests passed in $((SECONDS - t0))s"
}

start_demo_issuer() {
  local pidfile=$STACK_DIR/demo-issuer.pid
  pid_alive "$pidfile" && return 0
  require_free_port 9400 "the demo OIDC issuer"
  (cd "$ROOT" && cargo build --quiet -p kp-tests --bin demo-issuer)
  setsid "$ROOT/target/debug/demo-issuer" "$STACK_DIR/demo.token" >"$STACK_DIR/demo-issuer.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 50); do [ -s "$STACK_DIR/demo.token" ] && return 0; sleep 0.2; done
  die "the demo issuer did not start; see $STACK_DIR/demo-issuer.log"
}

cmd_run() {
  cmd_setup
  cmd_up
  load_env
  STACK_DIR=$STACK_DIR "$HERE/demo.sh"
  rm -f "$STACK_DIR/demo.token"
  start_demo_issuer
  cd "$ROOT"
  cat >&2 <<MSG
[stack] ready. In another terminal, publish an event through the function URL
        route of cargo lambda watch (payload 2.0, as Kong would send it):

  curl -i -X POST http://127.0.0.1:$LAMBDA_PORT/lambda-url/publish/events/demo/orders/order-created \\
       -H "Authorization: Bearer \$(cat $STACK_DIR/demo.token)" \\
       -H 'Content-Type: application/json' -d '{"orderId":"1001"}'

        or invoke with a shipped Kong event:
  .venv/bin/cargo-lambda lambda invoke publish --data-file events/publish-kong.json

        The first call compiles the function. '$0 down' stops everything.
MSG
  say "serving the functions with cargo lambda watch on 127.0.0.1:$LAMBDA_PORT (Ctrl-C stops; '$0 down' stops the stack)"
  exec "$VENV/bin/cargo-lambda" lambda watch --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
    --env-file "$STACK_DIR/functions.env"
}

# --------------------------------------------------------------- cluster ---
# A real multi-broker Pulsar cluster beside the standalone, from the same
# Maven classpath, as plain loopback processes: ZooKeeper (the metadata
# store), one bookie, two brokers and a proxy, each its own small JVM. It has
# its own token key, super-user and ports, so it never touches the standalone.

CLUSTER_DIR=$STACK_DIR/cluster
CLUSTER_NAME=kp-cluster
CLUSTER_ZK_PORT=${KP_CLUSTER_ZK_PORT:-12181}
CLUSTER_BOOKIE_PORT=${KP_CLUSTER_BOOKIE_PORT:-13181}
CLUSTER_PROXY_PORT=${KP_CLUSTER_PROXY_PORT:-16650}
CLUSTER_PROXY_WEB_PORT=${KP_CLUSTER_PROXY_WEB_PORT:-18080}
CLUSTER_BROKER1_PORT=${KP_CLUSTER_BROKER1_PORT:-16651}
CLUSTER_BROKER1_WEB_PORT=${KP_CLUSTER_BROKER1_WEB_PORT:-18081}
CLUSTER_BROKER2_PORT=${KP_CLUSTER_BROKER2_PORT:-16652}
CLUSTER_BROKER2_WEB_PORT=${KP_CLUSTER_BROKER2_WEB_PORT:-18082}
CLUSTER_START_TIMEOUT=${KP_CLUSTER_START_TIMEOUT:-180}
CLUSTER_PORT_VARS="KP_CLUSTER_ZK_PORT, KP_CLUSTER_BOOKIE_PORT, KP_CLUSTER_PROXY_PORT, KP_CLUSTER_PROXY_WEB_PORT, KP_CLUSTER_BROKER{1,2}_PORT, KP_CLUSTER_BROKER{1,2}_WEB_PORT"
PROXY_ROLE=kp-proxy
# Start order; cluster-down stops them the other way round.
CLUSTER_PROCS="zookeeper bookie broker1 broker2 proxy"

# cluster_java <name> <heap> <direct memory> <classpath file> <main class> [args...]:
# starts one cluster JVM in its own session (so stopping it stops all it
# started), in $CLUSTER_DIR/<name>, logging to <name>/logs.
cluster_java() {
  local name=$1 heap=$2 direct=$3 cp_file=$4 main=$5
  shift 5
  local d=$CLUSTER_DIR/$name
  mkdir -p "$d/logs"
  # Pulsar's own JVM flags (bin/pulsar), a small heap each, and the serial
  # collector: five JVMs share 2 cores with the standalone and the builds.
  (cd "$d" && exec setsid "$JAVA" \
    -Xms32m "-Xmx$heap" "-XX:MaxDirectMemorySize=$direct" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.net.preferIPv4Stack=true -Dio.netty.tryReflectionSetAccessible=true -Djute.maxbuffer=10485760 \
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED \
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
    -Dzookeeper.snapshot.trust.empty=true -Dzookeeper.4lw.commands.whitelist=ruok,stat,srvr \
    -Dlog4j.configurationFile="$HERE/log4j2.properties" -Dpulsar.log.dir="$d/logs" \
    -Dlog4j2.is.webapp=false -Dlog4j.shutdownHookEnabled=false \
    -cp "$(cat "$cp_file")" "$main" "$@" \
    >"$d/logs/stdout.log" 2>&1) &
  echo $! >"$CLUSTER_DIR/$name.pid"
}

cluster_start_broker() { # cluster_start_broker <broker1|broker2>: with the config cluster-up rendered
  cluster_java "$1" 384m 256m "$(pulsar_classpath_file)" org.apache.pulsar.PulsarBrokerStarter \
    --broker-conf "$CLUSTER_DIR/$1/broker.conf"
}

cluster_render() { # cluster_render <template> <output> [sed args]: fills in this cluster's @NAME@s
  local template=$1 out=$2
  shift 2
  sed -e "s|@CLUSTER@|$CLUSTER_NAME|g" -e "s|@ZK_PORT@|$CLUSTER_ZK_PORT|g" \
      -e "s|@BOOKIE_PORT@|$CLUSTER_BOOKIE_PORT|g" -e "s|@DISK_THRESHOLD@|$BOOKIE_DISK_THRESHOLD|g" \
      -e "s|@PROXY_PORT@|$CLUSTER_PROXY_PORT|g" -e "s|@PROXY_WEB_PORT@|$CLUSTER_PROXY_WEB_PORT|g" \
      -e "s|@BROKER_PORTS@|$CLUSTER_BROKER1_PORT,$CLUSTER_BROKER2_PORT|g" \
      -e "s|@TOKEN_SECRET_FILE@|$CLUSTER_DIR/token-secret.key|g" \
      -e "s|@SUPERUSER_ROLE@|$SUPERUSER_ROLE|g" -e "s|@PROXY_ROLE@|$PROXY_ROLE|g" \
      -e "s|@SUPERUSER_TOKEN_FILE@|$CLUSTER_DIR/superuser.token|g" \
      -e "s|@PROXY_TOKEN_FILE@|$CLUSTER_DIR/proxy.token|g" \
      "$@" "$HERE/cluster/$template" >"$out"
}

zk_ready() { # ZooKeeper's own liveness word: ruok -> imok
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$CLUSTER_ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null) || true
  [ "$reply" = imok ]
}

cluster_admin() { # cluster_admin <web port> <path> [curl args]: as the cluster's super-user
  local port=$1 path=$2
  shift 2
  curl -fsS --max-time 10 -H "Authorization: Bearer $(cat "$CLUSTER_DIR/superuser.token")" "$@" \
    "http://127.0.0.1:$port$path"
}

broker_ready() { cluster_admin "$1" /admin/v2/brokers/ready 2>/dev/null | grep -q ok; }
# The proxy answers admin calls by forwarding them to a broker, and its own
# binary port is open.
proxy_ready() {
  cluster_admin "$CLUSTER_PROXY_WEB_PORT" /admin/v2/clusters 2>/dev/null | grep -q "\"$CLUSTER_NAME\"" &&
    port_in_use "$CLUSTER_PROXY_PORT"
}
# Both brokers registered, each storing a heartbeat message (so the bookie writes).
cluster_ready() {
  local brokers
  zk_ready || return 1
  broker_ready "$CLUSTER_BROKER1_WEB_PORT" && broker_ready "$CLUSTER_BROKER2_WEB_PORT" || return 1
  brokers=$(cluster_admin "$CLUSTER_BROKER1_WEB_PORT" "/admin/v2/brokers/$CLUSTER_NAME" 2>/dev/null) || return 1
  case $brokers in *"127.0.0.1:$CLUSTER_BROKER1_WEB_PORT"*"127.0.0.1:$CLUSTER_BROKER2_WEB_PORT"* | \
    *"127.0.0.1:$CLUSTER_BROKER2_WEB_PORT"*"127.0.0.1:$CLUSTER_BROKER1_WEB_PORT"*) ;; *) return 1 ;; esac
  cluster_admin "$CLUSTER_BROKER1_WEB_PORT" /admin/v2/brokers/health 2>/dev/null | grep -q ok &&
    cluster_admin "$CLUSTER_BROKER2_WEB_PORT" /admin/v2/brokers/health 2>/dev/null | grep -q ok &&
    proxy_ready
}

cluster_stop() { # cluster_stop <name>...: TERM them all at once, KILL what is left after 20s
  local name pid left
  for name in "$@"; do
    pid_alive "$CLUSTER_DIR/$name.pid" || { rm -f "$CLUSTER_DIR/$name.pid"; continue; }
    pid=$(cat "$CLUSTER_DIR/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 40); do
    left=
    for name in "$@"; do pid_alive "$CLUSTER_DIR/$name.pid" && left="$left $name"; done
    [ -z "$left" ] && break
    sleep 0.5
  done
  for name in "$@"; do
    [ -f "$CLUSTER_DIR/$name.pid" ] || continue
    if pid_alive "$CLUSTER_DIR/$name.pid"; then
      pid=$(cat "$CLUSTER_DIR/$name.pid")
      say "cluster $name did not stop in 20s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$CLUSTER_DIR/$name.pid"
    say "cluster $name stopped"
  done
}

cmd_cluster_down() {
  # Clients first, the stores last: a broker shuts down cleanly only while
  # its bookie and metadata store still answer.
  cluster_stop proxy broker1 broker2
  cluster_stop bookie
  cluster_stop zookeeper
}

cluster_rss() { # "name RSS" of each running cluster process
  local name
  for name in $CLUSTER_PROCS; do
    pid_alive "$CLUSTER_DIR/$name.pid" &&
      ps -o rss= -p "$(cat "$CLUSTER_DIR/$name.pid")" | awk -v n="$name" '{printf "%s %d MiB, ", n, $1/1024}'
  done | sed 's/, $//'
}

cluster_write_env() {
  local name
  {
    echo "# Written by tests/stack/stack.sh cluster-up: how to reach the running test cluster."
    echo "KP_CLUSTER_NAME=$CLUSTER_NAME"
    echo "KP_CLUSTER_BROKER1_SERVICE_URL=pulsar://127.0.0.1:$CLUSTER_BROKER1_PORT"
    echo "KP_CLUSTER_BROKER2_SERVICE_URL=pulsar://127.0.0.1:$CLUSTER_BROKER2_PORT"
    echo "KP_CLUSTER_BROKER1_ADMIN_URL=http://127.0.0.1:$CLUSTER_BROKER1_WEB_PORT"
    echo "KP_CLUSTER_BROKER2_ADMIN_URL=http://127.0.0.1:$CLUSTER_BROKER2_WEB_PORT"
    echo "KP_CLUSTER_PROXY_SERVICE_URL=pulsar://127.0.0.1:$CLUSTER_PROXY_PORT"
    echo "KP_CLUSTER_PROXY_ADMIN_URL=http://127.0.0.1:$CLUSTER_PROXY_WEB_PORT"
    echo "KP_CLUSTER_METADATA_STORE_URL=zk:127.0.0.1:$CLUSTER_ZK_PORT"
    echo "KP_CLUSTER_SUPERUSER_ROLE=$SUPERUSER_ROLE"
    echo "KP_CLUSTER_SUPERUSER_TOKEN_FILE=$CLUSTER_DIR/superuser.token"
    echo "KP_CLUSTER_PROXY_ROLE=$PROXY_ROLE"
    echo "KP_CLUSTER_TOKEN_ALG=HS256"
    echo "KP_CLUSTER_TOKEN_SECRET_FILE=$CLUSTER_DIR/token-secret.key"
    for name in $CLUSTER_PROCS; do
      echo "KP_CLUSTER_$(echo "$name" | tr '[:lower:]' '[:upper:]')_PID=$(cat "$CLUSTER_DIR/$name.pid")"
    done
  } >"$CLUSTER_DIR/cluster.env"
}

cmd_cluster_up() {
  local name running=0 all=1
  mkdir -p "$CLUSTER_DIR"
  for name in $CLUSTER_PROCS; do
    if pid_alive "$CLUSTER_DIR/$name.pid"; then running=1; else all=0; fi
  done
  if [ "$all" = 1 ] && cluster_ready; then
    cluster_write_env
    say "cluster already running; reusing it ($(cluster_rss)); environment in $CLUSTER_DIR/cluster.env"
    return 0
  fi
  if [ "$running" = 1 ]; then
    say "a cluster started by this stack is partly running or not answering; restarting it"
    cmd_cluster_down
  fi
  require_free_port "$CLUSTER_ZK_PORT" "the cluster's ZooKeeper" "$CLUSTER_PORT_VARS"
  require_free_port "$CLUSTER_BOOKIE_PORT" "the cluster's bookie" "$CLUSTER_PORT_VARS"
  local port
  for port in "$CLUSTER_BROKER1_PORT" "$CLUSTER_BROKER1_WEB_PORT" "$CLUSTER_BROKER2_PORT" "$CLUSTER_BROKER2_WEB_PORT"; do
    require_free_port "$port" "a cluster broker" "$CLUSTER_PORT_VARS"
  done
  require_free_port "$CLUSTER_PROXY_PORT" "the cluster's proxy" "$CLUSTER_PORT_VARS"
  require_free_port "$CLUSTER_PROXY_WEB_PORT" "the cluster's proxy (HTTP)" "$CLUSTER_PORT_VARS"

  # A fresh cluster every start, like the standalone: new data, new key.
  local t0=$SECONDS
  rm -rf "$CLUSTER_DIR"
  mkdir -p "$CLUSTER_DIR"
  (umask 077 && head -c 32 /dev/urandom >"$CLUSTER_DIR/token-secret.key")
  (STACK_DIR=$CLUSTER_DIR && umask 077 && mint_token "$SUPERUSER_ROLE" >"$CLUSTER_DIR/superuser.token" &&
    mint_token "$PROXY_ROLE" >"$CLUSTER_DIR/proxy.token")
  for name in $CLUSTER_PROCS; do mkdir -p "$CLUSTER_DIR/$name/data"; done
  cluster_render zookeeper.conf.in "$CLUSTER_DIR/zookeeper/zookeeper.conf" -e "s|@DATA_DIR@|$CLUSTER_DIR/zookeeper/data|g"
  cluster_render bookie.conf.in "$CLUSTER_DIR/bookie/bookie.conf" -e "s|@DATA_DIR@|$CLUSTER_DIR/bookie/data|g"
  cluster_render broker.conf.in "$CLUSTER_DIR/broker1/broker.conf" \
    -e "s|@BROKER_PORT@|$CLUSTER_BROKER1_PORT|g" -e "s|@WEB_PORT@|$CLUSTER_BROKER1_WEB_PORT|g"
  cluster_render broker.conf.in "$CLUSTER_DIR/broker2/broker.conf" \
    -e "s|@BROKER_PORT@|$CLUSTER_BROKER2_PORT|g" -e "s|@WEB_PORT@|$CLUSTER_BROKER2_WEB_PORT|g"
  cluster_render proxy.conf.in "$CLUSTER_DIR/proxy/proxy.conf"

  local cp
  cp=$(pulsar_classpath_file)
  say "starting the cluster's ZooKeeper on 127.0.0.1:$CLUSTER_ZK_PORT"
  cluster_java zookeeper 128m 64m "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$CLUSTER_DIR/zookeeper/zookeeper.conf"
  until zk_ready; do
    pid_alive "$CLUSTER_DIR/zookeeper.pid" || cluster_failed zookeeper "ZooKeeper exited during start-up"
    [ $((SECONDS - t0)) -lt "$CLUSTER_START_TIMEOUT" ] || cluster_failed zookeeper "ZooKeeper did not answer within ${CLUSTER_START_TIMEOUT}s"
    sleep 0.5
  done

  # What `pulsar initialize-cluster-metadata` runs: the cluster, its service
  # URLs (both brokers), the BookKeeper ledger root, public/default.
  say "initialising the cluster metadata ($CLUSTER_NAME)"
  mkdir -p "$CLUSTER_DIR/init/logs"
  if ! (cd "$CLUSTER_DIR/init" && timeout 120 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Djava.net.preferIPv4Stack=true -Dio.netty.tryReflectionSetAccessible=true \
      -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
      -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
      -Dlog4j.configurationFile="$HERE/log4j2.properties" -Dpulsar.log.dir="$CLUSTER_DIR/init/logs" \
      -cp "$(cat "$cp")" org.apache.pulsar.PulsarClusterMetadataSetup \
      --cluster "$CLUSTER_NAME" \
      --metadata-store "zk:127.0.0.1:$CLUSTER_ZK_PORT" \
      --configuration-metadata-store "zk:127.0.0.1:$CLUSTER_ZK_PORT" \
      --web-service-url "http://127.0.0.1:$CLUSTER_BROKER1_WEB_PORT,127.0.0.1:$CLUSTER_BROKER2_WEB_PORT" \
      --broker-service-url "pulsar://127.0.0.1:$CLUSTER_BROKER1_PORT,127.0.0.1:$CLUSTER_BROKER2_PORT" \
      --default-namespace-bundle-number 4 \
      >"$CLUSTER_DIR/init/logs/stdout.log" 2>&1); then
    cluster_failed init "initialising the cluster metadata failed"
  fi

  # The rest only needs the metadata store: start it all at once.
  say "starting the bookie (:$CLUSTER_BOOKIE_PORT), brokers (:$CLUSTER_BROKER1_PORT admin :$CLUSTER_BROKER1_WEB_PORT, :$CLUSTER_BROKER2_PORT admin :$CLUSTER_BROKER2_WEB_PORT) and proxy (:$CLUSTER_PROXY_PORT admin :$CLUSTER_PROXY_WEB_PORT)"
  cluster_java bookie 192m 192m "$cp" org.apache.bookkeeper.server.Main --conf "$CLUSTER_DIR/bookie/bookie.conf"
  cluster_start_broker broker1
  cluster_start_broker broker2
  cluster_java proxy 192m 128m "$(proxy_classpath_file)" org.apache.pulsar.proxy.server.ProxyServiceStarter \
    --config "$CLUSTER_DIR/proxy/proxy.conf"
  until cluster_ready; do
    for name in $CLUSTER_PROCS; do
      pid_alive "$CLUSTER_DIR/$name.pid" || cluster_failed "$name" "the cluster's $name exited during start-up"
    done
    [ $((SECONDS - t0)) -lt "$CLUSTER_START_TIMEOUT" ] ||
      cluster_failed "" "the cluster did not become ready within ${CLUSTER_START_TIMEOUT}s"
    sleep 1
  done
  cluster_write_env
  say "cluster ready in $((SECONDS - t0))s ($(cluster_rss)); environment in $CLUSTER_DIR/cluster.env"
}

cluster_failed() { # cluster_failed <process or ""> <message>: stop what started, show its log, die
  local logs
  [ -n "$1" ] && logs=$(tail -n 15 "$CLUSTER_DIR/$1/logs/stdout.log" "$CLUSTER_DIR/$1/logs/pulsar.log" 2>/dev/null | grep -v '^$' | tail -n 15)
  cmd_cluster_down
  die "$2.${logs:+ Last lines of its log:
$logs}
Logs in $CLUSTER_DIR/*/logs"
}

# A broker killed or stopped by a fault test comes back with its own data
# and ports (its topics were taken over by the other broker meanwhile).
cmd_cluster_restart() {
  local name=$1 t0=$SECONDS
  case $name in broker1 | broker2) ;; *) die "usage: stack.sh cluster-restart <broker1|broker2>" ;; esac
  [ -f "$CLUSTER_DIR/cluster.env" ] || die "no cluster in $CLUSTER_DIR; run '$0 cluster-up' first"
  # A paused (SIGSTOP) broker is alive but deaf: continue it. It may then
  # find its metadata session expired and stop itself; start it again then.
  pid_alive "$CLUSTER_DIR/$name.pid" && kill -CONT -- "-$(cat "$CLUSTER_DIR/$name.pid")" 2>/dev/null || true
  until cluster_ready; do
    pid_alive "$CLUSTER_DIR/$name.pid" || cluster_start_broker "$name"
    [ $((SECONDS - t0)) -lt "$CLUSTER_START_TIMEOUT" ] ||
      die "the cluster was not ready within ${CLUSTER_START_TIMEOUT}s of restarting $name"
    sleep 0.5
  done
  cluster_write_env
  say "cluster $name back in $((SECONDS - t0))s"
}

cluster_running() { # any process of the cluster alive
  local name
  for name in $CLUSTER_PROCS; do pid_alive "$CLUSTER_DIR/$name.pid" && return 0; done
  return 1
}

cmd_cluster_status() {
  local name
  for name in $CLUSTER_PROCS; do
    if pid_alive "$CLUSTER_DIR/$name.pid"; then echo "cluster $name: running (pid $(cat "$CLUSTER_DIR/$name.pid"))"; else echo "cluster $name: stopped"; fi
  done
}

case "${1:-}" in
  setup) cmd_setup ;;
  up) cmd_setup; cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  test) cmd_test ;;
  validate) setup_python; "$HERE/validate.sh" ;;
  run) cmd_run ;;
  cluster-up) cmd_setup; setup_proxy; cmd_cluster_up ;;
  cluster-down) cmd_cluster_down ;;
  cluster-status) cmd_cluster_status ;;
  cluster-restart) cmd_cluster_restart "${2:-}" ;;
  cluster-token)
    [ -f "$CLUSTER_DIR/token-secret.key" ] || die "no cluster key in $CLUSTER_DIR; run '$0 cluster-up' first"
    STACK_DIR=$CLUSTER_DIR mint_token "${2:?usage: stack.sh cluster-token <role> [ttl-seconds]}" "${3:-}"; echo ;;
  token) mint_token "${2:?usage: stack.sh token <role> [ttl-seconds]}" "${3:-}"; echo ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
