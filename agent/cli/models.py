"""``fieldtui-agent models list | add FILE --version V [--sha256 H] | activate V | rollback | remove V``.

The SSH path to the model store. Two agents must never change one store at once, so:

- an agent serving from the home holds the store's lock (``models/.lock``); these commands then go
  through its API on localhost, with the token and address from the home (``token``, ``agent.json``):
  the very routes and code the console uses, with the live health check and probation;
- with no agent serving, they take the lock themselves and call the store code directly. ``activate``
  then makes the version current after verifying it and test-loading it (there are no live frames
  without an agent): the next start loads it and the history says how that went. ``rollback`` makes
  the last good version current.

``--json`` prints what the API returns: ModelList (list, remove), ModelVersion (add), Job (activate,
rollback; with the agent stopped, a job record made on the spot).
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.cli.args import home_flags
from agent.core.errors import AgentError
from fieldtui.protocol import Job, ModelList, ModelVersion, Problem

RUNTIME_WAIT_S = 15.0  # an agent that holds the lock but is still starting gets this long to listen
JOB_WAIT_S = 300.0


def _print(model: Any) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


# --- through the serving agent ----------------------------------------------------------------------


class LocalAgent:
    """The agent serving from this home, reached on localhost with the home's token."""

    def __init__(self, home: Any) -> None:
        import httpx

        deadline = time.monotonic() + RUNTIME_WAIT_S
        runtime = home.read_runtime()
        while runtime is None and time.monotonic() < deadline:
            time.sleep(0.2)
            runtime = home.read_runtime()
        if runtime is None:
            raise AgentError(
                f"the model store in {home.models_dir} is locked but no agent is listening from {home.root}; "
                "another `fieldtui-agent models` command may be running: wait for it and try again",
                status=409,
            )
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(runtime["host"], runtime["host"])
        tls = runtime.get("tls_fingerprint") is not None
        netloc = f"[{host}]" if ":" in host else host
        verify: ssl.SSLContext | bool = True
        if tls:  # our own certificate, read from the home: no fingerprint to compare by hand
            verify = ssl.create_default_context(cafile=str(home.tls_dir / "cert.pem"))
            verify.check_hostname = False
        token = home.token_file.read_text().strip()
        self.http = httpx.Client(
            base_url=f"{'https' if tls else 'http'}://{netloc}:{runtime['port']}",
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=httpx.Timeout(30.0, read=300.0),
            trust_env=False,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise AgentError(
                f"cannot reach the agent serving from this home ({err}); is it stopping?"
            ) from None
        if response.status_code >= 400:
            try:
                detail = Problem.model_validate_json(response.content).detail
            except ValueError:
                detail = f"HTTP {response.status_code}"
            raise AgentError(detail, status=response.status_code)
        return response

    def wait(self, job: Job) -> Job:
        deadline = time.monotonic() + JOB_WAIT_S
        while job.state in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = Job.model_validate_json(self.call("GET", f"/v1/jobs/{job.id}").content)
        return job


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            yield block


def _online(args: argparse.Namespace, home: Any) -> Any:
    from agent.inference.detector import file_sha256
    from agent.store.models import format_for

    agent = LocalAgent(home)
    with agent.http:
        if args.action == "list":
            return ModelList.model_validate_json(agent.call("GET", "/v1/models").content)
        if args.action == "add":
            path = Path(args.file)
            if not path.is_file():
                raise AgentError(f"model file not found: {path}", status=404)
            headers = {
                "Content-Length": str(path.stat().st_size),
                "X-Model-Sha256": args.sha256 or file_sha256(path),
                "X-Model-Format": format_for(path.name),
            }
            query = "?force=true" if args.force else ""
            response = agent.call(
                "PUT",
                f"/v1/models/{quote(args.version, safe='')}{query}",
                content=_chunks(path),
                headers=headers,
            )
            return ModelVersion.model_validate_json(response.content)
        if args.action == "remove":
            return ModelList.model_validate_json(
                agent.call("DELETE", f"/v1/models/{quote(args.version, safe='')}").content
            )
        path = (
            "/v1/models/rollback"
            if args.action == "rollback"
            else f"/v1/models/{quote(args.version, safe='')}/activate" + ("?force=true" if args.force else "")
        )
        return agent.wait(Job.model_validate_json(agent.call("POST", path).content))


# --- with no agent serving --------------------------------------------------------------------------


def _offline_job(kind: str, params: dict[str, Any], result: dict[str, Any]) -> Job:
    now = time.time()
    return Job(
        id=uuid.uuid4().hex,
        kind=kind,
        state="succeeded",
        progress=1.0,
        stage="done with the agent stopped",
        created=now,
        started=now,
        finished=now,
        params=params,
        result=result,
    )


def _offline(args: argparse.Namespace, config: Any) -> Any:
    from agent.core.state import StateDB
    from agent.store.catalog import ModelCatalog
    from agent.store.history import ModelHistory
    from agent.store.models import ModelStore
    from agent.store.settings import ModelSettings

    home = config.agent_home
    store = ModelStore(home.models_dir, ModelSettings.from_section(config.sections.get("models")))
    db = StateDB(home.state_db)
    manager = ModelCatalog(store, ModelHistory(db), config_model=config.model, backend=config.backend)
    try:
        if args.action == "list":
            return manager.list()
        if args.action == "add":
            return manager.add_file(
                Path(args.file),
                args.version,
                args.sha256,
                source=f"added on the device from {args.file}",
                force=args.force,
            )[0]
        if args.action == "remove":
            return manager.remove(args.version)
        if args.action == "activate":
            return _offline_job(
                "model.activate",
                {"version": args.version},
                manager.activate_offline(args.version, force=args.force),
            )
        return _offline_job("model.rollback", {}, manager.rollback_offline())
    finally:
        db.close()


def _text(args: argparse.Namespace, result: Any, online: bool) -> str:
    if isinstance(result, ModelList):
        return "\n".join(result.summary_lines()) if args.action == "list" else f"removed {args.version}"
    if isinstance(result, ModelVersion):
        m = result.manifest
        return (
            f"stored {m.version}  {m.size / 1e6:.1f} MB  sha256 {m.sha256[:12]}…  {m.layout} {m.input_shape}"
        )
    entry = result.result or {}
    target = entry.get("version") or "the configured model"
    if not online:
        return f"{target} is current; the agent loads it at its next start"
    if entry.get("outcome") == "unchanged":
        return entry.get("message", f"{target} already serves")
    verb = "rolled back to" if args.action == "rollback" else "now serving"
    return f"{verb} {target}" + (" (on probation)" if entry.get("outcome") == "probation" else "")


def cmd_models(args: argparse.Namespace) -> int:
    from agent.core.config import load_config
    from agent.store.models import StoreLock, check_version

    if getattr(args, "version", None) is not None:
        check_version(args.version)
    config = load_config(home=args.home, config_file=args.config)
    home = config.agent_home.ensure()
    home.models_dir.mkdir(mode=0o700, exist_ok=True)
    lock = StoreLock(home.models_dir / ".lock")
    online = not lock.acquire(0.0)
    try:
        result = _online(args, home) if online else _offline(args, config)
    finally:
        lock.release()
    if isinstance(result, Job) and result.state != "succeeded":
        if args.json:
            _print(result)
        raise AgentError(
            f"{result.kind} {result.state}: {result.error or 'see `fieldtui-agent models list`'}"
        )
    if args.json:
        _print(result)
    else:
        print(_text(args, result, online))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``models`` and its actions, on the ``fieldtui-agent`` parser."""
    p = sub.add_parser("models", help="the model store: list, add, activate, rollback, remove (SSH path)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        home_flags(q, json="print one JSON document")
        q.set_defaults(func=cmd_models)

    common(actions.add_parser("list", help="versions, which serves, the history with reasons"))
    q = actions.add_parser("add", help="store a model file under a version name")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--version", required=True, help="version name, like v7 or 2024.06.1")
    q.add_argument("--sha256", default=None, help="refuse the file unless it has this sha256")
    q.add_argument("--force", action="store_true", help="store it although the same bytes failed before")
    common(q)
    q = actions.add_parser("activate", help="switch to a stored version (health check and probation)")
    q.add_argument("version", metavar="VERSION")
    q.add_argument("--force", action="store_true", help="activate it although it failed before")
    common(q)
    common(actions.add_parser("rollback", help="go back to the last good version"))
    q = actions.add_parser("remove", help="delete a stored version (never the serving or current one)")
    q.add_argument("version", metavar="VERSION")
    common(q)
