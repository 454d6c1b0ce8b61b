#!/usr/bin/env bash
# Install pyhunt with its test dependencies (editable: the extension is built in place) and run the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install -q -e ".[test]"
python3 -m pytest "$@"
