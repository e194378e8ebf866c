"""Property-based fuzzing of the relay file's lines (common/relay/opensmtp.py): any bytes read
from open-smtp parse without an exception, a line that is no entry is kept byte for byte with
its reason, and an entry written back parses to the same entry."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from common.relay.opensmtp import Entry, OtherLine, format_open_smtp, parse_open_smtp

LINES = st.one_of(
    st.builds(
        lambda ip, rule, stamp, junk: f"{ip}:{rule}\t{stamp}{junk}",
        st.sampled_from(["127.0.0.1", "192.0.2.7", "256.1.1.1", "::1", "1.2.3", "", "01.2.3.4"]),
        st.sampled_from(
            ['allow,RELAYCLIENT=""', "allow", "deny", 'allow,X="a:b"', "", "\x00", "="]
        ),
        st.one_of(st.integers(0, 2**40).map(str), st.sampled_from(["", "-1", "\xb2", "9" * 5000])),
        st.sampled_from(["", " ", "\r", "\t1", " x"]),
    ),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
)


@given(st.lists(LINES, max_size=8))
@example(["192.0.2.7:allow\t" + "9" * 5000])  # more digits than int() takes from a str
@example(["# comment", "", "192.0.2.7:allow\t1700000000 \r"])
def test_open_smtp_lines(lines: list[str]) -> None:
    text = "\n".join(lines)
    parsed = parse_open_smtp(text)
    data = format_open_smtp(parsed)
    assert isinstance(data, bytes)
    again = parse_open_smtp(data.decode("latin-1"))
    assert len(again) == len(parsed)
    for first, second in zip(parsed, again, strict=True):
        if isinstance(first, Entry):
            assert isinstance(second, Entry)
            assert (first.ip, first.rule, first.stamp) == (second.ip, second.rule, second.stamp)
            assert 0 <= first.stamp < 10**18
        else:
            assert isinstance(first, OtherLine) and isinstance(second, OtherLine)
            assert first.text == second.text and first.problem == second.problem
            assert first.text in text
