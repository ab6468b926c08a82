##! Settings of the netanomd package. Options can change at run time (Config framework);
##! constants with ``&redef`` are set once, in local.zeek.

module NetAnom;

export {
	## Export finished connections to the daemon.
	option enable_export = T;

	## Topic prefix flows are published to; the shard number and a slash are appended
	## ("netanom/flows/3/": the slash keeps a subscription to shard 1 from matching
	## shard 10). A single daemon subscribes to the prefix and gets every shard.
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

	## Listen for the daemon's WebSocket connection on this node (the standalone Zeek, or a
	## cluster's manager). Not when reading a trace (``zeek -r``) unless ``wait_for_daemon``
	## is set: a listener would keep Zeek running after the trace.
	const listen_websocket = T &redef;

	## Listen for the daemon's native Broker peering on this node (standalone only: a
	## cluster's manager listens already). Same rule for traces as ``listen_websocket``.
	const listen_broker = F &redef;

	## Address and port of the native Broker listener.
	const broker_addr = 127.0.0.1 &redef;
	const broker_port = 9999/tcp &redef;

	## Address and port of the WebSocket listener (localhost by default: the API has no
	## authentication of its own).
	const websocket_addr = 127.0.0.1 &redef;
	const websocket_port = 27759/tcp &redef;

	## Hold packet processing until the daemon connects (WebSocket client or, standalone,
	## Broker peer), on every node that publishes flows (a cluster's manager tells its
	## workers), so that replaying a pcap with ``zeek -r`` waits for the daemon. When the
	## trace is done and its connections have timed out, the package publishes what is
	## batched, asks the daemon to answer everything (``NetAnom::drain``) and terminates Zeek
	## once it has (or after ``drain_timeout``). Combine with
	## ``redef exit_only_after_terminate = T`` so that Zeek stays up for the answers.
	const wait_for_daemon = F &redef;

	## Longest wait for the daemon's answer to the last batch of a trace.
	option drain_timeout = 30sec;

	## TLS for the WebSocket listener (Zeek >= 8.1); empty means plain ws://. On Zeek 5.0-8.0
	## the listener follows Broker's own TLS settings instead (Broker::ssl_certificate etc.);
	## with none set it speaks anonymous TLS that clients cannot use, so a localhost-only
	## setup needs ``redef Broker::disable_ssl = T``.
	const websocket_cert_file = "" &redef;
	const websocket_key_file = "" &redef;
}
