"""Every command's parser against the one table of shared options (icai.cli_options): same flags, words, group."""

from __future__ import annotations

import argparse

import pytest

from icai.cli import build_parser
from icai.cli_options import COMMANDS, GROUP_TITLES, SHARED, option_kwargs


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _group_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str | None:
    return next((g.title for g in parser._action_groups if action in g._group_actions), None)


def test_every_command_is_in_the_table():
    assert set(_subparsers()) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_shared_options_are_attached_alike(command):
    parser = _subparsers()[command]
    by_flag = parser._option_string_actions
    for name in COMMANDS[command]:
        option = SHARED[name]
        action = by_flag.get(option.flags[0])
        assert action is not None, f"icai {command} lacks {option.flags[0]}"
        expected = option_kwargs(name, command)
        assert tuple(action.option_strings) == option.flags, (command, name)
        assert action.help == expected["help"], (command, name)
        assert _group_of(parser, action) == GROUP_TITLES[option.group], (command, name)
        assert action.default == expected.get("default", action.default), (command, name)
        assert action.dest == expected.get("dest", name), (command, name)


def test_a_shared_option_reads_the_same_in_every_command():
    """The help of each shared option is word for word the same wherever it appears (--out says what it names;
    --model and --embedder say the run's own is the default where it is)."""
    helps: dict[str, set[str]] = {}
    for command, parser in _subparsers().items():
        for name in COMMANDS[command]:
            if name == "out":
                continue
            action = parser._option_string_actions[SHARED[name].flags[0]]
            helps.setdefault(name, set()).add(str(action.help).split(" (default")[0])
    assert {name: texts for name, texts in helps.items() if len(texts) != 1} == {}


def test_no_command_spells_a_shared_flag_another_way():
    """A flag of the table in a command that does not declare it would be the same words with another meaning."""
    flags = {flag: name for name, option in SHARED.items() for flag in option.flags}
    exceptions = {("export", "--format")}  # export's output format: export reads no pairs
    for command, parser in _subparsers().items():
        for flag in parser._option_string_actions:
            if flag in flags and (command, flag) not in exceptions:
                assert flags[flag] in COMMANDS[command], f"icai {command} has its own {flag}"


@pytest.mark.parametrize("command", ["run", "test", "annotate", "evaluate", "validate", "compare"])
def test_help_shows_the_groups_in_one_order(command):
    text = _subparsers()[command].format_help()
    titles = [t for t in GROUP_TITLES.values() if f"\n{t}:\n" in text]
    assert titles == sorted(titles, key=lambda t: text.index(f"\n{t}:\n"))
    assert "input data:" in text and "--label-map" in text


def test_commands_take_the_options_the_issue_names():
    table = {c: {f for n in names for f in SHARED[n].flags} for c, names in COMMANDS.items()}
    for command in ("annotate", "evaluate"):
        assert {"--embedder", "--model", "--base-url", "--out", "--json", "--overwrite"} <= table[command]
    assert {"--by", "--seed"} <= table["evaluate"]
    for command in ("run", "test", "annotate", "evaluate", "validate", "compare"):
        assert {"--format", "--columns", "--label-map", "--json"} <= table[command]


def test_verbose_after_the_command():
    args = build_parser().parse_args(["validate", "x.csv", "-v"])
    assert args.verbose is True
    assert build_parser().parse_args(["validate", "x.csv"]).verbose is False


def test_the_readme_exit_code_table_is_the_code():
    import re
    from pathlib import Path

    from icai import errors

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| ([^|(:]+)", readme, re.MULTILINE))
    codes = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert {int(k) for k in table} == set(codes.values())
    assert len(set(codes.values())) == len(codes)  # one meaning per code: a spent budget is not bad input
    assert codes["EXIT_BUDGET"] != codes["EXIT_USAGE"] and table[str(codes["EXIT_BUDGET"])].startswith("budget")
    assert table[str(codes["EXIT_USAGE"])].startswith("bad input") and table[str(codes["EXIT_OK"])].strip() == "success"
