"""`accrue-agent`: push a CRM database's or an export folder's changes to Accrue.

    accrue-agent check --config agent.toml          # mapping, source and credentials
    accrue-agent run --config agent.toml --dry-run  # what would be pushed; sends nothing
    accrue-agent run --config agent.toml            # push once (the default: --once)
    accrue-agent run --config agent.toml --every 60 # push, then again every 60 s

The secret is read from the environment variable or 0600 file the mapping file names,
never from the command line (where `ps` would show it). Exit codes: 0 done, 1 the server
refused (400/401: the message says why), 2 a problem to fix here (mapping, source,
checkpoint, secret), 3 the server could not be reached after every retry.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from accrue.agent import mapping, runner
from accrue.agent.client import PushClient, PushRefused, RetryablePushError

logger = logging.getLogger("accrue.agent")


def _say(text: str) -> None:
    print(text, flush=True)


def _run_pass(config: mapping.AgentConfig, client: PushClient | None,
              dry_run: bool) -> None:
    began = time.monotonic()
    summary = runner.run_once(config, client, dry_run=dry_run, say=_say)
    for warning in summary.warnings[:50]:
        _say(f"warning: {warning}")
    if len(summary.warnings) > 50:
        _say(f"warning: ... and {len(summary.warnings) - 50} more")
    _say(f"{'dry run: ' if dry_run else ''}{runner.describe(config)} "
         f"({time.monotonic() - began:.1f} s)")
    for line in summary.lines(dry_run):
        _say(line)


def _run(args: argparse.Namespace) -> int:
    config = mapping.load(args.config)
    client = None if args.dry_run else runner.make_client(config)
    if args.every is None:
        _run_pass(config, client, args.dry_run)
        return 0
    while True:
        try:
            _run_pass(config, client, args.dry_run)
        except RetryablePushError as exc:  # the server is down: try again next round
            logger.error("push failed after %d attempts (%s); next try in %g s",
                         config.max_attempts, exc, args.every)
        except runner.SourceUnavailable as exc:
            logger.error("%s; next try in %g s", exc, args.every)
        time.sleep(args.every)


def _check(args: argparse.Namespace) -> int:
    config = mapping.load(args.config)
    client = runner.make_client(config)
    summary = runner.run_once(config, None, dry_run=True, say=lambda _text: None)
    _say(f"mapping file {config.path}: {len(config.objects)} object(s), source readable; "
         f"{summary.changes:,} change(s) waiting to be pushed")
    client.probe()
    _say(f"credentials accepted by {config.endpoint} (probed with an empty batch: nothing "
         "was stored)")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="accrue-agent",
        description="Push your CRM's changes (a database or a folder of CSV exports) to "
        "Accrue's push API, incrementally, from your own server.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each retry")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="push the changes since the local checkpoint")
    run.add_argument("--config", required=True, help="the mapping file (TOML)")
    when = run.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="push once and exit (the default)")
    when.add_argument("--every", type=float, metavar="SECONDS",
                      help="push, then again every SECONDS until stopped")
    run.add_argument("--dry-run", action="store_true",
                     help="read and check the changes, print what would be pushed, send nothing")
    check = commands.add_parser(
        "check", help="check the mapping file, the source and the credentials (stores nothing)")
    check.add_argument("--config", required=True, help="the mapping file (TOML)")
    args = parser.parse_args(list(argv))
    if getattr(args, "every", None) is not None and args.every < 1:
        parser.error("--every must be at least 1 second")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        return _check(args) if args.command == "check" else _run(args)
    except (mapping.MappingError, runner.AgentError) as exc:
        print(f"accrue-agent: {exc}", file=sys.stderr)
        return 2
    except PushRefused as exc:
        print(f"accrue-agent: the push API refused: {exc}", file=sys.stderr)
        return 1
    except RetryablePushError as exc:
        print(f"accrue-agent: the push API could not be reached after every retry ({exc}); "
              "the checkpoint keeps what was acknowledged: run again later", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
