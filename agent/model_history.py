"""The model store's history in ``state.db``: every upload, activation, rollback and removal, with why.

A row is written *before* a step that changes anything (outcome ``started``) and updated after it, so
a crash leaves a row that says what was under way; the next start closes such rows as ``interrupted``
with what it did about it. "Last good" - where a rollback goes - is read from here: the versions whose
latest serving row (activate, rollback, auto_rollback, startup) ended ``good``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from agent.state import StateDB
from fieldtui.protocol import ModelHistoryEntry

SERVING_ACTIONS = ("activate", "rollback", "auto_rollback", "startup")
OPEN_OUTCOMES = ("started", "probation", "pending")


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

    def good_versions(self) -> list[str]:
        """Versions whose latest serving row ended ``good``, most recently proven first."""
        marks = ",".join("?" * len(SERVING_ACTIONS))
        rows = self.db.execute(
            f"""SELECT h.version FROM model_history h
                JOIN (SELECT version, MAX(id) AS id FROM model_history
                      WHERE version IS NOT NULL AND action IN ({marks}) GROUP BY version) last
                  ON h.id = last.id
                WHERE h.outcome = 'good' ORDER BY h.id DESC""",
            SERVING_ACTIONS,
        )
        return [r["version"] for r in rows]
