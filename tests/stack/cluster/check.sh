#!/usr/bin/env bash
# A short proof that the test cluster (stack.sh cluster-up) is a cluster:
# the 4 partitions of one topic are owned by both brokers, a tenant's token
# produces and consumes through the proxy, a role without a grant is refused
# there, and a broker answers a topic call for a topic it does not own with
# a 307 to the owner. Leaves nothing behind (its tenant is deleted).
#
#   tests/stack/stack.sh cluster-up && tests/stack/cluster/check.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
STACK=$ROOT/tests/stack/stack.sh
ENV_FILE=${KP_STACK_DIR:-$ROOT/target/stack}/cluster/cluster.env
[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: run tests/stack/stack.sh cluster-up first" >&2; exit 1; }
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a

TENANT=kp-check
NS=$TENANT/orders
TOPIC=events
AUTH="Authorization: Bearer $(cat "$KP_CLUSTER_SUPERUSER_TOKEN_FILE")"
fail() { echo "FAIL: $*" >&2; exit 1; }
admin() { # admin <method> <base url> <path> [body]: prints the HTTP status, body to $OUT
  curl -sS -o "$OUT" -w '%{http_code}' -X "$1" -H "$AUTH" -H 'Content-Type: application/json' \
    ${4:+-d "$4"} "$2$3"
}
OUT=$(mktemp)
trap 'rm -f "$OUT"; admin DELETE "$KP_CLUSTER_BROKER1_ADMIN_URL" "/admin/v2/tenants/$TENANT?force=true" >/dev/null 2>&1 || true' EXIT

B1=$KP_CLUSTER_BROKER1_ADMIN_URL
admin DELETE "$B1" "/admin/v2/tenants/$TENANT?force=true" >/dev/null || true
[ "$(admin PUT "$B1" "/admin/v2/tenants/$TENANT" "{\"adminRoles\":[],\"allowedClusters\":[\"$KP_CLUSTER_NAME\"]}")" = 204 ] || fail "create tenant: $(cat "$OUT")"
[ "$(admin PUT "$B1" "/admin/v2/namespaces/$NS")" = 204 ] || fail "create namespace: $(cat "$OUT")"
[ "$(admin POST "$B1" "/admin/v2/namespaces/$NS/permissions/kp-check-app" '["produce","consume"]')" = 204 ] || fail "grant: $(cat "$OUT")"
[ "$(admin PUT "$B1" "/admin/v2/persistent/$NS/$TOPIC/partitions" 4)" = 204 ] || fail "create topic: $(cat "$OUT")"
admin GET "$B1" "/admin/v2/namespaces/$NS/bundles" >/dev/null
echo "namespace $NS bundles: $(cat "$OUT")"

# Who owns each partition (the lookup is answered by, or redirected to, the owner).
owners=
for i in 0 1 2 3; do
  owner=$(curl -sS --location-trusted -H "$AUTH" "$B1/lookup/v2/topic/persistent/$NS/$TOPIC-partition-$i" |
    sed -n 's/.*"httpUrl":"\([^"]*\)".*/\1/p')
  [ -n "$owner" ] || fail "lookup of partition $i"
  bundle=$(curl -sS --location-trusted -H "$AUTH" "$B1/lookup/v2/topic/persistent/$NS/$TOPIC-partition-$i/bundle")
  echo "partition $i (bundle $bundle) owned by $owner"
  owners="$owners $owner"
  [ "$i" = 0 ] && owner0=$owner
done
for b in "$KP_CLUSTER_BROKER1_ADMIN_URL" "$KP_CLUSTER_BROKER2_ADMIN_URL"; do
  case "$owners " in *" $b "*) ;; *) fail "no partition is owned by $b" ;; esac
done
for b in "$KP_CLUSTER_BROKER1_ADMIN_URL" "$KP_CLUSTER_BROKER2_ADMIN_URL"; do
  curl -sS -H "$AUTH" "$b/admin/v2/brokers/$KP_CLUSTER_NAME/${b#http://}/ownedNamespaces" >"$OUT"
  echo "bundles of $NS owned by $b: $(grep -o "\"$NS/0x[0-9a-f_x]*\"" "$OUT" | tr -d '"' | sed "s|$NS/||" | sort | tr '\n' ' ')"
done
echo "ok: the partitions are spread over both brokers"

# The broker that does not own partition 0 redirects a topic call to the one that does.
if [ "$owner0" = "$KP_CLUSTER_BROKER1_ADMIN_URL" ]; then other=$KP_CLUSTER_BROKER2_ADMIN_URL; else other=$KP_CLUSTER_BROKER1_ADMIN_URL; fi
redirect=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H "$AUTH" "$other/admin/v2/persistent/$NS/$TOPIC-partition-0/stats")
echo "GET $other/admin/v2/persistent/$NS/$TOPIC-partition-0/stats -> $redirect"
case $redirect in "307 $owner0/"*) echo "ok: the non-owner redirects to the owner" ;; *) fail "expected a 307 to $owner0" ;; esac

# Produce and consume through the proxy with the tenant's token; an intruder is refused.
KP_APP_TOKEN=$("$STACK" cluster-token kp-check-app 600) KP_INTRUDER_TOKEN=$("$STACK" cluster-token kp-check-intruder 600) \
  KP_TOPIC="persistent://$NS/$TOPIC" timeout 120 "$ROOT/.venv/bin/python" - <<'PY'
import logging, os, pulsar
url, topic = os.environ["KP_CLUSTER_PROXY_SERVICE_URL"], os.environ["KP_TOPIC"]
quiet = logging.getLogger("pulsar-client")  # the expected refusal is not an error to print
quiet.setLevel(logging.CRITICAL)
c = pulsar.Client(url, authentication=pulsar.AuthenticationToken(os.environ["KP_APP_TOKEN"]),
                  operation_timeout_seconds=30, logger=quiet)
consumer = c.subscribe(topic, "check", initial_position=pulsar.InitialPosition.Earliest)
producer = c.create_producer(topic, batching_enabled=False)
sent = [producer.send(f"order-{i}".encode(), partition_key=f"key-{i}") for i in range(16)]
got = set()
for _ in range(16):
    m = consumer.receive(timeout_millis=20000)
    got.add((m.topic_name().rsplit("-", 1)[-1], m.data().decode()))
    consumer.acknowledge(m)
c.close()
assert len(got) == 16, got
print(f"ok: 16 messages produced and consumed through the proxy {url}, "
      f"over partitions {sorted({int(p) for p, _ in got})}")
c = pulsar.Client(url, authentication=pulsar.AuthenticationToken(os.environ["KP_INTRUDER_TOKEN"]),
                  operation_timeout_seconds=10, logger=quiet)
try:
    c.create_producer(topic)
    raise SystemExit("FAIL: a role without a grant could produce through the proxy")
except pulsar.PulsarException as e:
    print(f"ok: a role without a grant is refused through the proxy ({e})")
c.close()
PY
echo "cluster check passed"
