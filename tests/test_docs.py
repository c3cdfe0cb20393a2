"""Every command in README.md, CONTRIBUTING.md and docs/*.md parses as written.

Shell code blocks are split into commands (``&&``, ``|``, ``;``, line continuations, comments).
``kinema ...``, ``python -m kinema ...`` and ``torchrun ... -m kinema [--] ...`` go through the
real CLI parser, so an option that does not exist, a wrong value type or a missing argument fails
here. ``python bench/NAME.py`` and ``python -m kinema.models.speed`` must name a script that
exists, and each option they pass must be one that script defines. Python blocks must compile.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest

from kinema.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def blocks(lang: set[str]):
    for page in PAGES:
        for m in FENCE.finditer(page.read_text(encoding="utf-8")):
            if m.group(1) in lang:
                line = page.read_text(encoding="utf-8")[:m.start()].count("\n") + 2
                yield page, line, m.group(2)


def commands():
    """(where, argv) for every command of every shell block."""
    for page, line, text in blocks({"bash", "sh", "shell", "console"}):
        text = text.replace("\\\n", " ")
        for i, raw in enumerate(text.splitlines()):
            words = shlex.split(raw, comments=True)
            argv: list[str] = []
            for w in words + [";"]:
                if w in ("&&", "||", "|", ";"):
                    if argv:
                        yield f"{page.relative_to(ROOT)}:{line + i}", argv
                    argv = []
                elif not argv and ENV.match(w):
                    continue            # VAR=value before a command
                else:
                    argv.append(w)


def kinema_argv(argv: list[str]) -> list[str] | None:
    """The arguments kinema's parser receives, or None when the command is not kinema."""
    if argv[0] == "kinema":
        return argv[1:]
    if argv[:3] in (["python", "-m", "kinema"], ["python3", "-m", "kinema"]):
        return argv[3:]
    if argv[0] == "torchrun":
        i = argv.index("-m")
        assert argv[i + 1] == "kinema", argv
        rest = argv[i + 2:]
        return rest[1:] if rest[:1] == ["--"] else rest
    return None


CASES = list(commands())


@functools.lru_cache(maxsize=None)
def _parser():
    return build_parser()   # parsing does not change it: one for every command


def test_the_pages_hold_commands():
    assert len(CASES) > 80 and sum(kinema_argv(a) is not None for _, a in CASES) > 70


@pytest.mark.parametrize("where,argv", CASES, ids=[w for w, _ in CASES])
def test_documented_command_parses(where, argv, capsys):
    args = kinema_argv(argv)
    if args is not None:
        parser = _parser()
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.code == 0, f"{where}: {' '.join(argv)}\n{err[-1] if err else ''}"
        return
    script = None
    if argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].startswith("bench/"):
        script, options = ROOT / argv[1], argv[2:]
    elif argv[:3] in (["python", "-m", "kinema.models.speed"], ["python3", "-m", "kinema.models.speed"]):
        script, options = ROOT / "kinema" / "models" / "speed.py", argv[3:]
    elif argv[:2] == ["bash", "bench/gpu_session.sh"]:
        script, options = ROOT / argv[1], []
    if script is None:
        return  # not a kinema command (pip, python -m pytest, tensorboard, ffplay, export, ...)
    assert script.is_file(), f"{where}: {script.relative_to(ROOT)} does not exist"
    source = script.read_text(encoding="utf-8")
    for opt in options:
        if opt.startswith("--") and not any(c.isspace() for c in opt):  # "--a 1" is a quoted value
            name = opt.split("=")[0]
            assert f'"{name}"' in source, f"{where}: {script.relative_to(ROOT)} has no option {name}"


PY = list(blocks({"python"}))


@pytest.mark.parametrize("page,line,text", PY, ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in PY])
def test_documented_python_compiles(page, line, text):
    compile(text, f"{page.relative_to(ROOT)}:{line}", "exec")


def test_readme_lists_every_command_and_the_ci_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert len(sub.choices) >= 10
    missing = [c for c in sub.choices if f"| `kinema {c}` |" not in readme]
    assert not missing, f"README.md's command table lacks {', '.join(missing)}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in readme, "README.md's test command is not the one .ci/run runs"
