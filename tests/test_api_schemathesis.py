"""The OpenAPI schema is the contract: schemathesis fuzzes a live agent from it, about a minute.

A real agent subprocess (uvicorn on 127.0.0.1, port 0) with its token; every operation but the endless
``GET /v1/events`` stream (tests/test_api_events.py reads that one); schemathesis' examples, coverage,
fuzzing and stateful phases under a time budget. It fails on any 5xx and on any answer the schema does
not describe (status code, content type, body, headers, Allow on 405, 405 for an undeclared method,
a request that breaks the schema accepted). Two checks are left out because they judge the API's
business rules, not its contract: ``positive_data_acceptance`` (a schema-valid source URI can still
name no camera, a schema-valid version no model) and ``ensure_resource_availability`` (it links the
benchmark *job* id of ``POST /v1/benchmarks`` to the *run* id of ``GET /v1/benchmarks/{run_id}``).

schemathesis runs as its own process (its CLI), so its pytest plugin and hypothesis settings never
meet this suite's; it installs beside pytest<9 (schemathesis 4.32).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BUDGET_S = int(os.environ.get("FUZZ_SECONDS", "50"))
EXCLUDED_CHECKS = "positive_data_acceptance,ensure_resource_availability"


def schemathesis() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return [exe]


def test_the_agent_keeps_its_openapi_contract_under_fuzzing(start_agent, agent_home, tmp_path: Path) -> None:
    cmd = schemathesis()
    agent = start_agent(agent_home, source="demo:?fps=10&size=160x120")
    report = tmp_path / "report.json"
    cmd += [
        "run",
        f"{agent.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {agent.token}",
        "--exclude-path",
        "/v1/events",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-time",
        str(BUDGET_S),
        "--max-examples",
        "30",
        # one worker: CPython 3.11's ast is not thread-safe, and schemathesis' coverage phase compiles in
        # each worker ("SystemError: AST constructor recursion depth mismatch" crashed it once in CI)
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "20",
        "--seed",
        os.environ.get("FUZZ_SEED", "17"),
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=BUDGET_S + 120,
        cwd=tmp_path,  # its .schemathesis/
    )
    summary = done.stdout[done.stdout.find("=== SUMMARY") :] if "=== SUMMARY" in done.stdout else ""
    requests, server_errors, findings = _figures(report)
    print(f"\nschemathesis: {requests} test cases, {server_errors} answered 5xx, {len(findings)} findings")
    for finding in findings:
        print("  -", finding)
    assert requests > 500, done.stdout[-3000:] + done.stderr[-2000:]
    assert server_errors == 0 and not findings and done.returncode == 0, done.stdout[-6000:] or summary
    # the agent is still whole afterwards
    with agent.client() as c:
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/status").status_code == 200
    assert "Traceback" not in agent.stderr()


def _figures(report: Path) -> tuple[int, int, list[str]]:
    """(test cases sent, of which answered 5xx, one line per failure kind) from schemathesis' JSON report."""
    if not report.exists():
        return 0, 0, []
    doc = json.loads(report.read_text())
    findings, server_errors = [], 0
    for failure in doc.get("failures", []):
        operations = ", ".join(failure.get("operations", []))
        findings.append(f"{failure['code']} {failure['title']} x{failure.get('count', 1)}: {operations}")
        if "server error" in failure["title"].lower() or failure.get("type") == "ServerError":
            server_errors += failure.get("count", 1)
    return doc.get("test_cases", {}).get("generated", 0), server_errors, findings
