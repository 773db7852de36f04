"""Witness: an independent verifier of Kong Pulsar's kp-provenance signature.

Run by tests/tests/it/provenance_witness.rs with the .venv Python. Reads
messages with the official Python client (C++ core) and verifies each one
with PyJWT + cryptography, following the contract as the README states it,
with digest code of its own: nothing of the Rust crates is used, so a
mistake shared by our signer and our verifier does not go unseen.

Prints one JSON line per message:
  {"messageId", "topic", "publishTime", "eventId", "verified": true,
   "sourceId", "serviceTag", "authMethod", "authIssuer", "kid", ...}
  {"messageId", "topic", "publishTime", "eventId", "verified": false,
   "code", "reason", ...}
with the same codes as kong-pulsar-verify; "..." is what the client read:
"properties" (all but kp-provenance), "payloadBase64", "key", "eventTimestamp".

Exit status: 0 when <count> messages were read, 3 when fewer arrived within
<timeout-seconds>, 2 on bad usage.

usage: provenance_witness.py <service-url> <token> <topic> <jwks> <count>
                             <timeout-seconds> [<expected-iss>]
  <token>  file:PATH, env:VAR, or the token itself
  <jwks>   a file path, or an http(s):// URL
"""

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import sys
import urllib.request

import jwt
import pulsar
from cryptography.hazmat.primitives.asymmetric import ec

LOG = logging.getLogger("provenance-witness")
LOG.addHandler(logging.StreamHandler(sys.stderr))
LOG.setLevel(logging.WARNING)

PROPERTY = "kp-provenance"
TYP = "kp-provenance+jwt"
MAX_SIGNATURE_BYTES = 16 * 1024

# Each gateway property and the claim it must equal (absent claim: the
# property must be absent too).
BOUND = [
    ("kp-event-id", "event_id"),
    ("kp-tenant", "tenant"),
    ("kp-source-id", "source_id"),
    ("kp-service-tag", "service_tag"),
    ("kp-auth-method", "auth_method"),
    ("kp-issuer", "auth_issuer"),
    ("kp-request-id", "request_id"),
    ("kp-received-at", "received_at"),
    ("traceparent", "traceparent"),
    ("kp-idempotency-key", "idempotency_key"),
    ("ce_id", "ce_id"),
    ("ce_source", "ce_source"),
    ("ce_type", "ce_type"),
]
REQUIRED_STR = [
    "iss", "event_id", "tenant", "topic", "source_id", "auth_method",
    "auth_issuer", "request_id", "received_at", "traceparent",
    "payload_sha256", "properties_sha256",
]
OPTIONAL_STR = ["service_tag", "key", "idempotency_key", "ce_id", "ce_source", "ce_type"]
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class Refused(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def b64url(text):
    """Strict base64url without padding: the alphabet only, canonical."""
    if not B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise ValueError("not canonical base64url")
    return raw


def b64url_sha256(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def properties_digest(properties):
    """SHA-256 over the caller properties (not kp-*, not traceparent),
    sorted by name as bytes, each as be32(len(name)) name be32(len(value)) value."""
    caller = sorted(
        (k.encode(), v.encode())
        for k, v in properties.items()
        if not k.startswith("kp-") and k != "traceparent"
    )
    h = hashlib.sha256()
    for name, value in caller:
        for part in (name, value):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def topic_matches(signed, received):
    if received == signed:
        return True
    if not received.startswith(signed + "-partition-"):
        return False
    n = received[len(signed) + len("-partition-"):]
    return n != "" and all("0" <= c <= "9" for c in n)


def no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError("duplicate key " + k)
        seen[k] = v
    return seen


def public_key(jwk):
    """The P-256 verifying key of a JWKS entry, or None when it is not one."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return None
    if jwk.get("alg", "ES256") != "ES256" or jwk.get("use", "sig") != "sig":
        return None
    try:
        x, y = b64url(jwk["x"]), b64url(jwk["y"])
    except (KeyError, TypeError, ValueError):
        return None
    if len(x) != 32 or len(y) != 32:
        return None
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        return None


def verify(topic, payload, key, event_time, properties, jwks, expected_iss=None):
    token = properties.get(PROPERTY)
    if token is None:
        raise Refused("no_signature", "no kp-provenance property")
    if len(token.encode()) > MAX_SIGNATURE_BYTES:
        raise Refused("malformed", "longer than any signature")
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused("malformed", "not a compact JWS")
    try:
        for part in parts:
            b64url(part)
        header = json.loads(b64url(parts[0]))
    except ValueError:
        raise Refused("malformed", "header is not base64url JSON")
    if not isinstance(header, dict):
        raise Refused("malformed", "header is not a JSON object")
    if header.get("alg") != "ES256":
        raise Refused("malformed", "alg is not ES256")
    if header.get("typ") != TYP:
        raise Refused("malformed", "typ is not " + TYP)
    if "crit" in header:
        raise Refused("malformed", "header has crit")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Refused("malformed", "header has no kid")
    entry = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
    verifying = public_key(entry) if isinstance(entry, dict) else None
    if verifying is None:
        raise Refused("unknown_key", "no usable key %r" % kid[:64])
    try:
        body = jwt.PyJWS().decode(token, key=verifying, algorithms=["ES256"])
    except jwt.InvalidSignatureError:
        raise Refused("bad_signature", "signature does not verify with %r" % kid[:64])
    except jwt.PyJWTError as e:
        raise Refused("malformed", "not a verifiable ES256 JWS (%s)" % type(e).__name__)
    try:
        claims = json.loads(body, object_pairs_hook=no_duplicates)
    except ValueError:
        raise Refused("malformed", "claims are not JSON")
    if not isinstance(claims, dict):
        raise Refused("malformed", "claims are not an object")
    ok = all(isinstance(claims.get(c), str) for c in REQUIRED_STR)
    ok = ok and isinstance(claims.get("iat"), int) and not isinstance(claims.get("iat"), bool)
    ok = ok and all(c not in claims or isinstance(claims[c], str) for c in OPTIONAL_STR)
    et = claims.get("event_time")
    ok = ok and (et is None and "event_time" not in claims
                 or isinstance(et, int) and not isinstance(et, bool) and et >= 0)
    if not ok:
        raise Refused("malformed", "claims are not the provenance claims")

    if expected_iss is not None and claims["iss"] != expected_iss:
        raise Refused("issuer_mismatch", "signed by %r" % claims["iss"])
    if not topic_matches(claims["topic"], topic):
        raise Refused("topic_mismatch",
                      "signed for %r, received on %r" % (claims["topic"], topic))
    if b64url_sha256(payload) != claims["payload_sha256"]:
        raise Refused("payload_mismatch", "payload is not the one signed")
    if properties_digest(properties) != claims["properties_sha256"]:
        raise Refused("properties_mismatch", "caller properties are not the ones signed")
    for prop, claim in BOUND:
        if properties.get(prop) != claims.get(claim):
            raise Refused("claim_mismatch", prop + " differs from what was signed")
    # Clients report "no key" as "" and "no event time" as 0.
    if (key or None) != (claims.get("key") or None):
        raise Refused("claim_mismatch", "key differs from what was signed")
    if (event_time or None) != (claims.get("event_time") or None):
        raise Refused("claim_mismatch", "event_time differs from what was signed")
    return kid, claims


def load_jwks(where):
    if where.startswith("http://") or where.startswith("https://"):
        with urllib.request.urlopen(where, timeout=10) as resp:
            return json.loads(resp.read(256 * 1024 + 1))
    with open(where, "rb") as f:
        return json.load(f)


def load_token(arg):
    if arg.startswith("file:"):
        with open(arg[5:]) as f:
            return f.read().strip()
    if arg.startswith("env:"):
        return os.environ[arg[4:]].strip()
    return arg


def judge(msg, jwks, expected_iss):
    mid = msg.message_id()
    properties = msg.properties()
    line = {
        "messageId": "%d:%d:%d:%d" % (mid.ledger_id(), mid.entry_id(),
                                      mid.partition(), mid.batch_index()),
        "topic": msg.topic_name(),
        "publishTime": msg.publish_timestamp(),
        "eventId": properties.get("kp-event-id"),
    }
    try:
        kid, claims = verify(msg.topic_name(), msg.data(), msg.partition_key(),
                             msg.event_timestamp(), properties, jwks, expected_iss)
    except Refused as r:
        line.update(verified=False, code=r.code, reason=r.reason)
        return line
    line.update(
        verified=True,
        eventId=claims["event_id"],
        sourceId=claims["source_id"],
        serviceTag=claims.get("service_tag"),
        authMethod=claims["auth_method"],
        authIssuer=claims["auth_issuer"],
        ceSource=claims.get("ce_source"),
        ceType=claims.get("ce_type"),
        kid=kid,
    )
    return line


def main(argv):
    if len(argv) not in (7, 8):
        print(__doc__, file=sys.stderr)
        return 2
    url, token, topic, jwks_at, count, timeout = argv[1:7]
    expected_iss = argv[7] if len(argv) == 8 else None
    count, timeout_ms = int(count), int(float(timeout) * 1000)
    jwks = load_jwks(jwks_at)
    client = pulsar.Client(
        url,
        authentication=pulsar.AuthenticationToken(load_token(token)),
        operation_timeout_seconds=10,
        connection_timeout_ms=5000,
        logger=LOG,
    )
    read = 0
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    while read < count:
        try:
            msg = reader.read_next(timeout_ms)
        except pulsar.Timeout:
            break
        read += 1
        line = judge(msg, jwks, expected_iss)
        # What the C++ client read, for tests that check the message itself
        # (never the signature: a verdict line does not carry it).
        line["properties"] = {k: v for k, v in msg.properties().items() if k != PROPERTY}
        line["payloadBase64"] = base64.b64encode(msg.data()).decode()
        line["key"] = msg.partition_key()
        line["eventTimestamp"] = msg.event_timestamp()
        print(json.dumps(line), flush=True)
    reader.close()
    client.close()
    return 0 if read == count else 3


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # The C++ client's threads can abort the interpreter's own shutdown
    # ("terminate called without an active exception"); everything is
    # closed and flushed by now, so leave without it.
    os._exit(code)
