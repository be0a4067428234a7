"""Publish events to sse_notify from another service, in Python.

    SSE_NOTIFY_URL=http://127.0.0.1:3000 SSE_NOTIFY_TOKEN=sst_... \
        python publisher.py <user id> <count>

Sends event 0 alone, then events 1..count-1 as one batch, each with an
idempotency key; then sends the same batch again, as a retry after a lost
answer would, and checks that the server answered it from the first run
(nothing is delivered twice). Prints one JSON line with the figures.
"""

import json
import os
import sys

import requests

BASE = os.environ.get("SSE_NOTIFY_URL", "http://127.0.0.1:3000")
TOKEN = os.environ["SSE_NOTIFY_TOKEN"]  # a service token with the `publish` scope


def publish(body):
    """POSTs one publication (a dict) or a batch (a list); returns the answer."""
    response = requests.post(
        f"{BASE}/api/publish",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    if response.status_code != 200:
        # Every refusal is JSON: {"error": "<code>", "message": "..."}.
        sys.exit(f"publish refused: {response.status_code} {response.text}")
    return response.json()


def order(user, n, run):
    return {
        "target": {"user": user},
        "event": "order",
        "data": {"n": n},
        "idempotencyKey": f"{run}-{n}",
    }


def main():
    user, count = sys.argv[1], int(sys.argv[2])
    run = os.environ.get("RUN_ID", "example")
    first = publish(order(user, 0, run))
    batch = [order(user, n, run) for n in range(1, count)]
    answer = publish(batch) if batch else {"results": []}
    retry = publish(batch) if batch else {"results": []}
    replayed = sum(1 for r in retry["results"] if r.get("replayed"))
    print(json.dumps({
        "published": 1 + len(answer["results"]),
        "retried": len(retry["results"]),
        "replayed": replayed,
        "first": first,
    }), flush=True)


if __name__ == "__main__":
    main()
