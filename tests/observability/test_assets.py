"""The observability assets in deploy/observability: they parse, and every metric they query exists.

Metric names are checked against the metric definitions in the source (Counter, Gauge,
Histogram, ... and the collectors' *MetricFamily), so a renamed or misspelled metric fails
here instead of leaving an alert that never fires or an empty panel. promtool is not available,
so PromQL gets a lighter check: balanced brackets and only known functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "deploy" / "observability"
SOURCE_DIRS = ("switchboard", "api", "workers", "tasks")

RUNBOOKS = frozenset(
    {
        "deploy",
        "scaling",
        "keys",
        "redis-outage",
        "postgres-failover",
        "queue-backlog",
        "stuck-runs",
        "provider-outage",
        "stripe-webhooks",
        "webhooks",
        "data-deletion",
    }
)
SEVERITIES = frozenset({"warning", "critical"})

# Metrics another change adds (worker metrics, retention). Listed by name and type so the
# assets can use them before that change lands; once it has, the source scan finds them too
# and this set is merely redundant.
PENDING = {
    "celery_tasks_total": "counter",  # {task, state}: sent|started|succeeded|failed|retried
    "celery_task_runtime_seconds": "histogram",  # {task}
    "celery_queue_length": "gauge",  # {queue}, exported by workers
    "retention_deleted_rows_total": "counter",  # {target}
}
# Series Prometheus itself attaches to every target (and `time`, which is a function).
PROMETHEUS_PROVIDED = frozenset({"up", "time"})

_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)(?:MetricFamily)?\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)

PROMQL_FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    ]
)
PROMQL_AGGREGATIONS = frozenset(
    [
        "avg",
        "bottomk",
        "count",
        "count_values",
        "group",
        "limit_ratio",
        "limitk",
        "max",
        "min",
        "quantile",
        "stddev",
        "stdvar",
        "sum",
        "topk",
    ]
)
PROMQL_KEYWORDS = frozenset(
    [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ]
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_INTERVAL = re.compile(r"\$__(?:rate_interval|interval|range)\b")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w.:])(?:0x[0-9a-fA-F]+|\d[\w.]*)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _family(name: str, kind: str) -> str:
    """The name a metric is known by: a counter's ends in _total, whatever it was given."""
    return name.removesuffix("_total") + "_total" if kind == "counter" else name


def _exposed(name: str, kind: str) -> set[str]:
    """The sample names prometheus_client exposes for a metric defined as ``name``."""
    if kind in ("histogram", "summary"):
        samples = {f"{name}_count", f"{name}_sum"}
        return samples | ({f"{name}_bucket"} if kind == "histogram" else {name})
    return {_family(name, kind)}


@cache
def defined_families() -> dict[str, str]:
    """Every metric the source defines, by family name, with its type."""
    families: dict[str, str] = {}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for kind, name in _DEFINITION.findall(path.read_text(encoding="utf-8")):
                families[_family(name, kind.lower())] = kind.lower()
    return families


@cache
def defined_metrics() -> frozenset[str]:
    names: set[str] = set()
    for name, kind in defined_families().items():
        names |= _exposed(name, kind)
    return frozenset(names)


@cache
def known_metrics() -> frozenset[str]:
    names = set(defined_metrics() | PROMETHEUS_PROVIDED)
    for name, kind in PENDING.items():
        names |= _exposed(name, kind)
    return frozenset(names)


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', _GRAFANA_INTERVAL.sub("5m", expr))


def referenced_metrics(expr: str) -> set[str]:
    """Metric names an expression selects; raises on a function PromQL does not have."""
    text = _without_strings(expr)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    metrics: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("("):
            if word not in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS:
                raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
        elif word.lower() not in PROMQL_KEYWORDS:
            metrics.add(word)
    return metrics


def unbalanced(expr: str) -> str | None:
    """What is wrong with the expression's brackets, or None."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _without_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return f"unexpected {char!r}"
    return f"unclosed {stack[-1]!r}" if stack else None


def _load_yaml(name: str) -> Any:
    return yaml.safe_load((ASSETS / name).read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml("alerts.yml")["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (ASSETS / "grafana" / "switchboard.json").read_text(encoding="utf-8")
    )
    return result


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target.get('refId')}", target.get("expr", ""))
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


ALL_EXPRS = [(f"alert:{rule['alert']}", rule["expr"]) for rule in _rules()] + [
    (f"panel:{where}", expr) for where, expr in _dashboard_exprs()
]


# --- the checker itself ---------------------------------------------------------------------


def test_source_scan_finds_the_metric_definitions() -> None:
    defined = defined_metrics()
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "runs_time_to_first_token_seconds_bucket",
        "runs_active",
        "jwt_verify_total",
        "auth_signing_key_activated_timestamp_seconds",
        "billing_webhook_events_total",
    ):
        assert name in defined
    # Suffixes follow the type: a gauge has no _total, a histogram no bare name.
    assert "runs_active_total" not in defined
    assert "runs_time_to_first_token_seconds" not in defined


def test_extraction_separates_metrics_from_functions_labels_and_durations() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{route!="/metrics", status=~"5.."}[$__rate_interval] offset 1h)))'
        " / on (route) group_left sum without (pod) (up{job='x'}) > 2 * 86400"
        " and time() - max(runs_active) > bool 1e3"
    )
    assert referenced_metrics(expr) == {"http_request_duration_seconds_bucket", "up", "runs_active"}


def test_a_misspelled_metric_is_reported() -> None:
    used = referenced_metrics('sum(rate(runs_finishd_total{status="failed"}[15m]))')
    assert used - known_metrics() == {"runs_finishd_total"}
    wrong_suffix = referenced_metrics("rate(runs_time_to_first_token_seconds[5m])")
    assert wrong_suffix - known_metrics() == {"runs_time_to_first_token_seconds"}


def test_an_unknown_function_is_reported() -> None:
    with pytest.raises(ValueError, match="histogram_quantil"):
        referenced_metrics("histogram_quantil(0.95, sum by (le) (rate(x_bucket[5m])))")


def test_unbalanced_brackets_are_reported() -> None:
    assert unbalanced('sum(rate(x{a="(("}[5m]))') is None
    assert unbalanced("sum(rate(x[5m])") == "unclosed '('"
    assert unbalanced("sum(rate(x[5m)))") == "unexpected ')'"


# --- Prometheus configuration ---------------------------------------------------------------


def test_prometheus_config_scrapes_every_component_and_loads_the_rules() -> None:
    config = _load_yaml("prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"switchboard-api", "switchboard-worker", "switchboard-flower"}
    expected = {
        "switchboard-api": ("api", "8000"),
        "switchboard-worker": ("worker-.+", "9100"),
        "switchboard-flower": ("flower", "5555"),
    }
    for name, (component, port) in expected.items():
        job = jobs[name]
        assert job["metrics_path"] == "/metrics"
        assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
        keeps = {
            rule["source_labels"][0]: rule["regex"]
            for rule in job["relabel_configs"]
            if rule.get("action") == "keep"
        }
        assert keeps == {
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "switchboard",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
            "__meta_kubernetes_pod_container_port_number": port,
        }
    # Workers are named by component, which the worker alerts' job=~"switchboard-worker.*" needs.
    renames = [
        rule
        for rule in jobs["switchboard-worker"]["relabel_configs"]
        if rule.get("target_label") == "job"
    ]
    assert [rule["replacement"] for rule in renames] == ["switchboard-$1"]


def test_commented_compose_alternative_parses_and_matches_the_job_names() -> None:
    text = (ASSETS / "prometheus.yml").read_text(encoding="utf-8")
    block = text.split("Docker compose alternative", 1)[1].splitlines()[1:]
    uncommented = "\n".join(
        line.strip().removeprefix("# ").removeprefix("#")
        if line.lstrip().startswith("# -") or line.lstrip().startswith("#  ")
        else ""
        for line in block
    )
    jobs = {job["job_name"]: job for job in yaml.safe_load(uncommented)}
    targets = {
        name: [target for static in job["static_configs"] for target in static["targets"]]
        for name, job in jobs.items()
    }
    assert targets == {
        "switchboard-api": ["api:8000"],
        "switchboard-worker-maintenance": ["worker:9100"],
        "switchboard-worker-runs": ["runs:9100"],
        "switchboard-worker-webhooks": ["webhooks:9100"],
        "switchboard-flower": ["flower:5555"],
    }


# --- alert rules ----------------------------------------------------------------------------


def test_every_rule_is_complete() -> None:
    rules = _rules()
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        name = rule["alert"]
        assert isinstance(rule.get("expr"), str), name
        assert rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        runbook = re.fullmatch(r"docs/operations/([a-z-]+)\.md", annotations.get("runbook_url", ""))
        assert runbook, name
        assert runbook.group(1) in RUNBOOKS, name


def test_the_required_signals_are_alerted_on() -> None:
    used: set[str] = set()
    for rule in _rules():
        used |= referenced_metrics(rule["expr"])
    required = {
        "celery_queue_length",
        "up",
        "runs_finished_total",
        "runs_failed_total",
        "runs_time_to_first_token_seconds_bucket",
        "jwt_verify_total",
        "billing_webhook_processing_lag_seconds_bucket",
        "billing_webhook_events_total",
        "auth_signing_key_activated_timestamp_seconds",
        "billing_usage_report_failures_total",
        "http_requests_total",
        "runs_streams_interrupted_total",
        "webhooks_attempts_total",
        "webhooks_deliveries_total",
        "webhooks_delivery_latency_seconds_bucket",
        "webhooks_retries_pending",
        "webhooks_endpoints_disabled",
    }
    assert required <= used, required - used
    exprs = " ".join(rule["expr"] for rule in _rules())
    assert 'up{job=~"switchboard-worker.*"} == 0' in exprs
    assert 'up{job="switchboard-api"} == 0' in exprs
    # Every worker Deployment has its own "no consumer at all" alert.
    for worker in ("runs", "maintenance", "webhooks"):
        assert f'absent(up{{job="switchboard-worker-{worker}"}} == 1)' in exprs, worker
    # A wrong WEBHOOKS_SECRET_ENCRYPTION_KEY fails every delivery: it pages.
    [unreadable] = [rule for rule in _rules() if 'result="secret_unreadable"' in rule["expr"]]
    assert unreadable["labels"]["severity"] == "critical"


# --- Grafana dashboard ----------------------------------------------------------------------


def test_dashboard_is_importable() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"]
    assert dashboard["title"]
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {item["name"]: item for item in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target.get("expr", "").strip(), panel["title"]


def test_dashboard_covers_every_area() -> None:
    titles = {panel["title"] for panel in _dashboard()["panels"] if panel["type"] == "row"}
    assert titles == {
        "HTTP (API)",
        "Runs and streams",
        "Model provider",
        "Celery queues and tasks",
        "Auth",
        "Billing",
        "Retention",
        "Webhooks",
    }


# --- every expression -----------------------------------------------------------------------


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[where for where, _ in ALL_EXPRS])
def test_expression_is_balanced_and_uses_only_known_metrics(where: str, expr: str) -> None:
    assert unbalanced(expr) is None, f"{where}: {unbalanced(expr)}"
    used = referenced_metrics(expr)
    assert used, f"{where} selects no metric"
    unknown = used - known_metrics()
    assert not unknown, f"{where} uses metrics nothing defines: {sorted(unknown)}"


# --- README inventory -----------------------------------------------------------------------


def test_readme_inventory_matches_the_source() -> None:
    readme = (ASSETS / "README.md").read_text(encoding="utf-8")
    inventory = readme.split("## Metric inventory", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_:]+)` \|", inventory, flags=re.MULTILINE))
    families = {**{_family(n, k): k for n, k in PENDING.items()}, **defined_families()}
    assert listed == set(families), (
        f"missing from README: {sorted(set(families) - listed)}; "
        f"not defined anywhere: {sorted(listed - set(families))}"
    )
