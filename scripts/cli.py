"""The `cliproxy` command: sign in, import, list, refresh and remove ChatGPT accounts.

    cliproxy login [codex] [--device] [--no-browser]
    cliproxy import-codex [PATH]
    cliproxy accounts
    cliproxy refresh [ACCOUNT | --all]
    cliproxy logout ACCOUNT [--keep-login]
    cliproxy env
    cliproxy models [--offline] [--json]
    cliproxy usage [--since 24h] [--by account|model|key|day|hour] [--json]
    cliproxy rest clear ACCOUNT
    cliproxy store import [AUTH_DIR] [--replace]
    cliproxy store export DIR

Every command reads `auth-dir` and `oauth-issuer` from the config file (`--config`, default
`./config.yaml` when present); `--auth-dir` overrides. With `store` (a PostgreSQL DSN, in the config
or `CLIPROXY_STORE_DSN`), the account commands work on the database instead of the auth dir. Expected failures print one short message
and exit with status 1 (2 for usage errors, 130 when interrupted); tokens are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import webbrowser
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from cliproxy.addons.core import config as configfile
from cliproxy.addons.store import ledger, pg
from cliproxy.addons.store.accounts import AccountStore, FileAccounts, open_accounts
from cliproxy.addons.store.pg_ledger import PostgresLedger
from cliproxy.auth.codex_import import SHARED_LOGIN_WARNING, CodexImportError, default_codex_auth_path, import_codex_auth
from cliproxy.auth.constants import CALLBACK_PORTS, DEFAULT_AUTH_DIR
from cliproxy.auth.device import DeviceCode, device_login
from cliproxy.auth.journal import replay_journal
from cliproxy.auth.locking import LockTimeout, account_lock_sync, lock_path
from cliproxy.auth.login import LOGIN_KEYS, LOGIN_TIMEOUT, LoginResult, browser_login
from cliproxy.auth.oauth import LoginError, revoke
from cliproxy.auth.quota import STATE_DIR, parse_wham_usage, state_path
from cliproxy.auth.refresh import RefreshError, refresh_sync
from cliproxy.auth.store import Account, AccountFileError, account_filename, load_account, load_accounts, write_account_file
from cliproxy.auth.timeutil import relative
from cliproxy.scripts.accounts_view import accounts_table
from cliproxy.scripts.models_view import model_rows, models_table
from cliproxy.scripts.usage_view import usage_table


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


class UsageError(CliError):
    """A bad argument value: printed as one line, exit status 2."""


@dataclass(frozen=True, slots=True)
class Settings:
    auth_dir: Path
    issuer: str
    config: configfile.Config | None = None  # the whole config, for commands that need more than the two

    @property
    def store(self) -> str | None:
        """The shared store's DSN (PostgreSQL), or None for the auth dir."""
        return self.config.store if self.config is not None else None


# -- configuration ------------------------------------------------------------------------------------
def load_settings(config: str | None, auth_dir: str | None) -> Settings:
    """auth-dir / oauth-issuer from the config file the proxy would read (the same loader and checks)."""
    try:
        cfg = configfile.load(configfile.locate(config))
    except configfile.ConfigError as exc:
        raise CliError(f"config: {exc}") from None
    directory = Path(os.path.expandvars(auth_dir)).expanduser() if auth_dir else cfg.auth_dir
    return Settings(directory, cfg.oauth_issuer, cfg)


# -- helpers ------------------------------------------------------------------------------------------
def open_store(settings: Settings) -> AccountStore:
    """Where the accounts are: the database named by `store`, else the auth dir."""
    try:
        return open_accounts(settings.store, settings.auth_dir)
    except pg.StoreUnavailable as exc:
        raise CliError(str(exc)) from None


def find_account(store: AccountStore, query: str) -> Account:
    """The account whose file name, file stem or email is `query`."""
    accounts = store.load()
    q = query.strip()
    exact = [a for a in accounts if q in (a.name, a.path.stem)]
    if exact:
        return exact[0]
    by_email = [a for a in accounts if a.email and a.email.lower() == q.lower()]
    if len(by_email) == 1:
        return by_email[0]
    if by_email:
        raise CliError(f"{q} matches several accounts ({', '.join(a.name for a in by_email)}); name the file instead")
    known = ", ".join(a.name for a in accounts) or "none"
    raise CliError(f"no account {q!r} in {store.where} (accounts: {known})")


def store_login(store: AccountStore, account: Account) -> tuple[str, bool]:
    """Put a login made in a scratch dir into a shared store, under the name its file would have: the
    existing row of the same account (its extra keys kept), else the plain name, else the hashed one.
    Returns the name and whether an existing account was updated."""
    assert not isinstance(store, FileAccounts)
    existing = {a.name: a for a in store.load()}
    same = next((a for a in existing.values() if a.account_id == account.account_id and a.email.lower() == account.email.lower()), None)
    if same is not None:
        data = {k: v for k, v in same.data.items() if k not in LOGIN_KEYS}
        data.update(account.data)
        store.put(same.name, data)  # type: ignore[attr-defined]
        return same.name, True
    name = account_filename(account.identity)
    if name in existing:
        name = account_filename(account.identity, hashed=True)
    store.put(name, account.data)  # type: ignore[attr-defined]
    return name, False


@contextmanager
def login_target(settings: Settings, console: Console) -> Iterator[Path]:
    """The directory a login or import writes its account file to: the auth dir, or with a shared
    store a private scratch dir whose accounts go into the database afterwards."""
    if not settings.store:
        yield settings.auth_dir
        return
    store = open_store(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="cliproxy-login-") as scratch:
            yield Path(scratch)
            for account in load_accounts(scratch):
                name, replaced = store_login(store, account)
                console.print(f"{'Updated' if replaced else 'Stored'} {escape(name)} in {escape(store.where)}")
    finally:
        store.close()


def _saved(console: Console, result: LoginResult, settings: Settings) -> None:
    account = result.account
    plan = f" ({escape(account.plan)})" if account.plan else ""
    if settings.store:  # `login_target` says where it went
        console.print(f"[green]✓[/] Signed in as [bold]{escape(account.email)}[/]{plan}.")
        return
    verb = "Updated" if result.replaced else "Saved"
    console.print(f"[green]✓[/] Signed in as [bold]{escape(account.email)}[/]{plan}. {verb} {escape(str(account.path))}")


def _setup_logging(verbose: bool) -> None:
    """Warnings of the auth package (e.g. a skipped broken account file) and the catalog reader go to stderr."""
    for name in ("cliproxy.auth", "cliproxy.addons.core"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        if not any(getattr(h, "_cliproxy", False) for h in logger.handlers):
            handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
            handler._cliproxy = True  # type: ignore[attr-defined]
            logger.addHandler(handler)


# -- commands -----------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.device:
        return _device(args, settings, console)
    no_browser = args.no_browser

    def show_url(url: str, opened: bool) -> None:
        if opened:
            console.print("Your browser should open for the ChatGPT sign-in. If it did not, open this URL:")
        else:
            console.print("Open this URL in a browser on this machine to sign in with ChatGPT:")
        console.print(escape(url), soft_wrap=True, highlight=False)
        if no_browser:
            console.print(
                "[dim]On a remote machine? Forward the callback port first (ssh -L 1455:127.0.0.1:1455 "
                "user@host) or use `cliproxy login --device`.[/]"
            )

    with (
        login_target(settings, console) as target,
        console.status(f"Waiting for the browser sign-in (up to {args.timeout / 60:g} min; Ctrl+C to cancel)…"),
    ):
        result = browser_login(
            target,
            settings.issuer,
            open_browser=None if no_browser else (lambda url: webbrowser.open(url)),
            on_url=show_url,
            ports=CALLBACK_PORTS,
            timeout=args.timeout,
        )
        _saved(console, result, settings)
    return 0


def _device(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    status = console.status("Requesting a device code…")

    def show_code(code: DeviceCode) -> None:
        console.print(
            f"1. Open [bold]{escape(code.verification_url)}[/] on any device "
            "(enable device code sign-in in ChatGPT's security settings if asked)."
        )
        console.print(f"2. Enter the code [bold cyan]{escape(code.user_code)}[/]  [dim](never share this code)[/]")
        if not args.no_browser:
            try:
                webbrowser.open(code.verification_url)
            except Exception:  # noqa: BLE001 - opening a browser is only a convenience
                pass

    def progress(left: float) -> None:
        minutes, seconds = divmod(int(left), 60)
        status.update(f"Waiting for approval… code expires in {minutes}:{seconds:02d} (Ctrl+C to cancel)")

    with login_target(settings, console) as target:
        with status:
            result = device_login(target, settings.issuer, on_code=show_code, on_progress=progress, timeout=args.timeout)
        _saved(console, result, settings)
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    source = Path(args.path).expanduser() if args.path else default_codex_auth_path()
    with login_target(settings, console) as target:
        result = import_codex_auth(target, source)
        account = result.account
        console.print(
            f"[green]✓[/] Imported [bold]{escape(account.email)}[/]"
            f"{f' ({escape(account.plan)})' if account.plan else ''} from {escape(str(source))}"
            + ("" if settings.store else f" into {escape(str(account.path))}")
        )
    console.print(f"[yellow]Warning:[/] {escape(SHARED_LOGIN_WARNING)}")
    return 0


def cmd_accounts(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    store = open_store(settings)
    accounts = store.load()
    if not accounts:
        console.print(
            f"No accounts in {escape(store.where)}. Sign in with `cliproxy login` (or `cliproxy login --device`, `cliproxy import-codex`)."
        )
        return 0
    failed = 0
    if args.probe:
        for account in accounts:
            if account.disabled:
                continue
            try:
                probe_account(account, settings, store)
            except (RefreshError, httpx.HTTPError, ValueError) as exc:
                failed += 1
                console.print(f"[yellow]![/] {escape(account.label)}: quota not read ({escape(str(exc) or type(exc).__name__)})")
    if store.shared:
        console.print(accounts_table(accounts, settings.auth_dir, states=store.read_states([a.name for a in accounts]), where=store.where))
    else:
        console.print(accounts_table(accounts, settings.auth_dir))
    return 1 if failed else 0


def wham_usage_url(settings: Settings) -> str:
    """`{backend-api root}/wham/usage`: the codex-base-url without its trailing `/codex`."""
    base = (settings.config or configfile.Config()).codex_base_url
    return base.rstrip("/").removesuffix("/codex") + "/wham/usage"


def probe_account(account: Account, settings: Settings, store: AccountStore | None = None) -> None:
    """Read the account's live quota (wham/usage) into its state, where `accounts` and the proxy see it."""
    store = store or FileAccounts(settings.auth_dir)
    fresh = refresh_sync(account, refresher=store.refresher(settings.issuer))
    headers = {"authorization": f"Bearer {fresh.access_token}"}
    if fresh.account_id:
        headers["chatgpt-account-id"] = fresh.account_id
    r = httpx.get(wham_usage_url(settings), headers=headers, timeout=20, trust_env=False)
    if r.status_code != 200:
        raise ValueError(f"wham/usage answered HTTP {r.status_code}")
    body = r.json()
    if not isinstance(body, dict):
        raise ValueError("wham/usage answered something other than an object")
    usage = parse_wham_usage(body)
    state = store.read_state(account.name)
    state["quota"] = usage["quota"] or state.get("quota", {})
    state["wham"] = {k: usage[k] for k in ("plan", "reset_credits", "credits")}
    store.write_state(account.name, state)


def cmd_rest(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """`rest clear ACCOUNT`: lift the account's rest; a running proxy reads the stamp before its next choice."""
    store = open_store(settings)
    account = find_account(store, args.account)
    state = store.read_state(account.name)
    state["cooldown_until"] = None
    state["rest_cleared_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"
    if store.shared:
        state["rests"], state["limited"] = {}, []  # a new stamp: replaces the rests of every host
    store.write_state(account.name, state)
    console.print(f"[green]✓[/] {escape(account.label)}: rest cleared; a running proxy serves with it again at once")
    return 0


def cmd_usage(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Totals (and a breakdown) of the usage ledger the proxy writes in the state folder, or in the
    PostgreSQL `store` (every host's requests)."""
    try:
        seconds = ledger.parse_since(args.since)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dsn = settings.store
    path = settings.auth_dir / STATE_DIR / ledger.FILE_NAME
    if not dsn and not path.exists():
        summary = ledger.Summary(dict.fromkeys(ledger.TOTAL_KEYS, 0), [])
    else:
        try:
            book = PostgresLedger(dsn) if dsn else ledger.SQLiteLedger(path)
            try:
                summary = book.summary(time.time() - seconds, args.by)
            finally:
                book.close()
        except pg.StoreUnavailable as exc:  # the database's address (password hidden) and why
            raise CliError(str(exc)) from None
    if args.json:
        console.print_json(json.dumps(summary.as_json()))
        return 0
    console.print(usage_table(summary, args.by, args.since))
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """The merged catalog as the proxy would serve it: each account's live list (read now, unless
    --offline), else the list the proxy last saved, else the built-in one, with the config's models on top."""
    from dataclasses import replace

    from cliproxy.addons.core.runtime import Runtime

    runtime = Runtime()
    runtime.apply_config(replace(settings.config or configfile.Config(), auth_dir=settings.auth_dir))

    async def read() -> None:
        try:
            await asyncio.gather(*(runtime.catalog.refresh(m) for m in runtime.catalog.due(now=float("inf"))))
        finally:
            await runtime.close()

    if not args.offline:
        asyncio.run(read())
    rows = model_rows(runtime)
    if args.json:
        console.print_json(json.dumps(rows))
    else:
        console.print(models_table(rows))
    return 0


def cmd_refresh(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    store = open_store(settings)
    if args.all or not args.account:
        accounts = store.load()
        if not accounts:
            raise CliError(f"no accounts in {store.where}; sign in with `cliproxy login`")
        if not args.all and len(accounts) > 1:
            raise CliError("several accounts: name one (file name or email) or use --all")
    else:
        accounts = [find_account(store, args.account)]
    refresher = store.refresher(settings.issuer)
    failed = 0
    for account in accounts:
        try:
            fresh = refresh_sync(account, force=True, refresher=refresher)
        except RefreshError as exc:
            failed += 1
            console.print(f"[red]✗[/] {escape(str(exc))}")
            continue
        console.print(f"[green]✓[/] {escape(fresh.label)}: refreshed; access token expires {relative(fresh.expires_at)}")
    return 1 if failed else 0


def cmd_logout(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    store = open_store(settings)
    account = find_account(store, args.account)
    if isinstance(store, FileAccounts):
        with account_lock_sync(account.path, timeout=60):
            replay_journal(account.path)  # an interrupted refresh's tokens are the ones to revoke
            current = load_account(account.path)  # the tokens as they are now, not as listed before the lock
            account.path.unlink(missing_ok=True)
            state_path(settings.auth_dir, account.name).unlink(missing_ok=True)
        lock_path(account.path).unlink(missing_ok=True)
        where = str(account.path)
    else:
        removed = store.remove(account.name)  # type: ignore[attr-defined]  # under its refresh lock, journal applied
        if removed is None:
            raise CliError(f"{account.label} was removed meanwhile")
        current, where = removed, f"{account.name} in {store.where}"
    console.print(f"[green]✓[/] Removed {escape(account.label)} ({escape(where)}). A running proxy stops using it within seconds.")
    if not args.keep_login:
        problem = revoke(settings.issuer, current.refresh_token, current.access_token)
        if problem:
            console.print(f"[yellow]![/] The login could not be revoked at the issuer ({escape(problem)}); it ends when its tokens expire.")
        else:
            console.print("Signed out at the issuer too (tokens revoked).")
    return 0


def cmd_store(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """`store import [AUTH_DIR]`: the auth dir's account files into the database; `store export DIR`: back to files."""
    if not settings.store:
        raise CliError(f"no store configured: set `store: postgresql://…` in the config or {pg.DSN_ENV}")
    store = open_store(settings)
    try:
        if args.action == "import":
            return _store_import(args, settings, store, console)
        if not args.dir:
            raise UsageError("store export: name the directory to write the account files to")
        return _store_export(Path(args.dir).expanduser(), store, console)
    finally:
        store.close()


def _store_import(args: argparse.Namespace, settings: Settings, store: AccountStore, console: Console) -> int:
    source = Path(args.dir).expanduser() if args.dir else settings.auth_dir
    if not source.is_dir():
        raise CliError(f"{source}: no such directory")
    accounts = FileAccounts(source).load()  # completes an interrupted refresh's journal first
    if not accounts:
        raise CliError(f"no account files in {source}")
    added = skipped = 0
    for account in accounts:
        if store.put(account.name, account.data, replace=args.replace):  # type: ignore[attr-defined]
            added += 1
            console.print(f"[green]✓[/] {escape(account.name)}")
        else:
            skipped += 1
            console.print(f"[yellow]-[/] {escape(account.name)}: already in the store, kept (--replace overwrites)")
    console.print(
        f"Imported {added} account(s) from {escape(str(source))} into {escape(store.where)}"
        + (f"; {skipped} skipped" if skipped else "")
        + ". Stop other programs from refreshing these files: a refresh token is used once."
    )
    return 0


def _store_export(directory: Path, store: AccountStore, console: Console) -> int:
    accounts = store.load()
    for account in accounts:
        write_account_file(directory / account.name, account.data)  # atomic, mode 0600
    console.print(f"Exported {len(accounts)} account(s) from {escape(store.where)} to {escape(str(directory))}")
    return 0


def cmd_env(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from cliproxy.scripts.envvars import env_lines

    for line in env_lines(args.listen, args.proxy, Path(args.confdir)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0


RUN_USAGE = """usage: cliproxy run [--web] [--config PATH] [MITMPROXY OPTIONS ...]

Start the proxy from the installed package: mitmdump (or mitmweb with --web) with cliproxy's addons,
exactly as `mitmdump -s addons/cliproxy.py` from a checkout. Every other option goes to mitmproxy,
e.g. `--listen-port 9090` or `--set cliproxy_listen=127.0.0.1:9317` (see mitmdump --help)."""


def run_proxy(argv: Sequence[str]) -> int:
    """`cliproxy run [--web] [--config PATH] [MITMPROXY OPTIONS…]`: the proxy from the installed package
    (mitmdump, or mitmweb with --web, loading the same entry script as `mitmdump -s addons/cliproxy.py`)."""
    args, rest = list(argv), []
    web = config = None
    while args:
        arg = args.pop(0)
        if arg == "--web":
            web = True
        elif arg == "--config" and args:
            config = args.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            print(RUN_USAGE)
            return 0
        else:
            rest.append(arg)
    program = "mitmweb" if web else "mitmdump"
    exe = Path(sys.executable).parent / program
    if not exe.exists():
        found = shutil.which(program)
        if found is None:
            print(f"error: {program} not found (it comes with mitmproxy, a dependency of cliproxy)", file=sys.stderr)
            return 1
        exe = Path(found)
    spec = importlib.util.find_spec("cliproxy.addons.cliproxy")  # located, not imported: it starts the addons
    assert spec is not None and spec.origin is not None
    script = Path(spec.origin)
    cmd = [str(exe), "-s", str(script), *(["--set", f"cliproxy_config={Path(config).expanduser()}"] if config else []), *rest]
    os.execv(cmd[0], cmd)
    return 0  # not reached


# -- parsing ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help="YAML config file (default: ./config.yaml when it exists)"
    )
    common.add_argument(
        "--auth-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"account directory (default: auth-dir from the config, else {DEFAULT_AUTH_DIR})",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show progress logs")

    parser = argparse.ArgumentParser(
        prog="cliproxy", parents=[common], description="Manage the ChatGPT accounts cliproxy serves requests with."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    login = sub.add_parser(
        "login",
        parents=[common],
        help="sign in with a ChatGPT account",
        description="Sign in with a ChatGPT account (browser, or --device for headless machines).",
    )
    login.add_argument("provider", nargs="?", choices=["codex"], help="provider (only codex)")
    login.add_argument("--device", action="store_true", help="device-code sign-in: enter a code on another device")
    login.add_argument("--no-browser", action="store_true", help="print the URL instead of opening a browser")
    login.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help=f"give up after this long (default {LOGIN_TIMEOUT:.0f}s, device flow 900s)",
    )
    login.set_defaults(func=cmd_login)

    imp = sub.add_parser("import-codex", parents=[common], help="import the Codex CLI's login (~/.codex/auth.json)")
    imp.add_argument("path", nargs="?", metavar="PATH", help="auth.json to import (default: $CODEX_HOME/auth.json)")
    imp.set_defaults(func=cmd_import)

    acc = sub.add_parser("accounts", parents=[common], help="list accounts: expiry, state, quota")
    acc.add_argument("--probe", action="store_true", help="re-read every account's live quota (wham/usage) now")
    acc.set_defaults(func=cmd_accounts)

    rest = sub.add_parser("rest", parents=[common], help="rest clear ACCOUNT: lift an account's rest (a running proxy honours it at once)")
    rest.add_argument("action", choices=["clear"], help="clear: end the rest")
    rest.add_argument("account", metavar="ACCOUNT", help="file name, file stem or email")
    rest.set_defaults(func=cmd_rest)

    mod = sub.add_parser("models", parents=[common], help="list the model catalog: efforts, context, lite/classic, accounts, source")
    mod.add_argument("--offline", action="store_true", help="do not read the accounts' live catalogs; show the saved or built-in one")
    mod.add_argument("--json", action="store_true", help="print JSON instead of a table")
    mod.set_defaults(func=cmd_models)

    ref = sub.add_parser("refresh", parents=[common], help="refresh an account's access token now")
    ref.add_argument("account", nargs="?", metavar="ACCOUNT", help="file name, file stem or email")
    ref.add_argument("--all", action="store_true", help="refresh every account")
    ref.set_defaults(func=cmd_refresh)

    out = sub.add_parser("logout", parents=[common], help="remove an account file and revoke its login")
    out.add_argument("account", metavar="ACCOUNT", help="file name, file stem or email")
    out.add_argument(
        "--keep-login",
        action="store_true",
        help="only remove the file; do not revoke the tokens (e.g. when another program still uses this login)",
    )
    out.set_defaults(func=cmd_logout)

    use = sub.add_parser("usage", parents=[common], help="requests and tokens from the usage ledger: totals and a breakdown")
    use.add_argument("--since", default="24h", metavar="AGE", help="how far back: 24h, 7d, 90m, 2w (default 24h)")
    use.add_argument(
        "--by", choices=ledger.GROUPINGS, default=None, help="break the totals down by account, model, client key, day or hour"
    )
    use.add_argument("--json", action="store_true", help="print JSON (`totals`, `rows`) instead of tables")
    use.set_defaults(func=cmd_usage)

    sto = sub.add_parser(
        "store",
        parents=[common],
        help="import: copy an auth dir's accounts into the PostgreSQL store; export DIR: write them back as files",
    )
    sto.add_argument("action", choices=["import", "export"])
    sto.add_argument("dir", nargs="?", metavar="DIR", help="import: the auth dir (default: auth-dir); export: where to write")
    sto.add_argument("--replace", action="store_true", help="import: overwrite accounts the store already holds")
    sto.set_defaults(func=cmd_store)

    env = sub.add_parser("env", parents=[common], help="print shell settings that point tools at cliproxy")
    env.add_argument("--listen", default="127.0.0.1:8317", help="cliproxy's base-URL listener")
    env.add_argument("--proxy", default="127.0.0.1:8080", help="mitmproxy's regular proxy")
    env.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's config dir (CA certificate)")
    env.set_defaults(func=cmd_env)

    sub.add_parser(
        "run",
        help="start the proxy (mitmdump; --web for mitmweb); other options go to mitmproxy",
        description="Start the proxy from the installed package: cliproxy run [--web] [--config PATH] [mitmproxy options]",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return run_proxy(argv[1:])
    args = build_parser().parse_args(argv)
    out = console or Console(highlight=False)
    err = Console(stderr=True, highlight=False) if console is None else console
    _setup_logging(getattr(args, "verbose", False))
    if args.command == "login" and args.timeout is None:
        args.timeout = 900.0 if args.device else LOGIN_TIMEOUT
    if args.command == "refresh" and args.all and args.account:
        err.print("[red]error:[/] give an ACCOUNT or --all, not both")
        return 2
    try:
        settings = load_settings(getattr(args, "config", None), getattr(args, "auth_dir", None))
        return args.func(args, settings, out)
    except UsageError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    except (CliError, LoginError, CodexImportError, RefreshError, AccountFileError, LockTimeout) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"[red]error:[/] {escape((exc.strerror or str(exc)) + where)}")
        return 1
    except KeyboardInterrupt:
        err.print("cancelled")
        return 130


if __name__ == "__main__":
    sys.exit(main())
