"""Stand-in for the netanomd daemon in the btests, over Zeek's WebSocket API (>= 8.1).

Same behaviour as daemon-peer.py, speaking Broker's JSON format on /v1/messages/json (topic
array, ack, then data messages); exits when Zeek closes the connection. Event names, argument
positions and Broker types come from netanomd's contract (netanom_api.py).
"""

import json
import sys
import time

from netanom_api import api, named, refuse, verdict_values
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

port = int(sys.argv[1].split("/")[0])
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0


def wrap(zeek_type, value):
    return {"@data-type": api.BROKER_TYPES[zeek_type], "data": value}


def event(name, args):
    return json.dumps(
        {
            "type": "data-message",
            "topic": api.VERDICTS_TOPIC,
            "@data-type": "vector",
            "data": [
                {"@data-type": "count", "data": 1},
                {"@data-type": "count", "data": 1},
                {"@data-type": "vector", "data": [wrap("string", name), wrap_vector(args)]},
            ],
        }
    )


def wrap_vector(values):
    return {"@data-type": "vector", "data": values}


for _ in range(100):
    try:
        ws = connect(f"ws://127.0.0.1:{port}/v1/messages/json")
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("could not connect to Zeek")

with ws, open("flows.txt", "w") as out:
    ws.send(json.dumps([api.FLOWS_TOPIC]))
    ack = json.loads(ws.recv(timeout=10))
    assert ack["type"] == "ack", ack
    last = time.monotonic()
    while time.monotonic() - last < idle:
        try:
            msg = json.loads(ws.recv(timeout=0.2))
        except TimeoutError:
            continue
        except ConnectionClosed:
            break  # Zeek terminated
        last = time.monotonic()
        if msg.get("type") == "error":
            sys.exit(f"Zeek refused what we sent: {msg}")
        name, args = (x["data"] for x in msg["data"][2]["data"][:2])
        refuse(args[0]["data"] if args else None, name)
        if name == api.DRAIN.name:
            drain = named(api.DRAIN, args)
            answer = [
                wrap("string", api.VERSION) if n == "contract" else drain[n]
                for n in api.DRAINED.arg_names
            ]
            ws.send(event(api.DRAINED.name, answer))
            continue
        assert name == api.FLOWS.name, name
        flows = {k: v["data"] for k, v in named(api.FLOWS, args).items() if k != "contract"}
        for i in range(len(flows["uid"])):
            row = [flows[k][i]["data"] for k in ("uid", "orig_h", "resp_h", "resp_p")]
            out.write(" ".join(map(str, row)) + "\n")
            ws.send(event(api.VERDICT.name, verdict_values(flows, i, wrap)))
        out.flush()
