"""Property-based fuzzing of the gateway's purpose strings (imapd/gateway/purpose.py): whatever
the CGI client sends, parsing gives a Purpose or a GatewayError whose `NO` line is one line, and
the logged form (`masked`) is one printable line that never holds the password."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from imapd.gateway.purpose import MAX_PURPOSE, Purpose, masked, parse_purpose
from imapd.gateway.replies import GatewayError, no

# Every password starts with MARK and no other field holds a Z. Nor a '#': the seed's grammar
# splits the first four fields at '#' and takes the mailbox after the last one, so only the
# password (in the middle) can hold one.
MARK = "Zq"
FIELD = st.one_of(
    st.sampled_from(["", "headers", "body", "delete", "1", "0", "127.0.0.1", "alice", "INBOX"]),
    st.text(
        alphabet=st.characters(blacklist_characters="Z#", blacklist_categories=("Cs",)), max_size=12
    ),
)
PASSWORD = st.text(max_size=12).map(lambda t: MARK + t)


@st.composite
def purpose_strings(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """(the raw string before `$`, its password or None when it has none)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=MAX_PURPOSE)).replace(b"Z", b"z"), None
    fields = [draw(FIELD) for _ in range(4)]
    password = draw(PASSWORD)
    if draw(st.booleans()):  # the password, in the middle, may hold '#' (the seed's grammar)
        password += "#" + draw(FIELD)
    if draw(st.booleans()):  # the last field is the mailbox: without it, no password either
        raw = "#".join([*fields, password]).encode("utf-8", "surrogateescape")
        return raw, password
    raw = "#".join([*fields, password, draw(FIELD)]).encode("utf-8", "surrogateescape")
    return raw, password


@given(purpose_strings())
@example((b"body#1#127.0.0.1#alice#Zq#pass#with#hashes#INBOX", "Zq#pass#with#hashes"))
@example((b"headers#0#127.0.0.1#alice#Zqsecret", "Zqsecret"))
@example((b"Zqsecret", "Zqsecret"))  # the password alone
@example((b"Zq#pw#body#1", "Zq#pw"))
@example((b"body#x\nNO forged#h#u#Zqpw#INBOX", "Zqpw"))
@example(("\u00b2#\u00b2#h#u#Zqpw#\u2028".encode(), "Zqpw"))
def test_purpose_strings(case: tuple[bytes, str | None]) -> None:
    raw, password = case
    try:
        purpose = parse_purpose(raw)
    except GatewayError as error:
        line = no(str(error))
        assert line.startswith(b"NO ") and line.endswith(b"\n") and line.count(b"\n") == 1
        assert b"\r" not in line
    else:
        assert isinstance(purpose, Purpose) and purpose.purpose in ("headers", "body", "delete")
        assert purpose.user and purpose.host
        assert purpose.msgnum == "" or purpose.msgnum.isdigit() or purpose.purpose == "headers"
    logged = masked(raw)
    assert logged.isprintable() and logged.endswith("$"), logged
    assert len(logged) <= MAX_PURPOSE + 1
    if password is not None:
        assert MARK not in logged, (raw, logged)
