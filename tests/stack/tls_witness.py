"""Witness: what the real broker makes of a TLS client certificate.

Run by tests/tests/certificates.rs with the .venv Python. Connects to the
broker's TLS listener with the official Python client (C++ core, OpenSSL),
as a third-party Pulsar client would, and tries three things:

  granted   a producer on a topic where the certificate's role may produce
  denied    a producer on a topic where it may not
  anonymous a producer on the granted topic without a client certificate

and prints one JSON object, {case: outcome}, where an outcome is "ok" or the
client's exception class name (AuthorizationError, AuthenticationError, ...).
Exit status: 0 when the broker answered every case (whatever it said), 2 on
bad usage. The Rust test judges the outcomes.

usage: tls_witness.py <service-url> <ca-cert> <client-cert> <client-key>
                      <granted-topic> <denied-topic>
"""

import json
import logging
import os
import sys

import pulsar


# The client's own log goes to stderr: stdout carries only the verdict.
LOG = logging.getLogger("tls-witness")
LOG.addHandler(logging.StreamHandler(sys.stderr))
LOG.setLevel(logging.WARNING)


def attempt(url, ca, topic, auth, timeout=10):
    client = pulsar.Client(
        url,
        authentication=auth,
        tls_trust_certs_file_path=ca,
        tls_allow_insecure_connection=False,
        tls_validate_hostname=True,
        operation_timeout_seconds=timeout,
        connection_timeout_ms=5000,
        logger=LOG,
    )
    try:
        producer = client.create_producer(topic, send_timeout_millis=5000)
        producer.send(b"tls-witness")
        producer.close()
        return "ok"
    except Exception as err:  # the class name is the verdict
        return type(err).__name__
    finally:
        client.close()


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    url, ca, cert, key, granted, denied = argv[1:]
    tls = pulsar.AuthenticationTLS(cert, key)
    print(
        json.dumps(
            {
                "granted": attempt(url, ca, granted, tls),
                "denied": attempt(url, ca, denied, tls),
                # The broker refuses the connection ("No anonymous role");
                # the client retries it until the operation times out.
                "anonymous": attempt(url, ca, granted, None, timeout=3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    status = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: after the anonymous attempt the C++ client
    # can still hold a reconnect thread, and destroying it at exit sometimes
    # aborts ("terminate called without an active exception") after the
    # verdict is already printed.
    os._exit(status)
