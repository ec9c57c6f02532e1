"""`python -m duetime keys create|revoke|list`: manage the gateway's API keys file.

The plaintext key is printed once, on stdout, by `create` and is never stored; everything else
goes to stderr. After a change the running gateway is told to reload (SIGHUP to the pid in its
pid file), so a created key works and a revoked one stops working without a restart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from duetime.api_keys import create_key, read_keys, reload_gateway, revoke_key
from duetime.kafka_targets import has_default_namespace
from duetime.settings import GatewaySettings
from duetime.timeutil import utcnow

# The local stack's files (deploy/local/stack.sh), relative to the repository root.
LOCAL_KEYS_FILE = ".stack/api_keys"
LOCAL_PID_FILE = ".stack/nginx/nginx.pid"


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, revoke and list API keys (stored hashed)")
    keys.add_argument("--keys-file", type=Path,
                      help=f"default: $DUETIME_API_KEYS_FILE, else {LOCAL_KEYS_FILE}")
    keys.add_argument("--pid-file", type=Path, default=Path(LOCAL_PID_FILE),
                      help="the gateway's nginx pid file, signalled to reload after a change")
    keys.add_argument("--no-reload", action="store_true", help="do not signal the gateway")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key for a tenant; prints it once")
    create.add_argument("--tenant", required=True)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    actions.add_parser("list", help="key ids, tenants and creation times (never keys)")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _reload(args: argparse.Namespace) -> None:
    if args.no_reload:
        return
    if reload_gateway(args.pid_file):
        _say(f"gateway reloaded (pid file {args.pid_file})")
    else:
        _say(f"no gateway running with pid file {args.pid_file}: the change applies when it starts "
             "(or reload it yourself: nginx -s reload)")


def run(args: argparse.Namespace) -> int:
    path: Path = args.keys_file or Path(GatewaySettings().api_keys_file or LOCAL_KEYS_FILE)
    try:
        if args.action == "create":
            record, key = create_key(path, args.tenant, utcnow())
            _say(f"created key {record.key_id} for tenant {record.tenant} in {path}; it is shown "
                 "only now:")
            print(key)
            if not has_default_namespace(record.tenant):
                _say(f"note: {record.tenant} has a dot, so its Kafka targets have no default "
                     "topics (another tenant's '<name>.*' could overlap them): list its topics in "
                     "DUETIME_KAFKA_TARGET_TOPICS (docs/security.md)")
            _reload(args)
        elif args.action == "revoke":
            if revoke_key(path, args.key_id) is None:
                _say(f"no key {args.key_id} in {path}")
                return 1
            _say(f"revoked key {args.key_id}")
            _reload(args)
        else:
            for r in read_keys(path):
                print(f"{r.key_id}\t{r.tenant}\t{r.created}")
    except (OSError, ValueError) as exc:
        _say(f"duetime keys: {exc}")
        return 1
    return 0
