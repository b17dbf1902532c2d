import subprocess
import sys

import pytest

from symptomfuse import NOTICE
from symptomfuse.cli import main


@pytest.mark.parametrize("cmd", ["synth", "curate"])
def test_help_explains_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"symptomfuse {cmd}" in out


def test_top_level_help_carries_the_notice():
    run = subprocess.run([sys.executable, "-m", "symptomfuse.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and NOTICE in run.stdout and "curate" in run.stdout


def test_synth_rejects_bad_options(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--people", "1"]) == 2
    assert "--people" in capsys.readouterr().err
