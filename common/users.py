"""Users and admins files: lookup, verify, add, update, delete (locked, atomic).

The format is Dovecot's passwd-file: `name:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`, one
user a line, `#` comments. Schemes: PLAIN/CLEARTEXT; SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT and CRYPT
through the platform's crypt(3) where Python has it; SHA/SHA256/SHA512 and their salted S-forms; and
PBKDF2 in Dovecot's `$1$salt$rounds$hex` form, the default for new passwords (from hashlib).
Readers re-read the file when its mtime changes, so `msmpd ADD` is seen by the next login.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import warnings
from pathlib import Path

from common.store.atomic import atomic_write, locked
from common.store.names import check_username

DEFAULT_SCHEME = "PBKDF2"
PBKDF2_ROUNDS = 50000
SALT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./"
DIGESTS = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512", "MD5": "md5"}
CRYPT_SCHEMES = ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "CRYPT", "DES-CRYPT", "BLF-CRYPT")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt as _crypt
    except ImportError:  # Python builds without crypt(3)
        _crypt = None  # type: ignore[assignment]


class UserFileError(Exception):
    """The users file cannot be read or changed."""


# -- password schemes ------------------------------------------------------------------------


def split_scheme(stored: str) -> tuple[str, str]:
    if stored.startswith("{") and "}" in stored:
        scheme, _, rest = stored[1:].partition("}")
        return scheme.upper(), rest
    return "CRYPT", stored  # Dovecot's default scheme for a bare hash


def verify_password(stored: str, password: str) -> bool:
    """Check `password` against a stored `{SCHEME}hash`; unknown schemes never match."""
    scheme, data = split_scheme(stored)
    encoding = ""
    if "." in scheme and scheme.rsplit(".", 1)[1] in ("HEX", "B64", "BASE64"):
        scheme, encoding = scheme.rsplit(".", 1)
    candidate = password.encode("utf-8")
    if scheme in ("PLAIN", "CLEARTEXT", "CLEAR"):
        return hmac.compare_digest(data.encode("utf-8"), candidate)
    if scheme in CRYPT_SCHEMES:
        return verify_crypt(data, password)
    if scheme == "PBKDF2":
        return verify_pbkdf2(data, candidate)
    salted = scheme.startswith("S") and scheme[1:] in DIGESTS
    algorithm = DIGESTS.get(scheme[1:] if salted else scheme)
    if algorithm is None:
        return False
    return verify_digest(algorithm, data, candidate, salted, encoding)


def verify_crypt(data: str, password: str) -> bool:
    if _crypt is None:
        return False
    try:
        result = _crypt.crypt(password, data)
    except (OSError, ValueError):
        return False
    return result is not None and hmac.compare_digest(result.encode(), data.encode())


def verify_pbkdf2(data: str, candidate: bytes) -> bool:
    parts = data.split("$")
    if len(parts) != 5 or parts[1] != "1":
        return False
    _, _, salt, rounds, expected = parts
    try:
        key = hashlib.pbkdf2_hmac("sha1", candidate, salt.encode(), int(rounds), 20)
    except ValueError:
        return False
    return hmac.compare_digest(key.hex(), expected.lower())


def verify_digest(algorithm: str, data: str, candidate: bytes, salted: bool, encoding: str) -> bool:
    try:
        raw = bytes.fromhex(data) if encoding == "HEX" else base64.b64decode(data, validate=True)
    except ValueError:
        with contextlib.suppress(ValueError):
            raw = bytes.fromhex(data)
            return _digest_matches(algorithm, raw, candidate, salted)
        return False
    return _digest_matches(algorithm, raw, candidate, salted)


def _digest_matches(algorithm: str, raw: bytes, candidate: bytes, salted: bool) -> bool:
    size = hashlib.new(algorithm).digest_size
    digest, salt = raw[:size], raw[size:] if salted else b""
    return hmac.compare_digest(hashlib.new(algorithm, candidate + salt).digest(), digest)


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """`{SCHEME}hash` for a new password."""
    scheme = scheme.upper()
    if scheme in ("PLAIN", "CLEARTEXT"):
        return f"{{{scheme}}}{password}"
    if scheme == "PBKDF2":
        salt = "".join(secrets.choice(SALT_CHARS) for _ in range(16))
        key = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), PBKDF2_ROUNDS, 20)
        return f"{{PBKDF2}}$1${salt}${PBKDF2_ROUNDS}${key.hex()}"
    if scheme == "SHA512-CRYPT" and _crypt is not None:
        return "{SHA512-CRYPT}" + _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_SHA512))
    if scheme == "SSHA512":
        salt_bytes = secrets.token_bytes(8)
        digest = hashlib.sha512(password.encode() + salt_bytes).digest()
        return "{SSHA512}" + base64.b64encode(digest + salt_bytes).decode()
    raise UserFileError(f"unsupported password scheme {scheme}")


# Spent on unknown users so a failed lookup costs as much as a wrong password.
_DUMMY_HASH = hash_password("dummy-password-for-timing")


# -- the file --------------------------------------------------------------------------------


def parse_line(line: str) -> tuple[str, str] | None:
    """(name, stored hash) of one passwd-file line, or None for comments and junk."""
    line = line.rstrip("\r\n")
    if not line or line.lstrip().startswith("#") or ":" not in line:
        return None
    name, _, rest = line.partition(":")
    return name, rest.split(":", 1)[0]


class UserDB:
    """Users from a passwd-file plus `-u NAME:PASS` from the command line."""

    def __init__(self, path: Path | None, inline: dict[str, str] | None = None) -> None:
        self.path = path
        self.inline = {name: "{PLAIN}" + pw for name, pw in (inline or {}).items()}
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}

    def load(self) -> None:
        """Read the file now; raises UserFileError (start-up and HUP call this)."""
        self._stamp = None
        self.refresh(strict=True)

    def refresh(self, strict: bool = False) -> None:
        if self.path is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if strict and not self.inline:
                raise UserFileError(f"users file {self.path} not found") from None
            self._users, self._stamp = {}, None
            return
        except OSError as exc:
            raise UserFileError(f"users file {self.path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
        if stamp == self._stamp:
            return
        try:
            text = Path(self.path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UserFileError(f"users file {self.path}: {exc.strerror}") from None
        users = {}
        for line in text.splitlines():
            entry = parse_line(line)
            if entry:
                users[entry[0]] = entry[1]
        self._users, self._stamp = users, stamp

    def lookup(self, name: str) -> str | None:
        with contextlib.suppress(UserFileError):
            self.refresh()
        return self.inline.get(name) or self._users.get(name)

    def exists(self, name: str) -> bool:
        return self.lookup(name) is not None

    def verify(self, name: str, password: str) -> bool:
        stored = self.lookup(name)
        if stored is None:
            verify_password(_DUMMY_HASH, password)
            return False
        return verify_password(stored, password)

    def names(self) -> list[str]:
        with contextlib.suppress(UserFileError):
            self.refresh()
        return sorted(set(self._users) | set(self.inline))


class UserLimitReached(UserFileError):
    """Adding one more user would exceed the configured limit."""


def add_or_update(
    path: Path, name: str, password: str, scheme: str = DEFAULT_SCHEME, limit: int | None = None
) -> bool:
    """Add `name` or change its password; True when the user is new. With `limit`, a new user
    is refused (UserLimitReached) when the file already holds that many: checked under the lock,
    so two racing ADDs cannot both take the last place."""
    check_username(name)
    entry = hash_password(password, scheme)
    with locked(path):
        lines = read_lines(path)
        created = True
        for index, line in enumerate(lines):
            parsed = parse_line(line)
            if parsed and parsed[0] == name:
                extra = line.rstrip("\n").split(":")[2:]
                lines[index] = ":".join([name, entry, *extra]) + "\n"
                created = False
                break
        else:
            if limit is not None and sum(1 for ln in lines if parse_line(ln)) >= limit:
                raise UserLimitReached(f"{limit} users")
            lines.append(f"{name}:{entry}\n")
        write_lines(path, lines)
    return created


def delete(path: Path, name: str) -> bool:
    """Remove `name`; False when there was no such user."""
    with locked(path):
        lines = read_lines(path)
        kept = [line for line in lines if (parse_line(line) or ("",))[0] != name]
        if len(kept) == len(lines):
            return False
        write_lines(path, kept)
    return True


def read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserFileError(f"users file {path}: {exc.strerror}") from None
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines()]


def write_lines(path: Path, lines: list[str]) -> None:
    mode = 0o600
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode & 0o777
    data = "".join(lines).encode("utf-8", errors="surrogateescape")
    try:
        atomic_write(path, data, mode=mode)
    except OSError as exc:
        raise UserFileError(f"cannot write {path}: {exc.strerror}") from None
