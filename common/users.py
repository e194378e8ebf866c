"""Users and admins files: lookup, verify, add, update, delete (locked, atomic).

The format is Dovecot's passwd-file: `name:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`, one
user a line, `#` comments. Schemes: ARGON2ID (and ARGON2I) in Dovecot's encoding
(`{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$salt$hash`, what `doveadm pw -s ARGON2ID` prints), the
default for new passwords (argon2-cffi); PBKDF2 in Dovecot's `$1$salt$rounds$hex` form (hashlib);
SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT and CRYPT through the platform's crypt(3) where Python has
it; SHA/SHA256/SHA512 and their salted S-forms; PLAIN/CLEARTEXT. Every comparison of a secret is
constant-time (hmac.compare_digest, or the argon2 library's own).

Readers re-read the file when its stamp changes, so `msmpd ADD` is seen by the next login.
`UserDB.verify` keeps an in-memory cache of verified logins (`auth_cache_size` entries for
`auth_cache_ttl` seconds): keyed by a keyed hash of user, stored hash and password (never the
password itself), emptied whenever the file changes, and never holding a failed verification.
A strong scheme then costs its tens of milliseconds once per user and process, not per login.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
import warnings
from collections import Counter, OrderedDict
from pathlib import Path

import argon2
from argon2 import low_level as argon2_raw

from common import turns
from common.store.atomic import atomic_write, locked
from common.store.names import check_username

DEFAULT_SCHEME = "ARGON2ID"
PBKDF2_ROUNDS = 50000
MAX_PBKDF2_ROUNDS = 10_000_000  # a typo in the users file must not hang every login
# Dovecot's own ARGON2ID parameters (libsodium's "interactive" limits: 64 MiB, 3 passes, one
# lane), so that a hash made here is one `doveadm pw -s ARGON2ID` could have made.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 65536
ARGON2_PARALLELISM = 1
ARGON2_HASH_LEN = 32
ARGON2_SALT_LEN = 16
# Stored hashes asking for more than this are refused, not computed (a DoS by one bad line).
ARGON2_MAX_MEMORY_KIB = 1 << 20
ARGON2_MAX_TIME_COST = 64
ARGON2_TYPES = {"ARGON2ID": argon2.Type.ID, "ARGON2I": argon2.Type.I}
SALT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./"
DIGESTS = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512", "MD5": "md5"}
CRYPT_SCHEMES = ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "CRYPT", "DES-CRYPT", "BLF-CRYPT")
PLAIN_SCHEMES = ("PLAIN", "CLEARTEXT", "CLEAR")
# What hash_password makes (maildaemons-passwd -l), strongest first.
HASH_SCHEMES = (
    "ARGON2ID",
    "ARGON2I",
    "PBKDF2",
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "SSHA512",
    "SSHA256",
    "PLAIN",
    "CLEARTEXT",
)

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
    candidate = password.encode("utf-8", "surrogateescape")
    if scheme in PLAIN_SCHEMES:
        return hmac.compare_digest(data.encode("utf-8", "surrogateescape"), candidate)
    if scheme in ARGON2_TYPES:
        return verify_argon2(data, candidate, ARGON2_TYPES[scheme])
    if scheme in CRYPT_SCHEMES:
        return verify_crypt(data, password)
    if scheme == "PBKDF2":
        return verify_pbkdf2(data, candidate)
    salted = scheme.startswith("S") and scheme[1:] in DIGESTS
    algorithm = DIGESTS.get(scheme[1:] if salted else scheme)
    if algorithm is None:
        return False
    return verify_digest(algorithm, data, candidate, salted, encoding)


def checked_password(stored: str, password: str) -> bool:
    """verify_password; a strong hash (milliseconds of CPU) lets a pool worker's other
    sessions run meanwhile (common/turns.py), as the hash functions let go of the GIL."""
    if split_scheme(stored)[0] in PLAIN_SCHEMES:
        return verify_password(stored, password)
    with turns.aside():
        return verify_password(stored, password)


def verify_crypt(data: str, password: str) -> bool:
    if _crypt is None:
        return False
    try:
        result = _crypt.crypt(password, data)
    except (OSError, ValueError):
        return False
    return result is not None and hmac.compare_digest(result.encode(), data.encode())


def verify_argon2(data: str, candidate: bytes, kind: argon2.Type) -> bool:
    """Dovecot's `$argon2id$v=19$m=..,t=..,p=..$salt$hash` (the PHC string argon2 makes)."""
    try:
        params = argon2.extract_parameters(data)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    if (
        params.type is not kind
        or params.memory_cost > ARGON2_MAX_MEMORY_KIB
        or params.time_cost > ARGON2_MAX_TIME_COST
    ):
        return False
    try:
        return argon2_raw.verify_secret(data.encode("ascii"), candidate, kind)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
    except (UnicodeEncodeError, ValueError):
        return False


def verify_pbkdf2(data: str, candidate: bytes) -> bool:
    parts = data.split("$")
    if len(parts) != 5 or parts[1] != "1":
        return False
    _, _, salt, rounds_text, expected_hex = parts
    if not (rounds_text.isascii() and rounds_text.isdigit()):
        return False
    rounds = int(rounds_text)
    try:
        expected = bytes.fromhex(expected_hex)
    except ValueError:
        return False
    if not 0 < rounds <= MAX_PBKDF2_ROUNDS or not expected:
        return False
    salt_bytes = salt.encode("utf-8", "surrogateescape")
    key = hashlib.pbkdf2_hmac("sha1", candidate, salt_bytes, rounds, len(expected))
    return hmac.compare_digest(key, expected)


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
    if len(raw) < size or (len(raw) != size and not salted):
        return False
    digest, salt = raw[:size], raw[size:]
    return hmac.compare_digest(hashlib.new(algorithm, candidate + salt).digest(), digest)


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """`{SCHEME}hash` for a new password, as `doveadm pw -s SCHEME` would make it."""
    scheme = scheme.upper()
    secret = password.encode("utf-8", "surrogateescape")
    if scheme in ("PLAIN", "CLEARTEXT"):
        return f"{{{scheme}}}{password}"
    if scheme in ARGON2_TYPES:
        encoded = argon2_raw.hash_secret(
            secret,
            secrets.token_bytes(ARGON2_SALT_LEN),
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
            hash_len=ARGON2_HASH_LEN,
            type=ARGON2_TYPES[scheme],
        )
        return f"{{{scheme}}}{encoded.decode('ascii')}"
    if scheme == "PBKDF2":
        salt = "".join(secrets.choice(SALT_CHARS) for _ in range(16))
        key = hashlib.pbkdf2_hmac("sha1", secret, salt.encode(), PBKDF2_ROUNDS, 20)
        return f"{{PBKDF2}}$1${salt}${PBKDF2_ROUNDS}${key.hex()}"
    crypt_methods = {"SHA512-CRYPT": "METHOD_SHA512", "SHA256-CRYPT": "METHOD_SHA256"}
    if scheme in crypt_methods and _crypt is not None:
        method = getattr(_crypt, crypt_methods[scheme])
        return f"{{{scheme}}}" + _crypt.crypt(password, _crypt.mksalt(method))
    salted = {"SSHA512": "sha512", "SSHA256": "sha256"}
    if scheme in salted:
        salt_bytes = secrets.token_bytes(8)
        digest = hashlib.new(salted[scheme], secret + salt_bytes).digest()
        return f"{{{scheme}}}" + base64.b64encode(digest + salt_bytes).decode()
    raise UserFileError(f"unsupported password scheme {scheme}")


_dummy_hashes: dict[str, str] = {}


def dummy_hash(scheme: str = DEFAULT_SCHEME) -> str:
    """A hash of `scheme` for no password anyone knows, spent on unknown users so that a failed
    lookup costs as much as a wrong password. Made on first use: importing costs nothing."""
    if scheme not in _dummy_hashes:
        try:
            _dummy_hashes[scheme] = hash_password(secrets.token_hex(16), scheme)
        except UserFileError:  # a crypt(3) scheme in a Python without crypt
            return dummy_hash(DEFAULT_SCHEME)
    return _dummy_hashes[scheme]


def usual_scheme(stored: list[str]) -> str:
    """The scheme most of `stored` use, among those hash_password makes (else the default)."""
    counts = Counter(split_scheme(entry)[0] for entry in stored)
    for scheme, _count in counts.most_common():
        if scheme in HASH_SCHEMES:
            return scheme
    return DEFAULT_SCHEME


# -- the cache of verified logins ---------------------------------------------------------------


class AuthCache:
    """Verified logins, each remembered as an HMAC of (user, stored hash, password) under a
    secret made at start-up: the cache never holds a password, and a changed stored hash misses
    by construction (the owner also empties it whenever the users file changes). The price: a
    dump of the process's memory holds the secret too, so a guess can be tested against an entry
    at HMAC speed, not the scheme's; `auth_cache_size = 0` turns the cache off.
    Bounded by `size` entries (least recently used go first) and `ttl` seconds each. Only
    successes go in: a failed verification is always computed again.
    """

    def __init__(self, size: int, ttl: float) -> None:
        self.size = max(0, size)
        self.ttl = ttl
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry (monotonic)
        self._lock = threading.Lock()  # a pool worker may verify from more than one thread
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0

    def key(self, user: str, stored: str, password: str) -> bytes:
        message = b"\0".join(
            part.encode("utf-8", "surrogateescape") for part in (user, stored, password)
        )
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        now = time.monotonic()
        with self._lock:
            expiry = self._entries.get(key)
            if expiry is None or expiry <= now:
                if expiry is not None:
                    del self._entries[key]
                self.misses += 1
                return False
            self._entries.move_to_end(key)
            self.hits += 1
            return True

    def add(self, key: bytes) -> None:
        with self._lock:
            self._entries[key] = time.monotonic() + self.ttl
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# -- the file --------------------------------------------------------------------------------


def parse_line(line: str) -> tuple[str, str] | None:
    """(name, stored hash) of one passwd-file line, or None for comments and junk."""
    line = line.rstrip("\r\n")
    if not line or line.lstrip().startswith("#") or ":" not in line:
        return None
    name, _, rest = line.partition(":")
    return name, rest.split(":", 1)[0]


DEFAULT_CACHE_SIZE = 1000
DEFAULT_CACHE_TTL = 3600.0


class UserDB:
    """Users from a passwd-file plus `-u NAME:PASS` from the command line, and the cache of
    verified logins. `verify()` is the one entry point of a login, in both process models: a
    forked child starts from the master's (empty) cache and its own dies with it, so there it
    spares only repeated logins of one connection; a pool worker keeps its cache across the
    sessions it serves."""

    def __init__(
        self,
        path: Path | None,
        inline: dict[str, str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
    ) -> None:
        self.path = path
        self.inline = {name: "{PLAIN}" + pw for name, pw in (inline or {}).items()}
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._usual_scheme: str | None = None  # of the users, for unknown ones (verify)
        self.cache = AuthCache(cache_size, cache_ttl)

    def load(self) -> None:
        """Read the file now; raises UserFileError (start-up and HUP call this, in the master).
        The dummy hash for unknown users is made here too: a forked child that had to make it
        on its first unknown user would answer that one later than a wrong password, telling
        which names exist."""
        self._stamp = None
        self.refresh(strict=True)
        dummy_hash(self.usual_scheme())

    def refresh(self, strict: bool = False) -> None:
        if self.path is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if strict and not self.inline:
                raise UserFileError(f"users file {self.path} not found") from None
            if self._users:
                self.cache.clear()
            self._users, self._stamp, self._usual_scheme = {}, None, None
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
        self.cache.clear()  # a changed file forgets every verified login
        self._users, self._stamp, self._usual_scheme = users, stamp, None

    def lookup(self, name: str) -> str | None:
        with contextlib.suppress(UserFileError):
            self.refresh()
        return self.inline.get(name) or self._users.get(name)

    def exists(self, name: str) -> bool:
        return self.lookup(name) is not None

    def verify(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s: from the cache when this process verified it within
        `auth_cache_ttl` and the users file has not changed since, else by its scheme."""
        stored = self.lookup(name)
        if stored is None:
            checked_password(dummy_hash(self.usual_scheme()), password)
            return False
        if not self.cache.enabled:
            return checked_password(stored, password)
        key = self.cache.key(name, stored, password)
        if key in self.cache:
            return True
        if not checked_password(stored, password):
            return False
        self.cache.add(key)
        return True

    def usual_scheme(self) -> str:
        """The scheme most users have: an unknown user costs a verification of it."""
        if self._usual_scheme is None:
            self._usual_scheme = usual_scheme([*self._users.values(), *self.inline.values()])
        return self._usual_scheme

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
