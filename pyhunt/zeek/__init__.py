"""Zeek log shipping: tail Zeek's log directory, map each record to ECS, send it to Elasticsearch.

``parse`` reads JSON and TSV log lines, ``ecs`` maps records to documents (one table, documented in
docs/sensor-config.md), ``tail`` follows the files across rotations with durable checkpoints and
``shipper`` ties them to the Elasticsearch bulk writer.
"""
from pyhunt.zeek.ecs import ROWS, to_document
from pyhunt.zeek.parse import LineError, TsvHeader, parse_json
from pyhunt.zeek.shipper import ZeekShipper, ZeekStats, index_for, line_id
from pyhunt.zeek.tail import Tailer

__all__ = ["ROWS", "to_document", "LineError", "TsvHeader", "parse_json", "ZeekShipper", "ZeekStats",
           "index_for", "line_id", "Tailer"]
