"""`quotad user add NAME --role ROLE --file USERS_FILE`: a console user (SPEC "The console": the users file holds a
password hash, never a clear password). The password is asked twice at a terminal, or read as the first line of
standard input (for scripts: `printf '%s\\n' "$pw" | quotad user add ...`); it never appears in the arguments."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from quotad.config.users import add_user
from quotad.core.console import ROLES
from quotad.core.errors import UsageError
from quotad.core.i18n import _

__all__ = ["add_user_parser", "user_add"]


def add_user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], _config: Callable[..., None]) -> None:
    p = sub.add_parser("user", help=_("console users"), description=_("console users"))
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    help_text = _("add a console user, or give one a new password or role")
    add = user_sub.add_parser("add", help=help_text, description=help_text)
    add.add_argument("name", help=_("the user's login name"))
    add.add_argument("--role", choices=ROLES, required=True, help=_("viewer, inspector or operator"))
    add.add_argument("--file", type=Path, required=True, help=_("the users file ([web] users_file)"))


def user_add(name: str, role: str, path: Path, stdin: TextIO, out: TextIO) -> int:
    if stdin.isatty():
        password = getpass.getpass(_("password for {name}: ").format(name=name))
        if getpass.getpass(_("again: ")) != password:
            raise UsageError(_("the two passwords differ"))
    else:
        password = stdin.readline().rstrip("\r\n")
    new = add_user(path, name, role, password)
    said = _("user {name} added ({role}) to {path}") if new else _("user {name} changed ({role}) in {path}")
    print(said.format(name=name, role=role, path=path), file=out)
    return 0


def main(args: argparse.Namespace) -> int:
    return user_add(args.name, args.role, args.file, sys.stdin, sys.stdout)
