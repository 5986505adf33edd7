"""What the agent serves when it starts: a valid ``current``, else the last good version, else the
configured (or demo) model - after clearing what an interrupted push or activation left behind.

The history (agent/store/history.py) says what was under way when the previous agent stopped:

- an upload ``started``: its staging folder is gone now; the row says whether it had been committed;
- an activation ``started`` or on ``probation`` whose version ``current`` already names: it was never
  proven, so last good (the newest version that passed probation, else the configured model) is served
  again - a model that crashes the agent must not come back on every restart, and neither must one that
  was itself still on probation; one not yet switched in is simply recorded as interrupted;
- a rollback that had not finished is finished;
- a ``pending`` activation (made with the agent stopped) is loaded now, and the row says how it went.

Every candidate is verified (size and sha256 against its manifest) and loaded before it is chosen; one
that fails is recorded as failed and the next is tried.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.core.errors import AgentError
from fieldtui.protocol import ModelHistoryEntry

if TYPE_CHECKING:
    from agent.store.activation import ModelManager

log = logging.getLogger("fieldtui.agent.reconcile")


def _close_uploads(manager: ModelManager, rows: list[ModelHistoryEntry]) -> None:
    for row in rows:
        if row.action != "upload":
            continue
        stored = row.version is not None and manager.store.has(row.version)
        sha = row.details.get("sha256")
        if stored and (sha is None or manager.store.manifest(row.version).sha256 == sha):  # type: ignore[arg-type]
            manager.history.update(row.id, "stored", reason="stored just before the agent stopped")
        else:
            manager.history.update(
                row.id,
                "interrupted",
                reason="the agent stopped during the upload; the partial file was removed",
            )


def _first_loadable(
    manager: ModelManager, plan: list[tuple[str | None, str | None]], current: str | None
) -> tuple[str | None, str | None, Any]:
    """The first candidate that verifies and loads: (version, why, detector). A failing one is recorded;
    when even the configured model fails, its ModelError stops the start (it says what to do)."""
    tried: set[str | None] = set()
    for version, why in plan:
        if version in tried or (version is not None and not manager.store.has(version)):
            continue
        tried.add(version)
        try:
            manifest = manager.store.verify(version) if version is not None else None
            return version, why, manager.load(version, manifest)
        except AgentError as err:
            if version is None:
                raise
            log.error("model %s cannot be served: %s", version, err)
            manager.history.add(
                "startup", version, "failed", previous=current, reason=f"not loadable at start: {err}"
            )
    raise AssertionError("the plan always ends with the configured model")  # pragma: no cover


Plan = list[tuple[str | None, str | None]]  # (version, why it was chosen; None: as expected), in order


def _plan_interrupted(
    manager: ModelManager, open_rows: list[ModelHistoryEntry], current: str | None
) -> tuple[Plan, dict[int, tuple[str, str]], ModelHistoryEntry | None]:
    """What the rows left open by the previous agent ask for: the candidates they put first, each row's
    (outcome, reason) once the choice is known, and the last ``pending`` activation. A row whose version
    never became current is closed here as interrupted."""
    label = manager.label
    plan: Plan = []
    settle: dict[int, tuple[str, str]] = {}
    pending: ModelHistoryEntry | None = None
    for row in open_rows:
        if row.action == "upload":
            continue
        if row.outcome == "pending":
            pending = row  # the last one wins: it made the link as it is now
        elif row.action in ("rollback", "auto_rollback"):
            plan.append((row.version, f"finishing the rollback to {label(row.version)} the agent was doing"))
            settle[row.id] = ("good", "finished at the next start")
        elif row.version == current:  # switched in, never proven
            good = manager.last_good(excluding=current)
            back = manager.good_label(good)
            plan.append((good, f"the agent stopped before {row.version} was proven; back to {back}"))
            settle[row.id] = (
                "interrupted",
                f"the agent stopped before {row.version} was proven; the next start went back to {back}",
            )
        else:
            manager.history.update(
                row.id,
                "interrupted",
                reason=f"the agent stopped before {row.version} became current; {label(current)} kept serving",
            )
    return plan, settle, pending


def _plan_current(manager: ModelManager, current: str | None) -> Plan:
    """With nothing interrupted: ``current`` when its activation was proven (or made offline), else the
    last good version."""
    if current is None:
        return []
    row = manager.history.serving_row(current)
    if row is None or row.outcome in ("good", "pending"):
        return [(current, None)]
    if row.action == "activate":
        good = manager.last_good(excluding=current)
        return [(good, f"{current} was never proven ({row.outcome}); back to {manager.good_label(good)}")]
    return []


def _plan_fallbacks(manager: ModelManager) -> Plan:
    """After the preferred choice: every good version, newest first, then the configured model."""
    plan: Plan = [
        (version, f"the current model could not be served; back to the last good version {version}")
        for version in manager.history.good_versions()
    ]
    plan.append((None, f"no version in the store could be served; {manager.label(None)} serves"))
    return plan


def reconcile(manager: ModelManager) -> Any:
    """Clean up, choose, verify and load; returns the Detector to start the pipeline with."""
    store, history, label = manager.store, manager.history, manager.label
    store.clean_staging()
    open_rows = history.open_rows()
    _close_uploads(manager, open_rows)
    current = store.current()
    broken_link = current is None and store.current_link.is_symlink()
    if broken_link:
        log.warning("models/current points at no complete version; choosing another model")

    plan, settle, pending = _plan_interrupted(manager, open_rows, current)
    plan = (plan or _plan_current(manager, current)) + _plan_fallbacks(manager)
    version, why, detector = _first_loadable(manager, plan, current)
    if version != current or broken_link:
        store.set_current(version)
    manager.serving = version
    for row_id, (outcome, reason) in settle.items():
        history.update(row_id, outcome, reason=reason)
    if pending is not None:
        if version == pending.version:
            history.update(pending.id, "good", reason="loaded and warmed up at start")
        else:
            history.update(
                pending.id, "failed", reason=f"could not be loaded at start; {label(version)} serves"
            )
    if why is not None and (current is not None or broken_link or settle or pending is not None):
        log.warning("model store: %s", why)
        history.add("startup", version, "good", previous=current, reason=why)
    elif version is not None:
        log.info("serving model %s from the store", version)
    return detector
