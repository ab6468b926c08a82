# @TEST-DOC: A pcap replay held until a native Broker peer (standing in for the daemon) arrives: finished connections reach it in batches, its verdicts become notices, one per originator/responder/port.
# @TEST-REQUIRES: python3 -c 'import broker'
# @TEST-PORT: BROKER_PORT
# @TEST-EXEC: btest-bg-run zeek "zeek -C -r $TRACES/web.pcap -b $PACKAGE %INPUT"
# @TEST-EXEC: btest-bg-run daemon "python3 $SCRIPTS/daemon-peer.py $BROKER_PORT"
# @TEST-EXEC: btest-bg-wait 60
# @TEST-EXEC: bash check.sh

redef exit_only_after_terminate = T;
redef NetAnom::wait_for_daemon = T;
redef NetAnom::listen_websocket = F;
redef NetAnom::batch_size = 3;

module NetAnomTest;

global done: event();

event zeek_init()
	{
	Broker::listen("127.0.0.1", to_port(getenv("BROKER_PORT")));
	}

event done()
	{
	terminate();
	}

# @TEST-START-FILE check.sh
set -e
zeek-cut uid < zeek/conn.log | sort > conn-uids
cut -d' ' -f1 daemon/flows.txt | sort > flow-uids
test -s flow-uids
# every flow the daemon got is a real connection of the trace, each exactly once
test -z "$(comm -13 conn-uids flow-uids)"
test "$(sort -u flow-uids | wc -l)" = "$(wc -l < flow-uids)"
# every verdict was logged; notices are one per originator, responder and port
test "$(grep -vc '^#' zeek/netanom.log)" = "$(wc -l < flow-uids)"
test "$(zeek-cut note < zeek/notice.log | grep -c NetAnom::Anomalous_Flow)" = "$(cut -d' ' -f2- daemon/flows.txt | sed 's|/.*||' | sort -u | wc -l)"
# @TEST-END-FILE
