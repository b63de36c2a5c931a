"""The run history: every convert, bench and validate result, in a versioned SQLite file.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[n]` takes a database from
version n-1 to n, so a file written by any older jetson-edge opens (and is upgraded), and
a file written by a newer one is refused instead of being misread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from device_agent.protocol import JOB_KINDS, ProtocolError, result_from_dict
from edge.core.errors import EdgeError
from edge.core.paths import data_dir

# Version 1: the first, simple layout. Kept verbatim: fresh files are built by running
# every migration from 0, and tests/data/runs-schema1.sqlite was made from this SQL.
SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    result_json TEXT NOT NULL
);
"""

_V2_COLUMNS = ("model_digest", "fingerprint", "recipe", "options", "artifacts", "job_id", "labels")
_INSERT_COLUMNS = (
    "kind, device, model, model_digest, created_at, status, fingerprint, recipe, "
    "options, metrics, artifacts, job_id, labels, context"
)
_COLUMNS = "id, " + _INSERT_COLUMNS
_MARKS = ", ".join("?" * len(_INSERT_COLUMNS.split(",")))


def _migrate_1(db: sqlite3.Connection) -> None:
    db.execute(SCHEMA_V1)  # not executescript(): that would commit the open transaction


def _migrate_2(db: sqlite3.Connection) -> None:
    """Full layout: digest, fingerprint, recipe, options, artifacts, job id, labels."""
    db.execute("ALTER TABLE runs RENAME COLUMN result_json TO metrics")
    for col in _V2_COLUMNS:
        db.execute(f"ALTER TABLE runs ADD COLUMN {col} TEXT")
    rows = db.execute("SELECT id, metrics FROM runs").fetchall()
    for run_id, metrics in rows:
        try:
            result = json.loads(metrics)
        except ValueError:
            result = {}
        result = result if isinstance(result, dict) else {}
        options = result.get("options")
        db.execute(
            "UPDATE runs SET options = ?, job_id = ?, artifacts = ?, labels = '{}' WHERE id = ?",
            (
                json.dumps(options) if options is not None else None,
                result.get("job_id"),
                json.dumps(_artifacts(result)),
                run_id,
            ),
        )
    db.execute("CREATE INDEX runs_device ON runs(device)")
    db.execute("CREATE INDEX runs_digest ON runs(model_digest)")


def _migrate_3(db: sqlite3.Connection) -> None:
    """What a run was made with beyond its result: model size, the device's facts."""
    db.execute("ALTER TABLE runs ADD COLUMN context TEXT")


MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1,
    2: _migrate_2,
    3: _migrate_3,
}
SCHEMA_VERSION = max(MIGRATIONS)


def _artifacts(result: Dict[str, Any]) -> Dict[str, Any]:
    """Where a run's files are: on its device, under the device root."""
    job_id = result.get("job_id")
    out: Dict[str, Any] = {"device": result.get("device"), "job_id": job_id}
    if job_id:
        out["job_dir"] = f"jobs/{job_id}"
    for key in ("output_model", "converted"):
        if result.get(key):
            out[key] = result[key]
    return out


def format_id(run_id: int) -> str:
    return f"r{run_id}"


def parse_id(text: str) -> int:
    """'r12', 'R12' or '12' -> 12."""
    raw = text.strip()
    digits = raw[1:] if raw[:1] in ("r", "R") else raw
    if not digits.isdigit():
        raise EdgeError(f"{text!r} is not a run id (like r12).", "List runs with: edge runs ls")
    return int(digits)


_SUMMARY_KEYS = (
    "kind",
    "device",
    "model",
    "model_digest",
    "recipe",
    "created_at",
    "status",
    "job_id",
)


@dataclass
class Run:
    """One stored result and what it was run with."""

    id: int
    kind: str
    device: str
    model: str
    created_at: str
    status: str
    metrics: Dict[str, Any]
    model_digest: Optional[str] = None
    fingerprint: Optional[Dict[str, Any]] = None
    recipe: Optional[str] = None
    options: Optional[Dict[str, Any]] = None
    artifacts: Dict[str, Any] = field(default_factory=dict)
    job_id: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    # Recorded since schema 3 (empty before): "model_bytes", "device_facts" (DeviceFacts dict).
    context: Dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return format_id(self.id)

    def result(self) -> Any:
        """The result dataclass (ConvertResult, BenchResult or ValidateResult)."""
        try:
            return result_from_dict(self.kind, self.metrics)
        except ProtocolError as exc:
            raise EdgeError(f"Run {self.run_id} holds an unreadable result: {exc}") from exc

    def summary(self) -> Dict[str, Any]:
        """The `edge runs ls --json` row."""
        return {"id": self.run_id, **{k: getattr(self, k) for k in _SUMMARY_KEYS}}

    def to_dict(self) -> Dict[str, Any]:
        """Everything, with the id as 'r12'."""
        return {**asdict(self), "id": self.run_id}


def _dumps(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(text: Optional[str]) -> Any:
    return json.loads(text) if text else None


def _row_to_run(row: sqlite3.Row) -> Run:
    data = dict(zip(row.keys(), row))
    for key in ("metrics", "fingerprint", "options", "artifacts", "labels", "context"):
        data[key] = _loads(data[key])
    for key in ("metrics", "artifacts", "labels", "context"):
        data[key] = data[key] or {}
    return Run(**data)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class RunStore:
    """The SQLite run history (default: data_dir()/runs.sqlite). Opening migrates it."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path else data_dir() / "runs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    def _migrate(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise EdgeError(
                f"{self.path} is not a run database: {exc}", "Move it aside; a new one is made."
            ) from exc
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EdgeError(
                    f"{self.path} has run-store schema {version}, but this jetson-edge knows "
                    f"only up to {SCHEMA_VERSION}: it was written by a newer jetson-edge.",
                    "Upgrade jetson-edge: pip install -U jetson-edge",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](self.db)
                self.db.execute(f"PRAGMA user_version = {target}")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self,
        kind: str,
        result: Any,
        model: str,
        model_digest: Optional[str] = None,
        fingerprint: Optional[Dict[str, Any]] = None,
        recipe: Optional[str] = None,
        labels: Optional[Dict[str, str]] = None,
        context: Optional[Dict[str, Any]] = None,
    ) -> Run:
        """Store one device's result (a protocol dataclass or its dict); `context`: what
        else it was run with (`Run.context`)."""
        if kind not in JOB_KINDS:
            raise EdgeError(f"Unknown run kind {kind!r}; one of {', '.join(JOB_KINDS)}.")
        data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        row = (
            kind,
            data.get("device") or "?",
            str(model),
            model_digest,
            created,
            data.get("status") or "?",
            _dumps(fingerprint),
            recipe,
            _dumps(data.get("options")),
            _dumps(data),
            _dumps(_artifacts(data)),
            data.get("job_id"),
            _dumps(labels or {}),
            _dumps(context or {}),
        )
        cur = self.db.execute(f"INSERT INTO runs ({_INSERT_COLUMNS}) VALUES ({_MARKS})", row)
        assert cur.lastrowid is not None
        return self.get(str(cur.lastrowid))

    def get(self, run_id: str) -> Run:
        """One run by id ('r12' or '12')."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (parse_id(str(run_id)),)
        ).fetchone()
        if row is None:
            raise EdgeError(f"No run {run_id!r} in {self.path}.", "List runs with: edge runs ls")
        return _row_to_run(row)

    def list(
        self,
        device: Optional[str] = None,
        model: Optional[str] = None,
        kind: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Run]:
        """Runs, oldest first; `limit` keeps the newest N. `model` matches a path substring
        or a digest prefix."""
        where: List[str] = []
        args: List[Any] = []
        if device:
            where.append("device = ?")
            args.append(device)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if model:
            where.append("(model LIKE ? ESCAPE '\\' OR model_digest LIKE ? ESCAPE '\\')")
            args += [f"%{_like(model)}%", f"{_like(model)}%"]
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, int(limit)))
        return [_row_to_run(r) for r in reversed(self.db.execute(sql, args).fetchall())]
