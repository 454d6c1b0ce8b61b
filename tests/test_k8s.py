"""The Kubernetes manifests (k8s/): render, validate against Kubernetes' schemas, keep their promises.

Each kustomization is rendered with `kubectl kustomize` (kubectl's built-in kustomize, as `kubectl
apply -k` uses it) and every object is validated with kubernetes-validate in strict mode (unknown
fields are errors) against several Kubernetes versions. Then the invariants that docs/deploy.md and
docs/sensor-config.md promise are checked on the rendered objects. Without kubectl or
kubernetes-validate the tests skip, except in CI (CI=true), where .ci/deploy_deps.sh provides them.
"""
from __future__ import annotations

import copy
import functools
import importlib
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGETS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"]
OVERLAYS = ["k8s/overlays/dev", "k8s/overlays/prod"]
SENSOR_DOC = ROOT / "docs" / "sensor-config.md"
SCRIPTS_DIR = ROOT / "zeek_scripts"
#: Kubernetes versions to validate against: the oldest we support, kubectl's here, the newest schemas.
MIN_KUBE = "1.28.0"
WORKLOAD_KINDS = {"DaemonSet", "Deployment", "StatefulSet", "Job", "CronJob", "Pod"}
ZEEK_SITE = "/usr/local/zeek/share/zeek/site"


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(reason + ": it is required in CI (bash .ci/deploy_deps.sh)")
    pytest.skip(reason)


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        _missing(f"{package} is not installed (pip install {package})")


def _kubectl() -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        _missing("kubectl is not on PATH (it renders the kustomizations)")
    return exe


@functools.lru_cache(maxsize=None)
def _render(path: str) -> tuple[dict, ...]:
    yaml = _require("yaml", "PyYAML")
    r = subprocess.run([_kubectl(), "kustomize", path], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"kubectl kustomize {path} failed:\n{r.stderr}"
    return tuple(d for d in yaml.safe_load_all(r.stdout) if d)


def render(path: str) -> list[dict]:
    """The objects of a kustomization (a fresh deep copy, so that tests may modify them)."""
    return copy.deepcopy(list(_render(path)))


def kube_versions() -> list[str]:
    utils = _require("kubernetes_validate.utils", "kubernetes-validate")
    have = sorted(set(utils.all_versions()), key=lambda v: tuple(map(int, v.split("."))))
    wanted = [v for v in (MIN_KUBE, "1.32.0", have[-1]) if v in have]
    assert len(set(wanted)) >= 2, f"kubernetes-validate ships schemas for {have}; need {MIN_KUBE}+"
    return sorted(set(wanted))


def validation_errors(objects: list[dict], version: str) -> list[str]:
    kv = _require("kubernetes_validate", "kubernetes-validate")
    errors = []
    for obj in objects:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(e.message)
    return errors


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def sensor(objects: list[dict]) -> dict:
    (ds,) = [o for o in by_kind(objects, "DaemonSet") if o["metadata"]["name"] == "pyhunt-sensor"]
    return ds


def containers(ds: dict) -> dict[str, dict]:
    return {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}


def pod_specs(objects: list[dict]):
    for o in objects:
        if o["kind"] in WORKLOAD_KINDS:
            spec = o["spec"]
            if o["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            yield o, spec["template"]["spec"] if o["kind"] != "Pod" else spec


def container_env(objects: list[dict], container: dict) -> dict[str, str]:
    """Literal environment of a container: its envFrom ConfigMaps, then its env values."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in by_kind(objects, "ConfigMap")}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(maps[src["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


def documented_settings() -> dict[str, str | None]:
    """docs/sensor-config.md's settings tables: variable -> default (None when it has none)."""
    out = {}
    for name, default in re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", SENSOR_DOC.read_text(), re.M):
        m = re.fullmatch(r"`([^`]*)`", default.strip())
        out[name] = m.group(1) if m else None
    return out


def documented_capabilities() -> set[str]:
    m = re.search(r"^Capabilities: (.+)\.$", SENSOR_DOC.read_text(), re.M)
    assert m, "docs/sensor-config.md has no 'Capabilities: ...' line"
    return set(re.findall(r"`([A-Z_]+)`", m.group(1)))


# --- rendering and schema validation ---------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_renders(target):
    kinds = {o["kind"] for o in render(target)}
    assert {"Namespace", "DaemonSet", "ConfigMap", "ServiceAccount", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("target", TARGETS)
def test_objects_valid_in_strict_mode(target):
    objects = render(target)
    for version in kube_versions():
        assert validation_errors(objects, version) == [], f"{target} against Kubernetes {version}"


def test_strict_validation_rejects_unknown_fields():
    """The validation can fail: a misspelt field is an error in strict mode."""
    ds = sensor(render("k8s/base"))
    containers(ds)["pyhunt"]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}
    assert validation_errors([ds], kube_versions()[0])


def test_every_kustomization_uses_labels_not_common_labels():
    yaml = _require("yaml", "PyYAML")
    files = list((ROOT / "k8s").rglob("kustomization.yaml")) + [SCRIPTS_DIR / "kustomization.yaml"]
    assert len(files) >= 5
    for f in files:
        k = yaml.safe_load(f.read_text())
        assert "commonLabels" not in k, f"{f}: use labels:, not the deprecated commonLabels"
        assert "disableNameSuffixHash" not in f.read_text(), f"{f}: keep the ConfigMap hash suffix"


# --- the Zeek scripts ConfigMap ---------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_zeek_configmap_equals_zeek_scripts(target):
    objects = render(target)
    (cm,) = [o for o in by_kind(objects, "ConfigMap")
             if o["metadata"]["name"].startswith("pyhunt-zeek-scripts-")]
    assert re.fullmatch(r"pyhunt-zeek-scripts-[a-z0-9]{10}", cm["metadata"]["name"]), "hash suffix"
    files = {p.name: p.read_bytes() for p in SCRIPTS_DIR.glob("*.zeek")}
    assert set(cm["data"]) == set(files)
    for name, content in files.items():
        assert cm["data"][name].encode() == content, f"{name} differs from zeek_scripts/{name}"
    volumes = {v["name"]: v for v in sensor(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["zeek-site"]["configMap"]["name"] == cm["metadata"]["name"]
    zeek = containers(sensor(objects))["zeek"]
    (mount,) = [m for m in zeek["volumeMounts"] if m["name"] == "zeek-site"]
    assert mount["mountPath"] == ZEEK_SITE and mount.get("readOnly") is True
    assert zeek["args"][-1] == "local", "Zeek must load the site policy (local.zeek)"


def test_script_change_rolls_the_pods(tmp_path):
    """Editing a script renames the ConfigMap, which changes the pod template (a rollout)."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(SCRIPTS_DIR, tmp_path / "zeek_scripts")
    yaml = _require("yaml", "PyYAML")

    def zeek_site(root):
        r = subprocess.run([_kubectl(), "kustomize", "k8s/base"], cwd=root, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        ds = sensor([d for d in yaml.safe_load_all(r.stdout) if d])
        return {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}["zeek-site"]

    before = zeek_site(tmp_path)
    script = tmp_path / "zeek_scripts" / "pyhunt-scan.zeek"
    script.write_text(script.read_text().replace("address_scan_threshold = 25", "address_scan_threshold = 50"))
    after = zeek_site(tmp_path)
    assert before["configMap"]["name"] != after["configMap"]["name"]


# --- the sensor DaemonSet ---------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_both_containers_share_the_zeek_log_volume(target):
    objects = render(target)
    ds = sensor(objects)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["zeek-logs"]
    c = containers(ds)
    assert set(c) == {"zeek", "pyhunt"}
    log_dir = container_env(objects, c["pyhunt"])["PYHUNT_ZEEK_LOG_DIR"]
    assert container_env(objects, c["zeek"])["PYHUNT_ZEEK_LOG_DIR"] == log_dir
    for name in ("zeek", "pyhunt"):
        mounts = {m["name"]: m for m in c[name]["volumeMounts"]}
        assert mounts["zeek-logs"]["mountPath"] == log_dir, name
        assert not mounts["zeek-logs"].get("readOnly"), f"{name} writes (Zeek) or deletes (pyhunt) logs"
    assert c["zeek"]["workingDir"] == log_dir


@pytest.mark.parametrize("target", TARGETS)
def test_pyhunt_probes_hit_the_http_port(target):
    objects = render(target)
    ds = sensor(objects)
    pyhunt = containers(ds)["pyhunt"]
    port = int(container_env(objects, pyhunt)["PYHUNT_HTTP_PORT"])
    named = {p["name"]: p["containerPort"] for p in pyhunt["ports"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        get = pyhunt[probe]["httpGet"]
        target_port = named[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert target_port == port, f"{probe} targets {target_port}, PYHUNT_HTTP_PORT is {port}"
        assert get["path"] == path
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("target", TARGETS)
def test_capabilities_are_exactly_the_documented_set(target):
    objects = render(target)
    documented = documented_capabilities()
    assert documented == {"NET_RAW", "NET_ADMIN"}
    for name, c in containers(sensor(objects)).items():
        caps = c["securityContext"]["capabilities"]
        assert caps["drop"] == ["ALL"], name
        assert set(caps["add"]) == documented and len(caps["add"]) == len(documented), name
    # every other container adds nothing
    for obj, spec in pod_specs(objects):
        if obj["metadata"]["name"] == "pyhunt-sensor":
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            caps = c.get("securityContext", {}).get("capabilities", {})
            assert caps.get("drop") == ["ALL"] and not caps.get("add"), f"{obj['metadata']['name']}/{c['name']}"


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(target):
    seen = 0
    for obj, spec in pod_specs(render(target)):
        for c in spec.get("initContainers", []) + spec["containers"]:
            seen += 1
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), \
                    f"{obj['metadata']['name']}/{c['name']} lacks {kind}"
    assert seen >= 2


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned(target):
    for obj, spec in pod_specs(render(target)):
        for c in spec.get("initContainers", []) + spec["containers"]:
            image = c["image"]
            name = image.split("@")[0].rsplit("/", 1)[-1]
            tagged = ":" in name and not name.endswith(":latest")
            assert tagged or "@sha256:" in image, f"{obj['metadata']['name']}/{c['name']}: {image} is not pinned"


def test_pyhunt_image_tag_is_the_package_version():
    import pyhunt
    image = containers(sensor(render("k8s/base")))["pyhunt"]["image"]
    assert image == f"pyhunt/pyhunt:{pyhunt.__version__}"


@pytest.mark.parametrize("target", TARGETS)
def test_sensor_pod_settings(target):
    objects = render(target)
    ds = sensor(objects)
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] in {o["metadata"]["name"] for o in by_kind(objects, "PriorityClass")}
    assert {"operator": "Exists"} in pod["tolerations"]
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxSurge"] == 0
    c = containers(ds)
    env = container_env(objects, c["pyhunt"])
    assert pod["terminationGracePeriodSeconds"] > int(env["PYHUNT_GRACE_SECONDS"])
    assert env["PYHUNT_FANOUT_GROUP"] != env["ZEEK_AF_PACKET_FANOUT_ID"], \
        "Zeek and pyhunt in one PACKET_FANOUT group would split the packets between them"
    for name, container in c.items():
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
    assert c["pyhunt"]["securityContext"]["runAsNonRoot"] is True
    assert c["zeek"]["args"][:2] == ["-i", "af_packet::$(PYHUNT_INTERFACE)"]
    assert "PYHUNT_INTERFACE" in container_env(objects, c["zeek"])


@pytest.mark.parametrize("target", TARGETS)
def test_no_api_access(target):
    """RBAC: the sensor uses no Kubernetes API, so it gets no Role and no token."""
    objects = render(target)
    assert not [o for o in objects if o["kind"] in {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}]
    (sa,) = by_kind(objects, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    pod = sensor(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_settings_are_documented_with_their_defaults(target):
    objects = render(target)
    documented = documented_settings()
    for name, c in containers(sensor(objects)).items():
        for var in container_env(objects, c).keys() | {e["name"] for e in c.get("env", [])}:
            if var.startswith(("PYHUNT_", "ZEEK_")):
                assert var in documented, f"{var} (container {name}) is not in docs/sensor-config.md"
    if target == "k8s/base":
        env = container_env(objects, containers(sensor(objects))["pyhunt"])
        for var, value in env.items():
            default = documented.get(var)
            if default is not None:
                assert value == default, f"{var}={value!r} in k8s/base, documented default {default!r}"


def test_namespace_allows_the_sensor():
    (ns,) = by_kind(render("k8s/base"), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


# --- overlays ---------------------------------------------------------------------------------

def test_dev_overlay_is_self_contained():
    objects = render("k8s/overlays/dev")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("StatefulSet", "elasticsearch"), ("Service", "elasticsearch"), ("Deployment", "kibana"),
            ("Service", "kibana"), ("Ingress", "kibana")} <= names
    (ingress,) = by_kind(objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "kibana"
    url = container_env(objects, containers(sensor(objects))["pyhunt"])["PYHUNT_ES_URL"]
    assert url.startswith("http://elasticsearch.pyhunt.svc"), "host-network pods need the full name"
    policies = {o["metadata"]["name"] for o in by_kind(objects, "NetworkPolicy")}
    assert {"default-deny-ingress", "elasticsearch-http", "kibana-http"} <= policies


def test_prod_overlay_uses_external_elasticsearch_with_secrets():
    objects = render("k8s/overlays/prod")
    assert not by_kind(objects, "StatefulSet") and not by_kind(objects, "Ingress")
    pyhunt = containers(sensor(objects))["pyhunt"]
    env = container_env(objects, pyhunt)
    assert env["PYHUNT_ES_URL"].startswith("https://")
    mounts = {m["mountPath"]: m for m in pyhunt["volumeMounts"]}
    ca_dir = os.path.dirname(env["PYHUNT_ES_CA_CERTS"])
    assert ca_dir in mounts
    volumes = {v["name"]: v for v in sensor(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[ca_dir]["name"]]["secret"]["secretName"] == "pyhunt-es-ca"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in pyhunt["env"] if "valueFrom" in e}
    assert set(refs) == {"PYHUNT_ES_API_KEY", "PYHUNT_ES_USERNAME", "PYHUNT_ES_PASSWORD"}
    assert {r["name"] for r in refs.values()} == {"pyhunt-es-credentials"}
    assert not [o for o in objects if o["kind"] == "Secret"], "credentials are not kept in the repository"


# --- the pyhunt image (Dockerfile) ------------------------------------------------------------
# No Docker engine in the test environment: the Dockerfile is parsed with BuildKit's own parser
# (the `dockerfile` package) and checked against the manifests and the docs.

def dockerfile_instructions() -> list:
    dockerfile = _require("dockerfile", "dockerfile")
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def test_dockerfile_builds_a_wheel_and_runs_the_sensor_unprivileged():
    cmds = dockerfile_instructions()
    froms = [c for c in cmds if c.cmd == "FROM"]
    assert len(froms) == 2 and froms[0].value[1:] == ("AS", "build"), "multi-stage: build, then runtime"
    (base_arg,) = [c.value[0] for c in cmds if c.cmd == "ARG" and c.value[0].startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base_arg)
    runs = " ".join(" ".join(c.value) for c in cmds if c.cmd == "RUN")
    assert "pip wheel" in runs and "--no-index" in runs
    final = cmds[cmds.index(froms[1]):]
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    uid = int(user.split(":")[0])
    assert uid != 0
    pyhunt = containers(sensor(render("k8s/base")))["pyhunt"]
    assert pyhunt["securityContext"]["runAsUser"] == uid
    (entry,) = [c for c in final if c.cmd == "ENTRYPOINT"]
    assert list(entry.value) == ["python", "-m", "pyhunt", "sensor"]
    (health,) = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert "/healthz" in " ".join(health.value) and "PYHUNT_HTTP_PORT" in " ".join(health.value)
    (expose,) = [c for c in final if c.cmd == "EXPOSE"]
    assert expose.value == (f"{documented_settings()['PYHUNT_HTTP_PORT']}/tcp",)
    setcap = re.search(r"setcap (\S+)\+ep", runs)
    assert setcap, "the interpreter gets its capture capabilities as file capabilities"
    assert {c.upper() for c in setcap.group(1).split(",")} == {f"CAP_{c}" for c in documented_capabilities()}


def test_dockerignore_keeps_the_build_inputs():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "an allow-list: only what the build needs"
    kept = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for c in dockerfile_instructions():
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            copied |= set(c.value[:-1])
    assert copied and copied <= kept
