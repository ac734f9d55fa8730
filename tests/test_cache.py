"""The content-addressed chunked cache: keys, resume, checksums, locking, listing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cae_core.inputs import cache
from cae_core.inputs.cache import ChunkedStore, cache_key, cached_array, list_entries


def _batches(rows, size=3, dim=4):
    """Deterministic rows: row i is i, i+0.5, ... (any batch size gives the same values)."""
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        yield {"x": chunk[:, None] + np.arange(dim) / 2, "tag": chunk.astype(str)}


def test_key_is_canonical_and_sensitive():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_fill_and_read_any_batch_size(fresh_cache):
    store = ChunkedStore({"t": "fill"}, 10, chunk_rows=4)
    with store.locked():
        store.fill(_batches(store.missing_rows(), size=3))
    arrays = store.read()
    np.testing.assert_array_equal(arrays["x"][:, 0], np.arange(10))
    assert arrays["tag"].tolist() == [str(i) for i in range(10)]
    assert (store.n_chunks, store.chunks_computed) == (3, 3)
    again = ChunkedStore({"t": "fill"}, 10, chunk_rows=4)
    assert len(again.missing_rows()) == 0 and again.chunks_loaded == 3


def test_interrupted_fill_resumes_from_last_chunk(fresh_cache):
    def interrupted(rows):
        for i, batch in enumerate(_batches(rows, size=2)):
            if i == 3:  # after 6 rows: chunk 0 (rows 0-3) is done, chunk 1 half-way
                raise KeyboardInterrupt
            yield batch

    store = ChunkedStore({"t": "resume"}, 10, chunk_rows=4)
    with pytest.raises(KeyboardInterrupt), store.locked():
        store.fill(interrupted(store.missing_rows()))
    resumed = ChunkedStore({"t": "resume"}, 10, chunk_rows=4)
    with resumed.locked():
        rows = resumed.missing_rows()
        np.testing.assert_array_equal(rows, np.arange(4, 10))
        resumed.fill(_batches(rows))
    assert resumed.chunks_computed == 2
    np.testing.assert_array_equal(resumed.read()["x"][:, 0], np.arange(10))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_chunk_is_rebuilt_with_a_warning(fresh_cache, damage):
    store = ChunkedStore({"t": "corrupt"}, 10, chunk_rows=4)
    with store.locked():
        store.fill(_batches(store.missing_rows()))
    clean = store.read()
    chunk = next(store.path.glob("chunk-000001.npz"))
    data = bytearray(chunk.read_bytes())
    if damage == "truncate":
        chunk.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 3] ^= 0xFF
        chunk.write_bytes(bytes(data))
    rebuilt = ChunkedStore({"t": "corrupt"}, 10, chunk_rows=4)
    with pytest.warns(RuntimeWarning, match="checksum"), rebuilt.locked():
        rebuilt.fill(_batches(rebuilt.missing_rows()))
    assert rebuilt.chunks_computed == 1
    for name in clean:
        np.testing.assert_array_equal(rebuilt.read()[name], clean[name])


def test_cached_array_computes_once(fresh_cache):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(3, 2)

    first = cached_array({"t": "single"}, compute)
    second = cached_array({"t": "single"}, compute)
    np.testing.assert_array_equal(first, second)
    assert len(calls) == 1
    assert cached_array({"t": "other"}, compute).shape == (3, 2) and len(calls) == 2


def test_strings_pack_roundtrip():
    texts = ["a", "", "héllo wörld", "x" * 500]
    assert cache.unpack_strings(cache.pack_strings(texts)).tolist() == texts


def test_listing_and_clearing(fresh_cache):
    cached_array({"t": "listed"}, lambda: np.ones((2, 2)), description="two by two")
    store = ChunkedStore({"t": "partial"}, 8, chunk_rows=4, description="half done")
    with store.locked():
        store.write_chunk(0, {"x": np.zeros(4)})
    entries = {entry.description: entry for entry in list_entries()}
    assert entries["two by two"].complete and entries["two by two"].size_bytes > 0
    assert not entries["half done"].complete and entries["half done"].n_chunks_done == 1
    assert cache.clear_cache() > 0 and list_entries() == []


_WORKER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from cae_core.inputs.cache import ChunkedStore

    def slow(rows):
        for start in range(0, len(rows), 2):
            time.sleep(0.05)
            yield {"x": rows[start:start + 2].astype(float)}

    store = ChunkedStore({"t": "concurrent"}, 24, chunk_rows=4)
    with store.locked():
        store.fill(slow(store.missing_rows()))
    assert (store.read()["x"] == np.arange(24)).all()
    print(store.chunks_computed)
""")


def test_two_processes_neither_corrupt_nor_duplicate(fresh_cache):
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    computed = sorted(int(proc.communicate(timeout=60)[0].split()[-1]) for proc in procs)
    assert all(proc.returncode == 0 for proc in procs)
    assert computed == [0, 6]  # one process computed every chunk, the other read them
    assert len(list_entries()) == 1
