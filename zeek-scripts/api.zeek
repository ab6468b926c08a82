##! The wire contract between Zeek and the netanomd daemon: only the events that cross the
##! wire. Mirrored, name for name and type for type, by ``netanomd/zeek/api.py``; a test in
##! the netanomd repository fails when the two drift apart.
##!
##! Flows travel as parallel vectors of primitive values, one element per connection, never as
##! records: a record's wire shape changes whenever Zeek adds a field (``conn_id`` gained
##! ``proto`` in 7.1 and ``ctx`` in 8.0).

module NetAnom;

export {
	## Version of this contract. The daemon refuses a different major version.
	const version = "1.0";

	## A batch of finished connections, published by every node that logs conn.log.
	## All vectors have the same length; element ``i`` of each describes flow ``i``.
	##
	## uid: the connection's uid (as in conn.log).
	## ts: when the connection started.
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
	global flows: event(uid: vector of string, ts: vector of time, orig_h: vector of addr,
	    orig_p: vector of port, resp_h: vector of addr, resp_p: vector of port,
	    proto: vector of string, service: vector of string, duration: vector of interval,
	    orig_bytes: vector of count, resp_bytes: vector of count,
	    conn_state: vector of string, missed_bytes: vector of count,
	    history: vector of string, orig_pkts: vector of count, orig_ip_bytes: vector of count,
	    resp_pkts: vector of count, resp_ip_bytes: vector of count,
	    community_id: vector of string);

	## The daemon's verdict on one anomalous connection.
	##
	## uid: the connection's uid.
	## orig_h: originator address.
	## orig_p: originator port.
	## resp_h: responder address.
	## resp_p: responder port.
	## score: anomaly score in (0, 1); higher is more anomalous.
	## threshold: the score at which the model alerts.
	## model: the model's id.
	## reason: why, as one readable sentence.
	global verdict: event(uid: string, orig_h: addr, orig_p: port, resp_h: addr,
	    resp_p: port, score: double, threshold: double, model: string, reason: string);
}
