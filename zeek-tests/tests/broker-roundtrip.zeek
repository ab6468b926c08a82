# @TEST-DOC: A pcap replay held until a native Broker peer (standing in for the daemon) arrives: every connection of conn.log reaches it, every verdict comes back (netanom.log), notices are one per originator/responder/port, and Zeek terminates by itself once the daemon has answered the end of the trace.
# @TEST-REQUIRES: python3 -c 'import broker'
# @TEST-PORT: BROKER_PORT
# @TEST-EXEC: btest-bg-run zeek "zeek -C -r $TRACES/web.pcap -b $PACKAGE %INPUT"
# @TEST-EXEC: btest-bg-run daemon "python3 $SCRIPTS/daemon-peer.py $BROKER_PORT"
# @TEST-EXEC: btest-bg-wait 120
# @TEST-EXEC: bash $SCRIPTS/check-roundtrip.sh

redef exit_only_after_terminate = T;
redef NetAnom::wait_for_daemon = T;
redef NetAnom::listen_websocket = F;
redef NetAnom::listen_broker = T;
redef NetAnom::broker_port = to_port(getenv("BROKER_PORT"));
redef NetAnom::batch_size = 3;
