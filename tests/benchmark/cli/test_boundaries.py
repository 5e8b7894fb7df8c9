"""Generated negative tests (issue 23, item 7; scikit-learn's ``generate_invalid_param_val`` is the model):
every value-taking argument of every command's argparse parser, every preset field and every ``SSLBENCH_*``
environment variable the source reads, each tried with the wrong type, out of range, empty, nan/inf and
huge. Each case: exit 2, one stderr line naming what was wrong, no traceback, and the listings of --out,
the cache and results/ unchanged. In-process (a subprocess costs ~4 s of imports).

What is enumerated comes from the parsers, the spec dataclasses and a scan of the source, not from the
constraint table: an argument or field without a declared constraint fails ``test_every_*_declares``."""
from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import pytest

from benchmark.cli.common import Typed
from benchmark.cli.main import main, make_parser
from benchmark.config.environment import VARIABLES
from benchmark.config.presets import SECTIONS
from benchmark.config.specs import GridSpec
from benchmark.interfaces import Constraint
from registry.pretexts import PRETEXTS, pretext_class
from tests import ROOT

HUGE_INT = "1" + "0" * 30


@pytest.fixture(autouse=True)
def no_compute(monkeypatch):
    """A case that gets as far as the executor has failed (its bad value was not refused before compute)."""
    from benchmark.executors.serial import SerialExecutor

    def refuse(*args, **kwargs):
        raise AssertionError("the run reached the executor: a bad value was not refused before compute")

    monkeypatch.setattr(SerialExecutor, "run", refuse)


def invalid_texts(c: Constraint) -> list[str]:
    """Command-line texts ``c`` refuses: wrong type, out of range, empty, nan/inf, huge."""
    out: list[str] = []
    if c.kind in ("int", "real"):
        out += ["x", "", "nan", "inf", "-inf", "1e309" if c.kind == "real" else HUGE_INT]
        if c.kind == "int":
            out.append("1.5")
        if c.lo is not None:
            out.append(_num(c.lo - 1) if not c.lo_open else _num(c.lo))
        if c.hi is not None:
            out.append(_num(c.hi + 1) if not c.hi_open else _num(c.hi))
        if c.cap is not None:
            out.append(_num(c.cap * 2))
    elif c.kind == "choice":
        out += ["bogus", "", "x" * 300]
    elif c.kind == "bool":
        out += ["maybe", ""]
    elif c.kind == "text":
        out += (["x" * 5000] if c.empty else ["", "x" * 5000])
    elif c.kind == "path":
        out += ["", "x" * 300, "/" + "a/" * 2100]
    elif c.kind == "names":
        out += ["", ",", "bogus-name"]
    elif c.kind == "ints":
        out += ["", "a,b", "nan", HUGE_INT]
        if c.lo is not None:
            out.append(str(int(c.lo) - 1))
        if c.hi is not None or c.cap is not None:
            out.append(str(int(c.hi if c.hi is not None else c.cap) + 1))
    else:
        raise AssertionError(f"no invalid values for kind {c.kind!r}")
    return list(dict.fromkeys(out))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def invalid_toml(c: Constraint) -> list[str]:
    """TOML values ``c`` refuses (as they would be written in a preset)."""
    out = ['"x"', '""', "nan", "inf", "9223372036854775807", "[1, 2]", "{ a = 1 }"]
    if c.kind in ("int", "real"):
        out = ['"x"', "nan", "inf", "-inf", "true", "[1]"]
        out.append("9223372036854775807" if c.kind == "int" else "1e308")
        if c.lo is not None:
            out.append(_num(c.lo - 1) if not c.lo_open else _num(c.lo))
        if c.hi is not None and c.kind == "real":
            out.append(_num(c.hi + 1) if not c.hi_open else _num(c.hi))
        if c.cap is not None:
            out.append(_num(c.cap * 2))
        if c.kind == "int":
            out.append("1.5")
    elif c.kind == "bool":
        out = ['"x"', "1", "nan", "[true]"]
    elif c.kind in ("text", "path"):
        out = ["1", "nan", "[1, 2]", "{ a = 1 }"] + ([] if c.empty else ['""'])
    elif c.kind == "choice":
        out = ['"bogus"', '""', "1", "nan", "[1]"]
    elif c.kind == "names":
        out = ['"raw_pixels"', '""', "[]", "[1]", '[""]', "nan", '["bogus-name"]']
    elif c.kind == "ints":
        out = ["[]", '"0"', "[-1]", "[9223372036854775807]", "[nan]", '["a"]', "0"]
    elif c.kind == "reals":
        out = ["[]", '"0"', "[-1]", "[1e308]", "[nan]", "[inf]", '["a"]', "1"] + (["[0]"] if c.lo_open else [])
    return out


# ---------------------------------------------------------------------------------------------- argparse


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _value_actions(p: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreConstAction,
                          argparse._SubParsersAction)):
            continue
        yield a


def _flag(a: argparse.Action) -> str:
    return a.option_strings[-1] if a.option_strings else a.dest


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    """What the base command lines point at: a finished run folder, its export, a folder of images and a
    throughput history (made before the tests' ``no_compute`` applies: higher-scoped fixtures come first)."""
    base = tmp_path_factory.mktemp("neg")
    run, export, images, hist = base / "run", base / "export", base / "images", base / "h.jsonl"
    assert main(["run", "--preset", "quick", "--dataset", "digits", "--limit", "60", "--backbones", "raw_pixels",
                 "--pretexts", "none", "--clusterers", "kmeans", "--k", "3", "--out", str(run), "--cache-dir",
                 str(base / "cache"), "--no-progress"]) == 0
    assert main(["export", str(run), "--to", str(export)]) == 0
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(images / "a.png")
    hist.write_text("")
    return {"base": base, "run": run, "export": export, "images": images, "hist": hist}


def base_argv(command: str, f: dict[str, Path], out: Path, cache: Path) -> list[str]:
    """A cheap, valid command line of ``command`` that a bad value is appended to (a later flag wins)."""
    run = ["--preset", "quick", "--dataset", "digits", "--limit", "60", "--backbones", "raw_pixels", "--pretexts",
           "none", "--clusterers", "kmeans", "--k", "3", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    return {
        "run": ["run", *run], "plan": ["plan", *run],
        "cache": ["cache", "--cache-dir", str(cache), "--prune", "--dry-run", "--runs", str(out)],
        "list": ["list"],
        "bench": ["bench", "--backbones", "raw_pixels", "--image-size", "8", "--batch-size", "2", "--warmup", "0",
                  "--iters", "1", "--repeats", "1", "--out", str(out / "h.jsonl")],
        "compare": ["compare", str(f["hist"]), str(f["hist"])],
        "scale": ["scale", "--only", "silhouette", "--silhouette-n", "50", "--dims", "4", "--out", str(out / "s.json")],
        "reproduce": ["reproduce", "fmnist-kmeans-raw", "--smoke", "--out", str(out), "--cache-dir", str(cache)],
        "report": ["report", str(f["run"])], "recommend": ["recommend", str(f["run"])],
        "export": ["export", str(f["run"]), "--to", str(out / "x")],
        "predict": ["predict", str(f["export"]), str(f["images"]), "--out", str(out / "p.csv")],
        "diff": ["diff", str(f["run"]), str(f["run"]), "--out", str(out / "d.csv")],
    }[command]


def _positional_index(parser: argparse.ArgumentParser, action: argparse.Action) -> int:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
            ].index(action)


def cli_cases() -> list[Any]:
    cases = []
    for command, sub in sorted(_commands(make_parser()).items()):
        for a in _value_actions(sub):
            c = a.type.constraint if isinstance(a.type, Typed) else None
            if c is None:
                continue  # test_every_argument_declares_a_constraint fails it
            for text in invalid_texts(c):
                cases.append(pytest.param(command, _flag(a), text, id=f"{command} {_flag(a)}={text[:12]!r}"))
    return cases


def test_every_argument_declares_a_constraint():
    missing = [f"{command} {_flag(a)}" for command, sub in _commands(make_parser()).items()
               for a in _value_actions(sub) if not isinstance(a.type, Typed)]
    assert not missing, f"arguments without a declared constraint: {missing}"


def _listing(*roots: Path) -> list[tuple[str, int]]:
    out = []
    for r in roots:
        if r.exists():
            out += [(str(p), p.stat().st_size if p.is_file() else -1) for p in sorted(r.rglob("*"))]
        out.append((str(r), int(r.exists())))
    return out


def _one_refusal(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert any(n in lines[0] for n in needles), (needles, lines[0])
    return lines[0]


@pytest.mark.parametrize("command,flag,text", cli_cases())
def test_a_bad_argument_is_refused_in_one_line_before_anything_is_written(command, flag, text, fixtures, tmp_path,
                                                                           capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = base_argv(command, fixtures, out, cache)
    sub = _commands(make_parser())[command]
    action = next(a for a in _value_actions(sub) if _flag(a) == flag)
    if action.option_strings:
        argv = [*argv, flag, text] if not text.startswith("-") else [*argv, f"{flag}={text}"]
    else:  # a positional: replace the base line's value of it
        positions = [i for i, x in enumerate(argv[1:], 1) if not x.startswith("--")
                     and not argv[i - 1].startswith("--")]
        i = _positional_index(sub, action)
        if i < len(positions):
            argv[positions[i]] = text
        else:  # an optional positional the base line leaves out
            argv.append(text)
    watched = (out, cache, ROOT / "results", fixtures["run"], fixtures["export"])
    before = _listing(*watched)
    rc = main(argv)
    label = action.type.label if isinstance(action.type, Typed) else flag
    _one_refusal(capsys, rc, flag, flag.lstrip("-"), text[:40] or "''", f"bad {label}",
                 f"bad {label.removesuffix('s')}")
    assert _listing(*watched) == before


# ---------------------------------------------------------------------------------------------- presets


def _label(section: str | None, name: str) -> str:
    classes = {None: GridSpec, **SECTIONS}
    if section is not None and section.startswith("pretext_options."):
        cls: Any = pretext_class(section.split(".", 1)[1]).Options
    else:
        cls = classes[section]
    f = next(f for f in fields(cls) if f.name == name)
    return f.metadata.get("label") or name.replace("_", " ")


def preset_fields() -> Iterator[tuple[str | None, str, Constraint]]:
    """(section, field, constraint) of every field a preset may set: the grid's top level, its sections and
    every pretext's options."""
    for f in fields(GridSpec):
        if f.name in SECTIONS or f.name == "pretext_options":
            continue
        yield None, f.name, f.metadata.get("constraint")
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            yield section, f.name, f.metadata.get("constraint")
    for name in PRETEXTS.names():
        for f in fields(pretext_class(name).Options):
            yield f"pretext_options.{name}", f.name, f.metadata.get("constraint")


def test_every_preset_field_declares_a_constraint():
    missing = [f"{s or 'top'}.{n}" for s, n, c in preset_fields() if c is None]
    assert not missing, f"preset fields without a declared constraint: {missing}"


QUICK: dict[str | None, dict[str, str]] = {
    None: {"dataset": '"digits"', "backbones": '["raw_pixels"]', "pretexts": '["none"]', "clusterers": '["kmeans"]',
           "image_size": "8", "limit": "60"},
    "cluster": {"k": "3"},
}


def preset_text(section: str | None = None, name: str = "", value: str = "") -> str:
    """The base grid file with ``section.name`` set to ``value`` (TOML text)."""
    tables = {k: dict(v) for k, v in QUICK.items()}
    if name:
        tables.setdefault(section, {})[name] = value
    lines = [f"{k} = {v}" for k, v in tables.pop(None).items()]
    for table, items in tables.items():
        lines += [f"[{table}]", *(f"{k} = {v}" for k, v in items.items())]
    return "\n".join(lines) + "\n"


def preset_cases() -> list[Any]:
    return [pytest.param(s, n, v, id=f"{s or 'top'}.{n}={v[:12]}") for s, n, c in preset_fields() if c is not None
            for v in invalid_toml(c)]


@pytest.mark.parametrize("section,name,value", preset_cases())
def test_a_bad_preset_value_is_refused_in_one_line(section, name, value, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(preset_text(section, name, value))
    out, cache = tmp_path / "out", tmp_path / "cache"
    before = _listing(out, cache, ROOT / "results")
    rc = main(["run", "--preset", str(grid), "--out", str(out), "--cache-dir", str(cache), "--no-progress"])
    label = _label(section, name)
    _one_refusal(capsys, rc, f"bad {label}", f"bad {label.removesuffix('s')}", f"unknown {name.removesuffix('s')}",
                 "bad setting", "bad preset")
    assert _listing(out, cache, ROOT / "results") == before


def test_the_quick_base_preset_itself_runs(tmp_path, capsys):
    """The base of the preset cases is valid: what refuses a case is the bad value."""
    grid = tmp_path / "grid.toml"
    grid.write_text(preset_text())
    assert main(["plan", "--preset", str(grid), "--cache-dir", str(tmp_path / "c")]) == 0


def test_a_preset_file_that_is_not_toml_is_one_line(tmp_path, capsys):
    for body in (b"dataset = [\n", b"\xff\xfe\x00binary", b"train = 3\n" + preset_text().encode()):
        grid = tmp_path / "g.toml"
        grid.write_bytes(body)
        rc = main(["plan", "--preset", str(grid), "--cache-dir", str(tmp_path / "c")])
        _one_refusal(capsys, rc, "bad preset file", "bad setting")


# ---------------------------------------------------------------------------------------------- environment


def environment_variables_read() -> list[str]:
    """Every SSLBENCH_* name the source mentions (the code, not the table, decides what is enumerated)."""
    names: set[str] = set()
    for folder in ("benchmark", "registry"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"SSLBENCH_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    for path in (ROOT / "run_all.py", ROOT / "tests" / "procs.py"):  # procs.py: the tests' process marker
        names |= set(re.findall(r"SSLBENCH_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return sorted(names - {"SSLBENCH_"})


def test_every_environment_variable_is_declared():
    missing = sorted(set(environment_variables_read()) - set(VARIABLES))
    assert not missing, f"SSLBENCH_* variables read but not declared in benchmark/config/environment.py: {missing}"


ENV_BAD = ["", "x" * 5000, "nan", "inf", "-1", HUGE_INT, "bogus"]


def env_cases() -> list[Any]:
    cases = []
    for name in environment_variables_read():
        var = VARIABLES.get(name)
        for text in ENV_BAD:
            if var is not None and var.ok(text):
                continue  # e.g. a path "bogus": a name that exists nowhere yet is a valid path
            cases.append(pytest.param(name, text, id=f"{name}={text[:10]!r}"))
    return cases


@pytest.mark.parametrize("name,text", env_cases())
def test_a_bad_environment_variable_is_refused_in_one_line(name, text, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(name, text)
    out, cache = tmp_path / "out", tmp_path / "cache"
    before = _listing(out, cache, ROOT / "results")
    rc = main(["run", "--preset", "quick", "--dataset", "digits", "--limit", "60", "--backbones", "raw_pixels",
               "--pretexts", "none", "--clusterers", "kmeans", "--k", "3", "--out", str(out), "--cache-dir",
               str(cache), "--no-progress"])
    _one_refusal(capsys, rc, name)
    assert _listing(out, cache, ROOT / "results") == before


def test_an_unknown_sslbench_variable_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("SSLBENCH_CHECKPOINT_EVERY", "5")  # a typo of SSLBENCH_CHECKPOINT_EVERY_S
    _one_refusal(capsys, main(["list"]), "SSLBENCH_CHECKPOINT_EVERY")


def test_the_generated_cases_cover_every_run_flag_and_preset_key():
    flags = {_flag(a) for a in _value_actions(_commands(make_parser())["run"])}
    covered = {case.values[1] for case in cli_cases() if case.values[0] == "run"}
    assert flags == covered
    keys = {(s, n) for s, n, _ in preset_fields()}
    assert keys == {(case.values[0], case.values[1]) for case in preset_cases()}
