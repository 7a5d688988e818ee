"""A long Schemathesis run against a running API (`make dev`), as the owner of a new tenant.

    uv run --frozen python -m tests.fuzz.live --url http://127.0.0.1:8000 --seconds 300

Registers a tenant on that API and uses it (a conversation, a run, a subscription, an
invitation), then runs ``schemathesis run`` on the API's /openapi.json for the given time,
every phase (examples, coverage, fuzzing, stateful), with the owner's bearer token on every
request and the tenant's ids given as values of the parameters that name them. Prints the
figures of the run (requests, operations, failures by check) from Schemathesis' JSON report,
which stays in ``--report-dir`` with a JUnit report. Arguments after ``--`` go to
``schemathesis run`` as they are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from tests.fuzz.tenant import FuzzTenant, sign_up_and_use

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
# Where each real value goes, by the parameter's location and name. Not the stream ticket: it
# expires within a minute, and an expired one answers 401 even beside a valid bearer token.
BINDINGS = {
    "path.run_id": "run_id",
    "path.conversation_id": "conversation_id",
    "path.invitation_id": "invitation_id",
    "path.user_id": "user_id",
    "body.conversation_id": "conversation_id",
    "body.plan_code": "plan_code",
}


class ApiSession(requests.Session):
    """Paths relative to the API's base URL."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        path = url.decode() if isinstance(url, bytes) else url
        kwargs.setdefault("timeout", 30)
        return super().request(method, f"{self.base_url}{path}", *args, **kwargs)


def config_toml(tenant: FuzzTenant) -> str:
    """The owner's token on every request; each bound parameter takes a real value half of
    the time and a generated one otherwise."""
    lines = ["[headers]", f'Authorization = "Bearer {tenant.access_token}"', ""]
    bound = {key: name for key, name in BINDINGS.items() if name in tenant.values}
    for name in sorted(set(bound.values())):
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(tenant.values[name])}", ""]
    lines.append("[parameters]")
    for key, name in bound.items():
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL")
    parser.add_argument("--seconds", type=int, default=300, help="time budget of the run")
    parser.add_argument(
        "--report-dir", type=Path, default=Path(tempfile.gettempdir()) / "switchboard-fuzz"
    )
    parser.add_argument("schemathesis_args", nargs="*", help="after --: more for schemathesis")
    args = parser.parse_args(argv)

    with ApiSession(args.url) as session:
        _, tenant = sign_up_and_use(session)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    report_path = args.report_dir / "report.json"
    with tempfile.TemporaryDirectory(prefix="switchboard-fuzz-") as directory:
        config = Path(directory) / "schemathesis.toml"
        config.write_text(config_toml(tenant))
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                f"--config-file={config}",
                "run",
                f"{args.url.rstrip('/')}/openapi.json",
                f"--checks={CHECKS}",
                f"--max-time={args.seconds}",
                "--report=json,junit",
                f"--report-dir={args.report_dir}",
                f"--report-json-path={report_path}",
                *args.schemathesis_args,
            ],
            check=False,
        )
    if report_path.exists():
        print(summary(json.loads(report_path.read_text())))
    return completed.returncode


def summary(report: dict[str, Any]) -> str:
    """The run's figures: time, operations, test cases (a request each), failures."""
    operations, cases = report["operations"], report["test_cases"]
    lines = [
        f"running time: {report['running_time']} s ({report['stop_reason']})",
        f"operations: {operations['tested']} tested of {operations['total']}"
        f" ({operations['errored']} errored, {operations['skipped']} skipped)",
        f"test cases: {cases['generated']} generated, {cases['with_failures']} with failures,"
        f" {cases['unique_failures']} unique failures, {cases['errored']} errored",
    ]
    for failure in report["failures"]:
        lines.append(
            f"failure {failure['code']} {failure['title']}: {failure['count']}"
            f" in {', '.join(failure['operations'])}"
        )
    lines += [f"error {error['title']}: {error['count']}" for error in report["errors"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
