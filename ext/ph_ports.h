/*
 * ph_ports.h -- Zeek's likely_server_ports, as a default Zeek (`zeek -r`,
 * i.e. base/init-default.zeek loaded) has it after zeek_init.
 *
 * Target: Zeek 9.1.0-dev, commit a13de64fbbdb01f90961c04719b308fbbb6d199e
 * (the parity baselines in shared/zeek-parity). That exact commit is not in the
 * source index that was available, so the lists were read from the newest
 * stored versions of Zeek's scripts (after zeek/zeek PR #5093 "Allow port
 * redefs for built-in analyzers", merged for 8.1, and PR #5291 "Add SMTPS port
 * to well-known ports", merged 2026-03) and checked against the parity
 * baselines (no baseline contradicts them; see docs/zeek-server-ports.md).
 *
 * Files read (zeek/zeek): scripts/base/frameworks/analyzer/main.zeek
 * (Analyzer::register_for_ports), scripts/base/packet-protocols/main.zeek
 * (PacketAnalyzer::register_for_ports), scripts/base/init-default.zeek and
 * doc/scripts/base/init-default.zeek.rst (what a default Zeek loads),
 * testing/btest/Baseline/coverage.default-load-baseline, the main.zeek of
 * every base/protocols/<name> package listed below, base/packet-protocols/{ayiya,
 * geneve,gtpv1,teredo,vxlan}/main.zeek, src/spicy/manager.cc (ports declared
 * in .evt files are registered in the core only, never added here),
 * base/protocols/conn/inactivity.zeek.
 *
 * How the set is built (facts, not code):
 *  - init-bare declares likely_server_ports (const set[port] &redef) empty.
 *  - Since PR #5093 Analyzer::register_for_ports(tag, server_ports,
 *    non_server_ports) and PacketAnalyzer::register_for_ports(parent, child,
 *    server_ports, non_server_ports) add *every* server port they are given to
 *    likely_server_ports; the optional non-server ports are registered for the
 *    analyzer but not added. Analyzer::register_for_port (singular) and ports
 *    from Spicy .evt files do not add anything. Of the base scripts read,
 *    only DHCP (68/udp) and QUIC (DoQ 784/udp, 853/udp) pass non-server ports.
 *  - So the set is the union of the server ports of the loaded scripts. The
 *    tunnel packet analyzers are loaded by init-bare itself, so their UDP ports
 *    are present even with -b.
 *  - Analyzers with no port registration contribute nothing: POP3 (110/tcp is
 *    found by DPD signature only), RFB, NTLM, WebSocket, base/protocols/tunnels.
 *    DHCPv6 (546/547) is not in this Zeek (core.pppoe's 547->546 flow is not
 *    flipped).
 *
 * Bare mode (-b): only the scripts a test loads count. ph_zeek_port_regs
 * lists each port with the script whose loading registers it; a -b set is the
 * rows of "base/init-bare" plus the rows of every loaded base/protocols/<x>
 * (and of its dependencies: base/protocols/ftp also loads base/protocols/ssl).
 * The two flat arrays below are the union of all rows.
 *
 * Least certain entries: 465/tcp (added by PR #5291), 4011/udp (DHCP server
 * port since PR #5093; before, only 67/udp), 514/tcp (SYSLOG_TCP analyzer),
 * 5432/tcp and 6379/tcp (PostgreSQL and Redis are in init-default in the
 * newest stored docs; an older load baseline has PostgreSQL but not Redis).
 * No parity trace has traffic on any of these ports.
 *
 * Test-local additions are not included, e.g. the btest
 * scripts.base.protocols.rpc.max-pending-calls registers MOUNT on 111/tcp.
 *
 * Generated (sorted, one comment per port naming the analyzer(s)); keep the
 * table and the flat arrays in step.
 */
#ifndef PH_PORTS_H
#define PH_PORTS_H

#include <stdint.h>

/* ---- default Zeek: likely_server_ports, TCP ---- */
static const uint16_t ph_zeek_tcp_server_ports[] = {
       21, /* FTP */
       22, /* SSH */
       25, /* SMTP */
       53, /* DNS */
       79, /* Finger */
       80, /* HTTP */
       81, /* HTTP */
       88, /* KRB_TCP */
      135, /* DCE_RPC */
      139, /* SMB */
      143, /* IMAP */
      389, /* LDAP_TCP */
      443, /* SSL */
      445, /* SMB */
      465, /* SSL */
      502, /* Modbus */
      514, /* SYSLOG_TCP */
      563, /* SSL */
      585, /* SSL */
      587, /* SMTP */
      614, /* SSL */
      631, /* HTTP */
      636, /* SSL */
      989, /* SSL */
      990, /* SSL */
      992, /* SSL */
      993, /* SSL */
      995, /* SSL */
     1080, /* HTTP, SOCKS */
     1434, /* MySQL */
     1883, /* MQTT */
     2811, /* FTP */
     3128, /* HTTP */
     3268, /* LDAP_TCP */
     3306, /* MySQL */
     3389, /* RDP */
     5222, /* XMPP */
     5223, /* SSL */
     5269, /* XMPP */
     5432, /* PostgreSQL */
     6379, /* Redis */
     6666, /* IRC */
     6667, /* IRC */
     6668, /* IRC */
     6669, /* IRC */
     8000, /* HTTP */
     8080, /* HTTP */
     8888, /* HTTP */
    20000, /* DNP3_TCP */
};
#define PH_ZEEK_N_TCP_SERVER_PORTS (sizeof(ph_zeek_tcp_server_ports) / sizeof(ph_zeek_tcp_server_ports[0]))

/* ---- default Zeek: likely_server_ports, UDP ---- */
static const uint16_t ph_zeek_udp_server_ports[] = {
       53, /* DNS */
       67, /* DHCP */
       88, /* KRB */
      123, /* NTP */
      137, /* DNS */
      161, /* SNMP */
      162, /* SNMP */
      389, /* LDAP_UDP */
      443, /* QUIC, DTLS */
      514, /* Syslog */
     1812, /* RADIUS */
     2123, /* GTPv1 tunnel */
     2152, /* GTPv1 tunnel */
     3389, /* RDPEUDP */
     3544, /* Teredo tunnel */
     4011, /* DHCP */
     4789, /* VXLAN tunnel */
     5060, /* SIP */
     5072, /* AYIYA tunnel */
     5353, /* DNS */
     5355, /* DNS */
     6081, /* Geneve tunnel */
    20000, /* DNP3_TCP */
};
#define PH_ZEEK_N_UDP_SERVER_PORTS (sizeof(ph_zeek_udp_server_ports) / sizeof(ph_zeek_udp_server_ports[0]))

/* ---- per-script registrations, for building bare-mode (-b) sets ---- */
typedef struct ph_zeek_port_reg {
    const char *script; /* loading this registers the port ("base/init-bare" = always, even -b) */
    uint8_t proto;      /* IP protocol: 6 TCP, 17 UDP */
    uint16_t port;
} ph_zeek_port_reg;

static const ph_zeek_port_reg ph_zeek_port_regs[] = {
    /* AYIYA tunnel */
    { "base/init-bare", 17, 5072 },
    /* Geneve tunnel */
    { "base/init-bare", 17, 6081 },
    /* GTPv1 tunnel */
    { "base/init-bare", 17, 2123 },
    { "base/init-bare", 17, 2152 },
    /* Teredo tunnel */
    { "base/init-bare", 17, 3544 },
    /* VXLAN tunnel */
    { "base/init-bare", 17, 4789 },
    /* DCE_RPC */
    { "base/protocols/dce-rpc", 6, 135 },
    /* DHCP (68/udp is registered as a client port: not a server port) */
    { "base/protocols/dhcp", 17, 67 },
    { "base/protocols/dhcp", 17, 4011 },
    /* tcp: DNP3_TCP; udp: DNP3_TCP (the udp port is registered with the DNP3_TCP tag too) */
    { "base/protocols/dnp3", 6, 20000 },
    { "base/protocols/dnp3", 17, 20000 },
    /* DNS */
    { "base/protocols/dns", 6, 53 },
    { "base/protocols/dns", 17, 53 },
    { "base/protocols/dns", 17, 137 },
    { "base/protocols/dns", 17, 5353 },
    { "base/protocols/dns", 17, 5355 },
    /* Finger */
    { "base/protocols/finger", 6, 79 },
    /* FTP (ftp/gridftp.zeek also loads base/protocols/ssl) */
    { "base/protocols/ftp", 6, 21 },
    { "base/protocols/ftp", 6, 2811 },
    /* HTTP */
    { "base/protocols/http", 6, 80 },
    { "base/protocols/http", 6, 81 },
    { "base/protocols/http", 6, 631 },
    { "base/protocols/http", 6, 1080 },
    { "base/protocols/http", 6, 3128 },
    { "base/protocols/http", 6, 8000 },
    { "base/protocols/http", 6, 8080 },
    { "base/protocols/http", 6, 8888 },
    /* IMAP */
    { "base/protocols/imap", 6, 143 },
    /* IRC */
    { "base/protocols/irc", 6, 6666 },
    { "base/protocols/irc", 6, 6667 },
    { "base/protocols/irc", 6, 6668 },
    { "base/protocols/irc", 6, 6669 },
    /* tcp: KRB_TCP; udp: KRB (Kerberos) */
    { "base/protocols/krb", 6, 88 },
    { "base/protocols/krb", 17, 88 },
    /* tcp: LDAP_TCP; udp: LDAP_UDP */
    { "base/protocols/ldap", 6, 389 },
    { "base/protocols/ldap", 6, 3268 },
    { "base/protocols/ldap", 17, 389 },
    /* Modbus */
    { "base/protocols/modbus", 6, 502 },
    /* MQTT */
    { "base/protocols/mqtt", 6, 1883 },
    /* MySQL */
    { "base/protocols/mysql", 6, 1434 },
    { "base/protocols/mysql", 6, 3306 },
    /* NTP */
    { "base/protocols/ntp", 17, 123 },
    /* PostgreSQL */
    { "base/protocols/postgresql", 6, 5432 },
    /* QUIC (DoQ 784,853/udp registered as non-server ports) */
    { "base/protocols/quic", 17, 443 },
    /* RADIUS */
    { "base/protocols/radius", 17, 1812 },
    /* tcp: RDP; udp: RDPEUDP */
    { "base/protocols/rdp", 6, 3389 },
    { "base/protocols/rdp", 17, 3389 },
    /* Redis */
    { "base/protocols/redis", 6, 6379 },
    /* SIP */
    { "base/protocols/sip", 17, 5060 },
    /* SMB */
    { "base/protocols/smb", 6, 139 },
    { "base/protocols/smb", 6, 445 },
    /* SMTP */
    { "base/protocols/smtp", 6, 25 },
    { "base/protocols/smtp", 6, 587 },
    /* SNMP */
    { "base/protocols/snmp", 17, 161 },
    { "base/protocols/snmp", 17, 162 },
    /* SOCKS */
    { "base/protocols/socks", 6, 1080 },
    /* SSH */
    { "base/protocols/ssh", 6, 22 },
    /* tcp: SSL; udp: DTLS */
    { "base/protocols/ssl", 6, 443 },
    { "base/protocols/ssl", 6, 465 },
    { "base/protocols/ssl", 6, 563 },
    { "base/protocols/ssl", 6, 585 },
    { "base/protocols/ssl", 6, 614 },
    { "base/protocols/ssl", 6, 636 },
    { "base/protocols/ssl", 6, 989 },
    { "base/protocols/ssl", 6, 990 },
    { "base/protocols/ssl", 6, 992 },
    { "base/protocols/ssl", 6, 993 },
    { "base/protocols/ssl", 6, 995 },
    { "base/protocols/ssl", 6, 5223 },
    { "base/protocols/ssl", 17, 443 },
    /* tcp: SYSLOG_TCP; udp: Syslog */
    { "base/protocols/syslog", 6, 514 },
    { "base/protocols/syslog", 17, 514 },
    /* XMPP */
    { "base/protocols/xmpp", 6, 5222 },
    { "base/protocols/xmpp", 6, 5269 },
};
#define PH_ZEEK_N_PORT_REGS (sizeof(ph_zeek_port_regs) / sizeof(ph_zeek_port_regs[0]))

/* Script dependencies that pull in more registrations (loaded -> also loads). */
static const char *const ph_zeek_script_deps[][2] = {
    { "base/protocols/ftp", "base/protocols/ssl" }, /* ftp/gridftp.zeek @loads base/protocols/ssl */
};
#define PH_ZEEK_N_SCRIPT_DEPS (sizeof(ph_zeek_script_deps) / sizeof(ph_zeek_script_deps[0]))

/* Registered for an analyzer but NOT likely server ports (UDP): DHCP client
 * port and DNS-over-QUIC. Listed for reference only. */
static const uint16_t ph_zeek_udp_non_server_ports[] = { 68, 784, 853 };
#define PH_ZEEK_N_UDP_NON_SERVER_PORTS (sizeof(ph_zeek_udp_non_server_ports) / sizeof(ph_zeek_udp_non_server_ports[0]))

/* base/protocols/conn/inactivity.zeek: TCP ports whose connections get a 1 h
 * inactivity timeout once established (checked against resp_p; for a
 * half-established connection, against orig_p when resp_p is not a likely
 * server port and orig_p is). The SSH and FTP analyzers also set 1 h on
 * confirmation, whatever the port. */
static const uint16_t ph_zeek_long_inactivity_tcp_ports[] = { 21, 22, 23, 513 };
#define PH_ZEEK_N_LONG_INACTIVITY_TCP_PORTS (sizeof(ph_zeek_long_inactivity_tcp_ports) / sizeof(ph_zeek_long_inactivity_tcp_ports[0]))
#define PH_ZEEK_LONG_INACTIVITY_S 3600

#endif /* PH_PORTS_H */
