"""The users file of a shared server: one ``user:bcrypt-hash`` line per user.

Blank lines and lines starting with ``#`` are ignored. Passwords are stored only as bcrypt
hashes (``$2a$``, ``$2b$`` or ``$2y$``, as written by this module or ``htpasswd -B``). The
file is rewritten atomically (a temporary file beside it, then ``os.replace``) with mode 0600,
so a server reading it sees either the old or the new version, never half of one.

    python -m fusion users add NAME --file F     # password from stdin, else prompted twice
    python -m fusion users remove NAME --file F
    python -m fusion users list --file F
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import bcrypt

from .errors import InvalidInput

#: User names: a letter or digit, then letters, digits and ``. _ @ -``; at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: bcrypt uses at most 72 bytes of a password; longer ones are refused rather than cut.
MAX_PASSWORD_BYTES = 72
#: bcrypt hashes with a cost of 04 to 16 (2**16 rounds take seconds: a higher cost would let one
#: sign-in hold a web worker for minutes).
HASH_PATTERN = re.compile(r"\$2[aby]\$(0[4-9]|1[0-6])\$[./A-Za-z0-9]{53}")
#: bcrypt cost of new hashes (2**12 rounds: a fraction of a second per check).
ROUNDS = 12
#: Largest users file read (a few thousand users); anything bigger is refused, not read.
MAX_FILE_BYTES = 1 << 20


def check_name(name: str) -> str:
    """``name`` if it is a valid user name, else InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise InvalidInput(f"user name {shown!r} is not allowed: use 1 to 64 letters, digits and . _ @ - "
                           "(starting with a letter or digit)")
    return name


def check_password_text(password: str) -> bytes:
    """The UTF-8 bytes of a password fit for bcrypt, else InvalidInput (empty, too long, NUL)."""
    raw = password.encode("utf-8")
    if not raw:
        raise InvalidInput("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the password is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    if b"\0" in raw:
        raise InvalidInput("the password contains a NUL character")
    return raw


def parse_users(text: str, source: str = "users file") -> dict[str, str]:
    """``{user: hash}`` from the text of a users file; a bad line raises InvalidInput naming it."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        name, sep, hashed = line.partition(":")
        if not sep:
            raise InvalidInput(f"{where}: expected 'user:bcrypt-hash', found no ':'")
        try:
            check_name(name)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        if not HASH_PATTERN.fullmatch(hashed):
            raise InvalidInput(f"{where}: the hash of {name!r} is not a bcrypt hash ($2a$, $2b$ or $2y$ with "
                               "a cost of 04 to 16 and 53 more characters); make one with "
                               "`python -m fusion users add`")
        if name in users:
            raise InvalidInput(f"{where}: user {name!r} appears twice")
        users[name] = hashed
    return users


def read_users(path: str | os.PathLike) -> dict[str, str]:
    """``{user: hash}`` of the users file at ``path``; a missing file is an empty one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a users file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text, not a users file") from None
    return parse_users(text, str(path))


def write_users(path: str | os.PathLike, users: dict[str, str]) -> None:
    """Replace the users file at ``path`` atomically with ``users`` (mode 0600, sorted by name)."""
    path = Path(path)
    lines = "".join(f"{check_name(name)}:{hashed}\n" for name, hashed in sorted(users.items()))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def hash_password(password: str, rounds: int = ROUNDS) -> str:
    """A new bcrypt hash (random salt) of ``password``."""
    return bcrypt.hashpw(check_password_text(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def add_user(path: str | os.PathLike, name: str, password: str, rounds: int = ROUNDS) -> bool:
    """Add ``name`` with a bcrypt hash of ``password``, or replace its hash; True if it was replaced."""
    check_name(name)
    hashed = hash_password(password, rounds)
    users = read_users(path)
    replaced = name in users
    users[name] = hashed
    write_users(path, users)
    return replaced


def remove_user(path: str | os.PathLike, name: str) -> bool:
    """Remove ``name`` from the users file; False if it was not there (the file is then unchanged)."""
    users = read_users(path)
    if users.pop(name, None) is None:
        return False
    write_users(path, users)
    return True


def check_password(hashed: str, password: str) -> bool:
    """Whether ``password`` matches the bcrypt ``hashed``; False for passwords bcrypt cannot take."""
    try:
        raw = check_password_text(password)
    except InvalidInput:
        return False
    return bcrypt.checkpw(raw, hashed.encode("ascii"))
