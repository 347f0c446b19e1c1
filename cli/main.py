"""The `seqattr` command: `seqattr serve` runs the whole service on this machine (what `make serve` does)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from schemas.defaults import DEFAULT_HOST, DEFAULT_PORT
from schemas.logs import configure_logging

logger = logging.getLogger("seqattr")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqattr", description="Feature attribution for generation models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api = commands.add_parser(
        "api",
        help="run the HTTP API alone (Redis and workers run elsewhere; REDIS_URL says where)",
        description="Settings come from the environment (REDIS_URL, SEQATTR_*); see the README.",
    )
    api.add_argument("--host", default=DEFAULT_HOST)
    api.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
    api.add_argument("--workers", type=int, default=1, help="API processes sharing the port")
    api.add_argument("--log-level", default="info")
    api.add_argument("--no-access-log", action="store_true")
    commands.add_parser(
        "serve",
        help="run the embedded Redis, the workers and the API until Ctrl-C or SIGTERM",
        description="Settings come from the environment (PORT, REDIS_URL, SEQATTR_*); see the README.",
    )
    return parser


def _serve() -> int:
    from cli.serve import serve
    from cli.settings import get_serve_settings

    try:
        settings = get_serve_settings()
    except ValidationError as exc:
        logger.error("invalid configuration: %s", exc)
        return 2
    return serve(settings)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(logging.INFO, "json" if os.environ.get("SEQATTR_LOG_FORMAT") == "json" else "text")
    if args.command == "serve":
        return _serve()
    if args.command == "api":
        from cli.api_server import serve_api

        serve_api(args.host, args.port, args.workers, args.log_level, not args.no_access_log)
        return 0
    return 2  # unreachable: argparse refuses unknown commands
