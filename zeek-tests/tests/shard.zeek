# @TEST-DOC: Flows are sharded by originator address: same host, same shard; IPv6 works.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT >out
# @TEST-EXEC: test "$(cat out)" = "1, 2, 3, 1"

redef NetAnom::listen_websocket = F;
redef NetAnom::shards = 4;

module NetAnom;

event zeek_init()
	{
	print shard_of(10.0.0.5), shard_of(10.0.0.6), shard_of([2001:db8::7]), shard_of(10.0.0.5);
	}
