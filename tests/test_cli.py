import subprocess
import sys

from minifrrn.cli import COMMANDS, main


def test_cli_help_lists_every_subcommand(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_cli_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "minifrrn", "--version"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "minifrrn" in result.stdout
