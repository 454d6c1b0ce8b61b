##! Sensor settings that Kubernetes passes to Zeek through the environment.
##!
##! Zeek and pyhunt run side by side in the sensor pod and both read the
##! ``pyhunt-sensor-config`` ConfigMap, so the ``PYHUNT_*`` variables that
##! matter to both (capture filter, mode, VXLAN port, Community ID seed, local
##! networks, log directory) have one value for both programs.  Zeek-only
##! settings use ``ZEEK_*`` names.  Constants are read once, when the scripts
##! are parsed; an unset or empty variable keeps the default written here.  The
##! interface itself is Zeek's ``-i af_packet::$(PYHUNT_INTERFACE)`` argument.
##! docs/sensor-config.md in the pyhunt repository lists every variable.

@load base/frameworks/logging
@load base/frameworks/packet-filter
@load base/frameworks/tunnels
@load base/utils/site
@load policy/protocols/conn/community-id-logging

module PyHunt;

export {
	## Parses a comma- or space-separated list of CIDRs into a set; reports
	## and skips entries that are not subnets.
	##
	## s: The list, e.g. ``"10.0.0.0/8, 192.168.0.0/16"``.
	##
	## Returns: The subnets of *s*.
	global parse_subnets: function(s: string): set[subnet];
}

# The environment, read once at parse time (an empty string when unset).
const env_log_dir = getenv("PYHUNT_ZEEK_LOG_DIR");
const env_local_nets = getenv("PYHUNT_LOCAL_NETS");
const env_cid_seed = getenv("PYHUNT_CID_SEED");
const env_bpf_filter = getenv("PYHUNT_BPF_FILTER");
const env_mode = getenv("PYHUNT_MODE");
const env_vxlan_port = getenv("PYHUNT_VXLAN_PORT") == "" ? "4789" : getenv(
    "PYHUNT_VXLAN_PORT");
const env_geneve_port = getenv("PYHUNT_GENEVE_PORT") == "" ? "6081" : getenv(
    "PYHUNT_GENEVE_PORT");
const env_buffer_size = getenv("ZEEK_AF_PACKET_BUFFER_SIZE");
const env_fanout_id = getenv("ZEEK_AF_PACKET_FANOUT_ID");
const env_ignore_checksums = getenv("ZEEK_IGNORE_CHECKSUMS");

# Where logs go: the emptyDir volume shared with pyhunt (empty: the working
# directory).
redef Log::default_logdir = env_log_dir;

# The Community ID seed must match pyhunt's (PYHUNT_CID_SEED, default 0) so
# that conn.log and pyhunt's flows join on network.community_id.
redef CommunityID::seed = env_cid_seed == "" ? 0 : to_count(env_cid_seed);

# AF_PACKET ring size in bytes (ZEEK_AF_PACKET_BUFFER_SIZE, default 128 MiB).
redef AF_Packet::buffer_size = env_buffer_size == "" ? 134217728 : to_count(
    env_buffer_size);

# PACKET_FANOUT group (ZEEK_AF_PACKET_FANOUT_ID, default 23).  Zeek and pyhunt
# capture the same interface in the same (host) network namespace: their groups
# must differ, or the kernel would split the packets between the two programs
# instead of giving each all of them.
redef AF_Packet::fanout_id = env_fanout_id == "" ? 23 : to_count(env_fanout_id);

# Ignore bad IP/TCP/UDP checksums (ZEEK_IGNORE_CHECKSUMS=true, as zeek -C), for
# taps behind checksum offloading.  Off by default, as in pyhunt.
redef ignore_checksums = env_ignore_checksums == "true";

# Local networks (PYHUNT_LOCAL_NETS, comma- or space-separated CIDRs) are merged
# into Site::local_nets at startup.  When they are given, Zeek's private address
# space stops being local by itself, so that Zeek's local_orig/local_resp match
# pyhunt's network.direction.
redef Site::private_address_space_is_local = env_local_nets == "";

# The capture filter that pyhunt applies too (PYHUNT_BPF_FILTER).
@if ( env_bpf_filter != "" )
redef restrict_filters += {["pyhunt"] = env_bpf_filter};
@endif

# In vxlan-listener mode the mirrored traffic arrives as VXLAN on
# PYHUNT_VXLAN_PORT of the node's interface: pyhunt receives it on a UDP
# socket, Zeek captures it on that interface and decapsulates it itself.
@if ( env_mode == "vxlan-listener" )
redef Tunnel::vxlan_ports += {to_port(cat(env_vxlan_port, "/udp"))};
@if ( env_bpf_filter == "" )
redef restrict_filters += {["pyhunt-vxlan"] = cat("udp dst port ",
    env_vxlan_port)};
@endif
@endif

# The same for GENEVE (geneve-listener mode, PYHUNT_GENEVE_PORT).
@if ( env_mode == "geneve-listener" )
redef Tunnel::geneve_ports += {to_port(cat(env_geneve_port, "/udp"))};
@if ( env_bpf_filter == "" )
redef restrict_filters += {["pyhunt-geneve"] = cat("udp dst port ",
    env_geneve_port)};
@endif
@endif

function parse_subnets(s: string): set[subnet]
	{
	local nets: set[subnet] = set();
	local items = split_string(s, /[ ,]+/);

	for ( i in items )
		{
		local item = items[i];
		if ( item == "" )
			next;

		local parts = split_string(item, /\//);
		if ( |parts| == 2 && is_valid_ip(parts[0]) && /^[0-9]+$/ == parts[1] )
			add nets[to_subnet(item)];
		else
			Reporter::warning(fmt("PYHUNT_LOCAL_NETS: ignored %s (not a subnet)", item));
		}

	return nets;
	}

# Before Site's own zeek_init (priority 10) builds its lookup table.
event zeek_init() &priority=20
	{
	local nets = parse_subnets(env_local_nets);

	if ( |nets| > 0 )
		Option::set("Site::local_nets", Site::local_nets | nets);
	}
