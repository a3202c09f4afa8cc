"""Committed ids are a compact set: exact membership for every string, a bit per task."""

from __future__ import annotations

from agen.run.committed import CommittedIds


def test_behaves_as_a_set_of_strings():
    ids = CommittedIds(["0123abcd-propose-00000003", "0123abcd-amplify-00000000", "odd-id"])
    ids.add("0123abcd-propose-00000003")  # again: no change
    ids.add("0123abcd-amplify-00001000")
    assert len(ids) == 4
    assert "0123abcd-propose-00000003" in ids and "odd-id" in ids
    assert "0123abcd-propose-00000004" not in ids and "0123abcd-amplify-00000001" not in ids
    assert "ffffffff-propose-00000003" not in ids and "0123abcd-propose-3" not in ids and 3 not in ids
    assert sorted(ids) == sorted(["0123abcd-propose-00000003", "0123abcd-amplify-00000000",
                                  "0123abcd-amplify-00001000", "odd-id"])


def test_a_million_ids_fit_in_a_few_hundred_kilobytes():
    ids = CommittedIds()
    for i in range(0, 1_000_000, 3):
        ids.add(f"0123abcd-amplify-{i:08d}")
    assert len(ids) == 333_334
    assert "0123abcd-amplify-00999999" in ids and "0123abcd-amplify-00999998" not in ids
    assert ids.nbytes() <= 200_000  # a set of these strings: ~30 MB
