#!/usr/bin/env bash
# Seeds the running local stack for `make run`: the demo tenant of
# policy/demo.yaml in Pulsar (tenant, namespace, produce grant for its role),
# the tenant's token secret in moto, and the environment the functions get.
# Idempotent: run it as often as you like.
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
admin POST "/admin/v2/namespaces/$TENANT/$NAMESPACE/permissions/$ROLE" '["produce"]'

TOKEN=$("$ROOT/tests/stack/stack.sh" token "$ROLE" 86400)
EXPIRES=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
"$ROOT/.venv/bin/python" - "$SECRET" "$TOKEN" "$ROLE" "$EXPIRES" <<'PY'
import json, sys, boto3
name, token, role, expires = sys.argv[1:]
value = json.dumps({"token": token, "role": role, "expires_at": expires})
import os
sm = boto3.client("secretsmanager", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL"])
try:
    sm.create_secret(Name=name, SecretString=value)
except sm.exceptions.ResourceExistsException:
    sm.put_secret_value(SecretId=name, SecretString=value)
PY

cat >"$STACK_DIR/functions.env" <<ENV
KP_POLICY_FILE=$ROOT/policy/demo.yaml
PULSAR_SERVICE_URL=$PULSAR_SERVICE_URL
PULSAR_ADMIN_URL=$PULSAR_ADMIN_URL
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
RUST_LOG=info
ENV
echo "[stack] demo seeded: tenant $TENANT/$NAMESPACE, role $ROLE (produce), secret $SECRET"
