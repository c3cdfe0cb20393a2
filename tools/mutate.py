"""A small mutation-testing pass: break one thing in a module, run the tests that should notice.

    python tools/mutate.py                          # the four modules below, their test selections
    python tools/mutate.py kinema/fsutil.py         # one module
    python tools/mutate.py kinema/fsutil.py --tests "tests/test_core.py -k atomic"
    python tools/mutate.py --list kinema/fsutil.py  # print the mutants, run nothing
    python tools/mutate.py --only-survivors mutants.json   # rerun only what survived a previous pass

For each module the script copies the package and its tests into a scratch folder, runs the test
selection once unchanged (it must pass) while recording which lines of the module run, then, one
mutant at a time, writes a mutated copy of the module there and runs the selection with
``pytest -x`` under a timeout, one thread, ``nice``. A failing run (or a timeout) kills the
mutant; a passing run means it survived. A mutant on a line the selection never executes is
reported as ``uncovered`` without running (it survives by construction).

Mutations (each applied alone): comparison swaps (< <=, > >=, == !=, in / not in, is / is not),
arithmetic swaps (+ -, * /, // /, % //, ** *, | &), ``and`` / ``or``, dropping ``not`` and unary
minus, integer constants n -> n + 1, floats x -> 2x + 1, True / False, negated ``if`` / ``while``
/ conditional-expression tests, ``return X`` -> ``return None``, and deleting a call statement,
an augmented assignment or a ``raise``. Strings are left alone (messages), as are docstrings.

The report (``--out``, default ``mutants.json``) lists every mutant with its line, what changed
and its status; the summary prints killed / survived / uncovered / timeout per module.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> pytest arguments: tests that run in-process (so coverage is seen) and quickly.
SELECTIONS = {
    "kinema/metrics/frechet.py": "tests/test_metrics.py tests/test_metrics_e2e.py tests/test_metrics_builtin.py -k "
                                 "'frechet or feature_stats or test_metrics_e2e or fvd or fid_frame or cache or export'",
    "kinema/data/loader.py": "tests/test_contracts.py tests/test_loader.py -k "
                             "'not fsync and not atomic and not verify and not truncated'",
    "kinema/train/checkpoint.py": "tests/test_resume.py::test_keep_last_k_and_latest "
                                  "tests/test_resume.py::test_latest_skips_damaged_newer_states "
                                  "tests/test_resume.py::test_resume_is_bit_exact[mocogan] "
                                  "tests/test_resume.py::test_resume_latest_continues_from_the_last_good_state",
    "kinema/fsutil.py": "tests/test_contracts.py tests/test_core.py -k 'atomic or fsync'",
}

SWAP = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
    ast.And: ast.Or, ast.Or: ast.And,
}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
          ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
          ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.BitOr: "|", ast.BitAnd: "&",
          ast.And: "and", ast.Or: "or"}


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constant nodes (module, classes, functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first))
    return out


def _in_fstring_or_annotation(tree: ast.Module) -> set[int]:
    """ids of nodes inside f-strings (messages) and annotations (never evaluated here)."""
    roots = [j for j in ast.walk(tree) if isinstance(j, ast.JoinedStr)]
    roots += [j.annotation for j in ast.walk(tree) if isinstance(j, (ast.arg, ast.AnnAssign)) and j.annotation]
    roots += [j.returns for j in ast.walk(tree) if isinstance(j, (ast.FunctionDef, ast.AsyncFunctionDef)) and j.returns]
    return {id(n) for r in roots for n in ast.walk(r)}


def enumerate_mutants(source: str) -> list[dict]:
    """Every mutant of ``source``: dicts with index (of the node in ast.walk order), kind, line, text."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _in_fstring_or_annotation(tree)
    lines = source.splitlines()
    found = []

    def add(i, node, kind, desc, arg=None):
        found.append({"node": i, "kind": kind, "arg": arg, "line": node.lineno, "end_line": node.end_lineno,
                      "col": node.col_offset, "desc": desc, "code": lines[node.lineno - 1].strip()})

    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in SWAP:
                    add(i, node, "compare", f"{SYMBOL[type(op)]} -> {SYMBOL[SWAP[type(op)]]}", k)
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP:
            add(i, node, "binop", f"{SYMBOL[type(node.op)]} -> {SYMBOL[SWAP[type(node.op)]]}")
        elif isinstance(node, ast.BoolOp):
            add(i, node, "boolop", f"{SYMBOL[type(node.op)]} -> {SYMBOL[SWAP[type(node.op)]]}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            add(i, node, "unary", f"drop {'not' if isinstance(node.op, ast.Not) else 'unary -'}")
        elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
            v = node.value
            new = (not v) if isinstance(v, bool) else (v + 1 if isinstance(v, int) else 2 * v + 1)
            add(i, node, "constant", f"{v!r} -> {new!r}", new)
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            add(i, node, "negate", f"negate the {type(node).__name__.lower()} test")
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            add(i, node, "return", "return None")
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)) or isinstance(node, (ast.AugAssign, ast.Raise)):
            add(i, node, "delete", f"delete the {type(node).__name__.lower()} statement")
    return found


class _Apply(ast.NodeTransformer):
    def __init__(self, mutant: dict, tree: ast.Module):
        self.target = list(ast.walk(tree))[mutant["node"]]
        self.m = mutant

    def generic_visit(self, node):
        node = super().generic_visit(node)
        if node is not self.target:
            return node
        kind, arg = self.m["kind"], self.m["arg"]
        if kind == "compare":
            node.ops[arg] = SWAP[type(node.ops[arg])]()
        elif kind in ("binop", "boolop"):
            node.op = SWAP[type(node.op)]()
        elif kind == "unary":
            return node.operand
        elif kind == "constant":
            node.value = arg
        elif kind == "negate":
            node.test = ast.UnaryOp(ast.Not(), node.test)
        elif kind == "return":
            node.value = ast.Constant(None)
        elif kind == "delete":
            return ast.Pass()
        return node


def mutate(source: str, mutant: dict) -> str:
    tree = ast.parse(source)
    tree = _Apply(mutant, tree).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# Running.

TRACE = r"""
import json, os, sys, threading
target, out = os.path.realpath(sys.argv[1]), sys.argv[2]
lines = set()
def local(frame, event, arg):
    if event == "line":
        lines.add(frame.f_lineno)
    return local
def outer(frame, event, arg):
    if frame.f_code.co_filename == target:
        lines.add(frame.f_lineno)
        return local
    return None
sys.settrace(outer); threading.settrace(outer)
import pytest
rc = pytest.main(sys.argv[3:])
sys.settrace(None)
json.dump(sorted(lines), open(out, "w"))
sys.exit(int(rc))
"""


def _env(scratch: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run(cmd: list[str], scratch: Path, timeout: float) -> tuple[str, float, str]:
    """-> (status, seconds, output tail); the process group is killed on timeout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(["nice", "-n", "10", *cmd], cwd=scratch, env=_env(scratch), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "timeout", time.monotonic() - t0, out[-2000:]
    return _status(proc.returncode), time.monotonic() - t0, out[-2000:]


def _status(rc: int) -> str:
    return {0: "survived", 1: "killed"}.get(rc, f"error({rc})")


# Heavy imports done once in the parent; each mutant's pytest runs in a forked child that imports
# kinema (and the tests) afresh from the scratch copy. Saves the interpreter and torch start-up.
PRELOAD = ("numpy", "torch", "scipy.linalg", "av", "PIL.Image", "safetensors.torch", "pytest")


_CHILD = [0]  # the running child, killed if the pass itself is stopped


def _kill_child() -> None:
    if _CHILD[0]:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.killpg(_CHILD[0], signal.SIGKILL)
            os.waitpid(_CHILD[0], 0)
        _CHILD[0] = 0


def _run_forked(pytest_args: list[str], scratch: Path, timeout: float) -> tuple[str, float, str]:
    t0 = time.monotonic()
    log = scratch / "_child.log"
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setsid()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1), os.dup2(fd, 2)
            os.chdir(scratch)
            os.environ["PYTHONPATH"] = str(scratch)  # subprocesses (CLI tests) import the mutant too
            sys.path.insert(0, str(scratch))
            sys.dont_write_bytecode = True
            import pytest
            rc = int(pytest.main(pytest_args))
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's loop
            rc = 3
        os._exit(rc)
    _CHILD[0] = pid
    while True:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(code)
            status = _status(rc) if rc >= 0 else f"error(signal {-rc})"
            _CHILD[0] = 0
            break
        if time.monotonic() - t0 > timeout:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "timeout"
            _CHILD[0] = 0
            break
        time.sleep(0.05)
    return status, time.monotonic() - t0, log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _scratch_copy() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="kinema-mutants-"))
    for name in ("kinema", "tests"):
        shutil.copytree(ROOT / name, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    return scratch


def in_functions(source: str, mutants: list[dict], names: list[str]) -> list[dict]:
    """Only the mutants inside the named top-level functions (or methods of top-level classes)."""
    spans = []
    for node in ast.parse(source).body:
        for n in [node, *(node.body if isinstance(node, ast.ClassDef) else [])]:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in names:
                spans.append((n.lineno, n.end_lineno))
    missing = set(names) - {n.name for node in ast.walk(ast.parse(source))
                            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in [node]}
    if missing:
        raise SystemExit(f"no function named {', '.join(sorted(missing))}")
    return [m for m in mutants if any(a <= m["line"] <= b for a, b in spans)]


def run_module(module: str, tests: str, timeout_factor: float, keep: dict | None, log, fork: bool = True,
               run_uncovered: bool = False, functions: list[str] | None = None) -> dict:
    source = (ROOT / module).read_text()
    sha = hashlib.sha256(source.encode()).hexdigest()
    mutants = enumerate_mutants(source)
    if functions:
        mutants = in_functions(source, mutants, functions)
    if keep is not None and keep.get("sha256") != sha:
        raise SystemExit(f"{module} changed since the previous report; run the whole pass again")
    scratch = _scratch_copy()
    try:
        args = shlex.split(tests)
        pytest_args = ["-x", "-q", "-p", "no:cacheprovider", *args]
        (scratch / "_trace.py").write_text(TRACE)
        covered_file = scratch / "_covered.json"
        status, secs, out = _run([sys.executable, "_trace.py", str(scratch / module), str(covered_file), *pytest_args],
                                 scratch, 3600)
        if status != "survived":
            raise SystemExit(f"{module}: the test selection fails on the unchanged code:\n{out}")
        covered = set(json.loads(covered_file.read_text()))
        # The unparsed (comment-free) module must pass too, or every mutant would look killed.
        (scratch / module).write_text(ast.unparse(ast.parse(source)))
        status, clean_secs, out = _run([sys.executable, "-m", "pytest", *pytest_args], scratch, 3600)
        if status != "survived":
            raise SystemExit(f"{module}: the test selection fails on the re-printed module:\n{out}")
        timeout = timeout_factor * clean_secs + 30
        log(f"{module}: {len(mutants)} mutants; selection passes in {clean_secs:.0f} s; timeout {timeout:.0f} s")
        previous = {(m["line"], m["col"], m["desc"]): m for m in (keep or {}).get("mutants", [])}
        for n, m in enumerate(mutants, 1):
            old = previous.get((m["line"], m["col"], m["desc"]))
            if old is not None and old["status"] in ("killed", "timeout"):
                m.update(status=old["status"], seconds=0.0, carried=True)
            elif not run_uncovered and not covered & set(range(m["line"], m["end_line"] + 1)):
                m.update(status="uncovered", seconds=0.0)
            else:
                (scratch / module).write_text(mutate(source, m))
                if fork:
                    status, secs, out = _run_forked(pytest_args, scratch, timeout)
                else:
                    status, secs, out = _run([sys.executable, "-m", "pytest", *pytest_args], scratch, timeout)
                m.update(status=status, seconds=round(secs, 1))
                if status.startswith("error"):
                    m["output"] = out[-600:]
            log(f"  [{n}/{len(mutants)}] line {m['line']}: {m['desc']:<32} {m['status']}")
        (scratch / module).write_text(source)
    finally:
        _kill_child()
        shutil.rmtree(scratch, ignore_errors=True)
    counts = {}
    for m in mutants:
        key = "killed" if m["status"] in ("killed", "timeout") or m["status"].startswith("error") else m["status"]
        counts[key] = counts.get(key, 0) + 1
    return {"module": module, "sha256": sha, "tests": tests, "functions": functions, "counts": counts,
            "mutants": mutants}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("modules", nargs="*", help="module files (default: the four in SELECTIONS)")
    ap.add_argument("--tests", help="pytest arguments for the selection (default: SELECTIONS[module])")
    ap.add_argument("--out", default="mutants.json", help="report file (JSON)")
    ap.add_argument("--only-survivors", metavar="REPORT", help="carry kills over from a previous report of the "
                    "same module source and rerun only its survivors (tests only ever get added)")
    ap.add_argument("--timeout-factor", type=float, default=3.0, help="timeout = factor x clean run + 30 s")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--functions", help="comma-separated: mutate only inside these functions")
    ap.add_argument("--no-fork", action="store_true", help="a fresh interpreter per mutant (slower)")
    ap.add_argument("--run-uncovered", action="store_true", help="run mutants on lines the coverage pass did not "
                    "see too (code that runs only in worker processes or subprocesses)")
    a = ap.parse_args(argv)
    modules = a.modules or list(SELECTIONS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean the scratch folder up on kill
    if a.list:
        for module in modules:
            source = (ROOT / module).read_text()
            listed = enumerate_mutants(source)
            if a.functions:
                listed = in_functions(source, listed, a.functions.split(","))
            for m in listed:
                print(f"{module}:{m['line']}: {m['desc']:<32} {m['code']}")
        return 0
    if not a.no_fork:
        os.environ.update(_env(Path(".")), PYTHONPATH="")  # the child's sys.path gets the scratch copy
        os.nice(10)
        for name in PRELOAD:
            __import__(name)
        import torch
        torch.set_num_threads(1)
    previous = {}
    if a.only_survivors:
        previous = {r["module"]: r for r in json.loads(Path(a.only_survivors).read_text())["reports"]}
    reports = []
    for module in modules:
        tests = a.tests or SELECTIONS.get(module)
        if not tests:
            raise SystemExit(f"{module}: no test selection known; pass --tests")
        reports.append(run_module(module, tests, a.timeout_factor, previous.get(module) if a.only_survivors else None,
                                  lambda s: print(s, flush=True), fork=not a.no_fork,
                                  run_uncovered=a.run_uncovered,
                                  functions=a.functions.split(",") if a.functions else None))
        Path(a.out).write_text(json.dumps({"reports": reports}, indent=1))
    print("\nmodule                          mutants  killed  survived  uncovered")
    for r in reports:
        c = r["counts"]
        print(f"{r['module']:<32}{len(r['mutants']):>7}{c.get('killed', 0):>8}{c.get('survived', 0):>10}"
              f"{c.get('uncovered', 0):>11}")
    for r in reports:
        for m in r["mutants"]:
            if m["status"] in ("survived", "uncovered"):
                print(f"{m['status']:<10} {r['module']}:{m['line']}: {m['desc']}  |  {m['code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
