"""The broker's durable message store: durable messages on disk, so that they survive a
restart, ``kill -9`` included.

One SQLite file (standard library `sqlite3`) under the broker's data directory holds one
row per durable message that is still queued: its address, the AMQP message bytes as
they arrived (the broker never decodes bodies), its delivery count, and when it expires.
The broker calls `MessageStore.add` / `add_many` before it settles a durable message as
accepted, and `remove` / `remove_many` once a consumer settled it, or `apply` for all of
these at once; each of these calls is one transaction that is on disk when it returns.

Paging: a broker that bounds its memory keeps the messages beyond the bound here only,
non-durable ones too, and reads them back a slice at a time (`page`, by address in id
order, through an index on the address). A non-durable message is marked *transient*:
it is never read back after a restart, and `drop_stale` deletes such leftovers in
slices. After a restart the broker reads how many messages each address has, and their
bytes, from a table of totals that triggers keep up to date in every transaction
(`totals`): one small query, whatever the number of messages. `load` hands every
message back in insertion order.

Why these SQLite settings:

- ``journal_mode=WAL``: a commit appends to the write-ahead log and fsyncs once, instead
  of writing the rollback journal and the database (two fsyncs or more).
- ``synchronous=FULL``: the log is fsynced at every commit, so an acknowledged message
  survives a power cut, not only a killed process (``NORMAL`` only survives the latter).
- ``locking_mode=EXCLUSIVE``: the file stays locked while the store is open, so a second
  broker pointed at the same data directory fails at once with a clear error instead of
  delivering the same messages twice. It also spares a lock round trip per transaction
  and the shared-memory index file.

Store ids are allocated here, not by SQLite: each new message gets a higher id than
every message in the store (we are the only writer, thanks to the exclusive lock), which
makes id order insertion order and lets `add_many` insert a batch with one
``executemany``. An id is never reused while the store is open, so a late `remove` of a
settled message cannot delete a newer one.

Not thread-safe: the broker calls the store from its one event loop. Calls must not
overlap, but they may run in another thread (``asyncio.to_thread``), one at a time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "STORE_FILE_NAME",
    "SCHEMA_VERSION",
    "Addition",
    "MessageStore",
    "StoreError",
    "StoredMessage",
]

#: The store's file name inside the data directory (with ``-wal`` beside it while open).
STORE_FILE_NAME = "messages.sqlite3"

#: The schema this module reads and writes, kept in ``PRAGMA user_version``. A store of
#: schema 1 (no deadlines, no transient messages, no totals) is migrated when opened; a
#: file with any other version is refused, never guessed at.
SCHEMA_VERSION = 2

#: ``PRAGMA application_id`` of a message store ("AMQS"), which tells our files apart from
#: other SQLite databases (see https://www.sqlite.org/fileformat.html#application_id).
APPLICATION_ID = 0x414D5153

#: How many rows `load` reads per query: bounded memory, and no statement stays open
#: while the caller handles the messages it was given.
_LOAD_PAGE = 1000

#: Once a checkpoint has copied the log into the database, a log larger than this is
#: truncated, so that one burst does not leave a huge ``-wal`` file behind for good.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024

#: A message to add: (address, encoded, deadline, transient). The deadline is when it
#: expires (``time.time()``), or None: never, or for a message added by `add_many`,
#: whenever its time to live says, counted from when it is read back.
Addition = tuple[str, bytes, float | None, bool]

_MESSAGE_TABLE = """
CREATE TABLE message (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    deadline REAL,
    transient INTEGER NOT NULL DEFAULT 0,
    encoded BLOB NOT NULL
)
"""
# The blob comes last so that reading the other columns of a row reads its first page
# only, never the overflow pages of a large message.

#: What schema 2 adds to the message table: indexes, and totals kept by triggers.
_INDEXES_AND_TOTALS = [
    # With the id (the rowid) behind the address: an address's messages in id order.
    "CREATE INDEX message_by_address ON message (address)",
    "CREATE INDEX message_transient ON message (id) WHERE transient = 1",
    """
    CREATE TABLE address_total (
        address TEXT PRIMARY KEY,
        messages INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO address_total
    SELECT address, count(*), sum(length(encoded)) FROM message
    WHERE transient = 0 GROUP BY address
    """,
    """
    CREATE TRIGGER message_added AFTER INSERT ON message WHEN NEW.transient = 0
    BEGIN
        INSERT INTO address_total VALUES (NEW.address, 1, length(NEW.encoded))
        ON CONFLICT (address) DO UPDATE
        SET messages = messages + 1, bytes = bytes + excluded.bytes;
    END
    """,
    """
    CREATE TRIGGER message_removed AFTER DELETE ON message WHEN OLD.transient = 0
    BEGIN
        UPDATE address_total
        SET messages = messages - 1, bytes = bytes - length(OLD.encoded)
        WHERE address = OLD.address;
        DELETE FROM address_total WHERE address = OLD.address AND messages = 0;
    END
    """,
]

#: From schema 1 to 2: new columns (cheap: SQLite adds them to the table's definition
#: only), then the indexes and the totals (one pass over the messages).
_MIGRATION_FROM_1 = [
    "ALTER TABLE message ADD COLUMN deadline REAL",
    "ALTER TABLE message ADD COLUMN transient INTEGER NOT NULL DEFAULT 0",
    *_INDEXES_AND_TOTALS,
]

#: What a failure means for the operator, by SQLite's extended result code, else by its
#: primary one.
_HINTS = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_IOERR_WRITE": "cannot write to the disk (is it full, or is a file size limit set?)",
    "SQLITE_IOERR_FSYNC": "cannot flush to the disk",
    "SQLITE_IOERR_LOCK": "cannot lock the file (is it read-only?)",
    "SQLITE_IOERR": "input/output error",
    "SQLITE_READONLY": "the file or its directory is read-only",
    "SQLITE_CANTOPEN": "cannot open or create the file (is the directory writable?)",
    "SQLITE_PERM": "permission denied",
    "SQLITE_NOTADB": "not an SQLite database: the file is corrupted or is something else",
    "SQLITE_CORRUPT": "the file is corrupted",
    "SQLITE_BUSY": "in use by another process (another broker with the same data directory?)",
    "SQLITE_LOCKED": "in use by another process (another broker with the same data directory?)",
    "SQLITE_TOOBIG": "the message is too large for the store",
}


class StoreError(Exception):
    """The store cannot be opened, read or written: `path` is its file, `reason` says why.

    A failed `MessageStore.add` means the message was not acknowledged (though it may
    still be found after a restart if the failure came after its commit reached the disk);
    a failed `MessageStore.remove` means the message may come back after a restart.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"message store {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A durable message as `MessageStore.load` returns it after a restart."""

    store_id: int
    address: str
    encoded: bytes
    delivery_count: int
    #: When it expires (``time.time()``); None: never, or as its time to live says from
    #: now, if it was added without a deadline (by `add_many`, or in schema 1).
    deadline: float | None = None


class MessageStore:
    """The durable messages of one broker, in ``<data_dir>/messages.sqlite3``.

    Open it with `MessageStore.open`. Every write method is one transaction that is
    durable (fsynced) when it returns, and raises `StoreError` when it is not; no other
    SQLite error escapes. Not thread-safe: one call at a time (see the module's notes).
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, next_id: int) -> None:
        """Use `MessageStore.open`."""
        self._path = path
        self._connection: sqlite3.Connection | None = connection
        self._next_id = next_id
        #: Transient messages with a lower id were written before this opening: stale.
        self._opened_at_id = next_id

    @classmethod
    def open(cls, data_dir: Path) -> MessageStore:
        """Open the store in `data_dir`, creating the directory and the store if missing.

        Raises `StoreError` when the directory cannot be written, when another process
        holds the store, when the file is corrupted or not a message store, and when its
        schema version is neither `SCHEMA_VERSION` nor one it migrates from: a store is
        never silently started empty.
        """
        path = Path(data_dir) / STORE_FILE_NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(path, f"cannot create the data directory: {error}") from error
        try:
            # SQLite quietly opens a file it may not write read-only and fails later on,
            # with a vaguer error: ask the system first. Owner-only permissions, since
            # the store holds users' messages (SQLite gives its log the same ones).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as error:
            raise StoreError(path, f"cannot open the file for writing: {error}") from error
        try:
            # timeout=0: a store held by another process is an error now, not in 5 s.
            connection = sqlite3.connect(
                path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise _store_error(path, error) from error
        try:
            next_id = _prepare(path, connection)
        except BaseException:
            connection.close()
            raise
        return cls(path, connection, next_id)

    @property
    def path(self) -> Path:
        """The store's SQLite file."""
        return self._path

    def add(self, address: str, encoded: bytes) -> int:
        """Store one message for `address`; it is on disk when its store id is returned."""
        return self.add_many([(address, encoded)])[0]

    def add_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store durable messages in one transaction (one fsync): all or none of them.

        `items` are (address, encoded message) pairs; the store ids returned are in the
        same order, and increasing, so that `load` gives the messages back in this order.
        Their deadline is left to their time to live, counted when they are read back
        (see `Addition`).
        """
        return self.apply([(address, encoded, None, False) for address, encoded in items])

    def remove(self, store_id: int) -> None:
        """Delete a message (its consumer settled it); done on disk when this returns.

        An id that is not in the store is ignored.
        """
        self.remove_many([store_id])

    def remove_many(self, ids: Iterable[int]) -> None:
        """Delete messages in one transaction (one fsync); ids not in the store are ignored."""
        self.apply(removals=ids)

    def update_delivery_count(self, store_id: int, count: int) -> None:
        """Record a message's delivery count (after a modified/delivery-failed outcome).

        Durable on return; an id that is not in the store is ignored.
        """
        self.apply(delivery_counts=[(store_id, count)])

    def apply(
        self,
        adds: Sequence[Addition] = (),
        removals: Iterable[int] = (),
        delivery_counts: Iterable[tuple[int, int]] = (),
    ) -> list[int]:
        """Add, remove and update messages in one transaction (one fsync): all of it or
        nothing. Returns the new messages' store ids, as `add_many` does. A transient
        addition is a non-durable message paged out: it never comes back after a
        restart."""
        first = self._next_id
        added = [(first + index, *addition) for index, addition in enumerate(adds)]
        # Spent even if the write fails: a commit that failed late may still be on disk.
        self._next_id = first + len(added)
        self._write(
            [
                (
                    "INSERT INTO message (id, address, encoded, deadline, transient)"
                    " VALUES (?, ?, ?, ?, ?)",
                    added,
                ),
                ("DELETE FROM message WHERE id = ?", [(store_id,) for store_id in removals]),
                (
                    "UPDATE message SET delivery_count = ? WHERE id = ?",
                    [(count, store_id) for store_id, count in delivery_counts],
                ),
            ]
        )
        return list(range(first, self._next_id))

    def load(self) -> Iterator[StoredMessage]:
        """Every stored message, in insertion order, but the stale transient ones.

        Rows are read a page at a time; the store may be written to between two messages.
        """
        connection = self._live()
        after = 0
        while True:
            try:
                rows = connection.execute(
                    "SELECT id, address, encoded, delivery_count, deadline FROM message"
                    " WHERE id > ? AND (transient = 0 OR id >= ?) ORDER BY id LIMIT ?",
                    (after, self._opened_at_id, _LOAD_PAGE),
                ).fetchall()
            except sqlite3.Error as error:
                raise _store_error(self._path, error) from error
            for row in rows:
                yield StoredMessage(*row)
            if len(rows) < _LOAD_PAGE:
                return
            after = rows[-1][0]

    def page(self, address: str, after: int, limit: int, byte_limit: int) -> list[StoredMessage]:
        """The messages of `address` with a store id above `after`, in id order, but the
        stale transient ones: `limit` at most, and no more once they hold `byte_limit`
        bytes (at least one, however large)."""
        found: list[StoredMessage] = []
        size = 0
        try:
            rows = self._live().execute(
                "SELECT id, address, encoded, delivery_count, deadline FROM message"
                " WHERE address = ? AND id > ? AND (transient = 0 OR id >= ?)"
                " ORDER BY id LIMIT ?",
                (address, after, self._opened_at_id, limit),
            )
            for row in rows:
                found.append(StoredMessage(*row))
                size += len(row[2])
                if size >= byte_limit:
                    break
            rows.close()
        except sqlite3.Error as error:
            raise _store_error(self._path, error) from error
        return found

    def totals(self) -> dict[str, tuple[int, int]]:
        """For each address with durable messages stored: how many, and their bytes."""
        try:
            rows = self._live().execute(
                "SELECT address, messages, bytes FROM address_total ORDER BY address"
            )
            return {address: (messages, size) for address, messages, size in rows}
        except sqlite3.Error as error:
            raise _store_error(self._path, error) from error

    def addresses(self) -> list[str]:
        """The addresses that have durable messages stored, sorted."""
        return list(self.totals())

    def drop_stale(self, limit: int) -> bool:
        """Delete `limit` transient messages at most that were stored before this store
        was opened (leftovers of a broker that was killed); return whether there may be
        more (`limit` were deleted). One transaction, durable on return."""
        statement = (
            "DELETE FROM message WHERE id IN"
            " (SELECT id FROM message WHERE transient = 1 AND id < ? LIMIT ?)"
        )
        return self._write([(statement, [(self._opened_at_id, limit)])]) == limit

    def close(self) -> None:
        """Close the store (it checkpoints the log into the database); closing twice is fine."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.close()
        except sqlite3.Error as error:
            raise _store_error(self._path, error) from error

    def __enter__(self) -> MessageStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._connection is not None else "closed"
        return f"<MessageStore {str(self._path)!r} {state}>"

    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(self._path, "the store is closed")
        return self._connection

    def _write(self, statements: list[tuple[str, Sequence[tuple[object, ...]]]]) -> int:
        """Run each statement once per row, all in one transaction committed before
        returning (none at all when there are no rows); return how many rows they
        changed."""
        statements = [(statement, rows) for statement, rows in statements if rows]
        if not statements:
            return 0
        connection = self._live()
        changed = 0
        try:
            # IMMEDIATE: take the write lock before the first statement, not halfway.
            connection.execute("BEGIN IMMEDIATE")
            for statement, rows in statements:
                changed += connection.executemany(statement, rows).rowcount
            connection.execute("COMMIT")
        except BaseException as failure:
            _roll_back(connection)
            if isinstance(failure, sqlite3.Error):
                raise _store_error(self._path, failure) from failure
            raise
        return changed


def _prepare(path: Path, connection: sqlite3.Connection) -> int:
    """Configure a new connection, create or check the schema, and check the file's
    integrity; return the next free store id."""
    try:
        # Must come before the first read so that WAL mode starts out exclusive.
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        (journal_mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal_mode != "wal":
            raise StoreError(path, f"cannot use WAL journaling here (got {journal_mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        # The first write transaction takes the exclusive lock, held until close.
        connection.execute("BEGIN IMMEDIATE")
        try:
            _create_or_check_schema(path, connection)
            connection.execute("COMMIT")
        except BaseException:
            _roll_back(connection)
            raise
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreError(path, "the file is corrupted: " + "; ".join(problems[:5]))
        (last_id,) = connection.execute("SELECT max(id) FROM message").fetchone()
    except sqlite3.Error as error:
        raise _store_error(path, error) from error
    return (last_id or 0) + 1


def _create_or_check_schema(path: Path, connection: sqlite3.Connection) -> None:
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    (tables,) = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if application_id == 0 and version == 0 and tables == 0:
        for statement in [_MESSAGE_TABLE, *_INDEXES_AND_TOTALS]:
            connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if application_id != APPLICATION_ID:
        raise StoreError(
            path,
            f"not a message store (an SQLite database with application_id {application_id:#x}"
            f" and {tables} tables): move it away or choose another data directory",
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            path,
            f"written by a newer version of amqp_core (schema version {version}; this one"
            f" reads version {SCHEMA_VERSION}): upgrade amqp_core to open it",
        )
    if version == 1:
        for statement in _MIGRATION_FROM_1:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version != SCHEMA_VERSION:
        raise StoreError(
            path, f"unknown schema version {version} (this amqp_core reads {SCHEMA_VERSION})"
        )


def _roll_back(connection: sqlite3.Connection) -> None:
    """End a failed transaction, if SQLite did not already roll it back.

    A failure to roll back is not raised: the error that made us roll back says more,
    and SQLite rolls an unfinished transaction back when the file is next opened.
    """
    if connection.in_transaction:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _store_error(path: Path, error: sqlite3.Error) -> StoreError:
    """A `StoreError` saying what SQLite's `error` means for the operator."""
    name = getattr(error, "sqlite_errorname", "")
    primary = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    hint = _HINTS.get(name) or _HINTS.get(primary)
    detail = f"{error} ({name})" if name else str(error)
    return StoreError(path, f"{hint}: {detail}" if hint else detail)
