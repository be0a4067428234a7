"""Receive sse_notify events without a browser session, in Python.

    SSE_NOTIFY_URL=http://127.0.0.1:3000 SSE_NOTIFY_STREAM_TOKEN=eyJ... \
        python subscriber.py <count>

Opens the event stream with a stream token (minted for this user by a
service holding a `subscribe` token), prints `ready` once connected, then
one JSON line per `order` event, and exits after <count> of them. On a
dropped connection it resumes with Last-Event-ID, as a browser would.
"""

import json
import os
import sys

import requests
import sseclient

BASE = os.environ.get("SSE_NOTIFY_URL", "http://127.0.0.1:3000")
TOKEN = os.environ["SSE_NOTIFY_STREAM_TOKEN"]


def stream(last_event_id=None):
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    response = requests.get(f"{BASE}/api/sse", headers=headers, stream=True, timeout=(5, 60))
    if response.status_code != 200:
        sys.exit(f"stream refused: {response.status_code} {response.text}")
    return sseclient.SSEClient(response)


def main():
    want = int(sys.argv[1])
    got, last_id = 0, None
    while got < want:
        try:
            for event in stream(last_id).events():
                if event.id:
                    last_id = event.id
                if event.event == "connected":
                    print("ready", flush=True)
                elif event.event == "order":
                    print(json.dumps({"id": event.id, "data": json.loads(event.data)}), flush=True)
                    got += 1
                    if got == want:
                        return
        except requests.exceptions.ChunkedEncodingError:
            continue  # the connection dropped: resume after last_id


if __name__ == "__main__":
    main()
