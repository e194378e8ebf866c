"""common/store/names.py: user and folder names are checked before they become paths."""

from __future__ import annotations

import pytest

from common.store.names import (
    MAX_FOLDER,
    MAX_USERNAME,
    InvalidName,
    check_folder,
    check_username,
    is_valid_username,
)


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "a",
        "bob.smith",
        "user_1",
        "x-y",
        "UPPER",
        "a@example.org",
        "1234",
        "a+tag",
        "n" * MAX_USERNAME,
    ],
)
def test_good_usernames(name):
    assert check_username(name) == name
    assert is_valid_username(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".hidden",
        "-rf",
        "../etc",
        "a/b",
        "a\\b",
        "a:b",
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "ümlaut",
        "a*",
        "a?",
        "a;b",
        "a|b",
        "a$b",
        "a`b",
        "a'b",
        'a"b',
        "a~",
        "a,b",
        "a=b",
        "a%b",
        "a{b}",
        "a[b]",
        "a(b)",
        "a<b>",
        "a&b",
        "a!b",
        "a#b",
        "n" * (MAX_USERNAME + 1),
    ],
)
def test_bad_usernames(name):
    with pytest.raises(InvalidName):
        check_username(name)
    assert not is_valid_username(name)


@pytest.mark.parametrize(
    "name",
    [
        "Sent",
        "Drafts",
        "Lists.python",
        "a.b.c",
        "with space",
        "Ümlauts",
        "&AOQ-",
        "x" * 50,
        "dash-and_underscore",
        "a~b",
        "\xa0nbsp",  # the first character past C1
        "日本.語",
        "\U0001f600",
    ],
)
def test_good_folders(name):
    assert check_folder(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".Sent",
        "Sent.",
        "a..b",
        "a/b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\x85b",  # C1 controls, LINE and PARAGRAPH SEPARATOR (RFC 6855 3)
        "a\x9fb",
        "a\u2028b",
        "a\u2029b",
        "é" * (MAX_FOLDER // 2 + 1),
    ],
)
def test_bad_folders(name):
    with pytest.raises(InvalidName):
        check_folder(name)
