"""Checksums of checkpoint files: a file corrupted without changing its size is detected.

Every entry records the CRC-32 of its bytes (manifest version 2). ``verify(name)`` re-reads a
file and raises :class:`CheckpointCorruptError` naming it and both checksums;
``recover(verify=True)`` drops corrupt entries as it drops truncated ones. Manifests of version 1
(no checksums) are still read.
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import trainctl.storage as storage
from trainctl.storage import (
    DEFAULT_MANIFEST_NAME,
    CheckpointCorruptError,
    CheckpointStore,
    CheckpointStoreError,
    CheckpointStoreWarning,
    CorruptManifestError,
)


def writer(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


def open_store(directory: Path, **kwargs: Any) -> CheckpointStore:
    store = CheckpointStore(directory, **kwargs)
    store.recover()
    return store


def crc(data: bytes) -> str:
    return f"crc32:{zlib.crc32(data):08x}"


def flip_a_byte(path: Path, offset: int = 3) -> None:
    """Corrupt ``path`` in place without changing its size (bit rot, a stray write)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


PAYLOAD = b"weights " * 1000


def test_save_records_the_crc32_of_the_payload_in_a_version_2_manifest(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD), metrics={"loss": 0.5})
    assert store.get("a.ckpt").checksum == crc(PAYLOAD)
    doc = json.loads(store.manifest_path.read_text())
    assert doc["version"] == 2
    assert doc["checkpoints"][0]["checksum"] == crc(PAYLOAD)
    fresh = open_store(tmp_path)
    assert fresh.get("a.ckpt") == store.get("a.ckpt")  # the checksum round-trips
    assert fresh.verify("a.ckpt") is True


def test_the_checksum_is_computed_while_the_payload_is_read_once_for_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    read: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    store.save("big.ckpt", writer(PAYLOAD * 300))  # 2.4 MB: several chunks
    monkeypatch.undo()
    assert sum(read) == len(PAYLOAD * 300)  # every byte read exactly once
    assert store.get("big.ckpt").checksum == crc(PAYLOAD * 300)


def test_verify_raises_naming_the_file_and_both_checksums_for_same_size_corruption(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD))
    path = store.path("a.ckpt")
    flip_a_byte(path)
    assert store.recover().clean  # the size still matches: plain recovery cannot tell
    with pytest.raises(CheckpointCorruptError) as info:
        store.verify("a.ckpt")
    err = info.value
    actual = crc(path.read_bytes())
    assert isinstance(err, CheckpointStoreError)
    assert (err.name, err.path, err.recorded, err.actual) == ("a.ckpt", path, crc(PAYLOAD), actual)
    assert err.stage == "verifying"
    assert str(path) in str(err) and crc(PAYLOAD) in str(err) and actual in str(err)
    assert "recover(verify=True)" in str(err)  # what to do


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(PAYLOAD[:-1]), "has 7999 bytes"),
        (lambda p: p.unlink(), "is missing"),
        (lambda p: (p.unlink(), p.mkdir()), "is not a regular file"),
    ],
    ids=["truncated", "missing", "directory"],
)
def test_verify_also_reports_a_wrong_size_or_a_missing_file(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD))
    damage(store.path("a.ckpt"))
    with pytest.raises(CheckpointCorruptError, match=reason) as info:
        store.verify("a.ckpt")
    assert info.value.recorded == crc(PAYLOAD)


def test_recover_with_verify_drops_corrupt_entries_and_leaves_their_files(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD), state={"epoch": 1})
    store.save("b.ckpt", writer(PAYLOAD + b"!"), state={"epoch": 2})
    flip_a_byte(store.path("b.ckpt"))
    corrupted = store.path("b.ckpt").read_bytes()
    fresh = CheckpointStore(tmp_path)
    with pytest.warns(CheckpointStoreWarning, match=r"b\.ckpt' has checksum crc32:\w+, the "
                      rf"manifest recorded {crc(PAYLOAD + b'!')}"):
        report = fresh.recover(verify=True)
    assert report.dropped_entries == ("b.ckpt",) and report.unknown_files == ("b.ckpt",)
    assert [e.name for e in fresh.entries] == ["a.ckpt"]  # resume from the last good one
    assert fresh.load_state("a.ckpt") == {"epoch": 1}
    assert (tmp_path / "b.ckpt").read_bytes() == corrupted  # left for a human
    assert [c["name"] for c in json.loads(fresh.manifest_path.read_text())["checkpoints"]] == [
        "a.ckpt"
    ]


def test_a_reader_verifies_without_writing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD))
    store.save("b.ckpt", writer(PAYLOAD))
    flip_a_byte(store.path("a.ckpt"))
    manifest = store.manifest_path.read_bytes()
    reader = CheckpointStore(tmp_path, read_only=True)
    with pytest.warns(CheckpointStoreWarning, match="a.ckpt' has checksum"):
        report = reader.recover(verify=True)
    assert report.dropped_entries == ("a.ckpt",)
    assert [e.name for e in reader.entries] == ["b.ckpt"] and reader.verify("b.ckpt")
    unchecked = CheckpointStore(tmp_path, read_only=True)
    unchecked.recover()  # sizes only: the corrupt entry is still in this view
    with pytest.raises(CheckpointCorruptError, match=r"a\.ckpt"):
        unchecked.verify("a.ckpt")  # the manifest still records the original bytes
    assert store.manifest_path.read_bytes() == manifest  # only the readers' views changed


def _downgrade_to_version_1(manifest: Path) -> None:
    """Rewrite ``manifest`` as trainctl 0.1 wrote it: version 1, no checksums."""
    doc = json.loads(manifest.read_text())
    doc["version"] = 1
    for record in doc["checkpoints"]:
        del record["checksum"]
    manifest.write_text(json.dumps(doc))


def test_version_1_manifests_are_read_and_upgraded_on_the_next_write(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.save("old.ckpt", writer(PAYLOAD), metrics={"loss": 1.0}, state={"epoch": 1})
    store.close()
    _downgrade_to_version_1(tmp_path / DEFAULT_MANIFEST_NAME)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = CheckpointStore(tmp_path)
        assert fresh.recover(verify=True).clean  # no checksum: checked by size only
    old = fresh.get("old.ckpt")
    assert old.checksum is None and dict(old.metrics) == {"loss": 1.0}
    assert fresh.load_state("old.ckpt") == {"epoch": 1}
    assert fresh.verify("old.ckpt") is False  # nothing to compare with
    fresh.save("new.ckpt", writer(b"new"))
    doc = json.loads(fresh.manifest_path.read_text())
    assert doc["version"] == 2
    assert [(c["name"], c["checksum"]) for c in doc["checkpoints"]] == [
        ("old.ckpt", None),
        ("new.ckpt", crc(b"new")),
    ]
    assert open_store(tmp_path).get("old.ckpt").checksum is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.update(checksum="md5:abc"), "checksum is neither null nor 'crc32:'"),
        (lambda r: r.update(checksum=12), "checksum is neither"),
        (lambda r: r.pop("checksum"), "has keys"),
    ],
    ids=["other algorithm", "not a string", "missing in version 2"],
)
def test_a_malformed_checksum_makes_the_manifest_corrupt(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    store = open_store(tmp_path)
    store.save("a.ckpt", writer(PAYLOAD))
    store.close()
    doc = json.loads((tmp_path / DEFAULT_MANIFEST_NAME).read_text())
    change(doc["checkpoints"][0])
    (tmp_path / DEFAULT_MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(CorruptManifestError, match=reason):
        CheckpointStore(tmp_path).recover()


def test_a_payload_still_being_written_after_write_returns_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    real_checksum = storage._checksum_fd

    def racing_writer(path: Path) -> None:
        path.write_bytes(PAYLOAD)

    def append_while_reading(fd: int) -> tuple[int, str]:
        result = real_checksum(fd)
        with open(os.readlink(f"/proc/self/fd/{fd}"), "ab") as f:  # a background thread's write
            f.write(b"late")
        return result

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to find the file behind a descriptor")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(storage, "_checksum_fd", append_while_reading)
        with pytest.raises(CheckpointStoreError, match="must finish writing") as info:
            store.save("a.ckpt", racing_writer)
    assert info.value.stage == "checksumming and fsyncing the payload"
    assert store.entries == ()
