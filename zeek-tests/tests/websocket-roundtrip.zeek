# @TEST-DOC: A pcap replay held until a WebSocket client (standing in for the daemon, Zeek >= 8.1) arrives: every connection of conn.log reaches it, every verdict comes back (netanom.log), notices are one per originator/responder/port, and Zeek terminates by itself once the daemon has answered the end of the trace.
# @TEST-REQUIRES: test "$(zeek -b base/misc/version -e 'print Version::number >= 80100')" = T
# @TEST-REQUIRES: python3 -c 'import websockets.sync.client'
# @TEST-PORT: WEBSOCKET_PORT
# @TEST-EXEC: btest-bg-run zeek "zeek -C -r $TRACES/ssh_sshguess.pcap -b $PACKAGE %INPUT"
# @TEST-EXEC: btest-bg-run daemon "python3 $SCRIPTS/daemon-ws.py $WEBSOCKET_PORT"
# @TEST-EXEC: btest-bg-wait 120
# @TEST-EXEC: bash $SCRIPTS/check-roundtrip.sh

redef exit_only_after_terminate = T;
redef NetAnom::wait_for_daemon = T;
redef NetAnom::websocket_port = to_port(getenv("WEBSOCKET_PORT"));
redef NetAnom::batch_size = 3;
