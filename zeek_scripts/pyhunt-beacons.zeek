##! Beacon candidates: connections repeated at a regular interval.
##!
##! Malware that polls its command-and-control server opens connections from
##! the same host to the same server and port at a nearly constant period,
##! often with some jitter.  For each (originator, responder, responder port)
##! this script keeps the running mean and standard deviation of the time
##! between connection starts (Welford's method, in constant memory per key).
##! When at least :zeek:see:`PyHunt::beacon_min_intervals` intervals have
##! been seen and their coefficient of variation (standard deviation / mean)
##! is at most :zeek:see:`PyHunt::beacon_max_cv`, the key is a beacon
##! candidate: one line goes to ``pyhunt_beacon.log``, a
##! :zeek:see:`PyHunt::Beacon_Candidate` notice is raised, and from then on the
##! key's connections are marked ``pyhunt_beacon`` in conn.log.  Connections
##! that start less than :zeek:see:`PyHunt::beacon_burst_interval` after the
##! previous one count as one burst.  State is bounded by
##! :zeek:see:`PyHunt::beacon_max_tracked` keys, each forgotten after
##! :zeek:see:`PyHunt::beacon_idle_expire` without a connection.

@load base/frameworks/notice
@load base/protocols/conn
@load base/utils/site

module PyHunt;

export {
	## The beacon-candidate logging stream (``pyhunt_beacon.log``).
	redef enum Log::ID += { BEACON_LOG };

	## A default logging policy hook for the beacon stream.
	global beacon_log_policy: Log::PolicyHook;

	redef enum Notice::Type += {
		## Connections from one host to one server and port repeat at a
		## regular interval; ``sub`` holds the mean interval in seconds.
		Beacon_Candidate,
	};

	## One line of pyhunt_beacon.log: a beacon candidate, written once per
	## key for as long as the key is tracked.
	type BeaconInfo: record {
		## Start of the connection that made the key a candidate.
		ts: time &log;
		## uid of that connection.
		uid: string &log;
		## The beaconing host.
		orig_h: addr &log;
		## The server it contacts.
		resp_h: addr &log;
		## The server's port.
		resp_p: port &log;
		## The transport protocol of the port.
		proto: transport_proto &log;
		## Start of the first connection of the series.
		first_seen: time &log;
		## Connections (bursts) seen in the series so far.
		connections: count &log;
		## Mean time between connection starts.
		interval_mean: interval &log;
		## Population standard deviation of the time between starts.
		interval_std: interval &log;
		## interval_std / interval_mean (0 is a perfect clock).
		interval_cv: double &log;
	};

	## Intervals between connections (so connections minus one) needed before
	## a key can be a candidate.
	option beacon_min_intervals: count = 6;

	## Largest coefficient of variation (standard deviation / mean of the
	## intervals) of a candidate; 0.1 allows about 10% jitter.
	option beacon_max_cv: double = 0.1;

	## Connections starting closer than this to the previous one belong to
	## the same burst (a client opening several connections at once).
	option beacon_burst_interval: interval = 10sec;

	## Series with a longer mean interval are not reported.
	option beacon_max_interval: interval = 6hr;

	## Responder ports that are periodic by design and never reported (DNS,
	## NTP, NetBIOS, mDNS, SSDP).
	option beacon_ignore_ports: set[port] = {
		53/udp,
		123/udp,
		137/udp,
		138/udp,
		5353/udp,
		1900/udp
	};

	## Networks never reported, on either side.
	option beacon_ignore_nets: set[subnet] = {};

	## When :zeek:see:`Site::local_nets` is set, only track connections from a
	## local originator to a non-local responder (the usual beacon); without
	## local networks every connection is tracked.
	option beacon_outbound_only: bool = T;

	## At most this many keys are tracked; new keys are ignored beyond it.
	const beacon_max_tracked = 500000 &redef;

	## A key is forgotten after this long without a new connection.
	const beacon_idle_expire = 12hr &redef;

	## Raised once per candidate, with the line written to pyhunt_beacon.log.
	##
	## rec: The beacon candidate.
	global beacon_found: event(rec: BeaconInfo);

	redef record Conn::Info += {
		## T when the connection's originator, responder and port were a
		## beacon candidate when it ended (see pyhunt-beacons.zeek).
		pyhunt_beacon: bool &log &optional;
	};
}

# Running statistics of one (originator, responder, port) key.
type BeaconState: record {
	first: time;
	last: time;
	connections: count &default=1;
	intervals: count &default=0;
	mean: double &default=0.0;
	m2: double &default=0.0;
	reported: bool &default=F;
};

global beacon_state: table[addr, addr, port] of BeaconState
    &read_expire=beacon_idle_expire;

event zeek_init() &priority=5
	{
	Log::create_stream(PyHunt::BEACON_LOG, Log::Stream($columns=BeaconInfo,
	    $path="pyhunt_beacon", $policy=beacon_log_policy));
	}

function beacon_tracked(id: conn_id): bool
	{
	if ( id$resp_p in beacon_ignore_ports )
		return F;

	if ( id$orig_h in beacon_ignore_nets || id$resp_h in beacon_ignore_nets )
		return F;

	if ( beacon_outbound_only && |Site::local_nets| > 0 )
		return Site::is_local_addr(id$orig_h) && ! Site::is_local_addr(id$resp_h);

	return T;
	}

event new_connection(c: connection)
	{
	local id = c$id;

	if ( ! beacon_tracked(id) )
		return;

	if ( [id$orig_h, id$resp_h, id$resp_p] !in beacon_state )
		{
		if ( |beacon_state| < beacon_max_tracked )
			beacon_state[id$orig_h, id$resp_h, id$resp_p] = BeaconState(
			    $first=c$start_time, $last=c$start_time);
		return;
		}

	local s = beacon_state[id$orig_h, id$resp_h, id$resp_p];
	local gap = c$start_time - s$last;

	if ( gap < beacon_burst_interval )
		return;

	# Welford's update of the mean and of the sum of squared deviations.
	local x = interval_to_double(gap);
	++s$intervals;
	++s$connections;
	s$last = c$start_time;
	local delta = x - s$mean;
	s$mean += delta / s$intervals;
	s$m2 += delta * ( x - s$mean );

	if ( s$reported || s$intervals < beacon_min_intervals || s$mean <= 0.0 )
		return;

	local std = sqrt(s$m2 / s$intervals);
	local cv = std / s$mean;

	if ( cv > beacon_max_cv || s$mean > interval_to_double(beacon_max_interval) )
		return;

	s$reported = T;

	local mean = double_to_interval(s$mean);
	local rec = BeaconInfo($ts=c$start_time, $uid=c$uid, $orig_h=id$orig_h,
	    $resp_h=id$resp_h, $resp_p=id$resp_p,
	    $proto=get_port_transport_proto(id$resp_p), $first_seen=s$first,
	    $connections=s$connections, $interval_mean=mean,
	    $interval_std=double_to_interval(std), $interval_cv=cv);

	Log::write(PyHunt::BEACON_LOG, rec);
	event PyHunt::beacon_found(rec);

	local msg = fmt("%s -> %s:%s every %.1fs (cv %.3f) over %d connections",
	    id$orig_h, id$resp_h, id$resp_p, s$mean, cv, s$connections);
	NOTICE(Notice::Info($note=Beacon_Candidate, $conn=c, $msg=msg, $sub=fmt("%.1f",
	    s$mean), $identifier=cat(id$orig_h, id$resp_h, id$resp_p)));
	}

# Between Conn's set_conn (priority 5) and its Log::write (priority -5).
event connection_state_remove(c: connection)
	{
	local id = c$id;

	if ( ! c?$conn || [id$orig_h, id$resp_h, id$resp_p] !in beacon_state )
		return;

	if ( beacon_state[id$orig_h, id$resp_h, id$resp_p]$reported )
		c$conn$pyhunt_beacon = T;
	}
