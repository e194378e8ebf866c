"""common/config.py: precedence (default < file < flag < runtime state file), typed lookups and
their errors, the runtime state file, and a HUP-style reload through common/service.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docopt import docopt

import imapd.main
import msmpd.main
import pop3d.main
from common import cli, service
from common.config import (
    COMMON_DEFAULTS,
    DAEMON_DEFAULTS,
    ConfigError,
    RuntimeState,
    Settings,
    read_config,
)


def settings_for(
    tmp_path: Path,
    text: str | None,
    flags: dict[str, str | None] | None = None,
    daemon: str = "pop3d",
) -> Settings:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / "test.conf"
    path.write_text(f"[common]\nstate_dir = {state}\n" + (text or ""))
    return Settings(daemon, read_config(path), flags, str(path))


def test_precedence_default_file_flag_runtime(tmp_path):
    assert settings_for(tmp_path, "").get("transformer") == DAEMON_DEFAULTS["pop3d"]["transformer"]
    assert settings_for(tmp_path, "").get("mail_base") == COMMON_DEFAULTS["mail_base"]
    text = "mail_base = /from/common\ntransformer = common-cmd\n[pop3d]\ntransformer = file-cmd\n"
    settings = settings_for(tmp_path, text)
    assert settings.get("transformer") == "file-cmd", "the daemon's section beats [common]"
    assert settings.get("mail_base") == "/from/common"
    settings = settings_for(
        tmp_path, text, {"transformer": "flag-cmd", "mail_base": "/flag", "port": None}
    )
    assert settings.get("transformer") == "flag-cmd"
    assert settings.get("mail_base") == "/flag"
    assert settings.get("port") == "110", "a flag not given (None) is no override"
    RuntimeState(tmp_path / "state").set("transformer", "runtime-cmd")
    RuntimeState(tmp_path / "state").set("maildir", "/runtime")
    assert settings.get("transformer") == "runtime-cmd", "seen without a restart"
    assert settings.get("mail_base") == "/runtime"
    assert settings.raw("mail_base") == "/flag", "raw() skips the runtime layer"
    fresh = settings_for(tmp_path, text, {"transformer": "flag-cmd"})
    assert fresh.get("transformer") == "runtime-cmd", "and it survives a restart"


def test_runtime_state_file(tmp_path):
    state = RuntimeState(tmp_path / "new-dir")
    assert state.value_for("transformer") is None
    state.set("transformer", "cat")
    other = RuntimeState(tmp_path / "new-dir")  # another process, e.g. msmpd
    assert other.value_for("transformer") == "cat"
    other.set("maildir", "/m")
    assert state.value_for("mail_base") == "/m" and state.value_for("transformer") == "cat"
    data = json.loads((tmp_path / "new-dir" / "runtime.json").read_text())
    assert data == {"maildir": "/m", "transformer": "cat"}
    with pytest.raises(ConfigError):
        state.set("port", "25")
    assert state.value_for("port") is None
    (tmp_path / "new-dir" / "runtime.json").write_text('{"transformer": "x", "evil": "y"}')
    assert state.refresh() == {"transformer": "x"}
    (tmp_path / "new-dir" / "runtime.json").write_text("not json")
    assert state.refresh() == {}
    assert sorted(p.name for p in (tmp_path / "new-dir").iterdir()) == ["runtime.json"]


def test_typed_lookups_and_their_errors(tmp_path):
    settings = settings_for(
        tmp_path,
        "[pop3d]\nport = 1100\nauth_failure_delay = 0.5\n"
        "max_children = many\nshutdown_grace = soon\n"
        "listen = 127.0.0.1, ::1  *\nidle_timeout = 1.5\n",
    )
    assert settings.get_int("port") == 1100
    assert settings.get_float("auth_failure_delay") == 0.5
    assert settings.listen_addresses() == ["127.0.0.1", "::1", "*"]
    with pytest.raises(ConfigError, match="max_children must be a whole number, not 'many'"):
        settings.get_int("max_children")
    with pytest.raises(ConfigError, match="shutdown_grace"):
        settings.get_float("shutdown_grace")
    with pytest.raises(ConfigError, match="idle_timeout"):
        settings.validate(("port", "idle_timeout"))
    with pytest.raises(ConfigError, match="unknown setting"):
        settings.get("no_such_key")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("yes", True),
        ("on", True),
        ("1", True),
        ("TRUE", True),
        ("no", False),
        ("off", False),
        ("0", False),
        ("", False),
    ],
)
def test_get_bool(tmp_path, value, expected):
    settings = settings_for(tmp_path, f"[imapgw]\njoin_mailbox_user = {value}\n", daemon="imapgw")
    assert settings.get_bool("join_mailbox_user") is expected


def test_get_bool_refuses_other_words(tmp_path):
    settings = settings_for(tmp_path, "[imapgw]\njoin_mailbox_user = maybe\n", daemon="imapgw")
    with pytest.raises(ConfigError, match="yes or no"):
        settings.get_bool("join_mailbox_user")


def test_paths_from_run_dir(tmp_path):
    settings = settings_for(tmp_path, "run_dir = /run/x\n")
    assert settings.pidfile == Path("/run/x/pop3d.pid")
    assert settings.stats_socket == Path("/run/x/mailstatd.sock")
    settings = settings_for(tmp_path, "run_dir = /run/x\n", {"pidfile": "/tmp/p.pid"})
    assert settings.pidfile == Path("/tmp/p.pid")
    assert settings.optional_path("transformer") is None


def test_read_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_config(tmp_path / "missing.conf")
    bad = tmp_path / "bad.conf"
    bad.write_text("[common]\nkey = 1\nkey = 2\n")
    with pytest.raises(ConfigError) as info:
        read_config(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    bad.write_text("no section header\n")
    with pytest.raises(ConfigError):
        read_config(bad)
    bad.write_bytes(b"[common]\nx = \xff\xfe\n")
    with pytest.raises(ConfigError):
        read_config(bad)
    percent = tmp_path / "percent.conf"
    percent.write_text("[pop3d]\ntransformer = printf '%s' x\n")
    assert read_config(percent).get("pop3d", "transformer") == "printf '%s' x", "no interpolation"


def pop3d_args(*argv: str) -> dict:
    return docopt(pop3d.main.__doc__, argv=list(argv))


def test_hup_style_reload(tmp_path):
    """What the master does on HUP: load_settings again from the same arguments."""
    conf = tmp_path / "pop3d.conf"
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\n[pop3d]\nmax_line = 255\nport = 1110\n")
    args = pop3d_args("-c", str(conf), "-p", "2110", "-u", "a:b")
    first = service.load_settings(pop3d.main.PROTOCOL, args)
    assert (first.get_int("max_line"), first.get_int("port")) == (255, 2110)
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\n[pop3d]\nmax_line = 100\nport = 1111\n")
    second = service.load_settings(pop3d.main.PROTOCOL, args)
    assert second.get_int("max_line") == 100, "the new file is read"
    assert second.get_int("port") == 2110, "flags still win after a reload"
    assert first.get_int("max_line") == 255, "the old settings object is unchanged"
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\n[pop3d]\nmax_line = x\n")
    with pytest.raises(ConfigError, match="max_line"):
        service.load_settings(pop3d.main.PROTOCOL, args)  # the master keeps `second`


def test_flags_map_to_settings(tmp_path):
    conf = tmp_path / "pop3d.conf"
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\n")
    args = pop3d_args(
        "-c",
        str(conf),
        "-l",
        "::1",
        "-p",
        "1",
        "-d",
        "/m",
        "-t",
        "cat",
        "--users",
        "/u",
        "--pidfile",
        "/p",
        "--stats-socket",
        "/s",
        "--log",
        "stderr",
    )
    settings = service.load_settings(pop3d.main.PROTOCOL, args)
    assert [
        settings.get(k)
        for k in (
            "listen",
            "port",
            "mail_base",
            "transformer",
            "users_file",
            "pidfile",
            "stats_socket",
            "log",
        )
    ] == ["::1", "1", "/m", "cat", "/u", "/p", "/s", "stderr"]


@pytest.mark.parametrize(
    "values, error",
    [
        (["alice:pw", "bob:pw:with:colons"], None),
        (["nopassword"], "NAME:PASS"),
        ([":pw"], "NAME:PASS"),
        (["alice:"], "NAME:PASS"),
    ],
)
def test_inline_users(values, error):
    if error:
        with pytest.raises(ConfigError, match=error):
            service.parse_inline_users(values)
    else:
        assert service.parse_inline_users(values) == {"alice": "pw", "bob": "pw:with:colons"}


# -- the shared usage block --------------------------------------------------------------------


@pytest.mark.parametrize("module", [pop3d.main, imapd.main, msmpd.main])
def test_usage_texts_hold_every_shared_option_once(module):
    options = [option for option, _ in cli.option_entries(module.__doc__)]
    assert len(options) == len(set(options)), options
    shared = {option for option, _ in cli.option_entries(cli.COMMON_OPTIONS)}
    assert shared <= set(options)
    assert cli.MARKER not in module.__doc__
    name = module.__name__.split(".")[0]
    assert f"<run_dir>/{name}.pid" in module.__doc__


def test_usage_keeps_a_daemons_own_description():
    doc = "Usage:\n  x [options]\n\nOptions:\n  -d DIR   Mine.\n  {common_options}\n\nEnd.\n"
    text = cli.usage(doc, "x")
    assert text.count("-d DIR") == 1 and "Mine." in text
    assert "  --pidfile=FILE        Pidfile (default <run_dir>/x.pid)." in text
    assert text.endswith(
        "--log=TARGET          Log to 'syslog', 'stderr' or a file path.\n\nEnd.\n"
    )
    with pytest.raises(ValueError, match="common_options"):
        cli.usage("Usage:\n  x\n", "x")
