"""Help that answers: a description, an example and the exit codes of every command, the same
codes in README's table; --version with the shipped data's dates; --config before or after the
command; completion scripts for bash and zsh (docs/design.md#command-line)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from threatshare.cli import COMMANDS, build_parser
from threatshare.commands.version import data_version

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "threatshare" / "indicators" / "data"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threatshare.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def subparsers() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)  # type: ignore[attr-defined]


def test_every_command_has_a_description_an_example_and_its_exit_codes() -> None:
    """Each command's --help describes it, shows at least one example of itself and lists
    each of its exit codes."""
    parsers = subparsers()
    assert set(parsers) == {command.name for command in COMMANDS}
    for command in COMMANDS:
        text = parsers[command.name].format_help()  # type: ignore[attr-defined]
        assert len(command.description) > 40, command.name
        examples = text.split("examples:")[1].split("exit codes:")[0]
        assert f"threatshare {command.name}" in examples or (
            "threatshare --config" in examples and f" {command.name}" in examples
        ), command.name
        codes = [int(n) for n in re.findall(r"^  (\d) ", text.split("exit codes:")[1], re.M)]
        assert codes == [code for code, _ in command.exit_codes], command.name
        assert 0 in codes and 2 in codes, command.name


def test_readme_documents_every_exit_code_of_every_command() -> None:
    """README's table has one row per command naming exactly the codes its help lists."""
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        rows = [line for line in readme.splitlines() if line.startswith(f"| `{command.name}` |")]
        assert len(rows) == 1, command.name
        documented = sorted(int(n) for n in re.findall(r"\*\*(\d)\*\*", rows[0]))
        assert documented == sorted(code for code, _ in command.exit_codes), command.name


def test_version_names_each_shipped_data_file_with_its_date() -> None:
    """--version prints the version, then each file of the shipped data with its version or
    date line, or `undated` when it has none."""
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"threatshare \S+", lines[0])
    files = sorted(p.name for p in DATA.iterdir() if p.is_file() and not p.name.startswith("."))
    assert files
    for name in files:
        expected = data_version(DATA.joinpath(name).read_text(errors="replace"))
        assert any(line.split() == [name, *expected.split()] for line in lines), (name, lines)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("// VERSION: 2026-11-02_07-45-01_UTC\n// COMMIT: abc\n", "2026-11-02_07-45-01_UTC"),
        ("# Wrappers\n# version: 2026-12-01\nexample.com\n", "2026-12-01"),
        ("# Date: 2026-10-30\n", "2026-10-30"),
        ("# Protected hosts\nexample.com\n", "undated"),
    ],
)
def test_data_versions_are_read_from_the_file_head(head: str, expected: str) -> None:
    """A version or date line near the top gives the data's version; none gives undated."""
    assert data_version(head) == expected


def test_config_is_accepted_after_the_command(tmp_path: Path) -> None:
    """`status --config PATH` reads PATH as `--config PATH status` does; a missing file is
    named either way."""
    missing = tmp_path / "nowhere.toml"
    before, after = cli("--config", str(missing), "check"), cli("check", "--config", str(missing))
    assert before.returncode == after.returncode == 2
    assert before.stderr == after.stderr
    assert f"{missing}: configuration file not found" in after.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_every_command(shell: str) -> None:
    """`completion bash|zsh` prints a script naming every command and option, which the
    shell parses without error where it is installed."""
    result = cli("completion", shell)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command.name in result.stdout, command.name
    for option in ("--config", "--dry-run", "--json", "--listen", "--burst"):
        assert option in result.stdout, option
    if shutil.which(shell):
        checked = subprocess.run(
            [shell, "-n"], input=result.stdout, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stderr
