"""Witness: reads a consume answer as a CloudEvents consumer would.

Run by tests/tests/it/consume_cloudevents.rs with the .venv Python. Parses
the body of an `Accept: application/cloudevents-batch+json` read with the
official CloudEvents Python SDK (`cloudevents.http.from_json`, one event at
a time: the 1.x SDK has no batch parser), after checking what the SDK does
not: the JSON Batch Format's own rules (a JSON array, one specversion for
the whole batch) and the attribute naming rules of the core spec. Nothing of
the Rust crates is used, so a misreading of the spec shared by our renderer
and our tests does not go unseen.

Prints one JSON line per event:
  {"attributes": {name: value, ...}, "data": <JSON value>}        JSON data
  {"attributes": {...}, "dataBase64": "<base64 of the SDK's bytes>"}  binary data
  {"attributes": {...}}                                           no data
with "addedBySdk": [names] when the SDK filled in attributes the event did
not carry (the 1.x SDK sets a missing `time` to now);
and then, on stderr, every rule an event broke.

Exit status: 0 when every event parsed and broke no rule, 1 otherwise,
2 on bad usage.

usage: cloudevents_witness.py <body-file> <content-type>
"""

import base64
import json
import re
import sys

from cloudevents.http import from_json

BATCH = "application/cloudevents-batch+json"
NAME = re.compile(r"^[a-z0-9]+$")
REQUIRED = ("specversion", "id", "source", "type")
# Members of the JSON format that are not attributes (json-format.md §3.1).
DATA_MEMBERS = ("data", "data_base64")


def problems_of(raw, specversions):
    """The rules one event's JSON object breaks (the SDK checks fewer)."""
    problems = []
    if not isinstance(raw, dict):
        return ["an element of the batch is not a JSON object"]
    for name in raw:
        if name in DATA_MEMBERS:
            continue
        if not NAME.match(name):
            problems.append(f"attribute name {name!r} is not lower-case letters and digits")
        elif len(name) > 20:
            problems.append(f"attribute name {name!r} is longer than 20 characters")
    for name in REQUIRED:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"required attribute {name!r} is missing or not a non-empty string")
    if "data" in raw and "data_base64" in raw:
        problems.append("both data and data_base64")
    if "data_base64" in raw:
        try:
            base64.b64decode(raw["data_base64"], validate=True)
        except (ValueError, TypeError):
            problems.append("data_base64 is not base64")
    specversions.add(raw.get("specversion"))
    return problems


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        body = f.read()
    failed = False
    content_type = argv[2].split(";")[0].strip().lower()
    if content_type != BATCH:
        print(f"content type {argv[2]!r} is not {BATCH}", file=sys.stderr)
        failed = True
    batch = json.loads(body)
    if not isinstance(batch, list):
        print("the body is not a JSON array (JSON Batch Format §4.1)", file=sys.stderr)
        return 1
    specversions = set()
    for index, raw in enumerate(batch):
        for problem in problems_of(raw, specversions):
            print(f"event {index}: {problem}", file=sys.stderr)
            failed = True
        try:
            event = from_json(json.dumps(raw))
        except Exception as e:  # the SDK's refusal is the finding
            print(f"event {index}: the SDK refused it: {type(e).__name__}: {e}", file=sys.stderr)
            failed = True
            continue
        attributes, added = {}, []
        for name in event:
            value = event[name]
            value = value.isoformat() if hasattr(value, "isoformat") else value
            # The SDK fills in what an event lacks (time: now); that is not
            # what we sent, so it is named apart.
            if name in raw:
                attributes[name] = value
            else:
                added.append(name)
        line = {"attributes": attributes}
        if added:
            line["addedBySdk"] = sorted(added)
        data = event.get_data()
        if isinstance(data, (bytes, bytearray)):
            line["dataBase64"] = base64.b64encode(data).decode("ascii")
        elif data is not None or "data" in raw:
            line["data"] = data
        print(json.dumps(line, sort_keys=True))
    if len(specversions) > 1:
        print(f"the batch mixes specversions {sorted(map(str, specversions))}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
