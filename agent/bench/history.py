"""Benchmark history in ``state.db`` and the comparison with the previous run of the same thing.

A row per measured configuration: the device, the model's sha256 fingerprint, the configuration (JSON
with sorted keys, so the same configuration is the same text) and the result. "The previous run of the
same configuration" is the newest earlier row with the same fingerprint and configuration text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from agent.core.errors import NotFound
from agent.core.state import StateDB
from fieldtui.protocol import BenchmarkConfig, BenchmarkResult, BenchmarkRun, Comparison
from fieldtui.protocol.benchnoise import judge


def config_key(config: BenchmarkConfig) -> str:
    data = config.model_dump(mode="json")
    if data.get("cameras") is None:  # rows stored before the multi-camera benchmark keep their key
        data.pop("cameras", None)
    return json.dumps(data, sort_keys=True)


def _pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return round(100.0 * (new - old) / old, 1)


def _best(result: BenchmarkResult) -> float | None:
    """The run's fastest call (None when its rounds do not say: pipeline mode, older rows)."""
    mins = [r.min_ms for r in result.rounds if r.min_ms is not None]
    return min(mins) if mins else None


def compare(
    result: BenchmarkResult, previous: BenchmarkResult, previous_id: int, created: float
) -> Comparison:
    """Better or worse only when p50 moved by more than the runs' own spread and their per-round p50s
    differ (fieldtui/protocol/benchnoise.py); otherwise the same within noise."""
    p50 = _pct(
        result.latency.p50_ms if result.latency else None,
        previous.latency.p50_ms if previous.latency else None,
    )
    fps = _pct(result.fps, previous.fps)
    best = _pct(_best(result), _best(previous))
    verdict, noise, p_value = judge(
        [r.p50_ms for r in result.rounds], [r.p50_ms for r in previous.rounds], p50, best
    )
    return Comparison(
        previous_id=previous_id,
        previous_created=created,
        p50_change_pct=p50,
        fps_change_pct=fps,
        verdict=verdict,
        noise_pct=noise,
        p_value=p_value,
        best_change_pct=best,
    )


class BenchmarkHistory:
    """The ``benchmarks`` table."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def previous(
        self, model_sha256: str, config: BenchmarkConfig
    ) -> tuple[int, float, BenchmarkResult] | None:
        rows = self.db.execute(
            """SELECT id, created, result FROM benchmarks WHERE model_sha256 = ? AND config = ?
               AND json_extract(result, '$.status') = 'ok' ORDER BY id DESC LIMIT 1""",
            (model_sha256, config_key(config)),
        )
        if not rows:
            return None
        return rows[0]["id"], rows[0]["created"], BenchmarkResult.model_validate_json(rows[0]["result"])

    def save(self, run: BenchmarkRun) -> BenchmarkRun:
        """Compare each ok result with its predecessor, then store the run; returns it with ids set."""
        saved = []
        for result in run.results:
            if result.status == "ok":
                prev = self.previous(run.model_sha256, result.config)
                if prev is not None:
                    result = result.model_copy(
                        update={"comparison": compare(result, prev[2], prev[0], prev[1])}
                    )
            with self.db.transaction() as conn:
                cur = conn.execute(
                    """INSERT INTO benchmarks (run_id, created, device_id, model_sha256, model, job_id,
                       config, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        run.id,
                        run.created,
                        run.device_id,
                        run.model_sha256,
                        run.model,
                        run.job_id,
                        config_key(result.config),
                        "",
                    ),
                )
                result = result.model_copy(update={"id": cur.lastrowid})
                conn.execute(
                    "UPDATE benchmarks SET result = ? WHERE id = ?", (result.model_dump_json(), cur.lastrowid)
                )
            saved.append(result)
        return run.model_copy(update={"results": saved})

    @staticmethod
    def _runs(rows: Sequence[sqlite3.Row]) -> list[BenchmarkRun]:
        runs: dict[str, BenchmarkRun] = {}
        for r in rows:
            result = BenchmarkResult.model_validate_json(r["result"])
            run = runs.get(r["run_id"])
            if run is None:
                runs[r["run_id"]] = BenchmarkRun(
                    id=r["run_id"],
                    created=r["created"],
                    device_id=r["device_id"],
                    model_sha256=r["model_sha256"],
                    model=r["model"],
                    job_id=r["job_id"],
                    results=[result],
                )
            else:
                run.results.append(result)
        return list(runs.values())

    def list(self, limit: int = 20) -> list[BenchmarkRun]:
        """The newest ``limit`` runs, newest first."""
        rows = self.db.execute(
            """SELECT * FROM benchmarks WHERE run_id IN
               (SELECT run_id FROM benchmarks GROUP BY run_id ORDER BY MAX(id) DESC LIMIT ?)
               ORDER BY id""",
            (limit,),
        )
        return sorted(self._runs(rows), key=lambda run: run.created, reverse=True)

    def get(self, run_id: str) -> BenchmarkRun:
        runs = self._runs(self.db.execute("SELECT * FROM benchmarks WHERE run_id = ? ORDER BY id", (run_id,)))
        if not runs:
            raise NotFound(f"no benchmark run {run_id!r} on this agent; GET /v1/benchmarks lists them")
        return runs[0]
