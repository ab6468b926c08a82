"""Stand-in for the netanomd daemon in the btests, over Zeek's WebSocket API (>= 8.1).

Same behaviour as daemon-peer.py, speaking Broker's JSON format on /v1/messages/json: topic
array, ack, then data messages.
"""

import json
import sys
import time

from websockets.sync.client import connect

port = int(sys.argv[1].split("/")[0])
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0


def wrap(t, v):
    return {"@data-type": t, "data": v}


def event(name, args):
    return json.dumps(
        {
            "type": "data-message",
            "topic": "netanom/verdicts",
            "@data-type": "vector",
            "data": [
                wrap("count", 1),
                wrap("count", 1),
                wrap("vector", [wrap("string", name), wrap("vector", args)]),
            ],
        }
    )


for _ in range(100):
    try:
        ws = connect(f"ws://127.0.0.1:{port}/v1/messages/json")
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("could not connect to Zeek")

with ws, open("flows.txt", "w") as out:
    ws.send(json.dumps(["netanom/flows"]))
    ack = json.loads(ws.recv(timeout=10))
    assert ack["type"] == "ack", ack
    last = time.monotonic()
    while time.monotonic() - last < idle:
        try:
            msg = json.loads(ws.recv(timeout=0.2))
        except TimeoutError:
            continue
        name, args = (x["data"] for x in msg["data"][2]["data"][:2])
        assert name == "NetAnom::flows" and len(args) == 19, (name, len(args))
        cols = [[v["data"] for v in a["data"]] for a in args[:5]]
        for uid, orig_h, orig_p, resp_h, resp_p in zip(*cols):  # noqa: B905 (Python < 3.10)
            out.write(f"{uid} {orig_h} {resp_h} {resp_p}\n")
            ws.send(
                event(
                    "NetAnom::verdict",
                    [
                        wrap("string", uid),
                        wrap("address", orig_h),
                        wrap("port", orig_p),
                        wrap("address", resp_h),
                        wrap("port", resp_p),
                        wrap("real", 0.9),
                        wrap("real", 0.6),
                        wrap("string", "btest"),
                        wrap("string", "btest says anomalous"),
                    ],
                )
            )
        out.flush()
        last = time.monotonic()
    ws.send(event("NetAnomTest::done", []))
    time.sleep(1)
