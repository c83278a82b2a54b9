"""A store proves its rows: truncated, extended, flipped or status-less stores are refused or repaired, never used."""

import os
import shutil

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.errors import BadInputError
from netvlad.extract.store import BAD, DONE, PENDING, DescriptorStore

NAMES = [f"{i}.jpg" for i in range(6)]
ROWS = np.arange(24, dtype=np.float32).reshape(6, 4) + 1


def _full_store(folder):
    """A finished store of ROWS, and a byte copy of it (the uninterrupted store)."""
    store = DescriptorStore.create(folder, NAMES, dim=4, fingerprint="f")
    store.write(np.arange(6), ROWS)
    del store
    shutil.copytree(folder, folder.parent / "original")
    return folder.parent / "original"


def _finish(folder):
    """What a command that extracts does: open for writing, extract the pending rows again."""
    store = DescriptorStore.create(folder, NAMES, dim=4, fingerprint="f")
    todo = store.pending()
    store.write(todo, ROWS[todo])
    return todo


def _same_bytes(folder, original):
    for name in ("descriptors.npy", "status.npy", "checksums.npy"):
        assert (folder / name).read_bytes() == (original / name).read_bytes(), name


def _truncate(path):
    os.truncate(path, path.stat().st_size - 2 * 4 * 4 - 3)  # two rows and a bit of a third: rows 3-5 lost


def _extend(path):
    with open(path, "ab") as handle:
        handle.write(b"\0" * 40)


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-4 * 4 * 2 + 1] ^= 0xFF  # a byte of row 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, lost", [(_truncate, [3, 4, 5]), (_extend, [])])
def test_resized_descriptors_are_refused_by_readers_and_repaired_by_writers(tmp_path, damage, lost):
    original = _full_store(tmp_path / "s")
    damage(tmp_path / "s" / "descriptors.npy")
    with pytest.raises(BadInputError, match=r"descriptors\.npy: is (short|over-long).*netvlad store verify"):
        DescriptorStore.open(tmp_path / "s")
    assert list(_finish(tmp_path / "s")) == lost
    _same_bytes(tmp_path / "s", original)


def test_flipped_row_is_caught_when_read_and_repaired_by_verify(tmp_path):
    original = _full_store(tmp_path / "s")
    _flip(tmp_path / "s" / "descriptors.npy")
    with pytest.raises(BadInputError, match="row 4"):
        DescriptorStore.open(tmp_path / "s").load()
    assert main(["store", "verify", str(tmp_path)]) == 1  # the folder holding the store, as evaluate --store has it
    assert list(DescriptorStore.open(tmp_path / "s").pending()) == [4]
    assert list(_finish(tmp_path / "s")) == [4]
    _same_bytes(tmp_path / "s", original)
    assert main(["store", "verify", str(tmp_path / "s")]) == 0


def test_deleted_status_is_rebuilt_from_checksums(tmp_path):
    original = _full_store(tmp_path / "s")
    store = DescriptorStore.open(tmp_path / "s", mode="r+")
    store.mark_bad([2])
    store.status[5] = PENDING  # a row never extracted: its zero bytes must not pass as done
    store.status.flush()
    del store
    (tmp_path / "s" / "status.npy").unlink()
    with pytest.raises(BadInputError, match="status.npy: is missing"):
        DescriptorStore.open(tmp_path / "s")
    again = DescriptorStore.open(tmp_path / "s", mode="r+")
    assert list(again.status) == [DONE, DONE, BAD, DONE, DONE, DONE]  # each row proves its mark; 5 holds ROWS' bytes
    again.status[2] = DONE  # as the original
    again.status.flush()
    again.checksums[2] = DescriptorStore.open(original).checksums[2]
    again.checksums.flush()
    _same_bytes(tmp_path / "s", original)


def test_status_lost_with_zero_rows_makes_them_pending(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4, fingerprint="f")
    store.write(np.arange(3), ROWS[:3])
    del store
    os.truncate(tmp_path / "s" / "status.npy", 100)
    assert list(DescriptorStore.open(tmp_path / "s", mode="r+").pending()) == [3, 4, 5]


def test_store_from_before_checksums_gets_them(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4)
    store.write(np.arange(6), ROWS)
    del store
    (tmp_path / "s" / "checksums.npy").unlink()
    meta = (tmp_path / "s" / "store.json").read_text().replace('"version": 3', '"version": 1')
    (tmp_path / "s" / "store.json").write_text(meta)
    np.testing.assert_array_equal(DescriptorStore.open(tmp_path / "s").load(), ROWS)  # a reader: as before
    assert DescriptorStore.open(tmp_path / "s", mode="r+").checksums is not None
    assert DescriptorStore.open(tmp_path / "s").verify().size == 0


def test_rerank_checks_the_rows_it_reads(tmp_path):
    from netvlad.search.exact import rerank

    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4, dtype="float16", fingerprint="f")
    store.write(np.arange(6), ROWS / 30)
    store = DescriptorStore.open(tmp_path / "s")
    queries = ROWS[:2] / 30
    _, found = rerank(store.descriptors, queries, np.array([[0, 1, -1], [2, 3, 5]]), 2, verify=store.verify_rows)
    assert list(found[0]) == [0, 1] and list(found[1]) == [2, 3]
    _flip(tmp_path / "s" / "descriptors.npy")  # a byte of row 2 (rows of 8 bytes)
    store = DescriptorStore.open(tmp_path / "s")
    damaged = int(np.flatnonzero(~_proven(store))[0])
    assert damaged == 2
    rerank(store.descriptors, queries, np.array([[0, 1, -1], [0, 1, 3]]), 2, verify=store.verify_rows)  # fine
    with pytest.raises(BadInputError, match=f"row {damaged}"):
        rerank(store.descriptors, queries, np.array([[0, damaged, -1]]), 2, verify=store.verify_rows)


def _proven(store):
    from netvlad.extract.store_check import row_checksums

    return row_checksums(np.asarray(store.descriptors), np.asarray(store.status)) == np.asarray(store.checksums)


def _set_status(folder, row, value):
    path = folder / "status.npy"
    data = bytearray(path.read_bytes())
    data[len(data) - len(NAMES) + row] = value  # the status bytes are the file's last N bytes
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("value", [0x41, BAD, 0x81], ids=["bit-6", "done-to-undecodable", "sign-bit"])
def test_a_damaged_status_byte_is_refused_by_readers_and_repaired_by_writers(tmp_path, value):
    original = _full_store(tmp_path / "s")
    _set_status(tmp_path / "s", 3, value)
    with pytest.raises(BadInputError, match=r"status.npy: 1 status byte\(s\) are damaged \(first: row 3, 3.jpg\)"):
        DescriptorStore.open(tmp_path / "s")
    assert list(_finish(tmp_path / "s")) == [3]  # the writer made it pending; extracted again
    _same_bytes(tmp_path / "s", original)


def test_a_done_row_flipped_to_pending_is_never_used_and_is_extracted_again(tmp_path):
    original = _full_store(tmp_path / "s")
    _set_status(tmp_path / "s", 4, PENDING)
    with pytest.raises(BadInputError, match="1 of 6 descriptors are still pending"):
        DescriptorStore.open(tmp_path / "s").require_complete()
    assert list(_finish(tmp_path / "s")) == [4]
    _same_bytes(tmp_path / "s", original)


def test_a_pending_row_flipped_to_done_or_undecodable_fails_its_checksum(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4, fingerprint="f")
    store.write(np.arange(5), ROWS[:5])  # row 5 never extracted
    del store
    _set_status(tmp_path / "s", 5, BAD)
    with pytest.raises(BadInputError, match="first: row 5"):
        DescriptorStore.open(tmp_path / "s")
    _set_status(tmp_path / "s", 5, DONE)
    with pytest.raises(BadInputError, match=r"descriptors.npy: 1 row\(s\) fail their checksum \(first: row 5"):
        DescriptorStore.open(tmp_path / "s").load()
    assert list(DescriptorStore.open(tmp_path / "s", mode="r+").verify()) == [5]


def test_undecodable_marks_prove_themselves_and_version_2_stores_are_upgraded(tmp_path):
    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4, fingerprint="f")
    store.write(np.arange(5), ROWS[:5])
    store.mark_bad([5])
    del store
    assert DescriptorStore.open(tmp_path / "s").bad() == ["5.jpg"]
    from netvlad.extract.store_check import row_checksums

    sums = np.load(tmp_path / "s" / "checksums.npy", mmap_mode="r+")  # as version 2 wrote them: bytes alone
    sums[:] = row_checksums(np.load(tmp_path / "s" / "descriptors.npy"))
    sums[1] ^= 1  # and row 1 damaged meanwhile
    sums.flush()
    del sums
    meta = (tmp_path / "s" / "store.json").read_text().replace('"version": 3', '"version": 2')
    (tmp_path / "s" / "store.json").write_text(meta)
    reader = DescriptorStore.open(tmp_path / "s")  # a reader: checks as version 2 did
    assert reader.bad() == ["5.jpg"] and not reader.covers_status
    with pytest.raises(BadInputError, match="first: row 1"):
        reader.load()
    upgraded = DescriptorStore.open(tmp_path / "s", mode="r+")
    assert upgraded.meta["version"] == 3 and list(upgraded.pending()) == [1] and upgraded.bad() == ["5.jpg"]
    upgraded.write(np.array([1]), ROWS[1:2])
    assert DescriptorStore.open(tmp_path / "s").verify().size == 0


def _record_disk_writes(monkeypatch):
    """Record every ``pwrite`` (file, offset, bytes) and sync (file) a store makes, in order, into a list."""
    from netvlad.extract import store_check

    events, pwrite, sync = [], os.pwrite, store_check._sync

    def name(fd):
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))

    def recorded_pwrite(fd, data, offset):
        events.append(("write", name(fd), offset, np.asarray(data).tobytes()))
        return pwrite(fd, data, offset)

    def recorded_sync(fd):
        events.append(("sync", name(fd)))
        return sync(fd)

    monkeypatch.setattr(os, "pwrite", recorded_pwrite)
    monkeypatch.setattr(store_check, "_sync", recorded_sync)
    return events


def _crash_states(events):
    """Every set of writes a power cut after each event may leave on disk: the synced ones, any of the others."""
    for cut in range(len(events) + 1):
        done = events[:cut]
        writes = [i for i, event in enumerate(done) if event[0] == "write"]
        synced = [i for i in writes if ("sync", done[i][1]) in done[i + 1:]]
        loose = [i for i in writes if i not in synced]
        for subset in range(2 ** len(loose)):
            kept = synced + [i for bit, i in enumerate(loose) if subset >> bit & 1]
            yield cut, [done[i] for i in sorted(kept)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a descriptor's file through /proc")
@pytest.mark.parametrize("action", ["write", "mark_bad"])
def test_a_crash_at_any_point_of_a_write_leaves_rows_proven_or_pending(tmp_path, monkeypatch, action):
    store = DescriptorStore.create(tmp_path / "s", NAMES, dim=4, fingerprint="f")
    store.write(np.arange(3), ROWS[:3])
    before = tmp_path / "before"
    shutil.copytree(tmp_path / "s", before)
    events = _record_disk_writes(monkeypatch)
    if action == "write":
        store.write(np.arange(3, 6), ROWS[3:])
    else:
        store.mark_bad([3, 4, 5])
    monkeypatch.undo()
    # rows and checksums reach the disk (synced) before any status byte is written, which needs no sync of its own
    assert [e[1] for e in events if e[0] == "sync"] == ["descriptors.npy"] * (action == "write") + ["checksums.npy"]
    assert [e[1] for e in events][-1] == "status.npy"
    expected = DONE if action == "write" else BAD
    states = 0
    for cut, kept in _crash_states(events):
        disk = tmp_path / f"crash-{states}"
        shutil.copytree(before, disk)
        for _, name, offset, data in kept:
            with open(disk / name, "r+b") as handle:
                handle.seek(offset)
                handle.write(data)
        reader = DescriptorStore.open(disk)  # no damaged status byte: every mark on disk proves itself
        status = np.asarray(reader.status)[3:]
        assert set(status) <= {PENDING, expected}, (cut, kept)
        assert reader.verify().size == 0, (cut, kept)  # every done or undecodable row matches its checksum
        loaded = reader.load()  # checks every done row: never a done row with wrong bytes
        np.testing.assert_array_equal(loaded[3:][status == DONE], ROWS[3:][status == DONE])
        del reader
        shutil.rmtree(disk)
        states += 1
    assert states > len(events)


@pytest.mark.parametrize("stale", ["descriptors.npy", "checksums.npy"])
def test_a_done_mark_whose_row_or_checksum_never_reached_the_disk_is_caught(tmp_path, stale):
    original = _full_store(tmp_path / "s")
    store = DescriptorStore.create(tmp_path / "partial", NAMES, dim=4, fingerprint="f")
    store.write(np.arange(3), ROWS[:3])
    del store
    folder = tmp_path / "s"
    shutil.copy(tmp_path / "partial" / stale, folder / stale)  # rows 3-5 done, their bytes or checksums stale
    with pytest.raises(BadInputError, match=r"3 row\(s\) fail their checksum \(first: row 3"):
        DescriptorStore.open(folder).load()
    assert list(DescriptorStore.open(folder, mode="r+").verify()) == [3, 4, 5]
    assert list(_finish(folder)) == [3, 4, 5]
    _same_bytes(folder, original)
