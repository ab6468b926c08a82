# @TEST-DOC: Incidents become one NetAnom::Incident notice each: the title as msg, the evidence in sub, the flows as n, the actor as src and the target as dst, a representative uid; updates of the same incident (same identifier) are suppressed, another incident of the same host is not.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT
# @TEST-EXEC: test "$(zeek-cut note < notice.log | grep -c '^NetAnom::Incident$')" = 3
# @TEST-EXEC: zeek-cut src dst n uid msg < notice.log | grep -q "^10.0.2.19	-	1809	CScan1	10.0.2.19 sent one-packet UDP to 1,809 hosts on 1,753 ports in 5 min; none answered$"
# @TEST-EXEC: zeek-cut src sub < notice.log | grep -q "^10.0.2.19	horizontal scan, severity 67: flows=1809 peers=1809 ports=1753 unanswered=1809$"
# @TEST-EXEC: ! grep -q "2,400 hosts" notice.log
# @TEST-EXEC: zeek-cut src dst n msg < notice.log | grep -q "^198.51.100.4	192.168.56.103	15	192.168.56.103 received 15 connections"
# @TEST-EXEC: zeek-cut src dst n < notice.log | grep -q "^-	-	250$"

redef NetAnom::listen_websocket = F;

event zeek_init()
	{
	event NetAnom::incident(NetAnom::version, "a1", "orig", "10.0.2.19", "",
	    "horizontal scan", 67, 1809, 1700000000.0, 1700000300.0,
	    "10.0.2.19 sent one-packet UDP to 1,809 hosts on 1,753 ports in 5 min; none answered",
	    "flows=1809 peers=1809 ports=1753 unanswered=1809", vector("CScan1", "CScan2"));
	# The same incident grown: suppressed (one notice per incident).
	event NetAnom::incident(NetAnom::version, "a1", "orig", "10.0.2.19", "",
	    "horizontal scan", 67, 2400, 1700000000.0, 1700000400.0,
	    "10.0.2.19 sent one-packet UDP to 2,400 hosts on 1,753 ports in 7 min; none answered",
	    "flows=2400", vector("CScan1"));
	# The host was the target: the peer did it.
	event NetAnom::incident(NetAnom::version, "b2", "resp", "192.168.56.103",
	    "198.51.100.4", "inbound brute force", 73, 15, 1700000000.0, 1700000006.0,
	    "192.168.56.103 received 15 connections to its SSH (22/tcp) in 6 s", "flows=15",
	    vector("CBrute"));
	# A flooded service has no address.
	event NetAnom::incident(NetAnom::version, "c3", "service", "udp/67", "", "UDP flood", 73,
	    250, 1700000000.0, 1700000010.0, "UDP flood on udp/67: 250 flows from 250 sources",
	    "flows=250", vector());
	}
