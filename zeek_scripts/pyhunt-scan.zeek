##! Scan detection: one host failing to connect to many hosts or ports.
##!
##! A TCP connection attempt that gets no answer (``S0``, reported by
##! ``connection_attempt``) or a reset (``REJ``, ``connection_rejected``)
##! counts as a failed attempt of its originator.  With the SumStats framework,
##! this script counts per scanner the distinct hosts it failed to reach on one
##! port (an address scan, or sweep) and the distinct ports it failed to reach
##! on one host (a port scan) within an interval, and raises
##! :zeek:see:`PyHunt::Address_Scan` or :zeek:see:`PyHunt::Port_Scan` when a
##! threshold is crossed.  It replaces Zeek's policy/misc/scan.zeek, which
##! local.zeek does not load, and keeps its notice semantics: ``src`` is the
##! scanner and the notice is suppressed per scanner for
##! :zeek:see:`Notice::default_suppression_interval`.

@load base/frameworks/notice
@load base/frameworks/sumstats
@load base/utils/site
@load base/utils/time

module PyHunt;

export {
	redef enum Notice::Type += {
		## A host failed to connect to at least
		## :zeek:see:`PyHunt::address_scan_threshold` distinct hosts on one
		## port within :zeek:see:`PyHunt::address_scan_interval`; ``p`` is
		## the port.
		Address_Scan,

		## A host failed to connect to at least
		## :zeek:see:`PyHunt::port_scan_threshold` distinct ports of one host
		## within :zeek:see:`PyHunt::port_scan_interval`; ``dst`` is the
		## host.
		Port_Scan,
	};

	## Distinct hosts on one port that make an address scan.
	const address_scan_threshold = 25 &redef;

	## Time window of the address-scan count.
	const address_scan_interval = 5min &redef;

	## Distinct ports on one host that make a port scan.
	const port_scan_threshold = 15 &redef;

	## Time window of the port-scan count.
	const port_scan_interval = 5min &redef;

	## Scanners that are never reported (vulnerability scanners, monitoring).
	option scan_ignore_scanners: set[subnet] = {};

	## Ports whose failed attempts are not counted (e.g. services that
	## clients routinely probe, such as 113/tcp ident).
	option scan_ignore_ports: set[port] = {};

	## A hook that can veto counting one failed attempt: break to skip it.
	##
	## scanner: The host that failed to connect.
	##
	## victim: The host it tried to reach.
	##
	## p: The port it tried to reach.
	global scan_policy: hook(scanner: addr, victim: addr, p: port);
}

const address_scan_stream = "pyhunt.scan.address";
const port_scan_stream = "pyhunt.scan.port";

function address_scan_value(key: SumStats::Key, result: SumStats::Result)
    : double
	{
	return result[address_scan_stream]$unique + 0.0;
	}

function address_scan_found(key: SumStats::Key, result: SumStats::Result)
	{
	local r = result[address_scan_stream];

	local side = Site::is_local_addr(key$host) ? "local" : "remote";
	local msg = fmt("%s failed to connect to %d hosts on port %s in %s", key$host,
	    r$unique, key$str, duration_to_mins_secs(r$end - r$begin));
	NOTICE(Notice::Info($note=Address_Scan, $src=key$host, $p=to_port(key$str),
	    $sub=side, $msg=msg, $identifier=cat(key$host)));
	}

function port_scan_value(key: SumStats::Key, result: SumStats::Result): double
	{
	return result[port_scan_stream]$unique + 0.0;
	}

function port_scan_found(key: SumStats::Key, result: SumStats::Result)
	{
	local r = result[port_scan_stream];

	local side = Site::is_local_addr(key$host) ? "local" : "remote";
	local msg = fmt("%s failed to connect to %d ports of %s in %s", key$host,
	    r$unique, key$str, duration_to_mins_secs(r$end - r$begin));
	NOTICE(Notice::Info($note=Port_Scan, $src=key$host, $dst=to_addr(key$str),
	    $sub=side, $msg=msg, $identifier=cat(key$host)));
	}

event zeek_init() &priority=5
	{
	local unique = set(SumStats::UNIQUE);
	local addr_reducer = SumStats::Reducer($stream=address_scan_stream,
	    $apply=unique, $unique_max=address_scan_threshold + 2);
	SumStats::create(SumStats::SumStat($name="pyhunt-address-scan",
	    $epoch=address_scan_interval, $reducers=set(addr_reducer),
	    $threshold=address_scan_threshold + 0.0,
	    $threshold_val=address_scan_value,
	    $threshold_crossed=address_scan_found));

	local port_reducer = SumStats::Reducer($stream=port_scan_stream, $apply=unique,
	    $unique_max=port_scan_threshold + 2);
	SumStats::create(SumStats::SumStat($name="pyhunt-port-scan",
	    $epoch=port_scan_interval, $reducers=set(port_reducer),
	    $threshold=port_scan_threshold + 0.0,
	    $threshold_val=port_scan_value,
	    $threshold_crossed=port_scan_found));
	}

function failed_attempt(c: connection)
	{
	local scanner = c$id$orig_h;
	local victim = c$id$resp_h;
	local p = c$id$resp_p;

	if ( scanner in scan_ignore_scanners || p in scan_ignore_ports )
		return;

	if ( ! hook scan_policy(scanner, victim, p) )
		return;

	local p_str = cat(p);
	local victim_str = cat(victim);
	SumStats::observe(address_scan_stream, SumStats::Key($host=scanner,
	    $str=p_str), SumStats::Observation($str=victim_str));
	SumStats::observe(port_scan_stream, SumStats::Key($host=scanner,
	    $str=victim_str), SumStats::Observation($str=p_str));
	}

event connection_attempt(c: connection)
	{
	failed_attempt(c);
	}

event connection_rejected(c: connection)
	{
	failed_attempt(c);
	}
