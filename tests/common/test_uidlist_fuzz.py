"""Property-based fuzzing of the uidlist parsers (common/store/uidlist.py): ours and Dovecot's
`dovecot-uidlist` (versions 1 and 3). Any bytes give a UidList or None (a damaged file is
rebuilt), never an exception; a list of ours read back from what it writes is the same list."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from common.store.uidlist import UidList, parse, parse_dovecot

NUMBER = st.one_of(
    st.integers(-5, 2**64).map(str), st.sampled_from(["", "x", "1_0", "\u0663", "9" * 5000])
)
WORD = st.one_of(NUMBER, st.sampled_from(["-", "S", "RS", "M1", "3", "1", ":", "G", "W12"]))
KEY = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), max_size=20)


@st.composite
def uidlist_bytes(draw: st.DrawFn) -> bytes:
    """A header of ours or Dovecot's, then record and tombstone lines, mostly well formed."""
    head = draw(
        st.sampled_from(["M1", "3", "1", "M2", ""])
        .flatmap(lambda tag: st.tuples(st.just(tag), st.lists(WORD, max_size=5)))
        .map(
            lambda t: " ".join(
                [t[0], *(f"{letter}{w}" for letter, w in zip("VNHEG", t[1], strict=False))]
            )
        )
    )
    lines = [head]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["record", "tombstone", "dovecot", "junk"]))
        if kind == "record":
            parts = [draw(NUMBER), draw(NUMBER), draw(WORD), draw(KEY)]
        elif kind == "tombstone":
            parts = [
                "-",
                draw(NUMBER),
                draw(NUMBER) + draw(st.sampled_from(["", ":"])) + draw(NUMBER),
            ]
        elif kind == "dovecot":
            parts = [draw(NUMBER), draw(WORD), ":" + draw(KEY)]
        else:
            parts = [draw(st.binary(max_size=30)).decode("utf-8", "surrogateescape")]
        lines.append(" ".join(parts))
    return "\n".join(lines).encode("utf-8", "surrogateescape")


@given(st.one_of(uidlist_bytes(), st.binary(max_size=300)))
@example(b"M1 V1 N2 H1\n1 1 - a\n- 5 3:2\n")
@example(b"M1 V" + b"9" * 5000 + b" N2\n")
@example(b"3 V1 N5\n4 W12 :key:2,S\n0 :bad\n")
@example(b"1 1 2\n1 a/b\n")
def test_parsers_never_raise_and_ours_round_trips(data: bytes) -> None:
    ours = parse(data)
    assert ours is None or isinstance(ours, UidList)
    theirs = parse_dovecot(data)
    assert theirs is None or isinstance(theirs, UidList)
    if theirs is not None:
        assert all(e.uid > 0 and e.key and "/" not in e.key for e in theirs.entries)
    if ours is not None:
        again = parse(b"".join(ours.serialize()))
        assert again is not None
        assert (again.uidvalidity, again.uidnext, again.highestmodseq, again.horizon) == (
            ours.uidvalidity,
            ours.uidnext,
            ours.highestmodseq,
            ours.horizon,
        )
        assert again.first_recent == ours.first_recent
        assert [(e.uid, e.modseq, e.location, e.extra) for e in again.entries] == [
            (e.uid, e.modseq, e.location, e.extra) for e in ours.entries
        ]
        assert sorted(again.tombstones) == sorted(ours.tombstones)
