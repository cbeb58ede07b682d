"""People who may use the service, and what each may do.

The users file (`users.yaml` in the config directory, or COORDINATOR_USERS_FILE) holds
each user's role, an argon2id hash of their password, and the SHA-256 of each API token
minted for them: the service keeps no secret it could leak. `coordinator user add` and
`coordinator user token` write it; a running service rereads it when it changes.

Roles nest: a leader may do what a trainer may, and a trainer what a viewer may (the
leadership runs drills too; whoever runs drills must see incidents). Complaint intake is
a role of its own that no user holds: only the intake token and the admin token carry it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import UsersFileError
from .yamlsource import Problem, parse_yaml

TOKEN_PREFIX = "coord_"
MIN_PASSWORD = 8


class Role(StrEnum):
    leader = "leader"
    trainer = "trainer"
    viewer = "viewer"
    intake = "intake"  # complaint intake only; held by the intake token, never by a user


# What holding a role lets one do (the admin token holds every role).
GRANTS: dict[Role, frozenset[Role]] = {
    Role.leader: frozenset({Role.leader, Role.trainer, Role.viewer}),
    Role.trainer: frozenset({Role.trainer, Role.viewer}),
    Role.viewer: frozenset({Role.viewer}),
    Role.intake: frozenset({Role.intake}),
}
USER_ROLES = (Role.leader, Role.trainer, Role.viewer)


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = Field(default="", max_length=200)
    created: datetime | None = None


class UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    role: Literal["leader", "trainer", "viewer"]
    # argon2id hash; absent: the user signs in by API token only.
    password: str | None = None
    tokens: list[TokenEntry] = Field(default_factory=list)

    @field_validator("password")
    @classmethod
    def _argon2(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("$argon2"):
            raise ValueError("must be an argon2 hash (made by `coordinator user add`), not a plain password")
        return value


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[UserEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class User:
    name: str
    role: Role


def token_digest(token: str) -> str:
    """API tokens are long random strings, so a plain SHA-256 is enough to keep them
    unrecoverable, and it lets a request be matched to its token in one lookup."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_users(path: Path, shown_as: str | None = None) -> UsersFile:
    """The users file at `path`; a missing file is no users. Raises UsersFileError with
    every problem, each naming the file and line."""
    from .catalog import validate_doc  # the config's own schema-error wording

    if not path.exists():
        return UsersFile()
    name = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError([Problem(name, 1, f"cannot read: {exc}")]) from None
    doc, problems = parse_yaml(text, name)
    if doc is None or problems:
        raise UsersFileError(problems)
    if doc.data is None:
        return UsersFile()
    if not isinstance(doc.data, dict):
        raise UsersFileError([Problem(name, 1, "expected a mapping with a 'users' list at the top of the file")])
    parsed, problems = validate_doc(UsersFile, doc)
    seen: set[str] = set()
    for index, entry in enumerate(parsed.users if parsed else []):
        if entry.name in seen:
            problems.append(doc.problem(("users", index, "name"), f"users[{index}].name: duplicate user '{entry.name}'"))
        seen.add(entry.name)
    if problems or parsed is None:
        raise UsersFileError(sorted(problems))
    return parsed


def write_users(path: Path, users: UsersFile) -> None:
    """Atomically, readable by the owner only (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = users.model_dump(mode="json", exclude_none=True)
    for entry in data["users"]:
        if not entry.get("tokens"):
            entry.pop("tokens", None)
    text = "# Written by `coordinator user`; see docs/config.md.\n" + yaml.safe_dump(
        data, allow_unicode=True, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Passwords:
    """argon2id with the library's defaults (RFC 9106's low-memory profile)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    def hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
        return self.hasher.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Directory:
    """The users as the running service sees them: reread when the file changes (so
    `coordinator user add` needs no restart); a bad edit keeps the last good users."""

    def __init__(self, path: Path, passwords: Passwords | None = None) -> None:
        self.path = path
        self.passwords = passwords or Passwords()
        self._stamp: tuple[int, int] | None | bool = False  # False: never read
        self._users: dict[str, UserEntry] = {}
        self._tokens: dict[str, str] = {}
        self.problems: list[Problem] = []
        self.refresh()

    def refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            parsed = read_users(self.path)
        except UsersFileError as exc:
            self.problems = exc.problems
            return
        self.problems = []
        self._users = {u.name: u for u in parsed.users}
        self._tokens = {t.sha256: u.name for u in parsed.users for t in u.tokens}

    @property
    def empty(self) -> bool:
        self.refresh()
        return not self._users

    def get(self, name: str) -> User | None:
        self.refresh()
        entry = self._users.get(name)
        return User(entry.name, Role(entry.role)) if entry else None

    def stamp(self, name: str) -> str | None:
        """A fingerprint of the user's role and password hash (a fresh salt every time it
        is set): a session begun under another stamp is over. None: no such user."""
        self.refresh()
        entry = self._users.get(name)
        if entry is None:
            return None
        return hashlib.sha256(f"{entry.role}\0{entry.password or ''}".encode()).hexdigest()[:32]

    def by_token(self, token: str) -> User | None:
        self.refresh()
        name = self._tokens.get(token_digest(token))
        return self.get(name) if name else None

    def check_password(self, name: str, password: str) -> User | None:
        """Slow on purpose (argon2): call it off the event loop."""
        self.refresh()
        entry = self._users.get(name)
        if entry is None or entry.password is None:
            # Same work as a real check, so a missing name takes as long as a wrong password.
            self.passwords.verify(_dummy_hash(), password)
            return None
        if not self.passwords.verify(entry.password, password):
            return None
        return User(entry.name, Role(entry.role))


@functools.cache
def _dummy_hash() -> str:
    return PasswordHasher().hash("no such user")


def add_user(path: Path, name: str, role: Role, password_hash: str | None) -> None:
    users = read_users(path)
    if any(u.name == name for u in users.users):
        raise ValueError(f"user '{name}' already exists in {path}")
    entry = UserEntry(name=name, role=role.value, password=password_hash)  # type: ignore[arg-type]
    users.users.append(entry)
    write_users(path, users)


def set_password(path: Path, name: str, password_hash: str) -> None:
    users = read_users(path)
    _find(users, name, path).password = password_hash
    write_users(path, users)


def add_token(path: Path, name: str, label: str, now: datetime) -> str:
    """Mints a token for `name`; returns it (this is the only time it is seen)."""
    users = read_users(path)
    entry = _find(users, name, path)
    token = new_token()
    entry.tokens.append(TokenEntry(sha256=token_digest(token), label=label, created=now.replace(microsecond=0)))
    write_users(path, users)
    return token


def remove_user(path: Path, name: str) -> None:
    users = read_users(path)
    _find(users, name, path)
    users.users = [u for u in users.users if u.name != name]
    write_users(path, users)


def revoke_tokens(path: Path, name: str) -> int:
    users = read_users(path)
    entry = _find(users, name, path)
    count = len(entry.tokens)
    entry.tokens = []
    write_users(path, users)
    return count


def _find(users: UsersFile, name: str, path: Path) -> UserEntry:
    for entry in users.users:
        if entry.name == name:
            return entry
    raise ValueError(f"no user '{name}' in {path}")


def users_path(config_dir: Path, explicit: Path | None) -> Path:
    return explicit if explicit is not None else config_dir / "users.yaml"
