"""common/samepage.py without root: reading ksmd's state, and `Ksmd` putting back what it changed
(on a directory laid out as /sys/kernel/mm/ksm)."""

from __future__ import annotations

import logging

import pytest

from common import samepage


def fake_ksm(tmp_path, **values: str):
    for name, value in {"run": "0", "pages_to_scan": "100", "sleep_millisecs": "20"}.items():
        (tmp_path / name).write_text(values.get(name, value) + "\n")
    (tmp_path / "full_scans").write_text("7\n")
    return tmp_path


def test_ksmd_runs_only_when_its_run_file_says_1(tmp_path):
    assert samepage.ksmd_running(fake_ksm(tmp_path, run="1") / "run")
    assert not samepage.ksmd_running(fake_ksm(tmp_path, run="0") / "run")
    assert not samepage.ksmd_running(tmp_path / "missing")


def test_ksmd_is_turned_on_inside_and_put_back_after(tmp_path):
    base = fake_ksm(tmp_path, pages_to_scan="64")
    with samepage.Ksmd(5000, base=base) as ksmd:
        assert ksmd.read("run") == "1"
        assert ksmd.read("pages_to_scan") == "5000"
        assert ksmd.describe() == "ksmd: 5000 pages every 20 ms"
        assert ksmd.settle(scans=0) == (pytest.approx(0, abs=0.5), 0)
    assert (base / "run").read_text().strip() == "0"
    assert (base / "pages_to_scan").read_text().strip() == "64"


def test_ksmd_settle_gives_up_at_its_timeout(tmp_path):
    with samepage.Ksmd(10, base=fake_ksm(tmp_path)) as ksmd:
        waited, scans = ksmd.settle(scans=1, timeout=0.2)
    assert scans == 0 and waited >= 0.2


def test_a_kernel_without_ksm_is_said_at_once(tmp_path):
    with pytest.raises(OSError, match="no KSM"), samepage.Ksmd(10, base=tmp_path / "none"):
        pass


def test_no_merging_asked_logs_nothing(caplog):
    with caplog.at_level(logging.INFO):
        samepage.start(False, "fork", logging.getLogger("samepage-test"))
    assert caplog.records == []


def test_an_offer_falls_due_once():
    assert samepage.offer_due() is None
    samepage.offer_after(100.0)
    try:
        assert 99.0 < samepage.offer_due() <= 100.0  # type: ignore[operator]
    finally:
        samepage.offer_after(0.0)
        samepage._offer_at = None  # this test process itself never asks
    assert samepage.offer_due() is None
