"""The `emotion` command: log in, set and read the current emotion, watch it live.

Exit codes: 0 ok, 1 usage (or a request the server refused), 2 authentication (not logged in, wrong
password, session revoked), 3 server unreachable, 130 interrupted.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime
from typing import Any, NoReturn, Sequence

from . import __version__
from .client import Client
from .config import TokenStore
from .errors import ApiError, AuthError, Revoked, Unreachable
from .models import Connected, Disconnected, EmotionUpdate, Event, Presence, Resynced
from .timezone import local_timezone

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_SERVER = "http://localhost:8000"


class UsageError(Exception):
    """A command line that cannot be run as given."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits with 2, which this command keeps for authentication failures.
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `emotion`."""
    parser = _Parser(prog="emotion", description="Set, read and watch your current emotion.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--server",
        default=os.environ.get("EMOTION_SERVER", DEFAULT_SERVER),
        help=f"server URL (default: $EMOTION_SERVER or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--device",
        default=os.environ.get("EMOTION_DEVICE", "Command line"),
        help="this device's name, shown on your other devices (default: $EMOTION_DEVICE or 'Command line')",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in (("login", "log in (the password is asked for, or taken from $EMOTION_PASSWORD)"),
                       ("register", "create an account and log in")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--username", "-u", help="the username (asked for if not given)")
    commands.add_parser("logout", help="end this login on the server and forget it here")
    sub = commands.add_parser("set", help="set your current emotion")
    sub.add_argument("emotion")
    commands.add_parser("now", help="show your current emotion")
    sub = commands.add_parser("watch", help="show every change as it happens, until Ctrl-C")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")
    sub = commands.add_parser("history", help="list past changes, newest first")
    sub.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")
    sub.add_argument("--since", type=_date, help="only changes from this date or time on (local time)")
    commands.add_parser("devices", help="list your devices online now")
    sub = commands.add_parser("stats", help="time spent in each emotion over the last days")
    sub.add_argument("--days", type=_positive, default=7, help="how many days, today included (default 7)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    store = TokenStore()
    client = Client(
        args.server,
        device=args.device or None,
        tokens=store.load(args.server),
        on_tokens=lambda tokens: store.save(args.server, tokens),
        # A person is waiting: give up on an unreachable server sooner than a program would.
        retry_timeout=5.0,
        timeout=10.0,
    )
    try:
        return COMMANDS[args.command](client, args)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except Revoked as exc:
        store.save(args.server, None)
        return _fail(EXIT_AUTH, f"{exc} (run: emotion login)")
    except AuthError as exc:
        if exc.code not in ("invalid_credentials", "not_logged_in"):
            store.save(args.server, None)  # the kept login cannot be renewed
        hint = "" if exc.code == "invalid_credentials" else " (run: emotion login)"
        return _fail(EXIT_AUTH, f"{exc}{hint}")
    except Unreachable as exc:
        return _fail(EXIT_UNREACHABLE, str(exc))
    except ApiError as exc:
        return _fail(EXIT_UNREACHABLE if exc.status >= 500 else EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`emotion watch | head`): nothing more to say, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        client.close()


# ---- commands ---------------------------------------------------------------------------------------


def cmd_login(client: Client, args: argparse.Namespace) -> int:
    username = args.username or _ask("Username: ")
    user = client.login(username, _password())
    print(f"Logged in as {user.username} on {client.base_url}")
    return EXIT_OK


def cmd_register(client: Client, args: argparse.Namespace) -> int:
    username = args.username or _ask("Username: ")
    password = _password()
    client.register(username, password)
    user = client.login(username, password)
    print(f"Registered and logged in as {user.username} on {client.base_url}")
    return EXIT_OK


def cmd_logout(client: Client, args: argparse.Namespace) -> int:
    if client.tokens is None:
        print("Not logged in", file=sys.stderr)
        return EXIT_OK
    client.logout()
    print("Logged out")
    return EXIT_OK


def cmd_set(client: Client, args: argparse.Namespace) -> int:
    event = client.set(args.emotion)
    print(f"{event.emotion} (set at {_local(event)})")
    return EXIT_OK


def cmd_now(client: Client, args: argparse.Namespace) -> int:
    event = client.current()
    if event is None:
        print("No emotion set yet")
    else:
        print(f"{event.emotion} since {_local(event, date=True)}{_on(event, gap=', ')}")
    return EXIT_OK


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    client.me()  # fails fast when logged out or unreachable, before the stream starts retrying
    with client.watch() as watch:
        first = True
        for item in watch:
            if isinstance(item, Connected):
                if first and item.current is not None:
                    _show(item.current, args.json)
                elif not first and not args.json:
                    print("reconnected", file=sys.stderr)
                first = False
            elif isinstance(item, EmotionUpdate):
                _show(item.event, args.json)
            elif isinstance(item, Disconnected) and not args.json:
                print(f"connection lost ({item.reason}); reconnecting in {item.retry_in:.1f} s", file=sys.stderr)
            elif isinstance(item, (Presence, Resynced)):
                pass
    return EXIT_OK


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    shown = 0
    for event in client.history(limit=None if args.since else args.limit):
        if shown >= args.limit or (args.since and event.timestamp < args.since):
            break
        print(f"{_local(event, date=True)}  {event.emotion:<10}{_on(event)}")
        shown += 1
    if shown == 0:
        print("No emotions recorded" + (" since then" if args.since else ""))
    return EXIT_OK


def cmd_devices(client: Client, args: argparse.Namespace) -> int:
    devices = client.devices()
    print(f"{len(devices)} device{'s' if len(devices) != 1 else ''} online")
    for device in devices:
        print(f"  {device.name or '(unnamed)'}  [{device.id}]")
    return EXIT_OK


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    tz = local_timezone()
    body = client.stats(days=args.days, tz=tz)
    totals: dict[str, Any] = body.get("totals") or {}
    print(f"Last {args.days} day{'s' if args.days != 1 else ''} ({body.get('tz') or tz or 'UTC'}):")
    if not totals:
        print("  nothing recorded")
    for emotion, total in sorted(totals.items(), key=lambda item: -item[1].get("seconds", 0)):
        share = total.get("share", 0) * 100
        count = total.get("count", 0)
        changes = f"{count} change{'s' if count != 1 else ''}"
        print(f"  {emotion:<10} {_duration(total.get('seconds', 0)):>8}  {share:5.1f}%  ({changes})")
    return EXIT_OK


COMMANDS = {
    "login": cmd_login,
    "register": cmd_register,
    "logout": cmd_logout,
    "set": cmd_set,
    "now": cmd_now,
    "watch": cmd_watch,
    "history": cmd_history,
    "devices": cmd_devices,
    "stats": cmd_stats,
}


# ---- helpers ----------------------------------------------------------------------------------------


def _fail(code: int, message: str) -> int:
    print(f"emotion: {message}", file=sys.stderr)
    return code


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError("no username: pass --username")
    value = input(prompt).strip()
    if not value:
        raise UsageError("no username given")
    return value


def _password() -> str:
    """$EMOTION_PASSWORD, else asked for without echo; never taken from the command line."""
    password = os.environ.get("EMOTION_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: set EMOTION_PASSWORD or run in a terminal")
    password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("no password given")
    return password


def _show(event: Event, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event.to_json()), flush=True)
    else:
        print(f"{_local(event)}  {event.emotion:<10}{_on(event)}", flush=True)


def _local(event: Event, date: bool = False) -> str:
    return event.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _on(event: Event, gap: str = "  ") -> str:
    """`gap` and "on <device>", or nothing for an unnamed device (the gap is a column gap by default)."""
    return f"{gap}on {event.device}" if event.device else ""


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {int(seconds % 60):02d}s"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        example = "e.g. 2026-11-26 or 2026-11-26T08:00"
        raise argparse.ArgumentTypeError(f"not a date or time: {text!r} ({example})") from None
    return value if value.tzinfo else value.astimezone()  # a bare date or time is local


if __name__ == "__main__":
    sys.exit(main())
