"""The agent's state database: ``<home>/state.db`` (SQLite, WAL).

One connection, guarded by a lock, shared by the job runner and (in later issues) the model store, the
benchmark history and the audit log. Writes are tiny (a row per job change), so the lock is held for
microseconds; HTTP handlers reach this through FastAPI's thread pool, never on the event loop.

Schema changes are numbered steps in :data:`MIGRATIONS`, applied in order and recorded in
``PRAGMA user_version``; add a step, never edit one that shipped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.core.diskspace import LOW_BYTES, free_bytes
from agent.core.errors import AgentError
from fieldtui.protocol import Job

MIGRATIONS: list[str] = [
    # 1: jobs and their results
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        stage TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        params TEXT NOT NULL DEFAULT '{}',
        result TEXT,
        error TEXT
    );
    CREATE INDEX jobs_created ON jobs (created);
    """,
    # 2: the model store's history: uploads, activations, rollbacks (agent/store/history.py)
    """
    CREATE TABLE model_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        action TEXT NOT NULL,
        version TEXT,
        previous TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        job_id TEXT,
        details TEXT NOT NULL DEFAULT '{}',
        updated REAL
    );
    CREATE INDEX model_history_version ON model_history (version, id);
    """,
    # 3: benchmark results, one row per configuration of a run (agent/bench/history.py)
    """
    CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        created REAL NOT NULL,
        device_id TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        job_id TEXT,
        config TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX benchmarks_same ON benchmarks (model_sha256, config, id);
    CREATE INDEX benchmarks_run ON benchmarks (run_id);
    """,
]

INTERRUPTED = "agent restarted while the job was running"
NEVER_STARTED = "agent restarted before the job started"


class StateError(AgentError):
    status = 500


class StateDB:
    """The SQLite file and its one connection. Safe to use from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self.read_only: str | None = None  # why changes are not saved (a full disk), None normally
        self._conn = None
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode is durable across application crashes; only power loss may drop
            # the last transactions, never corrupt the file.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as err:
            if self._conn is not None:
                self._conn.close()
            free = free_bytes(self.path.parent)
            if free is None or free >= LOW_BYTES:
                raise StateError(
                    f"cannot open the state database {self.path}: {err}; "
                    "move it aside to start with an empty job history"
                ) from None
            # a full disk: serve from a copy in memory rather than not at all (the file is untouched)
            self._conn = self._memory_copy()
            self.read_only = f"the disk is full, so {self.path.name} is a copy in memory ({err}): history made now is lost at restart"
            return
        self.path.chmod(0o600)

    def _memory_copy(self) -> sqlite3.Connection:
        """state.db read as it is on disk (immutable: no -wal/-shm files made) into a database in memory."""
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if self.path.exists():
            try:
                src = sqlite3.connect(f"{self.path.as_uri()}?immutable=1", uri=True)
                try:
                    src.backup(conn)
                finally:
                    src.close()
            except sqlite3.DatabaseError:
                pass  # unreadable too: an empty history, said in the read-only reason
        self._conn = conn
        self._migrate()
        return conn

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StateError(
                f"{self.path} was written by a newer fieldtui-agent (schema {version}); upgrade the agent"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as conn:
                conn.executescript(f"BEGIN; {step}; PRAGMA user_version={number}; COMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, locked for this thread; statements inside run in one transaction unless
        the caller manages its own (as ``executescript`` does)."""
        with self._lock:
            if self._conn is None:
                raise StateError("the state database is closed (the agent is shutting down)")
            yield self._conn

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self.transaction() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                # fold the WAL back into the main file so a copied state.db is complete on its own
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._conn.close()
                    self._conn = None

    # --- jobs -------------------------------------------------------------------------------------

    def save_job(self, job: Job) -> None:
        self.execute(
            """INSERT INTO jobs (id, kind, state, progress, stage, created, started, finished,
                                 params, result, error)
               VALUES (:id, :kind, :state, :progress, :stage, :created, :started, :finished,
                       :params, :result, :error)
               ON CONFLICT(id) DO UPDATE SET
                 state=excluded.state, progress=excluded.progress, stage=excluded.stage,
                 started=excluded.started, finished=excluded.finished,
                 result=excluded.result, error=excluded.error""",
            {
                **job.model_dump(exclude={"params", "result"}),
                "params": json.dumps(job.params),
                "result": None if job.result is None else json.dumps(job.result),
            },
        )

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        data = dict(row)
        data["params"] = json.loads(data["params"] or "{}")
        data["result"] = None if data["result"] is None else json.loads(data["result"])
        return Job.model_validate(data)

    def get_job(self, job_id: str) -> Job | None:
        rows = self.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    def recent_jobs(self, limit: int = 50, kind: str | None = None) -> list[Job]:
        """Newest first."""
        if kind is None:
            rows = self.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        else:
            rows = self.execute(
                "SELECT * FROM jobs WHERE kind = ? ORDER BY created DESC LIMIT ?", (kind, limit)
            )
        return [self._job(r) for r in rows]

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def fail_interrupted_jobs(self, now: float) -> int:
        """Jobs the previous agent left queued or running can never finish: mark them failed."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state='failed', error=?, finished=? WHERE state='running'",
                (INTERRUPTED, now),
            )
            n = cur.rowcount
            cur = conn.execute(
                "UPDATE jobs SET state='failed', error=?, finished=? WHERE state='queued'",
                (NEVER_STARTED, now),
            )
            return n + cur.rowcount

    def prune_jobs(self, keep: int = 1000) -> int:
        """Forget all but the newest ``keep`` finished jobs, so the history stays small on a device."""
        with self.transaction() as conn:
            cur = conn.execute(
                """DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND id NOT IN
                   (SELECT id FROM jobs ORDER BY created DESC LIMIT ?)""",
                (keep,),
            )
            return cur.rowcount
