# @TEST-DOC: Reading a trace with the package loaded and its defaults (WebSocket listener on) ends by itself: no listener is opened for a trace unless wait_for_daemon is set, and every connection is still logged.
# @TEST-EXEC: timeout 60 zeek -C -b -r $TRACES/web.pcap $PACKAGE %INPUT
# @TEST-EXEC: test "$(zeek-cut uid < conn.log | wc -l)" -gt 0

redef NetAnom::listen_broker = T;
