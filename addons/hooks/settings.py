"""Addon: loads the cliproxy YAML config and the auth directory, and reloads both when they change.

Option `cliproxy_config` names the file (default: `config.yaml` in the current directory when it
exists, else built-in defaults). A broken edit while running is logged and the last good config
stays in force; at startup it stops mitmproxy with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from mitmproxy import ctx, exceptions

from cliproxy.addons.core import config as configfile
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.store import pg

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0


def _stat(path: Path | None) -> tuple | None:
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return st and (st.st_mtime_ns, st.st_size, st.st_ino)


def _dir_signature(directory: Path) -> tuple:
    try:
        return tuple(
            sorted(
                (e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(directory) if e.name.endswith(".json") and e.is_file()
            )
        )
    except OSError:
        return ()


class Settings:
    name = "cliproxy_settings"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None
        self._follower: asyncio.Task | None = None  # follows a shared account store (PostgreSQL)
        self._config_sig: tuple | None = None
        self._dir_sig: tuple | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "cliproxy_config",
            str | None,
            None,
            "Path of the cliproxy YAML config file. Default: config.yaml in the current directory when it exists, else built-in defaults.",
        )

    def path(self) -> Path | None:
        return configfile.locate(ctx.options.cliproxy_config)

    def configure(self, updated: set[str]) -> None:
        if "cliproxy_config" not in updated:
            return
        path = self.path()
        try:
            cfg = configfile.load(path)
        except configfile.ConfigError as exc:
            raise exceptions.OptionsError(f"cliproxy config: {exc}") from None
        try:
            self._apply(cfg, path)
        except pg.StoreUnavailable as exc:
            # one line, no traceback: an error logged during startup makes mitmproxy exit (its ErrorCheck);
            # later, the config in force stays
            logger.error("cliproxy: the account store cannot be used: %s", exc)

    def _apply(self, cfg: configfile.Config, path: Path | None) -> None:
        for warning in cfg.warnings:
            logger.warning("cliproxy config %s: %s", path, warning)
        self._config_sig = _stat(path)
        self._dir_sig = _dir_signature(cfg.auth_dir)
        self.runtime.apply_config(cfg)
        logger.info("cliproxy: config %s loaded", path or "(built-in defaults)")

    def running(self) -> None:
        self._fit_tcp_timeout()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self.runtime.follow())

    def _fit_tcp_timeout(self) -> None:
        """Keep mitmproxy's inactivity timeout (which drops the client's connection without an answer)
        above `request-timeout-seconds`, so that cliproxy's deadline, which answers, comes first."""
        wanted = self.runtime.config.request_timeout + 30
        if ctx.options.tcp_timeout < wanted:
            ctx.options.update(tcp_timeout=wanted)
            logger.info("cliproxy: tcp_timeout raised to %ss (request-timeout-seconds + 30)", wanted)

    def done(self) -> None:
        for task in (self._task, self._follower):
            if task:
                task.cancel()
        self._task = self._follower = None
        self.runtime.accounts.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                self.check()
            except Exception:  # the watcher must survive anything
                logger.exception("cliproxy: reload check failed")

    def check(self) -> None:
        """Reload what changed on disk: the config file, else the account files."""
        path = self.path()
        if _stat(path) != self._config_sig:
            self._config_sig = _stat(path)
            try:
                cfg = configfile.load(path)
            except configfile.ConfigError as exc:
                logger.error("cliproxy: config change rejected, keeping the last good config: %s", exc)
                return
            try:
                self._apply(cfg, path)
            except pg.StoreUnavailable as exc:
                logger.error("cliproxy: config change rejected, keeping the last good config: the account store cannot be used: %s", exc)
                return
            self._fit_tcp_timeout()
            return
        if self.runtime.accounts.shared:
            return  # the runtime follows a shared store itself
        sig = _dir_signature(self.runtime.config.auth_dir)
        if sig != self._dir_sig:
            self._dir_sig = sig
            self.runtime.reload_accounts()
