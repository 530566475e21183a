"""Every command of the README and docs/ that is not `python -m lab ...` (test_docs_commands.py composes those):
make targets exist, scripts and `python -m lab.<tool>` take the options shown, pytest markers are registered,
cluster.sh has the subcommands, and the one-line Python snippets run."""

import re
import shlex
import subprocess
import sys

import pytest
from test_docs_commands import doc_files, fenced_lines

from lab.paths import ROOT


def tool_commands() -> dict[str, str]:
    """command -> the first file that shows it: the fenced lines that start with a tool (not `python -m lab `)."""
    out: dict[str, str] = {}
    for path in doc_files():
        for command in fenced_lines(path):
            if re.match(r"(make |python |scripts/|\.venv/bin/pytest)", command) and \
                    not command.startswith("python -m lab "):
                out.setdefault(command, str(path.relative_to(ROOT)))
    return out


COMMANDS = tool_commands()


def help_of(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def options_shown(command: str) -> list[str]:
    """The --options of a usage line, `[--root DIR]` and `--source present|torchvision` alike."""
    return re.findall(r"(--[a-z][\w-]*)", command)


def test_the_docs_show_tool_commands():
    assert {"make test", "make run", "python scripts/bench_compress.py"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: c[:40])
def test_tool_command(command, tmp_path, request):
    if command.startswith("make "):
        makefile = (ROOT / "Makefile").read_text()
        targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
        words = shlex.split(command)[1:]
        assert {w for w in words if "=" not in w} <= targets, f"{COMMANDS[command]}: {command}"
        for variable in (w.split("=")[0] for w in words if "=" in w):  # make test PYTEST_ARGS=...: a variable it reads
            assert f"$({variable})" in makefile, f"{COMMANDS[command]}: {command}"
    elif command.startswith(".venv/bin/pytest"):
        args = shlex.split(command)[1:]
        markers = [args[i + 1] for i, a in enumerate(args) if a == "-m"]
        registered = {m.split(":")[0] for m in request.config.getini("markers")}
        for expression in markers:
            assert set(re.findall(r"\w+", expression)) - {"not", "and", "or"} <= registered, expression
        for path in (a for a in args if not a.startswith("-") and a not in markers):
            assert (ROOT / path).exists(), path
    elif command.startswith("scripts/cluster.sh"):
        subcommands = command.split()[1].split("|")
        script = (ROOT / "scripts/cluster.sh").read_text()
        assert all(re.search(rf"^\s+{s}\) ", script, flags=re.M) for s in subcommands), subcommands
    elif command.startswith("python -c "):
        proc = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if "diabetes.csv" in command:  # docs/supervised.md: scikit-learn's diabetes table as a user's CSV
            lines = (tmp_path / "diabetes.csv").read_text().splitlines()
            assert len(lines) == 443 and lines[0].split(",")[-1] == "target"
    elif command.startswith(("python scripts/", "python -m lab.")):
        words = command.split()
        if words[1] == "-m":  # python -m lab.<tool> [subcommand]: the subcommand's own --help
            argv = ["-m", words[2]] + ([words[3]] if len(words) > 3 and re.fullmatch(r"[a-z_]+", words[3]) else [])
        else:
            assert (ROOT / words[1]).is_file(), words[1]
            argv = [words[1]]
        shown = help_of(argv)
        assert [o for o in options_shown(command) if o not in shown] == [], f"{COMMANDS[command]}: {command}"
    else:
        pytest.fail(f"{COMMANDS[command]}: no check for {command!r}; add one here")
