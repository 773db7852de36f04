#!/usr/bin/env bash
# Seeds the running local stack for `make run`: the demo tenant of
# policy/demo.yaml in Pulsar (tenant, namespace, produce+consume grant for its role),
# in moto the tenant's token secret plus what `rotate` needs (the broker's
# signing key and a super-user token for the admin API), and the environment
# the functions get. Idempotent: run it as often as you like.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/target/stack}
set -a; . "$STACK_DIR/stack.env"; set +a

TENANT=demo NAMESPACE=orders ROLE=demo-gw SECRET=kong-pulsar/tokens/demo
admin() { # admin <method> <path> [json]
  curl -fsS -o /dev/null -X "$1" -H "Authorization: Bearer $(cat "$KP_STACK_SUPERUSER_TOKEN_FILE")" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$PULSAR_ADMIN_URL$2"
}
admin PUT "/admin/v2/tenants/$TENANT" '{"adminRoles":["kp-admin"],"allowedClusters":["standalone"]}' 2>/dev/null ||
  admin POST "/admin/v2/tenants/$TENANT" '{"adminRoles":["kp-admin"],"allowedClusters":["standalone"]}'
admin PUT "/admin/v2/namespaces/$TENANT/$NAMESPACE" '{}' 2>/dev/null || true
admin POST "/admin/v2/namespaces/$TENANT/$NAMESPACE/permissions/$ROLE" '["produce","consume"]'

# Signed with the running broker's key: its state directory is where stack.env
# says the super-user token lives (this script may write elsewhere).
TOKEN=$(KP_STACK_DIR=$(dirname "$KP_STACK_SUPERUSER_TOKEN_FILE") "$ROOT/tests/stack/stack.sh" token "$ROLE" 86400)
EXPIRES=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
SIGNING_SECRET=kong-pulsar/token-signing-key ADMIN_SECRET=kong-pulsar/admin-token
"$ROOT/.venv/bin/python" - "$SECRET" "$TOKEN" "$ROLE" "$EXPIRES" \
    "$SIGNING_SECRET" "$ADMIN_SECRET" "$KP_STACK_SUPERUSER_TOKEN_FILE" <<'PY'
import base64, json, os, sys
import boto3
name, token, role, expires, signing, admin, admin_token_file = sys.argv[1:]
sm = boto3.client("secretsmanager", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL"])

def put(name, value):
    try:
        sm.create_secret(Name=name, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=name, SecretString=value)

put(name, json.dumps({"token": token, "role": role, "expires_at": expires}))
# What `rotate` mints tenant tokens with: the key this broker verifies them with.
if os.environ.get("KP_STACK_TOKEN_ALG") == "RS256":
    with open(os.environ["KP_STACK_TOKEN_PRIVATE_KEY_FILE"]) as f:
        put(signing, json.dumps({"alg": "RS256", "private_key_pem": f.read()}))
else:
    with open(os.environ["KP_STACK_TOKEN_SECRET_FILE"], "rb") as f:
        put(signing, json.dumps({"alg": "HS256", "key": base64.b64encode(f.read()).decode()}))
with open(admin_token_file) as f:
    put(admin, json.dumps({"token": f.read().strip()}))
PY

cat >"$STACK_DIR/functions.env" <<ENV
KP_POLICY_FILE=$ROOT/policy/demo.yaml
PULSAR_SERVICE_URL=$PULSAR_SERVICE_URL
PULSAR_ADMIN_URL=$PULSAR_ADMIN_URL
KP_ADMIN_TOKEN_SECRET=$ADMIN_SECRET
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
RUST_LOG=info
ENV
echo "[stack] demo seeded: tenant $TENANT/$NAMESPACE, role $ROLE (produce, consume), secret $SECRET; for rotate: $SIGNING_SECRET, $ADMIN_SECRET"
