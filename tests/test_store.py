"""The broker's durable message store: its API, the files it refuses to trust, and what
survives ``kill -9``.

The durability tests run the store in a child process (this file, run as a script) that
prints each store id once the call that wrote it has returned; the test kills the child
with SIGKILL mid-stream and checks the store against what was acknowledged.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqp_core.broker.store import (
    SCHEMA_VERSION,
    STORE_FILE_NAME,
    MessageStore,
    StoredMessage,
    StoreError,
)

REPO = Path(__file__).resolve().parent.parent

#: No child may run longer than this, whatever happens.
CHILD_TIMEOUT = 60

#: Batch sizes the writing children cycle through: single calls and batches.
BATCH_SIZES = (1, 7, 1, 30, 3, 100, 1, 12)


def payload(sequence: int) -> bytes:
    """A message that names its sequence number and can be checked whole.

    Sizes run from 8 bytes to 20 kB, so that some rows spill onto SQLite overflow pages.
    """
    size = 20_000 if sequence % 97 == 0 else sequence % 500
    return sequence.to_bytes(8, "big") + random.Random(sequence).randbytes(size)


def is_intact(message: StoredMessage) -> bool:
    return message.encoded == payload(int.from_bytes(message.encoded[:8], "big"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[MessageStore]:
    with MessageStore.open(data_dir) as store:
        yield store


def reopened(store: MessageStore) -> MessageStore:
    store.close()
    return MessageStore.open(store.path.parent)


# --- The API ------------------------------------------------------------------------------


def test_open_creates_the_directory_and_an_empty_store_only_its_owner_can_read(
    data_dir: Path,
) -> None:
    with MessageStore.open(data_dir) as store:
        assert store.path == data_dir / STORE_FILE_NAME
        assert list(store.load()) == []
        assert store.addresses() == []
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_messages_come_back_after_a_restart_in_insertion_order(store: MessageStore) -> None:
    first = store.add("queue/a", b"one")
    batch = store.add_many([("queue/b", b"two"), ("queue/a", b""), ("topic/c", bytes(300_000))])
    last = store.add("queue/b", b"five")
    assert [first, *batch, last] == sorted({first, *batch, last})

    store = reopened(store)
    assert list(store.load()) == [
        StoredMessage(first, "queue/a", b"one", 0),
        StoredMessage(batch[0], "queue/b", b"two", 0),
        StoredMessage(batch[1], "queue/a", b"", 0),
        StoredMessage(batch[2], "topic/c", bytes(300_000), 0),
        StoredMessage(last, "queue/b", b"five", 0),
    ]
    assert store.addresses() == ["queue/a", "queue/b", "topic/c"]
    store.close()


def test_an_empty_batch_stores_nothing(store: MessageStore) -> None:
    assert store.add_many([]) == []
    store.remove_many([])
    assert list(store.load()) == []


def test_removed_messages_stay_removed(store: MessageStore) -> None:
    ids = store.add_many([(f"queue/{n % 2}", bytes([n])) for n in range(6)])
    store.remove(ids[0])
    store.remove_many([ids[2], ids[3]])
    store.remove(ids[0])  # removing twice, or an id never stored, is harmless
    store.remove_many([ids[2], 10_000])
    assert [message.store_id for message in store.load()] == [ids[1], ids[4], ids[5]]

    store = reopened(store)
    assert [message.encoded for message in store.load()] == [b"\x01", b"\x04", b"\x05"]
    store.remove_many([ids[1], ids[5]])
    assert store.addresses() == ["queue/0"]
    store.close()


def test_ids_are_not_reused_and_stay_in_insertion_order_across_restarts(
    store: MessageStore,
) -> None:
    kept, newest = store.add_many([("q", b"kept"), ("q", b"newest")])
    store.remove(newest)
    after_removal = store.add("q", b"after removal")
    assert after_removal > newest  # a late remove(newest) cannot hit this message

    store = reopened(store)
    after_restart = store.add("q", b"after restart")
    assert after_restart > after_removal
    assert [message.encoded for message in store.load()] == [
        b"kept",
        b"after removal",
        b"after restart",
    ]
    store.close()


def test_delivery_counts_are_stored(store: MessageStore) -> None:
    first, second = store.add_many([("q", b"first"), ("q", b"second")])
    store.update_delivery_count(second, 1)
    store.update_delivery_count(second, 2)
    store.update_delivery_count(10_000, 5)  # no such message: ignored
    store = reopened(store)
    assert [(m.store_id, m.delivery_count) for m in store.load()] == [(first, 0), (second, 2)]
    store.close()


def test_load_reads_many_messages_and_allows_writes_while_it_runs(store: MessageStore) -> None:
    ids = store.add_many([("q", n.to_bytes(4, "big")) for n in range(1_200)])
    seen = []
    for message in store.load():
        seen.append(message.store_id)
        store.remove(message.store_id)  # as a restarted broker might, while it reloads
        if message.store_id == ids[900]:
            store.add("q", b"late")
    assert seen == [*ids, ids[-1] + 1]
    assert list(store.load()) == []


def test_a_batch_that_fails_stores_nothing_and_the_store_goes_on(store: MessageStore) -> None:
    store.add("q", b"before")
    bad = object()
    with pytest.raises(StoreError, match=str(store.path)):
        store.add_many([("q", b"good"), ("q", bad)])  # type: ignore[list-item]
    store.add("q", b"after")
    assert [message.encoded for message in store.load()] == [b"before", b"after"]


def test_a_closed_store_raises_store_error(data_dir: Path) -> None:
    store = MessageStore.open(data_dir)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.add("q", b"late")
    with pytest.raises(StoreError, match="closed"):
        list(store.load())


def test_one_store_serves_one_broker_at_a_time(store: MessageStore) -> None:
    with pytest.raises(StoreError, match="in use by another process"):
        MessageStore.open(store.path.parent)
    store.add("q", b"still works")
    store.close()
    with MessageStore.open(store.path.parent) as again:
        assert [message.encoded for message in again.load()] == [b"still works"]


def test_totals_count_each_address_durable_messages_and_bytes(store: MessageStore) -> None:
    ids = store.add_many([("a", b"12345"), ("b", b"1"), ("a", b"123")])
    store.apply([("a", b"transient", None, True)])
    assert store.totals() == {"a": (2, 8), "b": (1, 1)}
    store.remove_many([ids[0], ids[1]])
    assert store.totals() == {"a": (1, 3)}
    store = reopened(store)
    assert store.totals() == {"a": (1, 3)}
    store.close()


def test_page_reads_an_address_in_id_order_a_slice_at_a_time(store: MessageStore) -> None:
    ids = store.apply(
        [(f"queue/{n % 2}", bytes([n]) * 10, n * 1.5 if n % 3 else None, n == 4) for n in range(8)]
    )
    even = store.page("queue/0", 0, limit=3, byte_limit=1000)
    assert [(m.store_id, m.encoded[:1], m.deadline) for m in even] == [
        (ids[0], b"\x00", None),
        (ids[2], b"\x02", 3.0),
        (ids[4], b"\x04", 6.0),  # transient: stored by this opening, so read back
    ]
    assert [m.store_id for m in store.page("queue/0", ids[4], 10, 1000)] == [ids[6]]
    # No more than the byte limit, but always one.
    assert [m.store_id for m in store.page("queue/1", 0, 10, 15)] == [ids[1], ids[3]]
    assert [m.store_id for m in store.page("queue/1", 0, 10, 1)] == [ids[1]]
    assert store.page("queue/2", 0, 10, 1000) == []


def test_transient_messages_never_come_back_after_a_reopening(store: MessageStore) -> None:
    kept, transient, later = store.apply(
        [("q", b"durable", None, False), ("q", b"transient", None, True), ("q", b"x", 9.0, False)]
    )
    assert [m.store_id for m in store.load()] == [kept, transient, later]
    store = reopened(store)
    assert [m.store_id for m in store.page("q", 0, 10, 1000)] == [kept, later]
    assert [m.store_id for m in store.load()] == [kept, later]
    # drop_stale deletes them, a slice at a time.
    store.apply([("q", bytes([n]), None, True) for n in range(5)])
    store = reopened(store)
    assert store.drop_stale(4) is True  # 6 in all: maybe more
    assert store.drop_stale(4) is False
    store.close()
    with sqlite3.connect(store.path) as database:
        (left,) = database.execute("SELECT count(*) FROM message").fetchone()
    database.close()
    assert left == 2


def test_a_store_of_schema_1_is_migrated(data_dir: Path) -> None:
    data_dir.mkdir()
    with sqlite3.connect(data_dir / STORE_FILE_NAME) as database:
        database.execute(
            "CREATE TABLE message (id INTEGER PRIMARY KEY, address TEXT NOT NULL,"
            " delivery_count INTEGER NOT NULL DEFAULT 0, encoded BLOB NOT NULL)"
        )
        database.executemany(
            "INSERT INTO message (id, address, delivery_count, encoded) VALUES (?, ?, ?, ?)",
            [(1, "a", 0, b"one"), (2, "b", 3, b"two"), (3, "a", 0, b"three")],
        )
        database.execute("PRAGMA application_id = 1095586131")  # "AMQS"
        database.execute("PRAGMA user_version = 1")
    database.close()
    with MessageStore.open(data_dir) as store:
        assert list(store.load()) == [
            StoredMessage(1, "a", b"one", 0),
            StoredMessage(2, "b", b"two", 3),
            StoredMessage(3, "a", b"three", 0),
        ]
        assert store.totals() == {"a": (2, 8), "b": (1, 3)}
        assert [m.store_id for m in store.page("a", 1, 10, 1000)] == [3]
        assert store.add("a", b"four") == 4
    with sqlite3.connect(data_dir / STORE_FILE_NAME) as database:
        (version,) = database.execute("PRAGMA user_version").fetchone()
    database.close()
    assert version == SCHEMA_VERSION == 2


# --- Files the store refuses ------------------------------------------------------------


def set_user_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as database:
        database.execute(f"PRAGMA user_version = {version}")
    database.close()


def test_a_store_from_a_newer_version_is_refused_and_left_alone(data_dir: Path) -> None:
    with MessageStore.open(data_dir) as store:
        store.add("q", b"from the future")
    set_user_version(store.path, SCHEMA_VERSION + 1)
    before = store.path.read_bytes()
    with pytest.raises(StoreError, match="newer version") as refused:
        MessageStore.open(data_dir)
    assert refused.value.path == store.path
    assert str(store.path) in str(refused.value)
    assert store.path.read_bytes() == before


def test_an_unknown_schema_version_is_refused(data_dir: Path) -> None:
    with MessageStore.open(data_dir) as store:
        store.add("q", b"x")
    set_user_version(store.path, 0)
    with pytest.raises(StoreError, match="unknown schema version 0"):
        MessageStore.open(data_dir)


def test_another_sqlite_database_is_refused(data_dir: Path) -> None:
    data_dir.mkdir()
    with sqlite3.connect(data_dir / STORE_FILE_NAME) as database:
        database.execute("CREATE TABLE accounts (name TEXT)")
    database.close()
    with pytest.raises(StoreError, match="not a message store"):
        MessageStore.open(data_dir)


def overwrite_header(path: Path) -> None:
    with path.open("r+b") as file:
        file.write(b"this is not SQLite at all")


def overwrite_a_middle_page(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(size // 2 // 4096 * 4096)
        file.write(b"\xff" * 4096)


def truncate_to_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2 // 4096 * 4096)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (overwrite_header, "not an SQLite database"),
        (overwrite_a_middle_page, "corrupted"),
        (truncate_to_half, "corrupted"),
    ],
)
def test_a_damaged_file_is_refused_never_started_empty(
    data_dir: Path, damage: Callable[[Path], None], reason: str
) -> None:
    with MessageStore.open(data_dir) as store:
        store.add_many([("q", payload(n)) for n in range(2_000)])
    damage(store.path)
    damaged = store.path.read_bytes()
    with pytest.raises(StoreError, match=reason) as refused:
        MessageStore.open(data_dir)
    assert str(store.path) in str(refused.value)
    assert store.path.read_bytes() == damaged


def test_a_data_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        MessageStore.open(tmp_path / "data")


# --- A read-only directory, a full disk -----------------------------------------------------


def run_child(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this file as a script (see `main`) and return what it printed."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def make_store(data_dir: Path) -> None:
    with MessageStore.open(data_dir) as store:
        store.add("q", b"x")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("new store in a read-only directory", "Permission denied"),
        ("store in a read-only directory", "read-only"),
        ("read-only store file", "Permission denied"),
        ("data directory in a read-only directory", "cannot create the data directory"),
    ],
)
def test_read_only_files_and_directories_are_refused_clearly(
    tmp_path: Path, case: str, reason: str
) -> None:
    data_dir = tmp_path / "data"
    read_only = data_dir
    if case == "new store in a read-only directory":
        data_dir.mkdir()
    elif case == "store in a read-only directory":
        make_store(data_dir)
    elif case == "read-only store file":
        make_store(data_dir)
        read_only = data_dir / STORE_FILE_NAME
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        data_dir = read_only / "data"
    mode = read_only.stat().st_mode
    read_only.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        printed = run_child("open-unprivileged", str(data_dir)).stdout
    finally:
        read_only.chmod(mode)
    if printed.startswith("skip:"):
        pytest.skip(printed)
    assert printed.startswith(f"StoreError: message store {data_dir / STORE_FILE_NAME}: ")
    assert reason in printed


def test_when_the_disk_fills_up_acknowledged_messages_are_kept(data_dir: Path) -> None:
    printed = run_child("fill", str(data_dir), str(300_000)).stdout.splitlines()
    *acknowledged, failure, failed_batch = printed
    assert failure.startswith(f"StoreError: message store {data_dir / STORE_FILE_NAME}: ")
    assert "cannot write to the disk" in failure
    with MessageStore.open(data_dir) as store:
        stored = {message.store_id: message for message in store.load()}
    check_acknowledged_adds(acknowledged, stored)
    first, size = map(int, failed_batch.split())
    failed_sequences = set(range(first, first + size))
    in_store = [m for m in stored.values() if int.from_bytes(m.encoded[:8], "big") >= first]
    assert len(in_store) in (0, size)  # all or nothing of the failed batch
    assert all(int.from_bytes(m.encoded[:8], "big") in failed_sequences for m in in_store)


# --- kill -9 ------------------------------------------------------------------------------


class Child:
    """This file run as a script, printing acknowledgements until it is killed."""

    def __init__(self, *args: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args], stdout=subprocess.PIPE, env=environment, bufsize=0
        )
        self.output = b""

    def kill_after(self, lines: int) -> list[str]:
        """Wait for `lines` acknowledgements, SIGKILL the child, and return every
        complete line it printed."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + CHILD_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while (printed := self.output.count(b"\n")) < lines:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"only {printed} of {lines} lines in {CHILD_TIMEOUT} s"
                if selector.select(remaining):
                    chunk = os.read(self.process.stdout.fileno(), 65536)
                    assert chunk, f"the child ended early: {self.process.wait()}"
                    self.output += chunk
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=CHILD_TIMEOUT) == -signal.SIGKILL
        self.output += self.process.stdout.read()
        complete, _, _torn = self.output.rpartition(b"\n")
        return complete.decode().splitlines()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=CHILD_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()


def check_acknowledged_adds(lines: list[str], stored: dict[int, StoredMessage]) -> None:
    """Every acknowledged `store_id sequence` line is in the store, intact, and the store
    holds nothing torn."""
    for line in lines:
        store_id, sequence = map(int, line.split())
        assert store_id in stored, f"acknowledged message {store_id} is lost"
        assert stored[store_id].encoded == payload(sequence), f"message {store_id} is damaged"
    assert all(is_intact(message) for message in stored.values())


def test_every_acknowledged_message_survives_kill_9(data_dir: Path) -> None:
    acknowledged: list[str] = []
    for round_number in range(3):
        child = Child("add", str(data_dir), str(round_number * 10_000_000))
        try:
            acknowledged += child.kill_after(random.randint(300, 1_500))
        finally:
            child.stop()
        with MessageStore.open(data_dir) as store:
            messages = list(store.load())
        check_acknowledged_adds(acknowledged, {m.store_id: m for m in messages})
        sequences = [int.from_bytes(m.encoded[:8], "big") for m in messages]
        assert sequences == sorted(sequences), "load() is not in insertion order"


def test_no_acknowledged_removal_comes_back_after_kill_9(data_dir: Path) -> None:
    with MessageStore.open(data_dir) as store:
        remaining = store.add_many([("q", payload(n)) for n in range(30_000)])
    for _ in range(3):
        child = Child("remove", str(data_dir))
        try:
            removed = [int(line) for line in child.kill_after(random.randint(300, 1_500))]
        finally:
            child.stop()
        with MessageStore.open(data_dir) as store:
            messages = list(store.load())
        assert all(is_intact(message) for message in messages)
        # The child removes in id order: what it acknowledged is gone, what it had not
        # reached yet is all there, and between them lies at most the batch it was in.
        assert removed == remaining[: len(removed)]
        left = [message.store_id for message in messages]
        assert left, "the child removed everything before it was killed"
        first_left = remaining.index(left[0])
        assert len(removed) <= first_left <= len(removed) + max(BATCH_SIZES)
        assert left == remaining[first_left:]
        remaining = left


# --- The child processes -----------------------------------------------------------------


def add_until_killed(data_dir: Path, first_sequence: int) -> None:
    """Add messages in batches, printing ``store_id sequence`` once each call returned."""
    store = MessageStore.open(data_dir)
    sequence = first_sequence
    while True:
        for size in BATCH_SIZES:
            batch = [(f"queue/{n % 3}", payload(n)) for n in range(sequence, sequence + size)]
            ids = [store.add(*batch[0])] if size == 1 else store.add_many(batch)
            lines = (f"{store_id} {sequence + index}\n" for index, store_id in enumerate(ids))
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
            sequence += size


def remove_until_killed(data_dir: Path) -> None:
    """Remove messages in id order and in batches, printing each id once its call returned."""
    store = MessageStore.open(data_dir)
    ids = [message.store_id for message in store.load()]
    sizes = iter(BATCH_SIZES * len(ids))
    while ids:
        size = next(sizes)
        batch, ids = ids[:size], ids[size:]
        if size == 1:
            store.remove(batch[0])
        else:
            store.remove_many(batch)
        sys.stdout.write("".join(f"{store_id}\n" for store_id in batch))
        sys.stdout.flush()
    time.sleep(CHILD_TIMEOUT)


def fill(data_dir: Path, file_size_limit: int) -> None:
    """Add messages under a file size limit until the store refuses one; print the
    acknowledged ones, the error, and the failed batch (first sequence number, size)."""
    import resource

    store = MessageStore.open(data_dir)
    # Beyond the limit, write() fails with EFBIG instead of the process being killed.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    sequence = 0
    while True:
        batch = [("q", payload(n)) for n in range(sequence, sequence + 10)]
        try:
            ids = store.add_many(batch)
        except StoreError as error:
            print(f"StoreError: {error}\n{sequence} {len(batch)}")
            return
        lines = (f"{store_id} {sequence + index}\n" for index, store_id in enumerate(ids))
        sys.stdout.write("".join(lines))
        sequence += len(batch)


def open_unprivileged(data_dir: Path) -> None:
    """Open a store without the privilege to ignore file permissions; print the error."""
    if os.geteuid() == 0 and not drop_capabilities():
        print("skip: running as root, and cannot drop CAP_DAC_OVERRIDE")
        return
    try:
        MessageStore.open(data_dir).close()
    except StoreError as error:
        print(f"StoreError: {error}")
    else:
        print("opened")


def drop_capabilities() -> bool:
    """Drop every capability of this process (Linux), so that root obeys file modes."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inherit")]

    linux_capability_version_3 = 0x20080522
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        nothing = (Data * 2)()
        return libc.capset(ctypes.byref(Header(linux_capability_version_3, 0)), nothing) == 0
    except (OSError, AttributeError):
        return False


def main(command: str, *args: str) -> None:
    if command == "add":
        add_until_killed(Path(args[0]), int(args[1]))
    elif command == "remove":
        remove_until_killed(Path(args[0]))
    elif command == "fill":
        fill(Path(args[0]), int(args[1]))
    elif command == "open-unprivileged":
        open_unprivileged(Path(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
