#!/usr/bin/env bash
# What the deployment tests need (tests/test_zeek_scripts.py, tests/test_k8s.py, tests/test_kibana.py):
#   zeekscript           Zeek's parser and formatter (PyPI), for the scripts in zeek_scripts/
#   kubernetes-validate  Kubernetes JSON schemas (PyPI; brings PyYAML), for the rendered manifests
#   dockerfile           BuildKit's Dockerfile parser (PyPI), for the Dockerfile (no Docker engine needed)
#   kubectl              renders the kustomizations (`kubectl kustomize`, as `kubectl apply -k` does)
# The Python packages come from PyPI; kubectl is expected on the machine (this kind of machine has
# it at /usr/bin/kubectl; Debian's own kubernetes-client package is too old for the manifests).
# Exits non-zero, with the reason, when something is missing: in CI (CI=true) those tests fail
# rather than skip.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# zeekscript's formatter output is part of the tests (zeek-format clean scripts): keep its minor version.
python3 -m pip install -q "zeekscript>=1.3.6,<1.4" "kubernetes-validate>=1.31,<2" "PyYAML>=6" "dockerfile>=3.3,<4"
python3 - <<'PY'
import importlib.metadata as md
for name in ("zeekscript", "kubernetes-validate", "PyYAML", "dockerfile"):
    print(f"{name} {md.version(name)}")
from kubernetes_validate.utils import all_versions
versions = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
print(f"kubernetes-validate schemas: {versions[0]} .. {versions[-1]}")
PY

if ! command -v kubectl >/dev/null 2>&1; then
    echo "deploy_deps: kubectl is not installed: the k8s tests render the manifests with 'kubectl kustomize'." >&2
    echo "deploy_deps: install kubectl 1.28 or later (kustomize v5), e.g. the 'kubectl' package of the" >&2
    echo "deploy_deps: Kubernetes or Google Cloud apt repositories; Debian's kubernetes-client is too old." >&2
    exit 1
fi
echo "kubectl $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
if ! kubectl kustomize --help >/dev/null 2>&1; then
    echo "deploy_deps: this kubectl has no built-in kustomize ('kubectl kustomize'); use kubectl 1.28 or later" >&2
    exit 1
fi
