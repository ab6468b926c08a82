##! The wire contract between Zeek and the netanomd daemon: only the events that cross the
##! wire. Mirrored, name for name and type for type, by ``netanomd/zeek/api.py``; a test in
##! the netanomd repository fails when the two drift apart.
##!
##! Flows travel as parallel vectors of primitive values, one element per connection, never as
##! records: a record's wire shape changes whenever Zeek adds a field (``conn_id`` gained
##! ``proto`` in 7.1 and ``ctx`` in 8.0). Times travel as doubles (seconds since the epoch):
##! Broker's JSON encoding cuts a ``time`` to milliseconds.
##!
##! Every event carries ``version`` first: each side refuses an event whose major version
##! differs from its own, with a message saying so.

module NetAnom;

export {
	## Version of this contract. An event of a different major version is refused.
	const version = "2.1";

	## A batch of finished connections, published by every node that logs conn.log.
	## All vectors have the same length; element ``i`` of each describes flow ``i``.
	##
	## contract: the contract version of the sender (NetAnom::version).
	## uid: the connection's uid (as in conn.log).
	## ts: when the connection started, in seconds since the epoch.
	## orig_h: originator address.
	## orig_p: originator port (with its transport protocol).
	## resp_h: responder address.
	## resp_p: responder port.
	## proto: transport protocol: "tcp", "udp", "icmp" or "unknown_transport".
	## service: application protocols Zeek identified, comma-separated; "" when none.
	## duration: how long the connection lasted; 0secs when unset.
	## orig_bytes: payload bytes sent by the originator; 0 when unset.
	## resp_bytes: payload bytes sent by the responder; 0 when unset.
	## conn_state: Zeek's connection state (S0, SF, REJ, ...).
	## missed_bytes: bytes Zeek missed (capture loss).
	## history: the connection's history string.
	## orig_pkts: packets from the originator.
	## orig_ip_bytes: IP-layer bytes from the originator.
	## resp_pkts: packets from the responder.
	## resp_ip_bytes: IP-layer bytes from the responder.
	## community_id: the Community ID flow hash, "" when the policy is not loaded.
	global flows: event(contract: string, uid: vector of string, ts: vector of double,
	    orig_h: vector of addr, orig_p: vector of port, resp_h: vector of addr,
	    resp_p: vector of port, proto: vector of string, service: vector of string,
	    duration: vector of interval, orig_bytes: vector of count,
	    resp_bytes: vector of count, conn_state: vector of string,
	    missed_bytes: vector of count, history: vector of string,
	    orig_pkts: vector of count, orig_ip_bytes: vector of count,
	    resp_pkts: vector of count, resp_ip_bytes: vector of count,
	    community_id: vector of string);

	## The daemon's verdict on one anomalous connection.
	##
	## contract: the contract version of the daemon.
	## uid: the connection's uid.
	## orig_h: originator address.
	## orig_p: originator port.
	## resp_h: responder address.
	## resp_p: responder port.
	## score: anomaly score in (0, 1); higher is more anomalous.
	## threshold: the score at which the model alerts.
	## model: the model's id.
	## reason: why, as one readable sentence.
	global verdict: event(contract: string, uid: string, orig_h: addr, orig_p: port,
	    resp_h: addr, resp_p: port, score: double, threshold: double, model: string,
	    reason: string);

	## An incident the daemon opened or updated: flow alerts and host behaviour grouped into
	## what an analyst acts on. Sent again each time the incident grows, under the same id.
	##
	## contract: the contract version of the daemon.
	## id: the incident's stable id (the same in the daemon's SQLite and Elasticsearch).
	## role: the host's role: "orig" (it did it), "resp" (it was the target), or "service"
	##       (``host`` is then "proto/port", e.g. "udp/67", flooded from many sources).
	## host: the host's address (or "proto/port" for a service).
	## peer: the main peer's address ("" when there are many).
	## behaviour: what was seen, e.g. "horizontal scan", "brute force", "beaconing".
	## severity: 0-100 (low 21, medium 47, high 73, critical 90 and above).
	## flow_count: how many flows the incident holds.
	## first_seen: when it started, in seconds since the epoch (flow time).
	## last_seen: when it was last seen.
	## title: what happened, in an analyst's words.
	## evidence: the numbers behind the title, as "name=value" pairs.
	## uids: uids of representative connections.
	global incident: event(contract: string, id: string, role: string, host: string,
	    peer: string, behaviour: string, severity: count, flow_count: count, first_seen: double,
	    last_seen: double, title: string, evidence: string, uids: vector of string);

	## Zeek asks the daemon to answer with ``drained`` once it has answered every flow
	## published before this event (sent when a trace replay is done).
	##
	## contract: the contract version of the sender.
	## token: echoed in the answer (the shard the request went to).
	global drain: event(contract: string, token: count);

	## The daemon has answered (scored, and sent verdicts for) every flow it received before
	## the ``drain`` with this token.
	##
	## contract: the contract version of the daemon.
	## token: the token of the drain request.
	global drained: event(contract: string, token: count);
}
