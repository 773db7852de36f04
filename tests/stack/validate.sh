#!/usr/bin/env bash
# Checks every artifact users deploy, without AWS or Kong: fails (non-zero) on the
# first invalid one. Run by `stack.sh test` before the cargo steps, or alone as
# `stack.sh validate` / tests/stack/validate.sh.
#
#   template.yaml    cfn-lint, then sam validate --lint (both pinned in requirements.txt)
#   kong/*.yaml      deck file validate (decK built from the Go module proxy into
#                    .tools/bin), plus a check of every plugin field against Kong's
#                    plugin schemas (deck file validate treats plugin config as free-form)
#   events/*.json    each parses as one JSON object, no duplicate keys
#   the functions    cargo lambda build --release --arm64 of the function binaries
#                    (publish, consume, rotate), then sam build (BuildMethod
#                    rust-cargolambda) packages them; sizes and architecture of
#                    every bootstrap binary reported
#
# Idempotent. The static checks are skipped when none of their inputs changed since
# they last passed (stamp in target/validate); the build is cargo's own incremental
# build, in KP_LAMBDA_TARGET_DIR (default ~/.cache/kong-pulsar/lambda-target).
# KP_VALIDATE_BUILD=sam (default) | cargo-lambda | none picks the build step.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=$ROOT/.venv
TOOLS_BIN=$ROOT/.tools/bin
OUT=$ROOT/target/validate
DECK_VERSION=v1.55.0
BUILD=${KP_VALIDATE_BUILD:-sam}

say() { printf '[validate] %s\n' "$*" >&2; }
die() { printf '[validate] ERROR: %s\n' "$*" >&2; exit 1; }

cd "$ROOT"
mkdir -p "$OUT"
[ -x "$VENV/bin/cfn-lint" ] && [ -x "$VENV/bin/sam" ] ||
  die "cfn-lint / sam are not in .venv; run 'tests/stack/stack.sh setup' (installs tests/stack/requirements.txt)"
export PATH="$VENV/bin:$TOOLS_BIN:$PATH"
# Nothing here talks to AWS; SAM and the AWS SDK still want a region and credentials.
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}
[ -n "${AWS_ACCESS_KEY_ID:-}" ] || export AWS_ACCESS_KEY_ID=validate AWS_SECRET_ACCESS_KEY=validate
export SAM_CLI_TELEMETRY=0 DECK_ANALYTICS=off

# ------------------------------------------------------------------- decK ---
# `go install github.com/kong/deck@VERSION` is the usual way, but it first reads
# the module's version list (for deprecation notices), which the module proxy
# refuses here (403). So: download that exact version, then build it from the
# module cache with its own go.sum (every dependency checked against it).
ensure_deck() {
  local stamp=$TOOLS_BIN/.deck-version
  [ -x "$TOOLS_BIN/deck" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$DECK_VERSION" ] && return 0
  command -v go >/dev/null || die "decK $DECK_VERSION is built from the Go module proxy, but 'go' is not installed (Go 1.25.5+ needed)"
  say "building decK $DECK_VERSION from the Go module proxy into .tools/bin (first time only; a few minutes)"
  local t0=$SECONDS dir
  mkdir -p "$TOOLS_BIN"
  dir=$(cd "$OUT" && GOFLAGS=-mod=mod go mod download -json "github.com/kong/deck@$DECK_VERSION" 2>"$OUT/deck-build.log" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
  [ -n "$dir" ] && [ -d "$dir" ] || die "could not download github.com/kong/deck@$DECK_VERSION: $(tail -n 3 "$OUT/deck-build.log")"
  (cd "$dir" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
    -ldflags "-s -w -X github.com/kong/deck/cmd.VERSION=$DECK_VERSION" -o "$TOOLS_BIN/deck.tmp" .) \
    >>"$OUT/deck-build.log" 2>&1 || die "building decK failed; see $OUT/deck-build.log"
  mv "$TOOLS_BIN/deck.tmp" "$TOOLS_BIN/deck"
  echo "$DECK_VERSION" >"$stamp"
  say "decK $DECK_VERSION built in $((SECONDS - t0))s"
}

# ---------------------------------------------------------- static checks ---
static_inputs() {
  {
    cat template.yaml kong/*.yaml events/*.json "$0" tests/stack/requirements.txt
    echo "$DECK_VERSION"
  } | sha256sum | cut -d' ' -f1
}

check_template() {
  say "cfn-lint template.yaml"
  cfn-lint template.yaml || die "cfn-lint rejects template.yaml"
  say "sam validate --lint"
  sam validate --lint --region "$AWS_REGION" --template template.yaml >"$OUT/sam-validate.log" 2>&1 ||
    die "sam validate --lint rejects template.yaml: $(cat "$OUT/sam-validate.log")"
}

check_events() {
  say "events/*.json parse"
  python3 - events/*.json <<'PY' || die "an event file is not valid (see above)"
import json, sys
def no_dupes(pairs):
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"duplicate keys {sorted(dupes)}")
    return dict(pairs)
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, object_pairs_hook=no_dupes)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        print(f"[validate] {path}: {e}", file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
PY
}

check_kong() {
  ensure_deck
  local f
  # Values the SAM stack outputs supply in a real sync (see kong/kong.yaml).
  export DECK_AWS_REGION=us-east-1 DECK_PUBLISH_FUNCTION=kong-pulsar-PublishFunction-EXAMPLE \
    DECK_CONSUME_FUNCTION=kong-pulsar-ConsumeFunction-EXAMPLE \
    DECK_KONG_INVOKE_ROLE_ARN=arn:aws:iam::123456789012:role/kong-pulsar-KongInvokeRole-EXAMPLE \
    DECK_CHECKOUT_API_KEY=validate-only
  for f in kong/*.yaml; do
    say "deck file validate $f"
    deck file validate --analytics=false "$f" || die "decK rejects $f"
    deck file render --analytics=false --populate-env-vars --format json -o "$OUT/$(basename "$f" .yaml).json" "$f" \
      >/dev/null 2>"$OUT/deck-render.log" || die "decK cannot render $f: $(cat "$OUT/deck-render.log")"
  done
  say "Kong plugin fields against Kong's plugin schemas"
  python3 - "$OUT"/kong*.json <<'PY' || die "a Kong plugin is misconfigured (see above)"
import json, sys
# Config fields of Kong 3.x's plugin schemas (kong/plugins/<name>/schema.lua in the
# Kong repository): a misspelt field is rejected by Kong at sync time, but
# `deck file validate` accepts any config.
FIELDS = {
    "aws-lambda": {
        "timeout", "keepalive", "aws_key", "aws_secret", "aws_assume_role_arn",
        "aws_role_session_name", "aws_sts_endpoint_url", "aws_region", "function_name",
        "qualifier", "invocation_type", "log_type", "host", "port", "disable_https",
        "unhandled_status", "forward_request_method", "forward_request_uri",
        "forward_request_headers", "forward_request_body", "is_proxy_integration",
        "awsgateway_compatible", "proxy_url", "skip_large_bodies", "base64_encode_body",
        "aws_imds_protocol_version", "empty_arrays_mode",
    },
    "key-auth": {"key_names", "hide_credentials", "anonymous", "key_in_header",
                 "key_in_query", "key_in_body", "run_on_preflight", "realm"},
    "jwt": {"uri_param_names", "cookie_names", "key_claim_name", "secret_is_base64",
            "claims_to_verify", "anonymous", "run_on_preflight", "maximum_expiration",
            "header_names", "realm"},
    "request-transformer": {"http_method", "remove", "rename", "replace", "add", "append"},
}
# What this project needs from the aws-lambda plugin (README "Kong setup").
REQUIRED = {
    "forward_request_method": True, "forward_request_uri": True,
    "forward_request_headers": True, "forward_request_body": True,
    "is_proxy_integration": True, "log_type": "None", "skip_large_bodies": False,
}
errors = []
for path in sys.argv[1:]:
    state = json.load(open(path))
    for svc in state.get("services", []):
        for route in svc.get("routes", []):
            where = f"{path}: route {route.get('name')}"
            plugins = route.get("plugins", [])
            names = [p["name"] for p in plugins]
            if "aws-lambda" in names and route.get("strip_path", True):
                errors.append(f"{where}: strip_path must be false")
            for p in plugins:
                allowed = FIELDS.get(p["name"])
                if allowed is None:
                    errors.append(f"{where}: plugin {p['name']} has no known schema here; add its fields to validate.sh")
                    continue
                cfg = p.get("config", {})
                for key in sorted(set(cfg) - allowed):
                    errors.append(f"{where}: {p['name']} has no field {key!r}")
                if p["name"] == "aws-lambda":
                    for key, want in REQUIRED.items():
                        if cfg.get(key) != want:
                            errors.append(f"{where}: aws-lambda {key} must be {json.dumps(want)}, is {json.dumps(cfg.get(key))}")
                    if "host" not in cfg and not cfg.get("aws_region"):
                        errors.append(f"{where}: aws-lambda needs aws_region (or host)")
                    if not cfg.get("function_name"):
                        errors.append(f"{where}: aws-lambda needs function_name")
for e in errors:
    print(f"[validate] {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# ------------------------------------------------------------------ build ---
# The Lambda functions: binary name = functions/<name>, and template.yaml's
# <Name>Function resource builds it (BuildProperties.Binary).
FUNCTIONS=(publish consume rotate)

report_sizes() { # report_sizes <dir-with-<fn>/bootstrap>
  local fn f
  for fn in "${FUNCTIONS[@]}"; do
    f=$1/$fn/bootstrap
    [ -f "$f" ] || die "no $f after the build"
    # ELF, 64-bit, e_machine 183 (AArch64): what provided.al2023 on arm64 runs.
    python3 -c 'import sys; h=open(sys.argv[1],"rb").read(20); sys.exit(0 if h[:5]==b"\x7fELF\x02" and int.from_bytes(h[18:20],"little")==183 else 1)' "$f" ||
      die "$f is not a 64-bit arm64 ELF executable"
    say "$fn: $(stat -c %s "$f") bytes ($(( $(stat -c %s "$f") / 1024 )) KiB), aarch64 ELF"
  done
}

build() {
  local t0=$SECONDS
  [ "$BUILD" = none ] && { say "build skipped (KP_VALIDATE_BUILD=none)"; return 0; }
  [ "$BUILD" = sam ] || [ "$BUILD" = cargo-lambda ] || die "KP_VALIDATE_BUILD must be sam, cargo-lambda or none, not $BUILD"
  # The release build has its own target directory, kept across clones of the
  # repository on this machine (CI runs in a fresh clone): after the first
  # time only what changed is rebuilt, plus the fat-LTO links.
  export CARGO_TARGET_DIR=${KP_LAMBDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kong-pulsar/lambda-target}
  mkdir -p "$CARGO_TARGET_DIR"
  # One cargo invocation for every function: the library is compiled once and
  # the LTO links run in parallel (sam build would build them one after the other).
  local fn bins=()
  for fn in "${FUNCTIONS[@]}"; do bins+=(--bin "$fn"); done
  say "cargo lambda build --release --arm64 (${FUNCTIONS[*]}; the first time takes several minutes)"
  cargo lambda build --release --arm64 "${bins[@]}" >"$OUT/cargo-lambda-build.log" 2>&1 ||
    die "cargo lambda build failed; last lines:
$(tail -n 30 "$OUT/cargo-lambda-build.log")"
  say "cargo lambda build done in $((SECONDS - t0))s"
  if [ "$BUILD" = cargo-lambda ]; then
    report_sizes "$CARGO_TARGET_DIR/lambda"
  else
    # What users run: BuildMethod rust-cargolambda runs the same cargo lambda
    # build per function (up to date by now) and packages the artifacts.
    say "sam build"
    sam build --template template.yaml --build-dir target/sam >"$OUT/sam-build.log" 2>&1 ||
      die "sam build failed; last lines:
$(tail -n 30 "$OUT/sam-build.log")"
    for fn in "${FUNCTIONS[@]}"; do
      # publish -> PublishFunction, the template's resource name (tr, not ${fn^}:
      # macOS still ships bash 3.2).
      mkdir -p "$OUT/bin/$fn"
      cp "target/sam/$(printf %s "${fn:0:1}" | tr '[:lower:]' '[:upper:]')${fn:1}Function/bootstrap" "$OUT/bin/$fn/bootstrap"
    done
    report_sizes "$OUT/bin"
  fi
  say "build done in $((SECONDS - t0))s"
}

t0=$SECONDS
want=$(static_inputs)
if [ "$(cat "$OUT/static.ok" 2>/dev/null)" = "$want" ] && [ -x "$TOOLS_BIN/deck" ]; then
  say "template, Kong config and events unchanged since they last passed"
else
  rm -f "$OUT/static.ok"
  check_events
  check_kong
  check_template
  echo "$want" >"$OUT/static.ok"
fi
build
say "deployment artifacts valid ($((SECONDS - t0))s)"
