"""The `duetime` command: run a service, migrate the database, create topics, manage API keys,
follow the local stack's logs."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import sys

from duetime import keys_command, log_view, logs, run_ids
from duetime.kafka import ensure_topics
from duetime.lifecycle import Lifecycle
from duetime.loops import run_loop
from duetime.postgres import migrate
from duetime.settings import (
    IdSettings,
    IngressSettings,
    KafkaSettings,
    LogSettings,
    LoopSettings,
    PostgresSettings,
)
from schemas.topics import INGRESS_PARTITIONS, ingress_topic

SERVICES = ("job_service", "search_service", "writer", "watcher", "dispatcher", "executor")
# Off unless enabled (the local stack: DUETIME_COMMAND_EXECUTOR=1, compose: --profile commands;
# Kubernetes: a component): its sandbox needs root to give each run a uid of its own (ADR 0026)
# and a container that lets bubblewrap work (ADR 0041).
OPTIONAL_SERVICES = ("command_executor",)
SANDBOXED = frozenset({"command_executor"})
# Services whose module is not <name>.service.
MODULES = {"command_executor": "executor.command.service"}
log = logging.getLogger("duetime")


async def _run_service(name: str) -> None:
    module = importlib.import_module(MODULES.get(name, f"{name}.service"))
    # Every service that names runs must name them alike: one key, from one setting.
    run_ids.use_secret(IdSettings().id_secret)
    # Long-lived objects (modules, settings, clients) never need collecting: freezing them and
    # collecting young objects less eagerly keeps GC pauses out of the firing path.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    lifecycle = Lifecycle(name)
    lifecycle.install_signal_handlers()
    await module.main(lifecycle)


def _console(argv: list[str]) -> int:
    """`duetime jobs|runs|stack …` (duetime/console), imported only when asked for."""
    from duetime.console.app import app

    try:
        app(args=argv, prog_name="duetime")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["logs"]:  # its own parser: it needs no settings and no logging setup
        return log_view.main(argv[1:])
    if argv[:1] not in (["run"], ["migrate"], ["topics"], ["keys"]):
        return _console(argv)
    parser = argparse.ArgumentParser(prog="duetime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one service until SIGTERM")
    run.add_argument("service", choices=SERVICES + OPTIONAL_SERVICES)
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("topics", help="create the Kafka topics duetime uses")
    keys_command.add_parser(sub)
    sub.add_parser("logs", help="follow the local stack's logs, readable (duetime logs --help)")
    args = parser.parse_args(argv)
    if args.command == "keys":
        return keys_command.run(args)

    log_settings = LogSettings()
    logs.configure(log_settings.log_level, log_settings.log_format,
                   args.service if args.command == "run" else args.command)
    try:
        if args.command == "run":
            # The sandbox starts each run as a uid of its own (subprocess user=/group=),
            # which uvloop's subprocesses do not support: the command executor runs on the
            # stdlib loop (it is not on the firing path's hot loop; ADR 0031).
            loop = "asyncio" if args.service in SANDBOXED else LoopSettings().event_loop
            run_loop(_run_service(args.service), loop)
        elif args.command == "migrate":
            applied = asyncio.run(migrate(PostgresSettings().postgres_dsn))
            log.info("migrations done", extra={"applied": applied})
        elif args.command == "topics":
            ingress = {ingress_topic(t): INGRESS_PARTITIONS
                       for t in IngressSettings().ingress_tenant_list}
            created = asyncio.run(ensure_topics(KafkaSettings(), ingress))
            log.info("topics ready", extra={"topics_created": created})
    except Exception:
        log.exception("command failed", extra={"command": args.command})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
