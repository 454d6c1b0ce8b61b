"""Print the Zeek scripts a zeek-parity case loads, comma-separated ('none' if it loads none).

    python tests/parity_scripts.py CASES_DIR CASE_NAME

The parity tests run Zeek's bare-mode (-b) cases with ``replay --zeek-bare SCRIPTS`` so that the
engine knows the likely server ports that Zeek had for the case: the case's configuration (its -b
flag and @load lines, from case.json), not its results.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def loaded_scripts(case: dict) -> list[str]:
    out = []
    for line in case.get("scripts", []):
        text = line.split(":", 1)[1] if line.startswith("%") and ":" in line else line
        text = text.strip()
        if text.startswith("@load "):
            text = text[len("@load "):].strip()
        elif text.startswith("@"):
            continue   # @load-sigs, @load-plugin and the like register no ports
        if text:
            out.append(text)
    return out


if __name__ == "__main__":
    case = json.loads((Path(sys.argv[1]) / sys.argv[2] / "case.json").read_text())
    print(",".join(loaded_scripts(case)) or "none")
