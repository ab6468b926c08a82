"""Stand-in for the netanomd daemon in the btests, over native Broker peering.

Peers with Zeek on 127.0.0.1:<port>, subscribes to the flow topics, writes one line per flow
received to flows.txt ("uid orig_h resp_h resp_p"), answers every flow with a NetAnom::verdict
and, after <idle> seconds without flows, publishes NetAnomTest::done and exits. Works with
Broker 1.x and 2.x bindings (2.x endpoints are context managers).
"""

import contextlib
import sys
import time

import broker

port = int(sys.argv[1].split("/")[0])
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0

ep = broker.Endpoint()
ctx = ep if hasattr(ep, "__enter__") else contextlib.nullcontext(ep)
with ctx:
    sub = ep.make_subscriber("netanom/flows")
    if not ep.peer("127.0.0.1", port, 1.0):
        sys.exit("could not peer with Zeek")
    last = time.monotonic()
    with open("flows.txt", "w") as out:
        while time.monotonic() - last < idle:
            msg = sub.get(0.2)
            if msg is None:
                continue
            ev = broker.zeek.Event(msg[1])
            assert ev.name() == "NetAnom::flows", ev.name()
            args = ev.args()
            assert len(args) == 19, len(args)
            uid, orig_h, orig_p, resp_h, resp_p = args[:5]
            for i in range(len(uid)):
                out.write(f"{uid[i]} {orig_h[i]} {resp_h[i]} {resp_p[i]}\n")
                ep.publish(
                    "netanom/verdicts",
                    broker.zeek.Event(
                        "NetAnom::verdict",
                        uid[i],
                        orig_h[i],
                        orig_p[i],
                        resp_h[i],
                        resp_p[i],
                        0.9,
                        0.6,
                        "btest",
                        "btest says anomalous",
                    ),
                )
            out.flush()
            last = time.monotonic()
    ep.publish("netanom/verdicts", broker.zeek.Event("NetAnomTest::done"))
    time.sleep(1)
