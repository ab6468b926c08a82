# @TEST-DOC: Verdicts become NetAnom::Anomalous_Flow notices with uid, endpoints, msg and sub; the identifier (originator, responder, port) suppresses repeats; netanom.log keeps every verdict.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT
# @TEST-EXEC: test "$(zeek-cut note < notice.log | grep -c '^NetAnom::Anomalous_Flow$')" = 2
# @TEST-EXEC: zeek-cut uid id.orig_h id.resp_h id.resp_p msg < notice.log | grep -q "^CAbc1	10.0.0.5	192.0.2.7	1177	registered responder port seen in 1.46% of training flows$"
# @TEST-EXEC: zeek-cut uid sub < notice.log | grep -q "^CAbc1	score=0.712 threshold=0.664 model=m1$"
# @TEST-EXEC: ! zeek-cut uid < notice.log | grep -q CAbc2
# @TEST-EXEC: test "$(grep -vc '^#' netanom.log)" = 3
# @TEST-EXEC: zeek-cut uid score model < netanom.log | grep -q "^CAbc2	0.701	m1$"

redef NetAnom::listen_websocket = F;

event zeek_init()
	{
	event NetAnom::verdict(NetAnom::version, "CAbc1", 10.0.0.5, 49152/tcp, 192.0.2.7,
	    1177/tcp, 0.712, 0.664, "m1", "registered responder port seen in 1.46% of training flows");
	event NetAnom::verdict(NetAnom::version, "CAbc2", 10.0.0.5, 49153/tcp, 192.0.2.7, 1177/tcp, 0.701, 0.664,
	    "m1", "same originator, responder and port: suppressed");
	event NetAnom::verdict(NetAnom::version, "CAbc3", 10.0.0.9, 5353/udp, 224.0.0.251, 5353/udp, 0.690, 0.664,
	    "m1", "another pair");
	}
