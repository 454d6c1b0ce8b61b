##! pyhunt's Zeek site policy, loaded by ``zeek -i af_packet::<interface> local``.
##!
##! Kubernetes mounts the ``pyhunt-zeek-scripts`` ConfigMap, generated from
##! zeek_scripts/ in the pyhunt repository, over Zeek's site directory, so this
##! file replaces the stock ``local.zeek``.  It makes Zeek write JSON logs into
##! the directory that pyhunt ships to Elasticsearch, adds Community ID, VLAN and
##! MAC fields to conn.log and loads pyhunt's hunting scripts.  Settings that
##! differ per deployment come from the environment (pyhunt-sensor.zeek); the
##! thresholds of the hunting scripts are documented ``&redef`` constants and
##! ``option`` values in each script, overridable with ``redef`` below.

# Logs: one JSON object per line, timestamps in ISO 8601 so that Elasticsearch
# maps them as dates without an ingest pipeline.
redef LogAscii::use_json = T;
redef LogAscii::json_timestamps = JSON::TS_ISO8601;

# Rotate every 15 minutes: the current file is renamed to
# <log>.<YYYY-MM-DD-HH-MM-SS>.log beside it (no post-processor runs) and pyhunt
# deletes a rotated file once it has shipped all of it, which bounds the shared
# log volume.
redef Log::default_rotation_interval = 15min;

# Zeek's usual standalone policy: script inventory, tuning, and the packet loss
# and drop statistics (capture_loss.log, stats.log) used to troubleshoot drops.
@load policy/misc/loaded-scripts
@load policy/tuning/defaults
@load policy/misc/capture-loss
@load policy/misc/stats

# Connection context that pyhunt's flows carry as well: Community ID (seed from
# PYHUNT_CID_SEED, default 0, as pyhunt), 802.1Q VLAN ids and link-layer
# addresses, and the Community ID on notices.
@load policy/protocols/conn/community-id-logging
@load policy/frameworks/notice/community-id
@load policy/protocols/conn/vlan-logging
@load policy/protocols/conn/mac-logging

# Environment-driven sensor settings (interface options, filter, local
# networks, log directory), then pyhunt's hunting scripts.  Zeek's own
# policy/misc/scan is deliberately not loaded: pyhunt-scan replaces it.
@load ./pyhunt-sensor
@load ./pyhunt-long-connections
@load ./pyhunt-beacons
@load ./pyhunt-scan
@load ./pyhunt-dns-tunneling
