"""The sidecar process: find the binary, spawn it in its own process group, stop it
without leaving anything behind. Knows nothing of JSON-RPC."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sysconfig
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Flags that belong to ``quarry supervise`` rather than ``quarry serve``.
SUPERVISOR_FLAGS = frozenset(
    {
        "health_interval_ms",
        "health_timeout_ms",
        "health_failures",
        "max_restarts",
        "max_unready_starts",
        "restart_window_ms",
        "backoff_initial_ms",
        "backoff_max_ms",
        "max_rss_mb",
        "start_timeout_ms",
    }
)


def find_binary(binary: Optional[PathLike] = None) -> str:
    """The ``quarry`` executable: the argument, ``$QUARRY_BIN``, the one the wheel
    installed beside this interpreter's scripts, ``PATH``, then the repository's
    ``target/release`` (or ``$CARGO_TARGET_DIR/release``).

    Raises :class:`FileNotFoundError` naming where it looked (an explicit ``binary`` or
    ``$QUARRY_BIN`` that is not an executable is an error, never silently replaced)."""
    for what, candidate in (("binary", binary), ("QUARRY_BIN", os.environ.get("QUARRY_BIN"))):
        if candidate:
            p = Path(candidate)
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
            raise FileNotFoundError(f"{what}={p} is not an executable file")
    tried: List[str] = []
    # The binary the wheel carries, installed beside this interpreter's scripts.
    bundled = Path(sysconfig.get_path("scripts")) / "quarry"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    tried.append(str(bundled))
    on_path = shutil.which("quarry")
    if on_path:
        return on_path
    tried.append("PATH")
    repo = Path(__file__).resolve().parents[2]
    targets = [repo / "target"]
    if os.environ.get("CARGO_TARGET_DIR"):
        targets.insert(0, Path(os.environ["CARGO_TARGET_DIR"]))
    for t in targets:
        for profile in ("release", "debug"):
            p = t / profile / "quarry"
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
            tried.append(str(p))
    raise FileNotFoundError("quarry binary not found; tried " + ", ".join(tried))


def command_flags(flags: Dict[str, Any]) -> List[str]:
    """``{"max_concurrency": 8, "debug_methods": True}`` → ``["--max-concurrency", "8",
    "--debug-methods"]`` (``False``/``None`` values are left out)."""
    out: List[str] = []
    for key, value in flags.items():
        name = "--" + key.replace("_", "-")
        if value is True:
            out.append(name)
        elif value is False or value is None:
            continue
        else:
            out.extend([name, str(value)])
    return out


def command_line(
    exe: str, supervised: bool, data_dir: Optional[PathLike], flags: Dict[str, Any]
) -> List[str]:
    """``quarry supervise [supervisor flags] -- quarry serve [flags]``, or ``quarry serve
    [flags]`` when not ``supervised``. Raises :class:`ValueError` for supervisor flags
    without ``supervised``."""
    serve_flags = {k: v for k, v in flags.items() if k not in SUPERVISOR_FLAGS}
    sup_flags = {k: v for k, v in flags.items() if k in SUPERVISOR_FLAGS}
    if sup_flags and not supervised:
        raise ValueError(f"supervisor flags without supervised=True: {sorted(sup_flags)}")
    if data_dir is not None:
        serve_flags["data_dir"] = os.fspath(data_dir)
    serve = [exe, "serve", *command_flags(serve_flags)]
    return [exe, "supervise", *command_flags(sup_flags), "--", *serve] if supervised else serve


async def spawn(argv: List[str], env: Optional[Dict[str, str]]) -> asyncio.subprocess.Process:
    """Starts ``argv`` with piped stdio in a new process group (so that the whole group
    can be signalled)."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
        start_new_session=True,
    )


def kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Sends ``sig`` to the process group of ``proc`` (to ``proc`` alone if that fails)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


async def stop(
    proc: asyncio.subprocess.Process,
    request_shutdown: Callable[[], Awaitable[Any]],
    timeout: float,
) -> None:
    """``shutdown`` (it drains), then closes stdin, then SIGTERM and SIGKILL to the
    process group; returns once the process is reaped."""
    if proc.returncode is not None:
        return
    try:
        await asyncio.wait_for(request_shutdown(), timeout)
    except Exception:  # any failure: escalate below
        pass
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except (OSError, RuntimeError):
            pass
    for sig, wait in ((None, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            kill_group(proc, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except asyncio.TimeoutError:
            continue


__all__ = ["find_binary", "command_flags", "command_line", "spawn", "kill_group", "stop", "SUPERVISOR_FLAGS"]
