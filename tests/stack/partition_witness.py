"""Witness: what a (partitioned) topic holds, read with the official client.

Run by the cluster tests (tests/tests/it/cluster/) with the .venv Python.
Subscribes from the earliest message through the given service URL (a
broker or the proxy), so the C++ client's own lookups, partition discovery
and redirects decide what is found, not the Rust crates under test.

With KP_WITNESS_KEYS set (comma-separated), it first produces one message
per key itself, `witness:<key>`, routed as the Java and C++ clients'
`Murmur3_32Hash` scheme routes keys, so a test can check the function put
each key where they would; `count` includes them. The Python client does not
expose that scheme (its default hash is the C++ client's BoostHash), so the
witness routes with a message router of its own: murmur3_32 (seed 0) of
the key's UTF-8 bytes, sign bit cleared, modulo the partition count, as
Pulsar's Java `Murmur3_32Hash` and `signSafeMod` define it.

Prints one JSON line per message, in the order received:
  {"partition": <int, -1 when not partitioned>, "key": <str or null>,
   "data": <payload as text>, "properties": {...},
   "messageId": "<ledger>:<entry>:<partition>:<batch index>"}

Exit status: 0 when `count` messages were read, none more than `timeout`
seconds after the one before, 1 when fewer were (the lines printed are what
was found), 2 on bad usage. With `at-least`, it reads up to `count` but
stops at the first `timeout` of quiet only once it has `at-least`; until
then it waits 60 s for each (right after a failover, partition lookups may
take a while to settle).

usage: partition_witness.py <service-url> <token-env-var> <topic> <count> <timeout-seconds> [at-least]
"""

import json
import logging
import os
import re
import struct
import sys
import uuid

import pulsar

PARTITION = re.compile(r"-partition-(\d+)$")


def murmur3_32(data, seed=0):
    """MurmurHash3, x86 32-bit (Austin Appleby's reference)."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h, blocks = seed, len(data) // 4
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & mask
    for i in range(blocks):
        k = struct.unpack_from("<I", data, i * 4)[0]
        k = rotl((k * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    tail, k = data[blocks * 4 :], 0
    for i in reversed(range(len(tail))):
        k ^= tail[i] << (8 * i)
    if tail:
        h ^= rotl((k * c1) & mask, 15) * c2 & mask
    h ^= len(data)
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & mask
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def murmur3_route(message, partitions):
    return (murmur3_32(message.partition_key().encode()) & 0x7FFFFFFF) % partitions


def main(argv):
    if len(argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        return 2
    url, token_var, topic, count, timeout = argv[1:6]
    count, timeout = int(count), float(timeout)
    at_least = int(argv[6]) if len(argv) == 7 else 0
    quiet = logging.getLogger("pulsar-client")
    quiet.setLevel(logging.ERROR)
    client = pulsar.Client(
        url,
        authentication=pulsar.AuthenticationToken(os.environ[token_var]),
        operation_timeout_seconds=30,
        logger=quiet,
    )
    try:
        consumer = client.subscribe(
            topic,
            f"witness-{uuid.uuid4().hex[:12]}",
            initial_position=pulsar.InitialPosition.Earliest,
            consumer_type=pulsar.ConsumerType.Exclusive,
        )
        keys = [k for k in os.environ.get("KP_WITNESS_KEYS", "").split(",") if k]
        if keys:
            producer = client.create_producer(
                topic,
                batching_enabled=False,
                message_routing_mode=pulsar.PartitionsRoutingMode.CustomPartition,
                message_router=murmur3_route,
            )
            for key in keys:
                producer.send(f"witness:{key}".encode(), partition_key=key)
            producer.close()
        found = 0
        while found < count:
            try:
                patience = 60 if found < at_least else timeout
                msg = consumer.receive(timeout_millis=int(patience * 1000))
            except pulsar.Timeout:
                break
            match = PARTITION.search(msg.topic_name())
            key = msg.partition_key() or None
            mid = msg.message_id()
            print(
                json.dumps(
                    {
                        "partition": int(match.group(1)) if match else -1,
                        "key": key,
                        "data": msg.data().decode("utf-8", "replace"),
                        "properties": msg.properties(),
                        "messageId": f"{mid.ledger_id()}:{mid.entry_id()}:{mid.partition()}:{mid.batch_index()}",
                    }
                ),
                flush=True,
            )
            consumer.acknowledge(msg)
            found += 1
        consumer.close()
        return 0 if found >= (at_least or count) else 1
    finally:
        client.close()


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # The C++ client's destructors can abort the interpreter at exit
    # ("terminate called without an active exception") after all is done.
    os._exit(code)
