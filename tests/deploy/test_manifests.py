"""The Kubernetes manifests in deploy/k8s: they parse, build, match the schema and our rules.

kubectl and kustomize are not available here, so the kustomizations are rendered by a small
subset of kustomize written below (resources, namespace, images, strategic-merge and RFC 6902
patches). It accepts only the kustomization fields it implements, and a patch whose target,
container or JSON path is missing fails the build instead of being ignored. Built-in kinds
are validated against the Kubernetes OpenAPI schemas bundled with ``kubernetes-validate``
(offline, strict: unknown fields fail); the KEDA custom resources are checked by hand.
Then the rules of this deployment: resources, non-root, probes, one KEDA ScaledObject per
worker Deployment, a single beat, settings that exist in .env.example, Services and
NetworkPolicies that select real pods, the webhooks worker let out to public HTTPS (and DNS,
Postgres, Redis) only, and image names that kustomize will replace.
"""

from __future__ import annotations

import ast
import copy
import ipaddress
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from switchboard.runs.settings import RunsSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
SECRET_TEMPLATE = BASE / "secret.example.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
CELERY_APP = ROOT / "workers" / "celery_app.py"
PROMETHEUS_CONFIG = ROOT / "deploy" / "observability" / "prometheus.yml"

# Oldest Kubernetes these manifests support, and the newest schema the library bundles.
KUBERNETES_VERSIONS = ("1.29.0", "latest")
CRD_GROUPS = frozenset({"keda.sh"})
KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
)
CLUSTER_SCOPED_KINDS = frozenset({"Namespace"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
PLACEHOLDER = "REPLACE_ME"
PRE_ROLLOUT = ("switchboard/stage", "pre-rollout")
IMAGE = "switchboard"
# Variables of the process environment that are not settings (.env.example lists settings).
PROCESS_ENV = frozenset({"PROMETHEUS_MULTIPROC_DIR"})
EXPECTED_WORKERS = {
    "worker-runs": {"queues": ("runs",), "args": ("--pool=threads", "--concurrency=200")},
    "worker-maintenance": {"queues": ("default", "maintenance"), "args": ()},
    "worker-webhooks": {"queues": ("webhooks",), "args": ("--pool=threads", "--concurrency=50")},
}
# Long enough for running agent runs to finish after SIGTERM (Kubernetes' default is 30 s).
MIN_WORKER_GRACE_SECONDS = 120
SECRET = "switchboard-secrets"
CONNECTIONS = frozenset({"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"})
CELERY_URLS = frozenset({"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"})
# What each process reads of the Secret, and nothing more (checked against the code's readers:
# identity, the Stripe webhook and sealing webhook endpoints' secrets in the API, mail, Stripe
# calls and key rotation in the maintenance worker, the model provider in the runs worker,
# opening endpoints' secrets to sign in the webhooks worker).
SECRETS_READ = {
    "api": CONNECTIONS
    | {
        "AUTH_VAULT_TOKEN",
        "AUTH_REFRESH_TOKEN_PEPPER",
        "IDENTITY_PASSWORD_PEPPERS",
        "IDENTITY_IP_HASH_SALT",
        "STRIPE_WEBHOOK_SECRET",
        "API_METRICS_TOKEN",
        "WEBHOOKS_SECRET_ENCRYPTION_KEY",
    },
    "worker-maintenance": CONNECTIONS
    | {"AUTH_VAULT_TOKEN", "AUTH_REFRESH_TOKEN_PEPPER", "SMTP_PASSWORD", "STRIPE_API_KEY"},
    "worker-runs": CONNECTIONS | {"OPENAI_API_KEY"},
    "worker-webhooks": CONNECTIONS | {"WEBHOOKS_SECRET_ENCRYPTION_KEY"},
    "beat": CELERY_URLS,
    "flower": CELERY_URLS | {"FLOWER_PASSWORD"},
    "migrate": frozenset({"DATABASE_URL", "AUTH_VAULT_TOKEN"}),
}
# The API only loads signing keys; rotation (maintenance worker, migration Job) writes them.
VAULT_TOKEN_KEYS = {
    "api": "AUTH_VAULT_TOKEN_READ_ONLY",
    "worker-maintenance": "AUTH_VAULT_TOKEN",
    "migrate": "AUTH_VAULT_TOKEN",
}
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}
INGRESS_NAMESPACE_LABEL = "kubernetes.io/metadata.name"
MONITORING_NAMESPACE = {INGRESS_NAMESPACE_LABEL: "monitoring"}
OPERATOR_PODS = {"switchboard/operator": "true"}
# The webhooks worker sends to hosts tenants choose: besides the SSRF guard, its NetworkPolicy
# admits HTTPS to public addresses only. Non-public destinations it may reach: DNS, Postgres and
# Redis, on their ports only; loopback, link-local and metadata addresses on none.
WEBHOOKS_WORKER = "worker-webhooks"
PUBLIC_ADDRESSES = ("93.184.215.14", "1.1.1.1", "2606:4700:4700::1111")
PRIVATE_ADDRESSES = ("10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12:3456::1")
UNREACHABLE_ADDRESSES = (
    "127.0.0.1",
    "169.254.169.254",
    "169.254.170.2",
    "100.100.100.200",
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00:ec2::254",
    "::ffff:10.0.0.1",
)
INTERNAL_PORTS = frozenset({53, 5432, 6379})

Doc = dict[str, Any]


class BuildError(AssertionError):
    """A kustomization that kustomize would reject, or a patch that would not apply."""


# --- loading --------------------------------------------------------------------------------


def load_docs(path: Path) -> list[Any]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in {".yaml", ".yml"})


def overlay_dirs() -> list[Path]:
    return sorted(p.parent for p in OVERLAYS.glob("*/kustomization.yaml"))


def kind_key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def group_of(doc: Doc) -> str:
    api_version: str = doc["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


# --- a small kustomize ----------------------------------------------------------------------


def load_kustomization(directory: Path) -> Doc:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise BuildError(f"{directory}: no kustomization.yaml")
    [kustomization] = load_docs(path)
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise BuildError(f"{path}: fields this test cannot render: {sorted(unknown)}")
    if kustomization.get("kind") != "Kustomization":
        raise BuildError(f"{path}: kind must be Kustomization")
    return kustomization


def build(directory: Path) -> list[Doc]:
    """Render a kustomization directory the way ``kustomize build`` would, for our subset."""
    kustomization = load_kustomization(directory)
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += build(path)
        elif path.is_file():
            docs += copy.deepcopy(load_docs(path))
        else:
            raise BuildError(f"{directory}: resource {entry} does not exist")
    for patch in kustomization.get("patches", []):
        apply_patch(docs, directory, patch)
    for image in kustomization.get("images", []):
        set_image(docs, image)
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED_KINDS:
                doc["metadata"]["namespace"] = namespace
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if kind_key(doc) in seen:
            raise BuildError(f"{directory}: {kind_key(doc)} defined twice")
        seen.add(kind_key(doc))
    return docs


def find_target(docs: list[Doc], target: Doc, where: str) -> Doc:
    def matches(doc: Doc) -> bool:
        api_group, _, api_version = doc["apiVersion"].rpartition("/")
        return (
            doc["kind"] == target.get("kind", doc["kind"])
            and doc["metadata"]["name"] == target.get("name", doc["metadata"]["name"])
            and api_group == target.get("group", api_group)
            and api_version == target.get("version", api_version)
        )

    found = [doc for doc in docs if matches(doc)]
    if len(found) != 1:
        raise BuildError(f"{where}: patch target {target} matches {len(found)} resources")
    return found[0]


def apply_patch(docs: list[Doc], directory: Path, entry: Doc) -> None:
    where = f"{directory.name}: patch {entry.get('path', '(inline)')}"
    if "path" in entry:
        [patch] = load_docs(directory / entry["path"])
    else:
        patch = yaml.safe_load(entry["patch"])
    if isinstance(patch, list):  # RFC 6902
        if "target" not in entry:
            raise BuildError(f"{where}: a JSON patch needs a target")
        doc = find_target(docs, entry["target"], where)
        patched = json_patch(doc, patch, where)
    else:  # strategic merge
        target = entry.get("target") or {
            "kind": patch["kind"],
            "name": patch["metadata"]["name"],
            "group": group_of(patch),
        }
        doc = find_target(docs, target, where)
        built_in = group_of(doc) not in CRD_GROUPS
        patched = strategic_merge(doc, patch, where, by_name=built_in)
    docs[docs.index(doc)] = patched


def strategic_merge(base: Any, patch: Any, where: str, *, by_name: bool) -> Any:
    """Maps merge key by key; lists of named items (containers, env, ports...) merge by name.

    Custom resources get JSON merge patch semantics (lists replaced), as in kustomize. A named
    item in the patch must already exist: our patches change things, they never add them, so
    a misspelt container name fails here.
    """
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, where, by_name=by_name)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if (
        by_name
        and isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        merged_list = list(base)
        names = [item["name"] for item in base]
        for item in patch:
            if item["name"] not in names:
                raise BuildError(f"{where}: no item named {item['name']!r} to patch")
            index = names.index(item["name"])
            merged_list[index] = strategic_merge(base[index], item, where, by_name=by_name)
        return merged_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise BuildError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _child(node: Any, token: str, where: str) -> Any:
    try:
        return node[int(token)] if isinstance(node, list) else node[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise BuildError(f"{where}: path element {token!r} does not exist") from None


def json_patch(doc: Doc, operations: list[Doc], where: str) -> Doc:
    """RFC 6902 add, remove, replace and test: every path must exist (add: its parent)."""
    result = copy.deepcopy(doc)
    for operation in operations:
        op, tokens = operation["op"], _pointer(operation["path"])
        parent = result
        for token in tokens[:-1]:
            parent = _child(parent, token, where)
        last = tokens[-1]
        if op == "test":
            if _child(parent, last, where) != operation["value"]:
                raise BuildError(f"{where}: test of {operation['path']} failed")
        elif op in {"replace", "remove"}:
            _child(parent, last, where)
            if op == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            else:
                parent[int(last) if isinstance(parent, list) else last] = operation["value"]
        elif op == "add":
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if not 0 <= index <= len(parent):
                    raise BuildError(f"{where}: index {last} out of range")
                parent.insert(index, operation["value"])
            elif isinstance(parent, dict):
                parent[last] = operation["value"]
            else:
                raise BuildError(f"{where}: cannot add under {operation['path']}")
        else:
            raise BuildError(f"{where}: operation {op!r} is not supported here")
    return result


def split_image(image: str) -> tuple[str, str | None]:
    name = image.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def set_image(docs: list[Doc], entry: Doc) -> None:
    for container in all_containers(docs):
        name, tag = split_image(container["image"])
        if name == entry["name"]:
            new_tag = entry.get("newTag", tag)
            image = entry.get("newName", name) + (f":{new_tag}" if new_tag else "")
            container["image"] = image + (f"@{entry['digest']}" if "digest" in entry else "")


# --- helpers over built documents --------------------------------------------------------------


def pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in WORKLOAD_KINDS:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"].get("labels", {})
    return labels


def workloads(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if pod_spec(doc) is not None]


def containers_of(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc) or {}
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def all_containers(docs: list[Doc]) -> Iterator[Doc]:
    for doc in workloads(docs):
        yield from containers_of(doc)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return doc


def component(doc: Doc) -> str:
    return pod_labels(doc).get("app.kubernetes.io/component", "")


def by_component(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [doc for doc in of_kind(docs, kind) if component(doc) == name]
    return doc


def command_line(container: Doc) -> list[str]:
    return [str(part) for part in container.get("command", []) + container.get("args", [])]


def container_ports(doc: Doc) -> dict[str | int, int]:
    """Every container port of a workload, by name and by number."""
    ports: dict[str | int, int] = {}
    for container in containers_of(doc):
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match[1]) * _FACTORS[match[2]]


@cache
def env_example_names() -> frozenset[str]:
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    return frozenset(names)


@cache
def celery_queues() -> tuple[str, ...]:
    for node in ast.parse(CELERY_APP.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "QUEUES" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            return tuple(value)
    raise AssertionError("QUEUES not found in workers/celery_app.py")


@cache
def secret_templates() -> tuple[Doc, ...]:
    return tuple(load_docs(SECRET_TEMPLATE))


def template_values(name: str) -> dict[str, str]:
    [doc] = [doc for doc in secret_templates() if doc["metadata"]["name"] == name]
    values: dict[str, str] = doc["stringData"]
    return values


def settings_of(docs: list[Doc]) -> dict[str, str]:
    """Every variable the app containers get from the ConfigMap and the Secret template."""
    values: dict[str, str] = {}
    for doc in of_kind(docs, "ConfigMap"):
        values.update(doc.get("data", {}))
    values.update(template_values(SECRET))
    return values


def secret_refs(container: Doc) -> dict[str, tuple[str, str]]:
    """The container's variables taken from a Secret: name -> (Secret, key)."""
    refs: dict[str, tuple[str, str]] = {}
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            refs[variable["name"]] = (ref["name"], ref["key"])
    return refs


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The variables a container's process sees, Secret values read from the template."""
    config_maps = {
        doc["metadata"]["name"]: doc.get("data", {}) for doc in of_kind(docs, "ConfigMap")
    }
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(config_maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
    for name, (secret, key) in secret_refs(container).items():
        values[name] = template_values(secret)[key]
    return values


def app_containers(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [(component(doc), c) for doc in workloads(docs) for c in containers_of(doc)]


def scaled_objects_for(docs: list[Doc], deployment: Doc) -> list[Doc]:
    return [
        scaled
        for scaled in of_kind(docs, "ScaledObject")
        if scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        and scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    ]


# --- the builds ----------------------------------------------------------------------------


@cache
def _built(directory: Path) -> tuple[Doc, ...]:
    return tuple(build(directory))


BUILDS = {"base": BASE, **{f"overlay-{p.name}": p for p in overlay_dirs()}}


@pytest.fixture(params=sorted(BUILDS))
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return copy.deepcopy(list(_built(BUILDS[request.param])))


# --- parsing and layout ----------------------------------------------------------------------


def test_there_is_a_production_overlay() -> None:
    assert (OVERLAYS / "production" / "kustomization.yaml").is_file()
    assert (BASE / "kustomization.yaml").is_file()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    if path.name == "kustomization.yaml":
        return
    for doc in docs:
        if isinstance(doc, list):  # an RFC 6902 patch
            assert all({"op", "path"} <= set(operation) for operation in doc)
            continue
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: {doc}"
        assert doc["metadata"].get("name"), f"{path}: a document without a name"


def test_every_manifest_is_part_of_a_build() -> None:
    """A manifest nobody lists is never applied; only the Secret template is left out."""
    listed: set[Path] = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        directory = kustomization.parent
        entries = load_kustomization(directory)
        listed |= {(directory / entry).resolve() for entry in entries.get("resources", [])}
        listed |= {
            (directory / p["path"]).resolve() for p in entries.get("patches", []) if "path" in p
        }
    for path in yaml_files():
        if path.name == "kustomization.yaml" or path == SECRET_TEMPLATE:
            continue
        assert path.resolve() in listed, f"{path.relative_to(ROOT)} is in no kustomization"


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_each_kustomization_builds(name: str) -> None:
    """Fails with the reason (missing resource, patch target, container or path) first."""
    assert build(BUILDS[name])


def test_builds_hold_the_expected_resources(docs: list[Doc]) -> None:
    kinds = {doc["kind"] for doc in docs}
    assert {
        "ConfigMap",
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds
    components = {component(doc) for doc in of_kind(docs, "Deployment")}
    assert components == {"api", "beat", "flower", *EXPECTED_WORKERS}


def test_production_overlay_is_namespaced_and_patched() -> None:
    docs = list(_built(OVERLAYS / "production"))
    namespaces = of_kind(docs, "Namespace")
    assert [ns["metadata"]["name"] for ns in namespaces] == ["switchboard"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "switchboard", kind_key(doc)
    config = named(docs, "ConfigMap", "switchboard-config")["data"]
    assert config["AUTH_KEY_STORE"] == "vault"
    assert config["AUTH_VAULT_PATH"] != "switchboard/signing-keys"  # one path per environment
    base = list(_built(BASE))
    for kind, name in [
        ("HorizontalPodAutoscaler", "switchboard-api"),
        ("ScaledObject", "switchboard-worker-runs"),
        ("ScaledObject", "switchboard-worker-maintenance"),
        ("ScaledObject", "switchboard-worker-webhooks"),
    ]:
        assert named(docs, kind, name)["spec"] != named(base, kind, name)["spec"], (kind, name)


# --- schema ----------------------------------------------------------------------------------


def _schema_documents() -> list[tuple[str, Doc]]:
    found = [(f"{build}:{kind_key(doc)}", doc) for build in BUILDS for doc in _built(BUILDS[build])]
    found += [(f"template:{kind_key(doc)}", doc) for doc in secret_templates()]
    return [(label, doc) for label, doc in found if group_of(doc) not in CRD_GROUPS]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_match_the_kubernetes_schema(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    failures = []
    for label, doc in _schema_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{label}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{label}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_keda_resources_have_their_required_fields(docs: list[Doc]) -> None:
    deployments = {doc["metadata"]["name"] for doc in of_kind(docs, "Deployment")}
    auths = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "TriggerAuthentication")}
    broker = urlsplit(settings_of(docs)["CELERY_BROKER_URL"])
    broker_db = broker.path.strip("/") or "0"
    templates = {doc["metadata"]["name"]: doc for doc in secret_templates()}
    for doc in docs:
        if group_of(doc) not in CRD_GROUPS:
            continue
        assert doc["apiVersion"] == "keda.sh/v1alpha1", kind_key(doc)
        spec = doc["spec"]
        if doc["kind"] == "TriggerAuthentication":
            assert spec["secretTargetRef"], kind_key(doc)
            for ref in spec["secretTargetRef"]:
                assert {"parameter", "name", "key"} <= set(ref)
                assert ref["key"] in templates[ref["name"]]["stringData"], ref
            continue
        assert doc["kind"] == "ScaledObject", f"unexpected custom resource {kind_key(doc)}"
        assert spec["scaleTargetRef"]["name"] in deployments, kind_key(doc)
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], kind_key(doc)
        assert spec["triggers"], kind_key(doc)
        for trigger in spec["triggers"]:
            metadata = trigger["metadata"]
            assert all(isinstance(value, str) for value in metadata.values()), metadata
            if trigger["type"] == "redis":
                assert metadata["listName"] in celery_queues(), metadata
                assert int(metadata["listLength"]) > 0
                assert metadata.get("databaseIndex", "0") == broker_db, (
                    f"{kind_key(doc)} watches Redis database {metadata.get('databaseIndex')},"
                    f" the broker is database {broker_db}"
                )
                assert "address" in metadata or "authenticationRef" in trigger
            elif trigger["type"] == "prometheus":
                assert {"serverAddress", "query", "threshold"} <= set(metadata)
                assert float(metadata["threshold"]) > 0
            else:
                raise AssertionError(f"{kind_key(doc)}: unexpected trigger {trigger['type']}")
            if "authenticationRef" in trigger:
                assert trigger["authenticationRef"]["name"] in auths, trigger


# --- our rules -------------------------------------------------------------------------------


def test_every_container_has_resources(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        for container in containers_of(doc):
            where = f"{kind_key(doc)} container {container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None, f"{where}: no {resource} request"
                assert limit is not None, f"{where}: no {resource} limit"
                assert quantity(request) <= quantity(limit), f"{where}: {resource}"


def test_every_pod_runs_as_non_root_on_a_read_only_root(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        spec = pod_spec(doc) or {}
        pod_context = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, kind_key(doc)
        for container in containers_of(doc):
            where = f"{kind_key(doc)} container {container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser") == 10001, where  # the image's user
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where
            # A read-only root needs writable /tmp and PROMETHEUS_MULTIPROC_DIR (/tmp/metrics).
            volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for path in ("/tmp", "/tmp/metrics"):
                assert path in mounts, f"{where}: nothing writable at {path}"
                assert "emptyDir" in volumes[mounts[path]], f"{where}: {path}"


def test_every_pod_uses_an_existing_service_account(docs: list[Doc]) -> None:
    accounts = {doc["metadata"]["name"] for doc in of_kind(docs, "ServiceAccount")}
    for doc in workloads(docs):
        assert (pod_spec(doc) or {}).get("serviceAccountName") in accounts, kind_key(doc)


def test_pods_carry_the_labels_prometheus_and_selectors_use(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        labels = pod_labels(doc)
        assert labels.get("app.kubernetes.io/name") == "switchboard", kind_key(doc)
        assert labels.get("app.kubernetes.io/component"), kind_key(doc)
        if "selector" in doc["spec"]:
            assert selector_matches(doc["spec"]["selector"], labels), kind_key(doc)


def test_api_probes_use_the_health_endpoints(docs: list[Doc]) -> None:
    api = by_component(docs, "Deployment", "api")
    [container] = api["spec"]["template"]["spec"]["containers"]
    ports = container_ports(api)
    assert int(settings_of(docs)["API_PORT"]) in ports.values()
    expected = {
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
        "startupProbe": "/health/live",
    }
    for probe, path in expected.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path, probe
        assert http["port"] in ports, f"{probe} probes a port the container does not declare"
    assert command_line(container)[-3:] == ["python", "-m", "api"]


def test_api_has_an_hpa_on_cpu_and_a_disruption_budget(docs: list[Doc]) -> None:
    api = by_component(docs, "Deployment", "api")
    assert "replicas" not in api["spec"], "the HPA owns the API's replica count"
    [hpa] = [
        hpa
        for hpa in of_kind(docs, "HorizontalPodAutoscaler")
        if hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    ]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(
        metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
        for metric in hpa["spec"]["metrics"]
    )
    budgets = [
        pdb
        for pdb in of_kind(docs, "PodDisruptionBudget")
        if selector_matches(pdb["spec"]["selector"], pod_labels(api))
    ]
    assert budgets, "no PodDisruptionBudget covers the API"
    # With the HPA's minimum, a drain must keep at least one API pod.
    for pdb in budgets:
        if "minAvailable" in pdb["spec"]:
            assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
        else:
            assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_each_queue_has_one_worker_deployment(docs: list[Doc]) -> None:
    consumed: list[str] = []
    for name, expected in EXPECTED_WORKERS.items():
        worker = by_component(docs, "Deployment", name)
        [container] = worker["spec"]["template"]["spec"]["containers"]
        argv = command_line(container)
        assert argv[argv.index("celery") + 2] == "worker", name
        [queues] = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--queues=")]
        assert tuple(queues.split(",")) == expected["queues"], name
        consumed += queues.split(",")
        for arg in expected["args"]:
            assert arg in argv, f"{name}: {arg}"
    assert sorted(consumed) == sorted(celery_queues()), "every queue consumed exactly once"


def test_runs_workers_wait_for_a_run_to_reach_its_own_limit(docs: list[Doc]) -> None:
    runs_settings = {
        key.removeprefix("RUNS_").lower(): value
        for key, value in settings_of(docs).items()
        if key.startswith("RUNS_")
    }
    limits = RunsSettings.model_validate(runs_settings)
    worker = by_component(docs, "Deployment", "worker-runs")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= limits.task_soft_time_limit, "a shutdown would kill runs inside their limit"


def test_webhooks_workers_wait_for_an_attempt_to_end(docs: list[Doc]) -> None:
    from switchboard.webhooks.delivery import sending_lease
    from switchboard.webhooks.settings import WebhookSettings

    config = {
        key.removeprefix("WEBHOOKS_").lower(): value
        for doc in of_kind(docs, "ConfigMap")
        for key, value in doc.get("data", {}).items()
        if key.startswith("WEBHOOKS_")
    }
    lease = sending_lease(WebhookSettings.model_validate(config)).total_seconds()
    worker = by_component(docs, "Deployment", WEBHOOKS_WORKER)
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= lease, "a shutdown would cut attempts short of their own time limit"


def test_workers_shut_down_gracefully_and_expose_metrics(docs: list[Doc]) -> None:
    metrics_port = int(settings_of(docs)["CELERY_METRICS_PORT"])
    assert metrics_port, "CELERY_METRICS_PORT=0 serves no worker metrics"
    for name in EXPECTED_WORKERS:
        worker = by_component(docs, "Deployment", name)
        spec = worker["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= MIN_WORKER_GRACE_SECONDS, name
        assert container_ports(worker).get("metrics") == metrics_port, name
        # Celery must be PID 1's exec target to get SIGTERM: no shell left in between.
        [container] = spec["containers"]
        shell = " ".join(container.get("command", []))
        assert not shell or "exec " in shell, f"{name}: the shell would swallow SIGTERM"


def test_every_worker_deployment_has_a_keda_scaled_object(docs: list[Doc]) -> None:
    workers = [doc for doc in of_kind(docs, "Deployment") if component(doc).startswith("worker-")]
    assert {component(doc) for doc in workers} == set(EXPECTED_WORKERS)
    for worker in workers:
        assert "replicas" not in worker["spec"], f"{component(worker)}: KEDA owns replicas"
        scaled = scaled_objects_for(docs, worker)
        assert len(scaled) == 1, f"{component(worker)}: {len(scaled)} ScaledObjects"
        lists = {
            trigger["metadata"]["listName"]
            for trigger in scaled[0]["spec"]["triggers"]
            if trigger["type"] == "redis"
        }
        assert lists == set(EXPECTED_WORKERS[component(worker)]["queues"]), component(worker)
        assert scaled[0]["spec"]["minReplicaCount"] >= 1, "a queue must always have a consumer"
    # Nothing else is autoscaled by KEDA.
    assert len(of_kind(docs, "ScaledObject")) == len(workers)


def test_beat_runs_alone(docs: list[Doc]) -> None:
    beat = by_component(docs, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    [container] = beat["spec"]["template"]["spec"]["containers"]
    assert "beat" in command_line(container)
    assert not any(
        s["spec"]["scaleTargetRef"]["name"] == beat["metadata"]["name"]
        for s in [
            *of_kind(docs, "ScaledObject"),
            *of_kind(docs, "HorizontalPodAutoscaler"),
        ]
    )


def test_flower_is_internal(docs: list[Doc]) -> None:
    flower = by_component(docs, "Deployment", "flower")
    assert container_ports(flower).get("http") == int(settings_of(docs)["FLOWER_PORT"])
    for service in of_kind(docs, "Service"):
        if selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(flower)):
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "Flower exposed"


def admitted_peers(docs: list[Doc], name: str) -> list[Doc]:
    """Every `from` peer of the policies that select this component's pods."""
    labels = pod_labels(by_component(docs, "Deployment", name))
    return [
        peer
        for policy in of_kind(docs, "NetworkPolicy")
        if selector_matches(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [{}])
    ]


def test_flower_admits_only_prometheus_and_operators(docs: list[Doc]) -> None:
    peers = admitted_peers(docs, "flower")
    assert peers
    for peer in peers:
        pods = peer.get("podSelector", {}).get("matchLabels")
        if "namespaceSelector" in peer:
            assert pods == PROMETHEUS_PODS, peer
        else:
            assert pods == OPERATOR_PODS, f"Flower is open to {peer}"


def test_api_admits_only_the_ingress_controller_and_prometheus(docs: list[Doc]) -> None:
    peers = admitted_peers(docs, "api")
    ingress = [
        peer
        for peer in peers
        if INGRESS_NAMESPACE_LABEL in peer.get("namespaceSelector", {}).get("matchLabels", {})
    ]
    assert ingress, "nothing admits the ingress controller"
    for peer in peers:
        assert "namespaceSelector" in peer, f"the API is open to {peer}"
        assert peer.get("podSelector", {}).get("matchLabels"), f"the API is open to {peer}"
        if peer not in ingress:
            # Any pod admitted here could name a client address: Prometheus in its own
            # namespace only, not a pod that merely carries its label somewhere else.
            assert peer["podSelector"]["matchLabels"] == PROMETHEUS_PODS, peer
            assert peer["namespaceSelector"] == {"matchLabels": MONITORING_NAMESPACE}, peer


def test_metrics_token_reaches_the_api_and_prometheus() -> None:
    docs = list(_built(BASE))
    [api] = [c for name, c in app_containers(docs) if name == "api"]
    assert secret_refs(api)["API_METRICS_TOKEN"] == (SECRET, "API_METRICS_TOKEN")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "switchboard-api"]
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"]


def test_migration_job(docs: list[Doc]) -> None:
    [job] = of_kind(docs, "Job")
    assert "alembic upgrade head" in " ".join(
        command_line(job["spec"]["template"]["spec"]["containers"][0])
    )
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_pre_rollout_selection_holds_what_the_migration_needs(docs: list[Doc]) -> None:
    """README: `kubectl apply -k OVERLAY -l switchboard/stage=pre-rollout` runs migrations
    before the new version rolls out; the ConfigMap and ServiceAccount must come along."""
    selected = {
        kind_key(doc)
        for doc in docs
        if doc["metadata"].get("labels", {}).get(PRE_ROLLOUT[0]) == PRE_ROLLOUT[1]
    }
    [job] = of_kind(docs, "Job")
    spec = job["spec"]["template"]["spec"]
    needed = {("Job", job["metadata"]["name"]), ("ServiceAccount", spec["serviceAccountName"])}
    for container in spec["containers"]:
        needed |= {
            ("ConfigMap", source["configMapRef"]["name"])
            for source in container.get("envFrom", [])
            if "configMapRef" in source
        }
    assert needed <= selected, f"missing from the pre-rollout apply: {needed - selected}"
    assert {kind for kind, _ in selected} <= {"Job", "ServiceAccount", "ConfigMap"}


def test_settings_exist_in_env_example(docs: list[Doc]) -> None:
    """A renamed or misspelt setting here would be silently ignored by the app."""
    known = env_example_names()
    config_maps: set[str] = set()
    for _, container in app_containers(docs):
        for source in container.get("envFrom", []):
            config_maps.add(source["configMapRef"]["name"])
        for variable in container.get("env", []):
            assert variable["name"] in known | PROCESS_ENV, variable["name"]
        for name, (secret, key) in secret_refs(container).items():
            assert key in template_values(secret), f"{name}: no key {key} in Secret {secret}"
    assert config_maps, "no pod reads the ConfigMap"
    for doc in of_kind(docs, "ConfigMap"):
        if doc["metadata"]["name"] in config_maps:
            unknown = set(doc.get("data", {})) - known
            assert not unknown, f"ConfigMap {doc['metadata']['name']}: {sorted(unknown)}"


def test_each_process_gets_only_the_secrets_it_reads(docs: list[Doc]) -> None:
    given: dict[str, set[str]] = {}
    for name, container in app_containers(docs):
        sources = [next(iter(source)) for source in container.get("envFrom", [])]
        assert sources == ["configMapRef"], f"{name}: a whole Secret through envFrom"
        refs = secret_refs(container)
        assert {secret for secret, _ in refs.values()} <= {SECRET}, name
        given[name] = set(refs)
        if "AUTH_VAULT_TOKEN" in refs:
            assert refs["AUTH_VAULT_TOKEN"][1] == VAULT_TOKEN_KEYS[name], name
    assert given == SECRETS_READ
    used = {key for _, c in app_containers(docs) for _, key in secret_refs(c).values()}
    assert used == set(template_values(SECRET)), "a key of the Secret nobody reads, or missing"


def test_forwarded_headers_are_trusted_from_the_ingress_only() -> None:
    for name, directory in BUILDS.items():
        docs = list(_built(directory))
        for _, container in app_containers(docs):
            assert "FORWARDED_ALLOW_IPS" not in container_env(docs, container), name
        [api] = [c for component_name, c in app_containers(docs) if component_name == "api"]
        proxies = json.loads(container_env(docs, api).get("API_TRUSTED_PROXIES", "[]"))
        if name == "base":
            assert proxies == []
        else:
            assert proxies, f"{name}: no trusted proxy, every client shares the ingress's limit"
            for network in proxies:
                assert ipaddress.ip_network(network).prefixlen > 0, network


def test_settings_suit_kubernetes(docs: list[Doc]) -> None:
    settings = settings_of(docs)
    assert settings["API_HOST"] == settings["FLOWER_HOST"] == "0.0.0.0"
    assert settings["ENVIRONMENT"] == "production"
    assert settings["AUTH_KEY_STORE"] == "vault", "the file key store needs a shared volume"


def test_secrets_are_templates_only() -> None:
    for doc in secret_templates():
        assert doc["kind"] == "Secret"
        assert "data" not in doc, "base64 data would hide what a value is"
        for key, value in doc["stringData"].items():
            assert PLACEHOLDER in value, f"{doc['metadata']['name']}.{key} is not a placeholder"
    # No build ships a Secret: `kubectl apply -k` must never overwrite the real ones.
    for directory in BUILDS.values():
        assert not of_kind(list(_built(directory)), "Secret"), directory


def test_services_select_deployments(docs: list[Doc]) -> None:
    deployments = of_kind(docs, "Deployment")
    for service in of_kind(docs, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        targets = [doc for doc in deployments if selector_matches(selector, pod_labels(doc))]
        assert targets, f"Service {service['metadata']['name']} selects no Deployment"
        for target in targets:
            for port in service["spec"]["ports"]:
                wanted = port.get("targetPort", port["port"])
                assert wanted in container_ports(target), (service["metadata"]["name"], wanted)


def test_network_policies_keep_every_port_internal(docs: list[Doc]) -> None:
    policies = of_kind(docs, "NetworkPolicy")
    for doc in of_kind(docs, "Deployment"):
        labels = pod_labels(doc)
        selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)]
        assert any("Ingress" in p["spec"]["policyTypes"] for p in selecting), (
            f"{component(doc)}: no policy isolates it"
        )
        rules = [rule for p in selecting for rule in p["spec"].get("ingress", [])]
        ports = container_ports(doc)
        for number in set(ports.values()):
            aliases = {alias for alias, value in ports.items() if value == number}
            admitting = [
                rule
                for rule in rules
                if not rule.get("ports") or any(p["port"] in aliases for p in rule["ports"])
            ]
            where = f"{component(doc)}:{number}"
            assert admitting, f"{where} is declared but nothing admits traffic to it"
            for rule in admitting:
                # Open to all: a rule without `from`, an ipBlock, or whole namespaces.
                assert rule.get("from"), f"{where} is open to every source"
                for peer in rule["from"]:
                    assert "ipBlock" not in peer, f"{where} is open to an ipBlock"
                    if "namespaceSelector" in peer:
                        pods = peer.get("podSelector", {})
                        assert pods.get("matchLabels") or pods.get("matchExpressions"), (
                            f"{where} is open to whole namespaces"
                        )


def egress_rules(docs: list[Doc], name: str) -> list[Doc] | None:
    """The egress rules of this component's pods, or None if no policy limits their egress."""
    labels = pod_labels(by_component(docs, "Deployment", name))
    policies = [
        policy
        for policy in of_kind(docs, "NetworkPolicy")
        if selector_matches(policy["spec"]["podSelector"], labels)
        and "Egress" in policy["spec"]["policyTypes"]
    ]
    if not policies:
        return None
    return [rule for policy in policies for rule in policy["spec"].get("egress", [])]


def admits_port(rule: Doc, port: int, protocol: str = "TCP") -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("protocol", "TCP") == protocol
        and (p.get("port") is None or p["port"] <= port <= p.get("endPort", p["port"]))
        for p in ports
    )


def rule_admits(rule: Doc, address: str, port: int, protocol: str = "TCP") -> bool:
    """Whether an egress rule's IP blocks let a connection to ``address``:``port`` out (a rule
    without ``to`` goes everywhere). Pod and namespace selectors are left to the caller: the
    addresses of the pods they select are not known here."""
    if not admits_port(rule, port, protocol):
        return False
    target = ipaddress.ip_address(address)
    everywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
    for peer in rule.get("to") or everywhere:
        block = peer.get("ipBlock")
        if block is None:
            continue
        network = ipaddress.ip_network(block["cidr"])
        excepted = any(target in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        if target.version == network.version and target in network and not excepted:
            return True
    return False


def test_only_the_webhooks_worker_has_its_egress_limited(docs: list[Doc]) -> None:
    """networkpolicies.yaml leaves egress open (Postgres, Redis, Vault, the model provider and
    Stripe may be anywhere), except for the worker that connects where tenants say."""
    limited = {
        component(doc)
        for doc in of_kind(docs, "Deployment")
        if egress_rules(docs, component(doc)) is not None
    }
    assert limited == {WEBHOOKS_WORKER}


def test_webhooks_worker_reaches_only_public_addresses(docs: list[Doc]) -> None:
    rules = egress_rules(docs, WEBHOOKS_WORKER)
    assert rules, "nothing lets the webhooks worker out"
    for address in PUBLIC_ADDRESSES:
        for port in (443, 8443):  # an endpoint URL may name any port
            assert any(rule_admits(rule, address, port) for rule in rules), (address, port)
    assert any(admits_port(rule, 53, "UDP") and rule.get("to") for rule in rules), "no DNS"
    for address in PRIVATE_ADDRESSES + UNREACHABLE_ADDRESSES:
        for port in (443, 80, 8443, 8080, 22, 25):
            assert not any(rule_admits(rule, address, port) for rule in rules), (address, port)
    for address in UNREACHABLE_ADDRESSES:
        for port in INTERNAL_PORTS:
            for protocol in ("TCP", "UDP"):
                admitted = any(rule_admits(rule, address, port, protocol) for rule in rules)
                assert not admitted, (address, port, protocol)
    # Pods, wherever they are, only on the ports of DNS, Postgres and Redis.
    for rule in rules:
        if any("ipBlock" not in peer for peer in rule.get("to", [])):
            ports = {p.get("port") for p in rule.get("ports", [])}
            assert ports, "a rule opens every port of some pods"
            assert ports <= INTERNAL_PORTS, f"a rule opens {ports} of some pods"


def test_kustomize_image_names_match() -> None:
    base_images = {split_image(c["image"])[0] for c in all_containers(list(_built(BASE)))}
    assert base_images == {IMAGE}, "every process runs the one Switchboard image"
    for overlay in overlay_dirs():
        entries = load_kustomization(overlay).get("images", [])
        assert entries, f"{overlay.name} does not pin the image"
        for entry in entries:
            assert entry["name"] in base_images, f"{overlay.name}: image {entry['name']} unused"
            assert entry.get("newTag") or entry.get("digest"), f"{overlay.name}: no tag"
            assert entry.get("newTag") != "latest"
        expected = {f"{e.get('newName', e['name'])}:{e['newTag']}" for e in entries}
        built = {c["image"] for c in all_containers(list(_built(overlay)))}
        assert built == expected, overlay.name


def test_prometheus_scrape_config_finds_the_pods() -> None:
    """deploy/observability/prometheus.yml keeps pods by component label and port number."""
    if not PROMETHEUS_CONFIG.is_file():
        pytest.skip("no Prometheus configuration")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    deployments = of_kind(list(_built(BASE)), "Deployment")
    for job in config["scrape_configs"]:
        keep = {
            rule["source_labels"][0]: rule["regex"]
            for rule in job.get("relabel_configs", [])
            if rule.get("action") == "keep"
        }
        wanted_component = keep.get("__meta_kubernetes_pod_label_app_kubernetes_io_component")
        wanted_port = keep.get("__meta_kubernetes_pod_container_port_number")
        if not (wanted_component and wanted_port):
            continue
        assert any(
            re.fullmatch(wanted_component, component(doc))
            and any(re.fullmatch(wanted_port, str(p)) for p in container_ports(doc).values())
            for doc in deployments
        ), f"scrape job {job['job_name']} finds no pod"


# --- the renderer itself ---------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
        - {name: main, image: switchboard}
"""


@pytest.mark.parametrize(
    ("patch", "target"),
    [
        # strategic merge on a resource that does not exist
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\nspec: {}\n", None),
        # strategic merge on a container that does not exist
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
            "spec: {template: {spec: {containers: [{name: typo, image: x}]}}}\n",
            None,
        ),
        # JSON patch on a path that does not exist
        ("- {op: replace, path: /spec/replicas, value: 2}\n", "{kind: Deployment, name: app}"),
        # JSON patch whose test fails
        (
            "- {op: test, path: /spec/template/spec/containers/0/name, value: api}\n",
            "{kind: Deployment, name: app}",
        ),
    ],
)
def test_a_patch_that_would_not_apply_fails_the_build(
    tmp_path: Path, patch: str, target: str | None
) -> None:
    _write(tmp_path / "base" / "kustomization.yaml", "kind: Kustomization\nresources: [app.yaml]\n")
    _write(tmp_path / "base" / "app.yaml", DEPLOYMENT)
    entry = "{path: patch.yaml" + (f", target: {target}" if target else "") + "}"
    _write(
        tmp_path / "overlay" / "kustomization.yaml",
        f"kind: Kustomization\nresources: [../base]\npatches: [{entry}]\n",
    )
    _write(tmp_path / "overlay" / "patch.yaml", patch)
    assert build(tmp_path / "base")
    with pytest.raises(BuildError):
        build(tmp_path / "overlay")


def test_the_renderer_applies_patches_images_and_namespace(tmp_path: Path) -> None:
    _write(tmp_path / "base" / "kustomization.yaml", "kind: Kustomization\nresources: [app.yaml]\n")
    _write(tmp_path / "base" / "app.yaml", DEPLOYMENT)
    _write(
        tmp_path / "overlay" / "kustomization.yaml",
        "kind: Kustomization\nnamespace: prod\nresources: [../base]\n"
        "images: [{name: switchboard, newName: reg/sb, newTag: '1.2'}]\n"
        "patches: [{path: patch.yaml}]\n",
    )
    _write(
        tmp_path / "overlay" / "patch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
        "spec: {template: {spec: {containers: [{name: main, args: [run]}]}}}\n",
    )
    [doc] = build(tmp_path / "overlay")
    assert doc["metadata"]["namespace"] == "prod"
    assert doc["spec"]["template"]["spec"]["containers"] == [
        {"name": "main", "image": "reg/sb:1.2", "args": ["run"]}
    ]
    _write(tmp_path / "bad" / "kustomization.yaml", "kind: Kustomization\ncommonLabels: {a: b}\n")
    with pytest.raises(BuildError):
        build(tmp_path / "bad")


def _processes() -> list[tuple[str, str]]:
    return [
        (build, name)
        for build in sorted(BUILDS)
        for name, _ in app_containers(list(_built(BUILDS[build])))
    ]


def filled_in(index: int) -> str:
    """What an operator puts in place of a placeholder: 43 base64url characters, so also a
    valid 32-byte key (WEBHOOKS_SECRET_ENCRYPTION_KEY), as well as a host name and a password."""
    return f"filled-in-value-{index:04d}".ljust(43, "0")


@pytest.mark.parametrize(("build", "process"), _processes())
def test_each_process_starts_with_only_its_own_settings(
    build: str, process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap plus the filled-in Secret keys a container gets make a valid production
    configuration for it: no process needs a secret it is not given."""
    from switchboard.settings import Environment, SettingsError, load_settings

    docs = list(_built(BUILDS[build]))
    [container] = [c for name, c in app_containers(docs) if name == process]
    for variable in env_example_names():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(ROOT / "deploy")  # no .env here: only the manifests' values count
    for index, (key, value) in enumerate(sorted(container_env(docs, container).items())):
        monkeypatch.setenv(key, value.replace(PLACEHOLDER, filled_in(index)))
    try:
        settings = load_settings()
    except SettingsError as exc:
        pytest.fail(str(exc))
    assert settings.environment is Environment.production
    assert settings.celery.metrics_port == 9100
