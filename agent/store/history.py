"""The model store's history in ``state.db``: every upload, activation, rollback and removal, with why.

A row is written *before* a step that changes anything (outcome ``started``) and updated after it, so
a crash leaves a row that says what was under way; the next start closes such rows as ``interrupted``
with what it did about it.

Each version's *verdict* is read from here too: how its latest activation ended (passed, failed,
rolled back, superseded, ...). "Last good" - where a rollback goes, and what every candidate is judged
against - is the newest version whose verdict is ``passed``; its figures (confidence, inference time)
are the ones its probation measured, or those measured live while it served, before a later activation.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from agent.core.state import StateDB
from fieldtui.protocol import ModelHistoryEntry, Verdict

SERVING_ACTIONS = ("activate", "rollback", "auto_rollback", "startup")
OPEN_OUTCOMES = ("started", "probation", "pending")
# an activation row's outcome -> the version's verdict
VERDICTS: dict[str, Verdict] = {
    "good": "passed",
    "failed": "failed",
    "refused": "failed",
    "rolled_back": "rolled_back",
    "superseded": "superseded",
    "started": "on_probation",
    "probation": "on_probation",
    "interrupted": "interrupted",
    "pending": "pending",
}


class ModelHistory:
    """Rows of the ``model_history`` table; safe from any thread (StateDB holds the lock)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def add(
        self,
        action: str,
        version: str | None,
        outcome: str,
        *,
        previous: str | None = None,
        reason: str | None = None,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO model_history (ts, action, version, previous, outcome, reason, job_id, details)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (time.time(), action, version, previous, outcome, reason, job_id, json.dumps(details or {})),
            )
            return int(cur.lastrowid)

    def update(
        self, row_id: int, outcome: str, reason: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        """Set a row's outcome (and reason, when given); ``details`` are merged into the row's."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT details, reason FROM model_history WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row["details"] or "{}"), **(details or {})}
            conn.execute(
                "UPDATE model_history SET outcome = ?, reason = ?, details = ?, updated = ? WHERE id = ?",
                (
                    outcome,
                    reason if reason is not None else row["reason"],
                    json.dumps(merged),
                    time.time(),
                    row_id,
                ),
            )

    @staticmethod
    def _entry(row: sqlite3.Row) -> ModelHistoryEntry:
        data = dict(row)
        data["details"] = json.loads(data["details"] or "{}")
        return ModelHistoryEntry.model_validate(data)

    def get(self, row_id: int) -> ModelHistoryEntry | None:
        rows = self.db.execute("SELECT * FROM model_history WHERE id = ?", (row_id,))
        return self._entry(rows[0]) if rows else None

    def recent(self, limit: int = 50) -> list[ModelHistoryEntry]:
        rows = self.db.execute("SELECT * FROM model_history ORDER BY id DESC LIMIT ?", (limit,))
        return [self._entry(r) for r in rows]

    def open_rows(self) -> list[ModelHistoryEntry]:
        """Rows a previous agent left unfinished (started, on probation, pending), oldest first."""
        marks = ",".join("?" * len(OPEN_OUTCOMES))
        rows = self.db.execute(
            f"SELECT * FROM model_history WHERE outcome IN ({marks}) ORDER BY id", OPEN_OUTCOMES
        )
        return [self._entry(r) for r in rows]

    def serving_row(self, version: str) -> ModelHistoryEntry | None:
        """The latest row that put ``version`` into service (or tried to)."""
        marks = ",".join("?" * len(SERVING_ACTIONS))
        rows = self.db.execute(
            f"SELECT * FROM model_history WHERE version = ? AND action IN ({marks}) ORDER BY id DESC LIMIT 1",
            (version, *SERVING_ACTIONS),
        )
        return self._entry(rows[0]) if rows else None

    def verdicts(self) -> dict[str, tuple[Verdict, str | None, int]]:
        """Each activated version's verdict: (verdict, reason, row id), from its latest activation
        (a failure to load at start counts too). Versions never activated are absent."""
        rows = self.db.execute(
            """SELECT id, version, action, outcome, reason FROM model_history
               WHERE version IS NOT NULL AND (action = 'activate' OR (action = 'startup' AND outcome = 'failed'))
               ORDER BY id"""
        )
        found: dict[str, tuple[Verdict, str | None, int]] = {}
        for r in rows:
            verdict = VERDICTS.get(r["outcome"])
            if verdict is not None:
                found[r["version"]] = (verdict, r["reason"], r["id"])
        return found

    def good_versions(self) -> list[str]:
        """Versions whose verdict is ``passed``, the most recently activated first."""
        passed = [(row, v) for v, (verdict, _, row) in self.verdicts().items() if verdict == "passed"]
        return [v for _, v in sorted(passed, reverse=True)]

    def figures_of(self, version: str | None) -> dict[str, Any] | None:
        """The newest figures recorded for ``version`` (None: the configured model) while it was good:
        its passing probation's, or the baseline measured live while it served, just before a later
        activation. None when nothing was recorded."""
        rows = self.db.execute(
            "SELECT * FROM model_history WHERE action = 'activate' AND (version IS ? OR previous IS ?) "
            "ORDER BY id DESC LIMIT 200",
            (version, version),
        )
        for r in rows:
            details = json.loads(r["details"] or "{}")
            passed = r["version"] == version and version is not None and r["outcome"] == "good"
            if passed and details.get("probation", {}).get("confidence") is not None:
                return {**details["probation"], "source": f"its probation (row {r['id']})"}
            baseline = details.get("baseline") or {}
            if r["previous"] == version and baseline.get("measured") == "live" and baseline.get("frames"):
                return {**baseline, "source": f"measured live before row {r['id']}"}
        return None

    def versions_with_sha(self, sha256: str) -> list[str]:
        """Versions ever stored with these bytes (from the upload rows: also those removed since)."""
        rows = self.db.execute(
            "SELECT DISTINCT version FROM model_history WHERE action = 'upload' AND outcome = 'stored' "
            "AND json_extract(details, '$.sha256') = ?",
            (sha256,),
        )
        return [r["version"] for r in rows]
