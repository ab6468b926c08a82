##! Settings of the netanomd package. Options can change at run time (Config framework);
##! constants with ``&redef`` are set once, in local.zeek.

module NetAnom;

export {
	## Export finished connections to the daemon.
	option enable_export = T;

	## Topic prefix flows are published to; the shard number is appended
	## ("netanom/flows/3"). A single daemon subscribes to the prefix and gets every shard.
	const flows_topic = "netanom/flows" &redef;

	## Number of shards: each originator address always lands on the same shard, so with
	## several daemons each host's flows reach the same daemon.
	const shards = 1 &redef;

	## Topic the daemon publishes verdicts to; every node subscribes to it.
	const verdicts_topic = "netanom/verdicts" &redef;

	## Flows per published batch (per shard and per node).
	option batch_size = 100;

	## Longest time a flow waits in a batch before the batch is published anyway.
	option flush_interval = 1sec;

	## Raise a notice for each verdict.
	option do_notice = T;

	## How long notices for the same originator, responder and port are suppressed.
	option suppression_interval = 1hr;

	## Also log every verdict to netanom.log.
	option log_verdicts = T;

	## Listen for the daemon's WebSocket connection on this node.
	const listen_websocket = T &redef;

	## Address and port of the WebSocket listener (localhost by default: the API has no
	## authentication of its own).
	const websocket_addr = 127.0.0.1 &redef;
	const websocket_port = 27759/tcp &redef;

	## Hold packet processing until the daemon connects (WebSocket client or Broker peer), so
	## that replaying a pcap with ``zeek -r`` waits for the daemon. Combine with
	## ``redef exit_only_after_terminate = T`` to stay up for its verdicts.
	const wait_for_daemon = F &redef;

	## TLS for the WebSocket listener (Zeek >= 8.1); empty means plain ws://. On Zeek 5.0-8.0
	## the listener follows Broker's own TLS settings instead (Broker::ssl_certificate etc.);
	## with none set it speaks anonymous TLS that clients cannot use, so a localhost-only
	## setup needs ``redef Broker::disable_ssl = T``.
	const websocket_cert_file = "" &redef;
	const websocket_key_file = "" &redef;
}
