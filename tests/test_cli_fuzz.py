"""Malformed arguments for every subcommand (discovered from the parser): exit 2, one line, no traceback.

The cases are built from the parser itself, so a new subcommand or option is covered without
editing this file: for every numeric option, values that are not numbers, not finite, or far out of
range; for every option with choices, a value outside them; for every subcommand, an unknown
option, a missing value and missing positional arguments. Run in-process through
``kinema.cli.main`` with one parser built once.
"""

from __future__ import annotations

import argparse

import pytest

from kinema import cli
from kinema.cli._args import Range

PARSER = cli.build_parser()


def _subparsers(parser, prefix=()):
    """(argv prefix, parser) for every leaf subcommand (edit ops included)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _subparsers(sub, prefix + (name,))


def _positionals(parser) -> list[str]:
    args = []
    for a in parser._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction) or a.nargs in ("?", "*"):
            continue
        args += ["in_missing.mp4"] * (a.nargs if isinstance(a.nargs, int) else (2 if a.nargs == "+" else 1))
    return args


def _required_options(parser, skip) -> list[str]:
    """Plausible values for the other required options, so the bad one is what gets reported."""
    out = []
    for a in parser._actions:
        if a.required and a.option_strings and a is not skip:
            out += [a.option_strings[-1], "2" if isinstance(a.type, Range) else "x"]
    return out


def _cases():
    cases = []
    for prefix, parser in _subparsers(PARSER):
        if not prefix:
            continue
        pos = _positionals(parser)
        name = " ".join(prefix)
        cases.append((f"{name} unknown option", [*prefix, *pos, "--no-such-option"]))
        if pos:
            cases.append((f"{name} no positionals", [*prefix]))
        for a in parser._actions:
            if not a.option_strings or a.nargs in (0, "?", "*"):  # flags, and options whose value is optional
                continue
            flag = a.option_strings[-1]
            base = [*prefix, *pos, *_required_options(parser, a)]
            cases.append((f"{name} {flag} without value", [*base, flag]))
            if isinstance(a.type, Range):
                # Never a valid value: every range has a lower bound; above the top only where there is one.
                assert a.type.lo is not None, f"{name} {flag}: a range without a lower bound"
                bad = ["abc", "nan", "-1e18"] if a.type.kind is float else ["abc", "1.5", "-1000000000000"]
                if a.type.hi is not None:
                    bad.append(str(a.type.hi + 1) if a.type.kind is int else f"{a.type.hi * 2 + 1:g}")
                cases += [(f"{name} {flag} {v}", [*base, f"{flag}={v}"]) for v in bad]
            if a.choices is not None:
                cases.append((f"{name} {flag} bad choice", [*base, f"{flag}=not-a-choice"]))
    return cases


CASES = _cases()


def test_every_numeric_option_has_a_range():
    bare = [f"{' '.join(p)} {a.option_strings[-1]}" for p, parser in _subparsers(PARSER)
            for a in parser._actions if a.type in (int, float)]
    assert not bare, bare


def test_the_fuzz_covers_every_subcommand():
    covered = {c[0].split(" ")[0] for c in CASES}
    assert covered == {p[0] for p, _ in _subparsers(PARSER) if p} and len(CASES) > 300


def test_malformed_arguments_exit_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", lambda: PARSER)
    failures = []
    for label, argv in CASES:
        code = cli.main(argv)
        captured = capsys.readouterr()
        lines = [ln for ln in captured.err.splitlines() if ln.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in captured.err or not lines[0].startswith("kinema: error:"):
            failures.append((label, code, captured.err[-300:]))
    assert not failures, f"{len(failures)} of {len(CASES)} cases: {failures[:5]}"


@pytest.mark.parametrize("argv", [["--help"], ["eval", "--help"], ["edit", "resize", "--help"]])
def test_help_still_exits_0(argv, monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", lambda: PARSER)
    assert cli.main(argv) == 0
    assert "usage:" in capsys.readouterr().out
