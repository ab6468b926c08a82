##! Logic: batch finished connections per shard and publish them to the daemon; turn the
##! daemon's verdicts into notices (and netanom.log lines) and its incidents into one notice
##! per incident (suppressed per incident id), refusing events of another
##! contract major version; open the listener the daemon connects to (not when replaying a
##! trace, unless waiting for the daemon); with ``wait_for_daemon``, hold every publishing
##! node until the daemon is there and, at the end of a trace, terminate once the daemon has
##! answered everything.

@load base/misc/version
@load base/frameworks/cluster
@load base/frameworks/notice
@load base/protocols/conn
@load base/utils/addrs

# Zeek >= 8.0 runs standalone with the "none" cluster backend unless one is loaded, and
# WebSocket clients of Cluster::listen_websocket then get no ack (closed with 1011). Load
# Broker's backend in that case only: a cluster, or a site that chose ZeroMQ, keeps its own.
@ifdef ( Cluster::CLUSTER_BACKEND_NONE )
@if ( Cluster::backend == Cluster::CLUSTER_BACKEND_NONE && |Cluster::nodes| == 0 )
@load policy/frameworks/cluster/backend/broker
@endif
@endif

module NetAnom;

export {
	redef enum Notice::Type += {
		## The netanomd daemon scored a connection as anomalous: ``msg`` says why, ``sub``
		## gives the score, the threshold and the model.
		Anomalous_Flow,
		## The daemon opened an incident: a host behaviour (scan, brute force, flood,
		## beaconing, exfiltration, ...) or grouped anomalous flows. ``msg`` is its title,
		## ``sub`` the evidence, ``n`` its flows, ``src`` the host that did it (``dst`` the
		## host it was done to); ``identifier`` is the incident's id, so its updates are
		## suppressed while it lasts.
		Incident,
	};

	redef enum Log::ID += { LOG };

	## One line of netanom.log: a verdict as the daemon sent it.
	type Info: record {
		## When the verdict arrived.
		ts: time &log;
		## The connection's uid.
		uid: string &log;
		## The connection's endpoints.
		id: conn_id &log;
		## Anomaly score in (0, 1).
		score: double &log;
		## The model's alert threshold.
		threshold: double &log;
		## The model's id.
		model: string &log;
		## Why the flow is anomalous.
		reason: string &log;
	};
}

## Flows waiting to be published, as parallel vectors (see NetAnom::flows).
type Batch: record {
	uid: vector of string &default=vector();
	ts: vector of double &default=vector();
	orig_h: vector of addr &default=vector();
	orig_p: vector of port &default=vector();
	resp_h: vector of addr &default=vector();
	resp_p: vector of port &default=vector();
	proto: vector of string &default=vector();
	service: vector of string &default=vector();
	duration: vector of interval &default=vector();
	orig_bytes: vector of count &default=vector();
	resp_bytes: vector of count &default=vector();
	conn_state: vector of string &default=vector();
	missed_bytes: vector of count &default=vector();
	history: vector of string &default=vector();
	orig_pkts: vector of count &default=vector();
	orig_ip_bytes: vector of count &default=vector();
	resp_pkts: vector of count &default=vector();
	resp_ip_bytes: vector of count &default=vector();
	community_id: vector of string &default=vector();
};

global batches: table[count] of Batch;

global flush_all: event();

## Sent by a cluster's manager to its workers once the daemon is there (wait_for_daemon).
global daemon_here: event();

## Scheduled once a replayed trace is done and its connections have timed out.
global finish_trace: event();
global drain_timed_out: event();

## Shards whose drain request the daemon has not answered yet.
global drains_pending: set[count];

## True on the node that handles verdicts: a standalone Zeek, or a cluster's manager (so
## each verdict becomes one notice and one netanom.log line, not one per node).
function handles_verdicts(): bool
	{
	return ! Cluster::is_enabled() || Cluster::local_node_type() == Cluster::MANAGER;
	}

global version_refused = F;

## Whether an event of contract version ``v`` is accepted: the major versions must agree.
## The first refusal is reported as an error, naming both versions.
function accepted(v: string, event_name: string): bool
	{
	if ( split_string1(v, /\./)[0] == split_string1(version, /\./)[0] )
		return T;
	if ( ! version_refused )
		Reporter::error(fmt("netanomd: %s speaks contract %s, this package speaks %s: refused (major versions differ); upgrade the older side so both come from one netanomd release",
		    event_name, v, version));
	version_refused = T;
	return F;
	}

function shard_of(a: addr): count
	{
	local parts = addr_to_counts(a);
	return parts[|parts| - 1] % shards;
	}

function publish_batch(k: count)
	{
	if ( k !in batches )
		return;

	local b = batches[k];
	delete batches[k];
	if ( |b$uid| == 0 )
		return;

	local topic = fmt("%s/%d/", flows_topic, k);
@if ( Version::number >= 70100 )
	Cluster::publish(topic, NetAnom::flows, version, b$uid, b$ts, b$orig_h, b$orig_p,
	    b$resp_h, b$resp_p, b$proto, b$service, b$duration, b$orig_bytes, b$resp_bytes,
	    b$conn_state, b$missed_bytes, b$history, b$orig_pkts, b$orig_ip_bytes, b$resp_pkts,
	    b$resp_ip_bytes, b$community_id);
@else
	Broker::publish(topic, NetAnom::flows, version, b$uid, b$ts, b$orig_h, b$orig_p,
	    b$resp_h, b$resp_p, b$proto, b$service, b$duration, b$orig_bytes, b$resp_bytes,
	    b$conn_state, b$missed_bytes, b$history, b$orig_pkts, b$orig_ip_bytes, b$resp_pkts,
	    b$resp_ip_bytes, b$community_id);
@endif
	}

function publish_all()
	{
	local keys: vector of count = vector();
	for ( k in batches )
		keys[|keys|] = k;
	for ( i in keys )
		publish_batch(keys[i]);
	}

event NetAnom::flush_all()
	{
	publish_all();
	schedule flush_interval { NetAnom::flush_all() };
	}

event Conn::log_conn(rec: Conn::Info)
	{
	if ( ! enable_export )
		return;

	local k = shard_of(rec$id$orig_h);
	if ( k !in batches )
		batches[k] = Batch();
	local b = batches[k];
	local n = |b$uid|;
	b$uid[n] = rec$uid;
	b$ts[n] = time_to_double(rec$ts);
	b$orig_h[n] = rec$id$orig_h;
	b$orig_p[n] = rec$id$orig_p;
	b$resp_h[n] = rec$id$resp_h;
	b$resp_p[n] = rec$id$resp_p;
	b$proto[n] = cat(rec$proto);
	b$service[n] = rec?$service ? rec$service : "";
	b$duration[n] = rec?$duration ? rec$duration : 0secs;
	b$orig_bytes[n] = rec?$orig_bytes ? rec$orig_bytes : 0;
	b$resp_bytes[n] = rec?$resp_bytes ? rec$resp_bytes : 0;
	b$conn_state[n] = rec?$conn_state ? rec$conn_state : "";
	b$missed_bytes[n] = rec?$missed_bytes ? rec$missed_bytes : 0;
	b$history[n] = rec?$history ? rec$history : "";
	b$orig_pkts[n] = rec?$orig_pkts ? rec$orig_pkts : 0;
	b$orig_ip_bytes[n] = rec?$orig_ip_bytes ? rec$orig_ip_bytes : 0;
	b$resp_pkts[n] = rec?$resp_pkts ? rec$resp_pkts : 0;
	b$resp_ip_bytes[n] = rec?$resp_ip_bytes ? rec$resp_ip_bytes : 0;
@if ( Version::number >= 60000 )
	b$community_id[n] = community_id_v1(rec$id);
@else
	b$community_id[n] = "";
@endif
	if ( n + 1 >= batch_size )
		publish_batch(k);
	}

event NetAnom::verdict(contract: string, uid: string, orig_h: addr, orig_p: port,
    resp_h: addr, resp_p: port, score: double, threshold: double, model: string,
    reason: string)
	{
	if ( ! accepted(contract, "NetAnom::verdict") )
		return;

	local id = conn_id($orig_h=orig_h, $orig_p=orig_p, $resp_h=resp_h, $resp_p=resp_p);

	if ( log_verdicts )
		Log::write(LOG, Info($ts=network_time(), $uid=uid, $id=id, $score=score,
		    $threshold=threshold, $model=model, $reason=reason));

	if ( do_notice )
		NOTICE([$note=Anomalous_Flow, $uid=uid, $id=id, $msg=reason,
		    $sub=fmt("score=%.3f threshold=%.3f model=%s", score, threshold, model),
		    $identifier=cat(orig_h, resp_h, resp_p),
		    $suppress_for=suppression_interval]);
	}

event NetAnom::incident(contract: string, id: string, role: string, host: string,
    peer: string, behaviour: string, severity: count, flow_count: count, first_seen: double,
    last_seen: double, title: string, evidence: string, uids: vector of string)
	{
	if ( ! accepted(contract, "NetAnom::incident") || ! do_notice )
		return;

	local n = Notice::Info($note=Incident, $msg=title,
	    $sub=fmt("%s, severity %d: %s", behaviour, severity, evidence), $n=flow_count,
	    $identifier=id, $suppress_for=suppression_interval);
	local actor = role == "resp" ? peer : host;
	local target = role == "resp" ? host : peer;
	if ( role != "service" && is_valid_ip(actor) )
		n$src = to_addr(actor);
	if ( role != "service" && is_valid_ip(target) )
		n$dst = to_addr(target);
	if ( |uids| > 0 )
		n$uid = uids[0];
	NOTICE(n);
	}

# -- wait_for_daemon: hold every publishing node until the daemon is there -----------------
global daemon_seen = F;

function release()
	{
	if ( is_processing_suspended() )
		continue_processing();
	}

function daemon_arrived()
	{
	if ( ! wait_for_daemon || daemon_seen )
		return;
	daemon_seen = T;
	release();
	if ( ! Cluster::is_enabled() )
		return;
@if ( Version::number >= 70100 )
	Cluster::publish(Cluster::worker_topic, NetAnom::daemon_here);
@else
	Broker::publish(Cluster::worker_topic, NetAnom::daemon_here);
@endif
	}

event NetAnom::daemon_here()
	{
	release();
	}

# A worker that comes up after the daemon arrived is released at once.
event Cluster::node_up(name: string, id: string)
	{
	if ( ! daemon_seen || ! handles_verdicts() || name !in Cluster::nodes ||
	     Cluster::nodes[name]$node_type != Cluster::WORKER )
		return;
@if ( Version::number >= 70100 )
	Cluster::publish(Cluster::node_topic(name), NetAnom::daemon_here);
@else
	Broker::publish(Cluster::node_topic(name), NetAnom::daemon_here);
@endif
	}

# WebSocket clients of Cluster::listen_websocket (>= 8.1). With Broker::listen_websocket
# (5.0-8.0) only native Broker peers release a held replay.
@if ( Version::number >= 80100 )
event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	daemon_arrived();
	}
@endif

# A native Broker peer of a standalone Zeek is the daemon (in a cluster, peers are nodes).
event Broker::peer_added(endpoint: Broker::EndpointInfo, msg: string)
	{
	if ( ! Cluster::is_enabled() )
		daemon_arrived();
	}

# -- the end of a replayed trace (wait_for_daemon) -----------------------------------------
@ifdef ( Pcap::file_done )
event Pcap::file_done(path: string)
	{
	if ( ! wait_for_daemon )
		return;
	# With the trace done, network time follows the wall clock: connections still open
	# time out (and reach conn.log) before this fires.
	local linger = tcp_inactivity_timeout;
	if ( udp_inactivity_timeout > linger )
		linger = udp_inactivity_timeout;
	if ( icmp_inactivity_timeout > linger )
		linger = icmp_inactivity_timeout;
	schedule linger + 1min { NetAnom::finish_trace() };
	}
@endif

event NetAnom::finish_trace()
	{
	publish_all();
	local k = 0;
	while ( k < shards )
		{
		add drains_pending[k];
		local topic = fmt("%s/%d/", flows_topic, k);
@if ( Version::number >= 70100 )
		Cluster::publish(topic, NetAnom::drain, version, k);
@else
		Broker::publish(topic, NetAnom::drain, version, k);
@endif
		++k;
		}
	schedule drain_timeout { NetAnom::drain_timed_out() };
	}

event NetAnom::drained(contract: string, token: count)
	{
	if ( ! accepted(contract, "NetAnom::drained") || token !in drains_pending )
		return;
	delete drains_pending[token];
	if ( |drains_pending| == 0 )
		terminate();
	}

event NetAnom::drain_timed_out()
	{
	if ( |drains_pending| == 0 )
		return;
	Reporter::warning(fmt("netanomd: the daemon did not answer the end of the trace within %s; terminating",
	    drain_timeout));
	terminate();
	}

event zeek_init()
	{
	Log::create_stream(LOG, [$columns=Info, $path="netanom"]);

	# Every node that publishes flows waits for the daemon (a cluster's manager tells its
	# workers when it is there).
	if ( wait_for_daemon && ( ! Cluster::is_enabled() ||
	                          Cluster::local_node_type() == Cluster::WORKER ) )
		suspend_processing();

	if ( handles_verdicts() )
		{
@if ( Version::number >= 70100 )
		Cluster::subscribe(verdicts_topic);
@else
		Broker::subscribe(verdicts_topic);
@endif
		}

	schedule flush_interval { NetAnom::flush_all() };

	# One listener per installation: the standalone node, or the manager of a cluster. None
	# when replaying a trace without waiting for the daemon: it would keep Zeek running.
	if ( ! handles_verdicts() || ( reading_traces() && ! wait_for_daemon ) )
		return;

	if ( listen_broker && ! Cluster::is_enabled() )
		Broker::listen(cat(broker_addr), broker_port);

	if ( ! listen_websocket )
		return;
@if ( Version::number >= 80100 )
	local opts = Cluster::WebSocketServerOptions($listen_addr=websocket_addr,
	    $listen_port=websocket_port);
	if ( websocket_cert_file != "" )
		opts$tls_options = Cluster::WebSocketTLSOptions($cert_file=websocket_cert_file,
		    $key_file=websocket_key_file);
	Cluster::listen_websocket(opts);
@else
	Broker::listen_websocket(cat(websocket_addr), websocket_port);
@endif
	}

# Connections logged at shutdown (still open when Zeek stops) are published too.
event zeek_done()
	{
	publish_all();
	}
