"""Stand-in for the netanomd daemon in the btests, over native Broker peering.

Peers with Zeek on 127.0.0.1:<port>, subscribes to the flow topics, writes one line per flow
received to flows.txt ("uid orig_h resp_h resp_p"), answers every flow with a
NetAnom::verdict and every NetAnom::drain with NetAnom::drained, and exits once Zeek is gone
(or after <idle> seconds without a message). Event names and argument positions come from
netanomd's contract (netanom_api.py). Works with Broker 1.x and 2.x bindings (2.x endpoints
are context managers).
"""

import contextlib
import sys
import time

import broker
from netanom_api import api, named, refuse, verdict_values

port = int(sys.argv[1].split("/")[0])
idle = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
GONE = (broker.SC.PeerLost, broker.SC.PeerRemoved)

ep = broker.Endpoint()
ctx = ep if hasattr(ep, "__enter__") else contextlib.nullcontext(ep)
with ctx, open("flows.txt", "w") as out:
    sub = ep.make_subscriber(api.FLOWS_TOPIC)
    status = ep.make_status_subscriber(True)
    if not ep.peer("127.0.0.1", port, 1.0):
        sys.exit("could not peer with Zeek")
    last = time.monotonic()
    while time.monotonic() - last < idle:
        if any(getattr(s, "code", lambda: None)() in GONE for s in status.poll()):
            break
        msg = sub.get(0.2)
        if msg is None:
            continue
        last = time.monotonic()
        ev = broker.zeek.Event(msg[1])
        args = ev.args()
        refuse(args[0] if args else None, ev.name())
        if ev.name() == api.DRAIN.name:
            drain = named(api.DRAIN, args)
            answer = [api.VERSION if n == "contract" else drain[n] for n in api.DRAINED.arg_names]
            ep.publish(api.VERDICTS_TOPIC, broker.zeek.Event(api.DRAINED.name, *answer))
            continue
        assert ev.name() == api.FLOWS.name, ev.name()
        flows = named(api.FLOWS, args)
        for i, uid in enumerate(flows["uid"]):
            out.write(f"{uid} {flows['orig_h'][i]} {flows['resp_h'][i]} {flows['resp_p'][i]}\n")
            verdict = verdict_values(flows, i)
            ep.publish(api.VERDICTS_TOPIC, broker.zeek.Event(api.VERDICT.name, *verdict))
        out.flush()
    time.sleep(0.5)  # let the last answers leave before the endpoint closes
