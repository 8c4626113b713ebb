"""SQLite storage: records, their immutable versions (which are also the change feed), request ids.

One connection behind one lock: every write takes the next change sequence inside the lock and
commits before releasing it, so sequences are assigned in commit order (the feed's guarantee).
"""

import contextlib
import json
import os
import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    creation_seq INTEGER NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS records_patient ON records (patient_id, creation_seq);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    change_type INTEGER NOT NULL,
    status INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    content_hash TEXT NOT NULL,
    data_classes TEXT NOT NULL,
    ods TEXT NOT NULL,
    author TEXT NOT NULL,
    source_system TEXT NOT NULL,
    effective_us INTEGER,
    recorded_us INTEGER NOT NULL,
    retraction_reason TEXT NOT NULL,
    etag TEXT NOT NULL,
    create_us INTEGER NOT NULL,
    update_us INTEGER NOT NULL,
    requester TEXT NOT NULL,
    UNIQUE (record_id, version)
);
CREATE TABLE IF NOT EXISTS request_ids (
    request_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    record_id TEXT NOT NULL
);
"""

COLUMNS = [
    "seq", "record_id", "version", "change_type", "status", "content_type", "payload", "content_hash",
    "data_classes", "ods", "author", "source_system", "effective_us", "recorded_us", "retraction_reason",
    "etag", "create_us", "update_us", "requester",
]
SELECT_VERSION = "SELECT " + ", ".join(f"v.{c}" for c in COLUMNS) + ", r.patient_id, r.resource_type, r.creation_seq"


class Version(dict):
    """One stored version, with its record's patient_id, resource_type and creation_seq."""

    def __getattr__(self, name):
        return self[name]


class Store:
    def __init__(self, path: str):
        self.lock = threading.RLock()
        self.changed = threading.Condition()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (os.urandom(32),))
            row = self.db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        self.secret = bytes(row[0])
        self._last_us = 0

    @contextlib.contextmanager
    def transaction(self):
        """The lock and a write transaction: committed when the block ends, rolled back if it raises."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # -- time and sequence ----------------------------------------------------------------

    def next_time_us(self, now_us: int) -> int:
        """Server time for a write: never equal to or before the previous write's."""
        self._last_us = max(now_us, self._last_us + 1)
        return self._last_us

    def head(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM versions").fetchone()[0]

    def notify(self):
        with self.changed:
            self.changed.notify_all()

    # -- reads ----------------------------------------------------------------------------

    def _rows(self, sql, args):
        cur = self.db.execute(sql, args)
        names = COLUMNS + ["patient_id", "resource_type", "creation_seq"]
        return [Version(zip(names, row)) for row in cur.fetchall()]

    def version(self, record_id: str, version: int = 0):
        """Latest version (version 0) or the given one, or None."""
        if version == 0:
            sql = SELECT_VERSION + " FROM versions v JOIN records r USING (record_id) WHERE v.record_id = ? ORDER BY v.version DESC LIMIT 1"
            rows = self._rows(sql, (record_id,))
        else:
            sql = SELECT_VERSION + " FROM versions v JOIN records r USING (record_id) WHERE v.record_id = ? AND v.version = ?"
            rows = self._rows(sql, (record_id, version))
        return rows[0] if rows else None

    def versions_desc(self, record_id: str, top: int, limit: int):
        sql = SELECT_VERSION + " FROM versions v JOIN records r USING (record_id) WHERE v.record_id = ? AND v.version <= ? ORDER BY v.version DESC LIMIT ?"
        return self._rows(sql, (record_id, top, limit))

    _AS_OF = (
        SELECT_VERSION + " FROM records r JOIN versions v ON v.record_id = r.record_id AND v.seq = "
        "(SELECT MAX(v2.seq) FROM versions v2 WHERE v2.record_id = r.record_id AND v2.seq <= :s) "
    )

    def patient_as_of(self, patient_id: str, snapshot: int):
        """Every record of a patient as of change sequence `snapshot`, in creation order."""
        sql = self._AS_OF + "WHERE r.patient_id = :p AND r.creation_seq <= :s ORDER BY r.creation_seq"
        return self._rows(sql, {"p": patient_id, "s": snapshot})

    def export_chunk(self, patients, snapshot: int, after_creation: int, limit: int):
        """Records as of `snapshot` created after `after_creation`, of the given patients (or all)."""
        args = {"s": snapshot, "a": after_creation, "l": limit}
        where = "r.creation_seq > :a AND r.creation_seq <= :s"
        if patients is not None:
            names = []
            for i, p in enumerate(patients):
                args[f"p{i}"] = p
                names.append(f":p{i}")
            where += f" AND r.patient_id IN ({', '.join(names)})"
        sql = self._AS_OF + f"WHERE {where} ORDER BY r.creation_seq LIMIT :l"
        return self._rows(sql, args)

    def feed(self, after: int, upto: int, limit: int):
        sql = SELECT_VERSION + " FROM versions v JOIN records r USING (record_id) WHERE v.seq > ? AND v.seq <= ? ORDER BY v.seq LIMIT ?"
        return self._rows(sql, (after, upto, limit))

    def request_id(self, request_id: str):
        return self.db.execute(
            "SELECT fingerprint, record_id FROM request_ids WHERE request_id = ?", (request_id,)
        ).fetchone()

    # -- writes (callers hold self.lock and a transaction) -------------------------------

    def insert_version(self, v: dict) -> int:
        seq = self.head() + 1
        row = dict(v, seq=seq, data_classes=json.dumps(v["data_classes"]), requester=json.dumps(v["requester"]))
        self.db.execute(
            f"INSERT INTO versions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
            [row[c] for c in COLUMNS],
        )
        return seq

    def insert_record(self, record_id, patient_id, resource_type, creation_seq):
        self.db.execute(
            "INSERT INTO records (record_id, patient_id, resource_type, creation_seq) VALUES (?, ?, ?, ?)",
            (record_id, patient_id, resource_type, creation_seq),
        )

    def remember_request(self, request_id, fingerprint, record_id):
        self.db.execute(
            "INSERT INTO request_ids (request_id, fingerprint, record_id) VALUES (?, ?, ?)",
            (request_id, fingerprint, record_id),
        )
