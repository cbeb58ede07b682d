"""`coordinator user ...`: the users file edited from the command line. The service
rereads the file when it changes, so none of this needs a restart."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..config.settings import Settings
from ..config.users import (
    Passwords,
    Role,
    UsersFileError,
    add_token,
    add_user,
    read_users,
    remove_user,
    revoke_tokens,
    set_password,
)
from ..errors import SettingsError


def run(args: argparse.Namespace) -> int:
    try:
        path = Settings.from_env(config_dir=Path(args.config)).users_path
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _COMMANDS[args.user_command](args, path)
    except UsersFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"error: fix {path} first", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _password(args: argparse.Namespace, name: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _add(args: argparse.Namespace, path: Path) -> int:
    hashed = None if args.no_password else Passwords().hash(_password(args, args.name))
    add_user(path, args.name, Role(args.role), hashed)
    print(f"{args.name} ({args.role}) added to {path}")
    return 0


def _token(args: argparse.Namespace, path: Path) -> int:
    if args.revoke:
        print(f"revoked {revoke_tokens(path, args.name)} token(s) of {args.name}")
        return 0
    token = add_token(path, args.name, args.label, datetime.now(timezone.utc))
    print(token)
    print(f"API token for {args.name}: shown once, only its hash is kept. Send it as "
          f"'Authorization: Bearer TOKEN'.", file=sys.stderr)
    return 0


def _set_password(args: argparse.Namespace, path: Path) -> int:
    set_password(path, args.name, Passwords().hash(_password(args, args.name)))
    print(f"password of {args.name} set")
    return 0


def _list(args: argparse.Namespace, path: Path) -> int:
    users = read_users(path).users
    if not users:
        print(f"no users in {path}: add one with `coordinator user add NAME --role leader`")
    for user in users:
        labels = ", ".join(t.label or "(no label)" for t in user.tokens)
        print(f"{user.name}\t{user.role}\t{'password' if user.password else 'no password'}\t"
              f"{len(user.tokens)} token(s){': ' + labels if labels else ''}")
    return 0


def _remove(args: argparse.Namespace, path: Path) -> int:
    remove_user(path, args.name)
    print(f"{args.name} removed")
    return 0


_COMMANDS = {"add": _add, "token": _token, "password": _set_password, "list": _list, "remove": _remove}
