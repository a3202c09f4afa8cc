"""Shard rolling, torn-tail repair and corruption detection in the run directory's JSONL files."""

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agen.run.shards import CorruptShardError, ShardWriter, _Open, plan_rolls, read_records, repair_torn_tail


@given(st.lists(st.integers(1, 50), max_size=60), st.integers(1, 7), st.integers(1, 120),
       st.integers(0, 3), st.integers(0, 60))
def test_plan_rolls_never_splits_or_loses_a_line(sizes, max_records, max_bytes, start_records, start_size):
    """Every line lands in exactly one shard, in order, and shards respect their limits."""
    runs = plan_rolls(_Open(3, start_records, start_size), sizes, max_records, max_bytes)
    covered = [i for _, a, b in runs for i in range(a, b)]
    assert covered == list(range(len(sizes)))
    indexes = [idx for idx, _, _ in runs]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    for idx, a, b in runs:
        n, size = b - a, sum(sizes[a:b])
        if idx == 3:
            n, size = n + start_records, size + start_size
        # a shard over its limits holds a single line that could not fit anywhere smaller
        assert n <= max(max_records, 1 + (start_records if idx == 3 else 0)) or n == 1
        assert size <= max_bytes or (b - a == 1 and (idx != 3 or start_records == 0))


def test_torn_tail_is_cut_and_corruption_in_the_middle_raises(tmp_path):
    """An unfinished last line is removed; a bad line before it is a loud error."""
    folder = tmp_path / "accepted"
    folder.mkdir()
    p = folder / "part-00000.jsonl"
    p.write_bytes(b'{"id": 1}\n{"id": 2}\n{"id": 3, "tor')
    assert [r["id"] for r in read_records(folder)] == [1, 2]
    assert repair_torn_tail(p) == len(b'{"id": 3, "tor')
    assert p.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    assert repair_torn_tail(p) == 0
    p.write_bytes(b'{"id": 1}\nGARBAGE\n{"id": 3}\n')
    with pytest.raises(CorruptShardError, match="part-00000.jsonl:2"):
        list(read_records(folder))


@settings(deadline=None, max_examples=25)
@given(st.lists(st.lists(st.integers(0, 10**6), min_size=0, max_size=15), max_size=8), st.integers(1, 9))
def test_writer_appends_batches_across_reopen(tmp_path_factory, batches, max_records):
    """Batches written through reopened writers read back complete, in order, with no duplicates."""
    folder = tmp_path_factory.mktemp("s")

    async def go():
        n = 0
        for batch in batches:
            w = ShardWriter(folder, max_records, 10**6)
            w.open()
            await w.write_batch([orjson.dumps({"v": v}) + b"\n" for v in batch])
            await w.aclose()
            n += len(batch)
        return n

    n = asyncio.run(go())
    got = [r["v"] for r in read_records(folder)]
    assert got == [v for b in batches for v in b] and len(got) == n
    for p in folder.glob("part-*.jsonl"):
        assert p.read_bytes().count(b"\n") <= max_records
