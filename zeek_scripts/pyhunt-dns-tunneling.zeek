##! DNS tunneling heuristics: long or random-looking query names.
##!
##! Tools that carry data over DNS (iodine, dnscat2, DNS exfiltration by
##! malware) encode it in the labels left of a domain they control, which
##! makes the query names long and their characters close to random.  For
##! every dns.log line this script records the length of the query name and
##! the Shannon entropy (bits per character) of its subdomain part, the labels
##! left of the last :zeek:see:`PyHunt::dns_tunnel_domain_labels` ones; it
##! marks the line ``pyhunt_dns_tunnel`` and raises a
##! :zeek:see:`PyHunt::DNS_Tunneling` notice when the name is at least
##! :zeek:see:`PyHunt::dns_tunnel_max_query_length` long, or has a label of
##! at least :zeek:see:`PyHunt::dns_tunnel_max_label_length`, or its subdomain
##! is at least :zeek:see:`PyHunt::dns_tunnel_min_subdomain_length` long with
##! an entropy of at least :zeek:see:`PyHunt::dns_tunnel_min_entropy`.  The
##! notice is suppressed per client and domain.  The domain is approximated by
##! the last labels (no public suffix list): raise the label count for sites
##! under two-label suffixes such as co.uk.

@load base/frameworks/notice
@load base/protocols/dns

module PyHunt;

export {
	redef enum Notice::Type += {
		## A DNS query name looks like data tunnelled through DNS; ``sub``
		## holds the query and ``msg`` the reason.
		DNS_Tunneling,
	};

	## Query names at least this long are reported (DNS allows 253).
	option dns_tunnel_max_query_length: count = 90;

	## Query names with a label at least this long are reported (DNS allows
	## 63).
	option dns_tunnel_max_label_length: count = 50;

	## Entropy, in bits per character, from which a subdomain is reported.
	## Random base32 or hex data reaches 4 to 5; words stay near 3.
	option dns_tunnel_min_entropy: double = 4.0;

	## Shorter subdomains are not judged by entropy (a short string cannot
	## reach a high entropy, and short random names are common).
	option dns_tunnel_min_subdomain_length: count = 24;

	## How many labels, from the right, form the domain (2: example.com).
	option dns_tunnel_domain_labels: count = 2;

	## Domains (as formed with :zeek:see:`PyHunt::dns_tunnel_domain_labels`)
	## that are never reported: services that encode data in names by
	## design, e.g. anti-virus reputation lookups.
	option dns_tunnel_ignore_domains: set[string] = {};

	## Raised for every query name that meets a heuristic.
	##
	## rec: The dns.log line.
	##
	## domain: The domain part of the name.
	##
	## reason: Which heuristic fired.
	global dns_tunnel_found: event(rec: DNS::Info, domain: string, reason: string);

	redef record DNS::Info += {
		## Length of the query name.
		pyhunt_query_length: count &log &optional;
		## Shannon entropy, in bits per character, of the query name's
		## subdomain part (unset when there is none).
		pyhunt_subdomain_entropy: double &log &optional;
		## T when the name met a tunneling heuristic.
		pyhunt_dns_tunnel: bool &log &optional;
	};
}

# Judges a query name: returns the reason it looks like tunneling, or "".
function dns_tunnel_reason(rec: DNS::Info, labels: string_vec,
    subdomain: string): string
	{
	if ( rec$pyhunt_query_length >= dns_tunnel_max_query_length )
		return fmt("query name of %d characters", rec$pyhunt_query_length);

	for ( i in labels )
		if ( |labels[i]| >= dns_tunnel_max_label_length )
			return fmt("label of %d characters", |labels[i]|);

	if ( ! rec?$pyhunt_subdomain_entropy
	    || |subdomain| < dns_tunnel_min_subdomain_length )
		return "";

	local h = rec$pyhunt_subdomain_entropy;
	if ( h >= dns_tunnel_min_entropy )
		return fmt("subdomain entropy %.2f bits per character", h);

	return "";
	}

hook DNS::log_policy(rec: DNS::Info, id: Log::ID, filter: Log::Filter)
	{
	# Runs once per filter of the stream: compute once.
	if ( ! rec?$query || rec?$pyhunt_query_length )
		return;

	local query = to_lower(rec$query);
	rec$pyhunt_query_length = |query|;

	local labels = split_string(query, /\./);
	local n = |labels|;
	local k = dns_tunnel_domain_labels;
	local domain = query;
	local subdomain = "";

	if ( n > k )
		{
		domain = join_string_vec(labels[n - k : n], ".");
		# The subdomain without its dots, so that they do not lower the entropy.
		subdomain = join_string_vec(labels[0 : n - k], "");
		if ( subdomain != "" )
			rec$pyhunt_subdomain_entropy = find_entropy(subdomain)$entropy;
		}

	if ( domain in dns_tunnel_ignore_domains )
		return;

	local reason = dns_tunnel_reason(rec, labels, subdomain);
	if ( reason == "" )
		return;

	rec$pyhunt_dns_tunnel = T;
	# Queued: the notice is written after this dns.log line, not from inside
	# its policy hook.
	event PyHunt::dns_tunnel_found(rec, domain, reason);
	}

event PyHunt::dns_tunnel_found(rec: DNS::Info, domain: string, reason: string)
	{
	local msg = fmt("%s queried %s: %s", rec$id$orig_h, domain, reason);
	NOTICE(Notice::Info($note=DNS_Tunneling, $uid=rec$uid, $id=rec$id, $msg=msg,
	    $sub=rec$query, $identifier=cat(rec$id$orig_h, domain)));
	}
