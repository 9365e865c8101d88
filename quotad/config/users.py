"""The console's users file (`[web] users_file`): one user a line, `name role hash`, `#` comments.

The role is `viewer`, `inspector` or `operator` (SPEC "The console"); the hash is argon2id's encoded form
(`$argon2id$v=19$m=...`), made by `quotad user add`; never a clear password. The file is refused when others can
read it (mode & 0o004): the hashes would be open to an offline guess. Every problem is reported with its line.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from quotad.core.console import ROLES
from quotad.core.errors import ConfigError, Problem, UsageError
from quotad.core.i18n import _

__all__ = ["User", "add_user", "hasher", "read_users"]

_NAME = re.compile(r"^[A-Za-z0-9_.@\-\u4e00-\u9fff]{1,64}$")


def hasher() -> PasswordHasher:
    """argon2id with the library's defaults (RFC 9106's second recommended set)."""
    return PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    hash: str


def read_users(path: Path) -> dict[str, User]:
    """The users in `path`; ConfigError listing every problem, each at its line."""
    where = str(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(where, 0, "", _("cannot read the users file: {why}").format(why=exc))]) from None
    if mode & 0o004:
        message = _("the users file is readable by every user: chmod 600 it (it holds the password hashes)")
        raise ConfigError([Problem(where, 0, "", message)])
    users: dict[str, User] = {}
    problems: list[Problem] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            problems.append(Problem(where, n, "", _("a user is one line: name role hash")))
            continue
        name, role, digest = parts
        if not _NAME.match(name):
            problems.append(Problem(where, n, "", _("{name!r} is not a user name").format(name=name)))
        elif name in users:
            problems.append(Problem(where, n, "", _("user {name!r} is listed twice").format(name=name)))
        if role not in ROLES:
            message = _("role {role!r} is not one of {roles}").format(role=role, roles=", ".join(ROLES))
            problems.append(Problem(where, n, "", message))
        if not digest.startswith("$argon2"):
            message = _("the third field is an argon2 hash (made by `quotad user add`), never a clear password")
            problems.append(Problem(where, n, "", message))
        users[name] = User(name, role, digest)
    if problems:
        raise ConfigError(problems)
    if not users:
        raise ConfigError([Problem(where, 0, "", _("no users: add one with `quotad user add NAME --role ROLE`"))])
    return users


def add_user(path: Path, name: str, role: str, password: str) -> bool:
    """Add `name` to the users file (made 0600 if missing), or replace its line (a new password or role); True
    when it was new. Written to a temporary file and renamed over the old one, so a crash leaves one or the other."""
    if not _NAME.match(name):
        raise UsageError(_("{name!r} is not a user name").format(name=name))
    if role not in ROLES:
        raise UsageError(_("role {role!r} is not one of {roles}").format(role=role, roles=", ".join(ROLES)))
    if len(password) < 8:
        raise UsageError(_("a password has at least 8 characters"))
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    entry = f"{name} {role} {hasher().hash(password)}"
    new = True
    for i, line in enumerate(lines):
        parts = line.split()
        if parts and not parts[0].startswith("#") and parts[0] == name:
            lines[i], new = entry, False
    if new:
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return new
