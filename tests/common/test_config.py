"""common/config.py: precedence (default < file < flag < runtime state file), typed lookups and
their errors, the runtime state file, and a HUP-style reload through common/service.py."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from docopt import docopt

import imapd.main
import msmpd.main
import pop3d.main
from common import cli, config, service
from common.config import (
    KEYS,
    RUNTIME,
    RUNTIME_KEYS,
    SCHEMA,
    SECTIONS,
    ConfigError,
    RuntimeState,
    Settings,
    read_config,
)
from common.server import ForkingServer, Limits
from common.stats import StatsClient


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
    assert settings_for(tmp_path, "").get("transformer") == SCHEMA["pop3d", "transformer"].default
    assert settings_for(tmp_path, "").get("mail_base") == SCHEMA["common", "mail_base"].default
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
    with pytest.raises(ConfigError, match="max_children"):
        settings.validate()
    settings = settings_for(tmp_path, "[pop3d]\nidle_timeout = 1.5\n")
    with pytest.raises(ConfigError, match="idle_timeout"):
        settings.validate()
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
    assert settings.optional_path("stats_socket") is None


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


def test_maildaemons_conf_names_the_default_file(tmp_path, monkeypatch):
    """-c, else $MAILDAEMONS_CONF, else the default file: decided in one place for every
    program; a file named either way must exist, a missing default file is fine."""
    named = tmp_path / "named.conf"
    named.write_text("[pop3d]\nport = 2110\n")
    flag = tmp_path / "flag.conf"
    flag.write_text("[pop3d]\nport = 3110\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "absent.conf")
    monkeypatch.delenv("MAILDAEMONS_CONF", raising=False)
    assert config.config_file() == (tmp_path / "absent.conf", False)
    assert read_config(None).sections() == []
    monkeypatch.setenv("MAILDAEMONS_CONF", "")  # set but empty: as if unset
    assert config.config_file() == (tmp_path / "absent.conf", False)
    monkeypatch.setenv("MAILDAEMONS_CONF", str(named))
    assert config.config_file() == (named, True)
    assert read_config(None).get("pop3d", "port") == "2110"
    assert read_config(str(flag)).get("pop3d", "port") == "3110"  # -c wins
    settings = Settings("pop3d", read_config(None), {}, None)
    assert settings.get_int("port") == 2110
    named.write_text("[pop3d]\nprot = 2110\n")
    with pytest.raises(ConfigError, match=f"config file {named}: unknown setting 'prot'"):
        Settings("pop3d", read_config(None), {}, None).validate()
    monkeypatch.setenv("MAILDAEMONS_CONF", str(tmp_path / "gone.conf"))
    with pytest.raises(ConfigError) as info:
        read_config(None)
    assert (
        str(info.value)
        == f"config file {tmp_path / 'gone.conf'} (from $MAILDAEMONS_CONF) not found"
    )


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


# -- the schema --------------------------------------------------------------------------------


def test_every_default_parses_as_its_type():
    for key in KEYS:
        assert key.section in SECTIONS
        key.type.parse(key.default)  # raises ValueError for a bad default
    assert RUNTIME_KEYS == {"maildir": "mail_base", "transformer": "transformer"}
    assert {name: key.section for name, key in RUNTIME.items()} == {
        "maildir": "common",
        "transformer": "pop3d",
    }


def test_a_daemon_reads_its_own_declaration_before_commons(tmp_path):
    assert settings_for(tmp_path, "", daemon="msmpd").get("listen") == "127.0.0.1"
    assert settings_for(tmp_path, "", daemon="imapd").get_int("idle_timeout") == 1800
    assert settings_for(tmp_path, "", daemon="imapgw").get_float("idle_timeout") == 60.0
    # The same key may have another type in another section: imapgw takes fractions.
    text = "[imapgw]\nidle_timeout = 0.5\n[pop3d]\nidle_timeout = 0.5\n"
    settings_for(tmp_path, text, daemon="imapgw").validate()
    with pytest.raises(ConfigError, match="idle_timeout must be a whole number"):
        settings_for(tmp_path, text, daemon="pop3d").validate()


@pytest.mark.parametrize(
    "text, error",
    [
        ("[pop3d]\nmax_chlidren = 5\n", "unknown setting 'max_chlidren' in [pop3d]"),
        ("[pop3]\nport = 5\n", "unknown section [pop3]"),
        (
            "[msmpd]\ntransformer = cat\n",
            "unknown setting 'transformer' in [msmpd] (a key of [pop3d])",
        ),
        ("enabled = yes\n", "unknown setting 'enabled' in [common] (a key of [relay])"),
        (
            "[relay]\nmax_children = 5\n",
            "unknown setting 'max_children' in [relay] (a key of [common])",
        ),
        ("[DEFAULT]\nport = 5\n", "unknown section [DEFAULT]"),
    ],
)
def test_unknown_sections_and_keys_are_start_up_errors(tmp_path, text, error):
    settings = settings_for(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert str(info.value) == f"config file {tmp_path / 'test.conf'}: {error}"


def test_known_keys_in_any_section_that_may_hold_them(tmp_path):
    text = (
        "transformer = cat\nmax_literal = 10\n"  # [common]: a fallback for the daemons that read it
        "[imapgw]\nlog = /tmp/gw.log\nmax_children = 3\n"  # [common] keys, for one daemon alone
        "[relay]\nenabled = no\n[mailstatd]\nsave_interval = 2\n"
    )
    for daemon in ("pop3d", "imapd", "imapgw", "msmpd", "mailstatd"):
        settings_for(tmp_path, text, daemon=daemon).validate()


def test_a_daemon_checks_only_the_values_it_reads(tmp_path):
    text = "[imapd]\nmax_literal = huge\n"
    settings_for(tmp_path, text).validate()  # pop3d has no max_literal
    with pytest.raises(ConfigError, match="max_literal"):
        settings_for(tmp_path, text, daemon="imapd").validate()


def test_error_lines_say_where_the_value_came_from(tmp_path):
    cases = [
        ("max_children = lots\n", {}, "(in [common])"),
        ("[pop3d]\nport = x\n", {}, "(in [pop3d])"),
        ("", {"port": "x"}, "(from the command line)"),
    ]
    for text, flags, origin in cases:
        with pytest.raises(ConfigError) as info:
            settings_for(tmp_path, text, flags).validate()
        assert str(info.value).endswith(origin) and "\n" not in str(info.value)


@pytest.mark.parametrize("value, ok", [("", True), ("3600", True), ("-1", False), ("1.5", False)])
def test_login_delay_is_empty_or_whole_seconds(tmp_path, value, ok):
    settings = settings_for(tmp_path, f"[pop3d]\nlogin_delay = {value}\n")
    if ok:
        settings.validate()
    else:
        with pytest.raises(ConfigError, match="login_delay must be a whole number of seconds"):
            settings.validate()


def test_typed_getters_follow_the_declared_type(tmp_path):
    settings = settings_for(tmp_path, "")
    assert settings.get_float("port") == 110.0, "a whole number is a number"
    with pytest.raises(TypeError):
        settings.get_int("auth_failure_delay")
    with pytest.raises(TypeError):
        settings.path("transformer")


def test_runtime_in_force_asks_the_section_that_declares_the_key(tmp_path):
    text = "transformer = from-common\n[pop3d]\ntransformer = from-pop3d\n[msmpd]\nport = 1\n"
    msmpd = settings_for(tmp_path, text, {"mail_base": "~/mail"}, daemon="msmpd")
    assert msmpd.runtime_in_force("transformer") == "from-pop3d"
    assert msmpd.runtime_in_force("maildir") == str(Path("~/mail").expanduser())
    assert (
        settings_for(tmp_path, "transformer = c\n", daemon="msmpd").runtime_in_force("transformer")
        == "c"
    )
    RuntimeState(tmp_path / "state").set("transformer", "from-set")
    assert msmpd.runtime_in_force("transformer") == "from-set"


def test_hup_builds_new_limits(tmp_path):
    conf = tmp_path / "pop3d.conf"
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\nmax_children = 5\n")
    args = pop3d_args("-f", "-c", str(conf), "-u", "a:b")
    settings = service.load_settings(pop3d.main.PROTOCOL, args)
    users = service.load_users(pop3d.main.PROTOCOL, settings, args)
    state = service.MasterState(
        pop3d.main.PROTOCOL, settings, users, StatsClient(None), logging.getLogger("t"), args
    )
    assert service.limits(settings) == Limits(5, 20, 10.0)
    conf.write_text(f"[common]\nstate_dir = {tmp_path}\nmax_per_address = 2\n")
    limits, stats = state.reload()
    assert limits == Limits(1000, 2, 10.0) and stats is state.stats


def test_the_server_swaps_its_limits_whole_on_hup():
    new = Limits(1, 1, 1.0)
    reloads = [lambda: (new, StatsClient(None))]

    def on_reload():
        return reloads.pop()()

    server = ForkingServer(
        protocol="test",
        listeners=[],
        handler=lambda *args: 0,
        log=logging.getLogger("t"),
        stats=StatsClient(None),
        limits=Limits(10, 10, 10.0),
        busy_reply=lambda reason: b"",
        on_reload=on_reload,
    )
    server.on_sighup()
    assert server.limits is new
    server.on_sighup()  # a failing reload (IndexError here) keeps the old limits
    assert server.limits is new
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.max_children = 2  # type: ignore[misc]


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
