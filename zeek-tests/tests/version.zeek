# @TEST-DOC: A verdict of another contract major version is refused with an error naming both versions and raises no notice; one of the same major version is accepted.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT 2>stderr
# @TEST-EXEC: grep -q "speaks contract 1.0, this package speaks 2.1: refused" stderr
# @TEST-EXEC: test "$(zeek-cut uid < notice.log)" = "CNew"

redef NetAnom::listen_websocket = F;

event zeek_init()
	{
	event NetAnom::verdict("1.0", "COld", 10.0.0.5, 49152/tcp, 192.0.2.7, 1177/tcp, 0.712,
	    0.664, "m1", "an old daemon");
	event NetAnom::verdict("2.3", "CNew", 10.0.0.6, 49152/tcp, 192.0.2.7, 1177/tcp, 0.712,
	    0.664, "m1", "a newer daemon of the same major version");
	}
