# @TEST-DOC: The package loads in bare mode and declares the wire contract's version.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >out
# @TEST-EXEC: test "$(cat out)" = "2.1"

redef NetAnom::listen_websocket = F;

event zeek_init()
	{
	print NetAnom::version;
	}
