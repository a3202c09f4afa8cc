"""The dedup index's spilling stores: files hold what grows, RAM stays bounded, answers do not change."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import ROOT
from test_dedup import GSM8K, _variant

sys.path.insert(0, str(ROOT / "benchmarks"))

from agen.gen import dedup_store
from agen.gen.dedup import Deduper
from agen.gen.dedup_store import (
    _BLOCK, ItemLog, MultiMap, SpillDir, _Buffer, _get_files, _merge_runs, _records, _Run, _run_gather,
)


def _c_helper(name: str) -> ModuleType:
    """The compiled build's C helper `agen.gen.<name>`, or a skip where there is none."""
    return pytest.importorskip(f"agen.gen.{name}", reason="no compiled build here (no C compiler, or AGEN_COMPILE=0)")


def _reference(pairs: list[tuple[list[int], int]], keys: list[int], limit: int) -> list[int]:
    """What one sorted array would answer: the last `limit` values per queried key."""
    per: dict[int, list[int]] = {}
    for ks, v in pairs:
        for k in ks:
            per.setdefault(k, []).append(v)
    return sorted(v for k in keys for v in per.get(k, [])[-limit:])


def test_spilling_multimap_answers_as_one_sorted_array(tmp_path: Path) -> None:
    """Past `spill_at` keys the map lives in files merged like a binary counter (~log2 of them);
    every lookup, during or after merges, gives the newest `limit` values per key, and the RAM it
    holds for the sorted part is the in-RAM run (< spill_at keys) plus 1/64 of the files' keys."""
    rng = random.Random(3)
    m = MultiMap(np.uint32, merge_at=16, spill_at=64, spill=SpillDir(tmp_path / "c"))
    pairs: list[tuple[list[int], int]] = []
    for v in range(6000):
        ks = [rng.randrange(300), rng.randrange(300, 5000), 7]  # 7: a crowded key, 6000 values
        m.add(ks, v)
        pairs.append((ks, v))
        if v % 499 == 0:
            probe = [7, ks[0], ks[1], 4_000_000]
            assert sorted(m.get(probe, 5)) == _reference(pairs, probe, 5)
    m.wait_merged()
    files = m._state[2]
    assert 1 <= len(files) <= int(np.log2(18000 / 64)) + 1
    assert m.file_bytes() == 8 * sum(f.n for f in files) and sum(f.n for f in files) > 17000
    assert m.nbytes() < 8 * 64 + 4 * sum(f.n for f in files) // _BLOCK + 4 * len(files)
    probe = list(range(0, 5000, 7))
    assert sorted(m.get(probe, 1000)) == _reference(pairs, probe, 1000)
    assert sorted(m.get([7, 7], 3)) == [5997, 5997, 5998, 5998, 5999, 5999]
    m.close()


def test_streaming_merge_of_files_is_stable_and_chunked(tmp_path: Path) -> None:
    """Merging files a key range at a time equals a stable sort of their concatenation (older
    file's records first among equal keys), and the fence is every 64th key of the result."""
    rng = np.random.default_rng(5)
    runs = []
    for i, n in enumerate((3000, 1200, 700)):
        keys = np.sort(rng.integers(0, 400, n).astype(np.uint32))
        vals = np.arange(n, dtype=np.int32) + 10_000 * i
        runs.append(_Run.write(tmp_path / f"r{i}.bin", _records(keys, vals)))
    merged = _merge_runs(runs, tmp_path / "m.bin", chunk=256)
    cat = np.concatenate([r.read(0, r.n) for r in runs])
    want = cat[np.argsort(cat["k"], kind="stable")]
    got = merged.read(0, merged.n)
    assert np.array_equal(got, want)
    assert np.array_equal(merged.fence, want["k"][::_BLOCK])
    for key in (0, 17, 399, 1000):
        for side in ("left", "right"):
            assert merged.locate(key, side) == int(np.searchsorted(want["k"], key, side))


def test_item_log_reads_back_from_tail_and_file(tmp_path: Path) -> None:
    """Codes and ids round-trip whether still in the RAM tail or in the file; only file reads count."""
    log = ItemLog(SpillDir(tmp_path / "c"), flush_at=256)
    items = [("".join(map(chr, (i, i + 1, 0x10FFFF - i))), f"id-{i}") for i in range(100)]
    for text, item_id in items:
        log.append(text, item_id)
    assert log.file_bytes() > 0 and len(log) == 100
    assert log.nbytes() < 12 * 101 + 256 + 64
    assert log.texts(list(range(100))) == [text for text, _ in items]
    for i, (text, item_id) in enumerate(items):
        assert log.item_id(i) == item_id and log.lengths[i] == 3
    assert 0 < log.reads < 200  # the last items were served from the tail
    log.close()


def _stream(n: int, seed: int) -> list[str]:
    """Questions with near and exact duplicates of earlier ones mixed in."""
    rng = random.Random(seed)
    gsm = [json.loads(line)["question"] for line in GSM8K.read_text().splitlines()]
    vocab = [w for q in gsm for w in q.split()]
    out = list(gsm)
    while len(out) < n:
        r = rng.random()
        if r < 0.3:
            out.append(_variant(rng, rng.choice(out).split(), vocab, rng.uniform(0.0, 0.4)))
        elif r < 0.35:
            out.append(rng.choice(out).upper())
        else:
            out.append(" ".join(rng.choices(vocab, k=rng.randint(15, 60))))
    return out


def test_spilled_deduper_decides_exactly_as_the_in_memory_one(tmp_path: Path) -> None:
    """The same stream through an index held wholly in RAM (the old behaviour) and through one
    spilled to many files gives the same decision, match and score for every question."""
    stream = _stream(2500, 11)
    in_ram = Deduper(merge_at=1 << 30, spill_at=1 << 30)
    spilled = Deduper(merge_at=64, spill_at=512, store=tmp_path / "cache")
    a = [in_ram.check_and_add(q, f"q{i}") for i, q in enumerate(stream)]
    b = [spilled.check_and_add(q, f"q{i}") for i, q in enumerate(stream)]
    assert a == b
    assert sum(m is not None and m.kind == "near" for m in a) > 300
    assert sum(m is not None and m.kind == "exact" for m in a) > 50
    assert not in_ram._spill.used and spilled.file_bytes() > 0 and len(spilled._lsh._state[2]) >= 1
    spilled.close()
    assert not (tmp_path / "cache").exists()


def test_item_texts_are_read_only_for_candidates_that_could_match(tmp_path: Path) -> None:
    """Once spilled, a question with no LSH candidate reads nothing back from the item file; a near
    duplicate reads exactly the candidates the length bound let through (plus the match's id)."""
    dd = Deduper(merge_at=64, spill_at=512, store=tmp_path / "cache")
    stream = _stream(1500, 12)
    for i, q in enumerate(stream):
        dd.add(q, f"q{i}")
    assert dd._items.file_bytes() > 0
    reads, checked = dd._items.reads, dd.candidates_checked
    assert dd.check("zebra quantum violin lighthouse marmalade sextant") is None
    assert dd._items.reads == reads and dd.candidates_checked == checked
    near = " ".join(stream[0].split()[:-1])  # the first (oldest, in the file) question minus a word
    match = dd.check(near)
    assert match is not None and match.match_id == "q0"
    assert dd._items.reads - reads == dd.candidates_checked - checked + 1 >= 2


def test_a_stale_cache_folder_is_emptied_not_trusted(tmp_path: Path) -> None:
    """Files left by an earlier session (killed before cleaning up) are removed, never read."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "lsh-999999.bin").write_bytes(b"\xff" * 4096)
    dd = Deduper(merge_at=64, spill_at=512, store=cache)
    assert not cache.exists()  # removed when the index is opened
    for i, q in enumerate(_stream(400, 13)):
        dd.add(q, f"q{i}")
    dd._lsh.wait_merged()
    assert dd._spill.used and cache.is_dir() and not (cache / "lsh-999999.bin").exists()
    dd.close()
    assert not cache.exists()


def test_resume_rebuilds_the_spilled_index_from_the_shards(tmp_path: Path, monkeypatch) -> None:
    """Session 1 spills its index to run_dir/dedup-cache and removes it at the end; a stale file
    planted there is ignored; session 2 (resumed, index rebuilt from the shards into files) rejects
    an exact and a near copy of session 1's oldest proposals, naming them."""
    import urllib.request

    from conftest import sim_config_file
    from crash_resume import SimProcess, write_run_config

    from agen.app.runner import EXIT_OK, run_session
    from agen.config import load_config
    from agen.gen import dedup
    from agen.run.rundir import DEDUP_CACHE
    from agen.run.shards import read_records

    monkeypatch.setattr(dedup, "MERGE_AT", 64)  # 2 questions a merge, 16 a file: restored items live in files
    monkeypatch.setattr(dedup, "SPILL_AT", 512)
    made: list[Path] = []
    new_file = SpillDir.new_file
    monkeypatch.setattr(SpillDir, "new_file", lambda self, prefix: made.append(new_file(self, prefix)) or made[-1])
    root = tmp_path / "run"
    with SimProcess(sim_config_file(tmp_path, latency_ms=2)) as sim:
        cfg_path = write_run_config(tmp_path / "run.yaml", sim.base_url, root, proposals=6, target=30)
        assert run_session(load_config(cfg_path), live=False).exit_code == EXIT_OK
        assert not (root / DEDUP_CACHE).exists()
        first = [r for r in read_records(root / "accepted") if r["stage"] == "propose"]
        (root / DEDUP_CACHE).mkdir()
        (root / DEDUP_CACHE / "lsh-999999.bin").write_bytes(b"\x00" * 8192)  # as a kill -9 would leave it

        def proposal(question: str) -> dict:
            text = (f"Plan: reuse.\n[New Question Begin]{question}[New Question End]\n"
                    "[Final Answer to New Question Begin]\\boxed{7}[Final Answer to New Question End]")
            return {"body": {"id": "chatcmpl-dup", "object": "chat.completion", "created": 0, "model": "sim-large",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90}}}

        words = first[1]["question"].split()
        near = " ".join(words[:-2] + words[-1:])  # one word dropped: ROUGE-L well above 0.7
        script = {"model": "sim-large", "responses": [proposal(first[0]["question"].upper()), proposal(near)]}
        urllib.request.urlopen(urllib.request.Request(sim.base_url + "/sim/script", method="POST",
                                                      data=json.dumps(script).encode())).close()
        assert made and all(p.parent == root / DEDUP_CACHE for p in made)
        made.clear()
        again = run_session(load_config(root / "config.yaml", {"output.dir": str(root), "propose.target": 8}),
                            live=False)
        assert again.exit_code == EXIT_OK, again.message
    assert len(made) > 10 and not (root / DEDUP_CACHE).exists()  # spilled again, then removed (the stale file too)
    dups = {r["reason"]: r for r in read_records(root / "rejected") if r["reason"].startswith("duplicate:")
            and r["session"] == 1}
    assert dups["duplicate:exact"]["duplicate_of"] == first[0]["id"]
    assert dups["duplicate:near"]["duplicate_of"] == first[1]["id"]


def test_an_unwritable_cache_folder_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """A spill that cannot write (here the folder's parent is a file) surfaces on the caller's
    thread as StorageError (exit 4) naming the path, from the merge thread and from the item log."""
    import pytest

    from agen.errors import StorageError

    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "cache"
    m = MultiMap(np.uint32, merge_at=4, spill_at=8, spill=SpillDir(bad))
    with pytest.raises(StorageError, match="dedup index: writing .*file/cache"):
        for v in range(100):
            m.add([v, v + 1], v)
        m.wait_merged()
    log = ItemLog(SpillDir(bad), flush_at=16)
    with pytest.raises(StorageError, match="dedup index: writing .*file/cache"):
        for i in range(10):
            log.append("\x01\x02\x03", f"id-{i}")


def test_c_key_buffer_behaves_as_the_python_buffer() -> None:
    """`_keybuf.KeyBuffer` (the compiled build's buffer) answers every query exactly as
    `_Buffer` does, repeats within one add, table growth and 64-bit keys included."""
    keybuf = _c_helper("_keybuf")
    rng = random.Random(11)
    for width, top in ((4, (1 << 32) - 1), (8, (1 << 64) - 1)):
        c, py = keybuf.KeyBuffer(width), _Buffer(width)
        pool = [rng.randint(0, top) for _ in range(700)] + [0, top]
        for v in range(3000):  # ~100k values: the table grows many times
            ks = [rng.choice(pool) if rng.random() < 0.7 else rng.randint(0, top) for _ in range(rng.randrange(0, 40))]
            if ks and rng.random() < 0.2:
                ks.append(ks[0])  # a key repeated within one add
            c.add(ks, v)
            py.add(ks, v)
            if v % 97 == 0:
                probe = [rng.choice(pool) for _ in range(33)] + [rng.randint(0, top)]
                need = [rng.randrange(0, 70) for _ in probe]
                out_c, out_py, need_c = [], [], list(need)
                c.gather(probe, need_c, out_c)
                py.gather(probe, need, out_py)
                assert (out_c, need_c) == (out_py, need)
                assert [c.latest(k) for k in probe] == [py.latest(k) for k in probe]
                assert all(c.newest(k, 5) == py.newest(k, 5) for k in probe)
        assert len(c) == len(py)
        ck, cv = c.arrays()
        pk, pv = py.arrays()
        assert ck == pk.tobytes() and cv == pv.tobytes()
        assert 16 * len(c) <= c.nbytes() <= 64 * len(c)  # 8-byte key, value, prev + the table
    for bad in ([-1], [1 << 32]):
        with pytest.raises(OverflowError):
            keybuf.KeyBuffer(4).add(bad, 0)
        with pytest.raises(OverflowError):
            _Buffer(4).add(bad, 0)
    with pytest.raises(ValueError):
        keybuf.KeyBuffer(3)


def test_c_sorted_run_lookups_answer_as_numpy() -> None:
    """`_keybuf.sorted_gather`/`sorted_latest` (the compiled build's lookups in a sorted in-RAM run)
    give what the numpy path `_run_gather` and a slice give, both key widths, crowded keys included."""
    keybuf = _c_helper("_keybuf")
    rng = np.random.default_rng(5)
    for dtype, top in ((np.uint32, 1 << 32), (np.uint64, 1 << 64)):
        keys = np.sort(np.concatenate([rng.integers(0, top, 5000, dtype=dtype, endpoint=False),
                                       np.full(300, 12345, dtype=dtype), np.array([0, top - 1], dtype=dtype)]))
        vals = rng.integers(0, 1 << 31, len(keys), dtype=np.int32)
        query = [*keys[rng.integers(0, len(keys), 40)].tolist(), 12345, 0, top - 1, 7, top - 2]
        need = [int(x) for x in rng.integers(-1, 80, len(query))]
        out_c, need_c, out_py = [], list(need), []
        keybuf.sorted_gather(keys, vals, query, need_c, out_c)
        _run_gather(keys, vals, np.array(query, dtype=dtype), need, out_py)
        assert (out_c, need_c) == (out_py, need)
        for k in query:
            i = int(np.searchsorted(keys, np.array(k, dtype=dtype), "right"))
            want = int(vals[i - 1]) if i and keys[i - 1] == k else None
            assert keybuf.sorted_latest(keys, vals, k) == want
    with pytest.raises(ValueError):
        keybuf.sorted_latest(np.zeros(3, dtype=np.uint16), np.zeros(3, dtype=np.int32), 1)


def test_c_best_match_verifies_as_rapidfuzz(tmp_path: Path, monkeypatch) -> None:
    """`_lcs.best_match` (the compiled build's verification: bit-parallel LCS over the log's codes,
    read from the tail or with a pread) picks the same candidate with the same score, compares as
    many and reads as many records as the Python path with rapidfuzz, queries past 64 and 128
    tokens (several machine words) and repeated candidates included."""
    _c_helper("_lcs")
    rng = random.Random(8)
    log = ItemLog(SpillDir(tmp_path / "c"), flush_at=4096)  # most records in the file, the rest in the tail
    vocab = [chr(c) for c in [*range(0x41, 0x60), 0xD7FF, 0xE000, 0x10FFFF, *range(0x3000, 0x3010)]]
    base = ["".join(rng.choice(vocab) for _ in range(rng.randint(1, 200))) for _ in range(60)]
    for i in range(600):
        words = list(rng.choice(base))
        for _ in range(rng.randint(0, 12)):  # edits: near copies of a few bases
            words[rng.randrange(len(words))] = rng.choice(vocab)
        log.append("".join(words), f"id-{i}")
    for _ in range(300):
        query = "".join(rng.choice(vocab) for _ in range(rng.choice([1, 5, 40, 64, 65, 127, 128, 129, 200])))
        if rng.random() < 0.5:
            query = rng.choice(base)[: rng.randint(1, 200)]
        cands = [rng.randrange(len(log)) for _ in range(rng.randint(1, 40))]
        cands += cands[:3]
        t = rng.choice([0.7, 0.3, 0.05])
        reads = log.reads
        c = log.best_match(query, cands, t)
        c_reads, log.reads = log.reads - reads, reads
        with monkeypatch.context() as m:
            m.setattr(dedup_store, "_c_best_match", None)
            py = log.best_match(query, cands, t)
        assert c == py and c_reads == log.reads - reads, (query[:20], cands)
    assert log.reads > 0 and log.file_bytes() > 0


def test_c_files_gather_reads_as_numpy(tmp_path: Path) -> None:
    """`_keybuf.files_gather` (the compiled build's lookups in the index's files) takes the same
    values in the same order and leaves the same needs as the numpy path `_get_files`, over
    several files of both key widths, crowded keys and keys past either end included."""
    keybuf = _c_helper("_keybuf")
    rng = np.random.default_rng(9)
    spill = SpillDir(tmp_path / "c")
    for dtype, top in ((np.uint32, 1 << 32), (np.uint64, 1 << 64)):
        runs = []
        for size in (5000, 1200, 300, 70):
            keys = np.sort(np.concatenate([rng.integers(1, top - 1, size, dtype=dtype, endpoint=False),
                                           np.full(size // 5, 777, dtype=dtype)]))
            vals = rng.integers(0, 1 << 31, len(keys), dtype=np.int32)
            runs.append(_Run.write(spill.new_file("t"), _records(keys, vals)))
        for _ in range(200):
            query = [*rng.choice(np.concatenate([r.fence for r in runs]), 20).tolist(), 777, 0, top - 1,
                     *rng.integers(0, top, 5, dtype=dtype, endpoint=False).tolist()]
            need = [int(x) for x in rng.integers(-1, 90, len(query))]
            out_c, need_c, out_py = [], list(need), []
            keybuf.files_gather([(r.fence, r.n, r._fd) for r in runs], query, need_c, out_c, _BLOCK)
            _get_files(tuple(runs), np.array(query, dtype=dtype), need, out_py)
            assert (out_c, need_c) == (out_py, need)
        for r in runs:
            r.close(unlink=True)
