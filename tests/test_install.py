"""tools/install.py hands pip's package sources to uv: the same indexes, find-links folders, constraints and
certificates, with pip's order of precedence."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("install", Path(__file__).parents[1] / "tools" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

LISTING = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/old'
global.index-url='https://mirror.example/simple'
install.find-links='/opt/install'
:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.trusted-host='mirror.example'
not a setting
global.timeout=not-a-literal
"""


def test_pip_settings_take_pips_precedence():
    settings = install.pip_settings(LISTING)
    assert settings["find-links"] == "/opt/wheels"  # a PIP_* variable over [install] over [global]
    assert settings["index-url"] == "https://mirror.example/simple"
    assert "timeout" not in settings
    assert install.pip_settings("global.find-links='/a'\ninstall.find-links='/b'")["find-links"] == "/b"


def test_uv_gets_every_source_pip_has():
    args, env = install.uv_options(install.pip_settings(LISTING))
    pairs = list(zip(args[::2], args[1::2]))
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert [v for k, v in pairs if k == "--extra-index-url"] == ["file:///opt/pypi/simple",
                                                                 "file:///opt/pypi-more/simple"]
    assert [v for k, v in pairs if k == "--find-links"] == ["/opt/wheels"]
    assert ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    assert ("--allow-insecure-host", "mirror.example") in pairs
    assert ("--index-strategy", "unsafe-best-match") in pairs  # pip's choice: the best version anywhere
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"


def test_no_pip_configuration_leaves_uv_on_its_defaults():
    args, env = install.uv_options(install.pip_settings(""))
    assert args == ["--index-strategy", "unsafe-best-match"]


def test_an_offline_mirror_stays_offline():
    args, _ = install.uv_options(install.pip_settings(":env:.no-index='1'\nglobal.find-links='/mirror'"))
    assert "--no-index" in args and args[args.index("--find-links") + 1] == "/mirror"
    assert "--no-index" not in install.uv_options(install.pip_settings("global.no-index='false'"))[0]


def test_an_environment_made_without_pip_gets_the_base_interpreters_pip(tmp_path):
    """The Makefile makes .venv with `venv --without-pip` (ensurepip takes about 4 s); the install then
    runs the base interpreter's pip against it, which installs into it."""
    import json
    import subprocess
    import sys
    import venv

    venv.create(tmp_path / "env", with_pip=False)
    python = tmp_path / "env" / "bin" / "python"
    code = (f"import importlib.util, json; spec = importlib.util.spec_from_file_location('i', {str(spec.origin)!r}); "
            "i = importlib.util.module_from_spec(spec); spec.loader.exec_module(i); "
            "print(json.dumps([i.has_own_pip(), i.pip_command()]))")
    own, cmd = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    base = getattr(sys, "_base_executable", sys.executable)
    base_has_pip = subprocess.run([base, "-m", "pip", "--version"], capture_output=True).returncode == 0
    assert own is False
    if not base_has_pip:  # then the install gives the environment its own pip with ensurepip
        assert cmd is None
        return
    assert cmd[-2:] == ["--python", str(python)]
    # pip, run from outside, sees the new environment (empty), not the base interpreter's packages
    listed = subprocess.run(cmd + ["list", "--format=json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(listed) == []
