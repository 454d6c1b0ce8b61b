"""Import pyhunt's Kibana saved objects: data views and the threat-hunting dashboard.

The objects ship in the package as ``pyhunt/data/kibana-saved-objects.ndjson`` (written by
``kibana/make_saved_objects.py``)
and go through Kibana's saved objects import API (``POST /api/saved_objects/_import``), the same call
as Stack Management > Saved objects > Import. Only the standard library is used, so the loader works
wherever pyhunt is installed.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid

__all__ = ["KibanaImportError", "default_saved_objects_path", "import_saved_objects"]


class KibanaImportError(RuntimeError):
    """Kibana refused the import, or some objects failed (the message names them and why)."""


def default_saved_objects_path() -> pathlib.Path:
    """The saved objects shipped in the package (``pyhunt/data/kibana-saved-objects.ndjson``)."""
    return pathlib.Path(__file__).resolve().parent / "data" / "kibana-saved-objects.ndjson"


def _multipart(filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = f"pyhunt-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/ndjson\r\n\r\n").encode()
    return head + payload + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def import_saved_objects(kibana_url: str, ndjson: str | os.PathLike | bytes | None = None, *,
                         api_key: str | None = None, username: str | None = None,
                         password: str | None = None, space: str | None = None,
                         overwrite: bool = True, ca_file: str | None = None,
                         timeout: float = 30.0) -> dict:
    """Import saved objects into Kibana and return Kibana's answer (``successCount``, ...).

    kibana_url: Kibana's base URL, e.g. ``http://localhost:5601`` (a base path is kept).
    ndjson: a path to an NDJSON export, or its bytes; default: :func:`default_saved_objects_path`.
    api_key: an encoded Elasticsearch API key (``Authorization: ApiKey ...``), or else
        username/password for basic authentication; neither for a cluster without security.
    space: a Kibana space id; default: the default space.
    overwrite: replace objects with the same ids (re-importing after an upgrade updates them).
    ca_file: a PEM bundle to verify Kibana's TLS certificate; default: the system's.

    Raises KibanaImportError when Kibana cannot be reached, refuses the request, or reports
    objects it could not import (e.g. a missing reference).
    """
    if ndjson is None:
        ndjson = default_saved_objects_path()
    if isinstance(ndjson, bytes):
        payload, filename = ndjson, "kibana-saved-objects.ndjson"
    else:
        path = pathlib.Path(ndjson)
        try:
            payload = path.read_bytes()
        except OSError as e:
            raise KibanaImportError(f"cannot read saved objects {path}: {e.strerror}") from None
        filename = path.name

    base = kibana_url.rstrip("/")
    if space and space != "default":
        base += "/s/" + urllib.parse.quote(space, safe="")
    url = base + "/api/saved_objects/_import?" + urllib.parse.urlencode({"overwrite": str(overwrite).lower()})
    body, content_type = _multipart(filename, payload)
    headers = {"kbn-xsrf": "pyhunt", "Content-Type": content_type, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = "ApiKey " + api_key
    elif username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            answer = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise KibanaImportError(f"Kibana at {kibana_url} refused the import: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise KibanaImportError(f"cannot reach Kibana at {kibana_url}: {reason}") from None

    if not answer.get("success", False):
        problems = [f"{err.get('type')}/{err.get('id')}: {err.get('error', {}).get('type', 'error')}"
                    for err in answer.get("errors", [])]
        raise KibanaImportError(f"Kibana imported {answer.get('successCount', 0)} objects but not: "
                                + ("; ".join(problems) or "(no detail)"))
    return answer
