"""Reading a process's /metrics text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample ``name`` whose labels include ``labels``; None if absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


def exposed(text: str, name: str, **labels: str) -> float:
    """Like ``sample``, for a sample the process must expose."""
    value = sample(text, name, **labels)
    if value is None:
        raise AssertionError(f"{name} {labels} not exposed")
    return value
