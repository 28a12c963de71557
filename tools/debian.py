"""Debian packages that tests and the load test need, installed with apt-get when missing.

``ensure({"/usr/sbin/haproxy": "haproxy"})`` returns at once when every path exists;
otherwise it runs ``apt-get update`` and ``apt-get install -y`` for the missing packages
(as root, or through ``sudo -n``). When that is impossible it raises
:class:`PackageUnavailable` with the reason: callers fail with it, they never skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List


class PackageUnavailable(RuntimeError):
    pass


def _run(cmd: List[str], timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def ensure(paths: Dict[str, str]) -> None:
    """Makes sure each path exists, installing its Debian package (path -> package)."""
    missing = sorted({package for path, package in paths.items() if not Path(path).exists()})
    if not missing:
        return
    what = " ".join(missing)
    if shutil.which("apt-get") is None:
        raise PackageUnavailable(f"{what} missing and apt-get is not available on this machine")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise PackageUnavailable(f"{what} missing; installing needs root (apt-get) and there is no sudo")
    try:
        update = _run(prefix + ["apt-get", "update"], timeout=600)
        if update.returncode != 0:
            raise PackageUnavailable(f"apt-get update failed ({update.returncode}): {update.stderr.strip()[-800:]}")
        install = _run(prefix + ["apt-get", "install", "-y", *missing], timeout=1200)
        if install.returncode != 0:
            raise PackageUnavailable(
                f"apt-get install {what} failed ({install.returncode}): {install.stderr.strip()[-800:]}"
            )
    except subprocess.TimeoutExpired as exc:
        raise PackageUnavailable(f"installing {what} timed out: {exc}") from exc
    still = [path for path in paths if not Path(path).exists()]
    if still:
        raise PackageUnavailable(f"after apt-get install {what}, {', '.join(still)} is still missing")
