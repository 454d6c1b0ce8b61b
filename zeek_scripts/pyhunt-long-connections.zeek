##! Interim logging of long-lived connections.
##!
##! Zeek writes a connection to conn.log only when it ends, so a connection that
##! stays up for hours (a tunnel, a command-and-control channel, a slow
##! exfiltration) is invisible until then.  This script polls each connection
##! and, whenever its duration crosses one of
##! :zeek:see:`PyHunt::long_conn_durations`, writes a snapshot of its conn.log
##! record to ``conn_long.log`` and raises a :zeek:see:`PyHunt::Long_Connection`
##! notice.  pyhunt's own flows do the same through interim updates every
##! ``active_timeout``.  A snapshot has the counters so far and no
##! ``conn_state`` (the connection has not ended).

@load base/frameworks/notice
@load base/protocols/conn
@load base/protocols/conn/polling
@load base/utils/time

module PyHunt;

export {
	## The long-connection logging stream (``conn_long.log``, columns of
	## :zeek:type:`Conn::Info`).
	redef enum Log::ID += { LONG_CONN_LOG };

	## A default logging policy hook for the long-connection stream.
	global long_conn_log_policy: Log::PolicyHook;

	redef enum Notice::Type += {
		## A connection has stayed up longer than one of
		## :zeek:see:`PyHunt::long_conn_durations`; ``sub`` holds its
		## duration in seconds.
		Long_Connection,
	};

	## Durations at which a connection still up is logged to conn_long.log,
	## in increasing order.
	option long_conn_durations: vector of interval = vector(10min, 30min, 1hr, 6hr, 12hr,
	    24hr);

	## Once the last of :zeek:see:`PyHunt::long_conn_durations` is crossed,
	## log the connection again each time this much longer has passed;
	## ``0secs`` stops after the last duration.
	option long_conn_repeat: interval = 24hr;

	## Connections from or to these networks are not reported (backup
	## servers, VPN concentrators and other known long talkers).
	option long_conn_ignore_nets: set[subnet] = {};

	## Whether each crossing also raises a notice (the log line is always
	## written).
	option long_conn_notice: bool = T;

	## Raised for every snapshot written to conn_long.log.
	##
	## c: The connection still in progress.
	##
	## rec: The snapshot that was logged.
	global long_conn_found: event(c: connection, rec: Conn::Info);
}

redef record connection += {
	## How many of the long-connection thresholds this connection has crossed.
	pyhunt_long_crossed: count &default=0;
};

event zeek_init() &priority=5
	{
	Log::create_stream(PyHunt::LONG_CONN_LOG, Log::Stream($columns=Conn::Info,
	    $path="conn_long", $policy=long_conn_log_policy));
	}

# The duration of the n-th threshold (n from 0), or a negative interval when
# there is none.
function long_conn_threshold(n: count): interval
	{
	local k = |long_conn_durations|;

	if ( n < k )
		return long_conn_durations[n];

	if ( k == 0 || long_conn_repeat <= 0secs )
		return -1sec;

	return long_conn_durations[k - 1] + long_conn_repeat * ( n + 1 - k );
	}

# Time until the next check: at least 10 seconds, so that a connection that
# went quiet just below a threshold is not polled in a tight loop.
function long_conn_wait(i: interval): interval
	{
	return i < 10sec ? 10sec : i;
	}

# A copy of the connection's conn.log record with the counters so far.
function long_conn_snapshot(c: connection): Conn::Info
	{
	local rec = copy(c$conn);

	rec$duration = c$duration;
	rec$orig_bytes = c$orig$size;
	rec$resp_bytes = c$resp$size;

	if ( c$orig?$num_pkts )
		{
		rec$orig_pkts = c$orig$num_pkts;
		rec$orig_ip_bytes = c$orig$num_bytes_ip;
		rec$resp_pkts = c$resp$num_pkts;
		rec$resp_ip_bytes = c$resp$num_bytes_ip;
		}

	if ( |c$service| > 0 )
		rec$service = to_lower(join_string_set(c$service, ","));

	if ( c$history != "" )
		rec$history = c$history;

	return rec;
	}

function long_conn_poll(c: connection, cnt: count): interval
	{
	if ( ! c?$conn )
		return -1sec;

	if ( c$id$orig_h in long_conn_ignore_nets
	    || c$id$resp_h in long_conn_ignore_nets )
		return -1sec;

	local threshold = long_conn_threshold(c$pyhunt_long_crossed);
	if ( threshold < 0secs )
		return -1sec;

	if ( c$duration < threshold )
		# Not there yet: the first check runs at the first threshold after
		# the connection started, and packets may have stopped since.
		return long_conn_wait(threshold - c$duration);

	local rec = long_conn_snapshot(c);
	Log::write(PyHunt::LONG_CONN_LOG, rec);
	event PyHunt::long_conn_found(c, rec);

	if ( long_conn_notice )
		{
		local msg = fmt("%s -> %s:%s up for %s", c$id$orig_h, c$id$resp_h,
		    c$id$resp_p, duration_to_mins_secs(c$duration));
		local secs = fmt("%.0f", interval_to_double(c$duration));
		NOTICE(Notice::Info($note=Long_Connection, $conn=c, $msg=msg, $sub=secs,
		    $identifier=cat(c$uid, c$pyhunt_long_crossed)));
		}

	++c$pyhunt_long_crossed;

	local next_threshold = long_conn_threshold(c$pyhunt_long_crossed);
	if ( next_threshold < 0secs )
		return -1sec;

	return long_conn_wait(next_threshold - c$duration);
	}

event new_connection(c: connection)
	{
	if ( |long_conn_durations| > 0 )
		ConnPolling::watch(c, long_conn_poll, 0, long_conn_durations[0]);
	}
