"""Command line: `coordinator serve | check | detect`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .catalog import check_config


def _check(args: argparse.Namespace) -> int:
    problems = check_config(Path(args.dir))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"{args.dir}: config OK", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .app import run_server
    from .settings import Settings, SettingsError

    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            config_dir=Path(args.config) if args.config else None,
            store_url=args.store,
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_server(settings)


def _detect(args: argparse.Namespace) -> int:
    from . import detect

    try:
        detect.run(args.input, sys.stdout)
    except detect.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coordinator", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate playbooks/, templates/, contacts/, drills/")
    check.add_argument("dir", nargs="?", default=".", help="config directory (default: .)")
    check.set_defaults(func=_check)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (env COORDINATOR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env COORDINATOR_PORT, default 8080)")
    serve.add_argument("--config", help="config directory (env COORDINATOR_CONFIG, default .)")
    serve.add_argument(
        "--store", help="sqlite:///PATH or redis://HOST:PORT/DB (env COORDINATOR_STORE, default sqlite:///coordinator.db)"
    )
    serve.set_defaults(func=_serve)

    detect = sub.add_parser("detect", help="run the surge detector over a timestamp,value CSV")
    detect.add_argument("input", help="CSV with header timestamp,value")
    detect.set_defaults(func=_detect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
