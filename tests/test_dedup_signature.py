"""The C helper `agen.gen._minhash` computes a question's near-duplicate signature exactly as the
Python path of `agen.gen.dedup` does (the helper is built with the compiled engine; a pure-Python
install takes the Python path, so the two must never disagree on a key)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agen.gen import dedup
from agen.gen.dedup import Deduper

minhash = pytest.importorskip("agen.gen._minhash", reason="no compiled build here (no C compiler, or AGEN_COMPILE=0)")

DATA = Path(__file__).resolve().parent.parent / "data"


def _texts() -> list[str]:
    rows = [json.loads(line) for f in sorted(DATA.glob("*.jsonl")) for line in f.read_text().splitlines() if line.strip()]
    return [str(v) for r in rows for v in r.values() if isinstance(v, str)]


EDGES = [
    "", "   ", "the of and a", "1 2 3 4 5", "the 12 and 7", "apples apples apples apples pears",
    "Ünïcödé wörds and ½ ² ³ digits ٣ ١٢", "日本語の問題 と 答え", "x" * 5000, "a b c d e f g h i j " * 40,
    "Bob has 3 apples. Bob has 3 apples. Bob has 3 apples.", "__init__ snake_case CamelCase 3.14",
]


@pytest.mark.parametrize("bands,rows", [(32, 4), (16, 5), (8, 1)])
def test_c_and_python_signatures_agree(bands, rows):
    d = Deduper(bands=bands, rows=rows, seed=bands + rows)
    rng = random.Random(rows)
    texts = _texts()[:1200] + EDGES
    words = [w for t in texts[:300] for w in t.split()]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 80))) for _ in range(300)]
    for t in texts:
        tokens = dedup._tokens(t)
        py = d.py_signature(tokens)
        c = minhash.signature(tokens, *d._c_args)
        assert c == py, t[:80]
        if py[1] is not None:
            assert len(py[1]) == bands and all(0 <= k < 2**32 for k in py[1])


@pytest.mark.parametrize("bands,rows", [(32, 4), (16, 5)])
def test_text_signature_is_the_token_signature_and_the_exact_key(bands, rows):
    """`signature_text` (ASCII text tokenized in C, stop words in its own table) gives the token
    path's query and keys, and the text `exact_key` hashes: whitespace of every kind str.split()
    knows (control characters \\x1c-\\x1f included), punctuation, underscores, case, digits."""
    d = Deduper(bands=bands, rows=rows, seed=bands)
    rng = random.Random(bands)
    texts = [t for t in _texts()[:1200] + EDGES if t.isascii()]
    alphabet = "aAbBzZ09 _-.,?!\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f" + "the of and "
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    texts += [" ".join(rng.sample(sorted(dedup._STOP), 3)) + " " + t for t in texts[:50]]
    for t in texts:
        query, keys, norm = minhash.signature_text(t, *d._c_args)
        assert (query, keys) == minhash.signature(dedup._tokens(t), *d._c_args), repr(t[:80])
        assert norm == " ".join(t.casefold().split()).encode(), repr(t[:80])
        assert d._prepare(t).exact == dedup.exact_key(t)
    with pytest.raises(TypeError):
        minhash.signature_text("日本語", *d._c_args)
    assert minhash.signature_text("a b", frozenset({b"x" * 40}), *d._c_args[1:]) is None  # its table: the token path


def test_str_tokens_take_the_same_codes_as_bytes():
    """ASCII text arrives as bytes tokens, other text as str: one word, one code either way."""
    d = Deduper()
    as_bytes = minhash.signature([b"seven", b"apples", b"the", b"12"], *d._c_args)
    as_str = minhash.signature(["seven", "apples", "the", "12"], *d._c_args)
    assert as_bytes == as_str


def test_the_prepared_keys_are_the_signature():
    d = Deduper()
    p = d._prepare("Freya has 12 coloring books and gives 5 to a friend.")
    _, keys = d.py_signature(dedup._tokens("Freya has 12 coloring books and gives 5 to a friend."))
    assert p.band_list == keys


def test_bad_arguments_raise_instead_of_crashing():
    d = Deduper()
    args = list(d._c_args)
    with pytest.raises(TypeError):
        minhash.signature(("a", "tuple"), *args)
    with pytest.raises(TypeError):
        minhash.signature([b"ok", 3], *args)
    with pytest.raises(ValueError):
        minhash.signature([b"ok"], *args[:2], b"short", *args[3:])
    with pytest.raises(TypeError):
        minhash.signature([b"ok"])
