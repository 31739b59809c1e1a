"""icai validate: every problem in one pass, as a table or JSON; exit 2 only for errors; a split that keeps
duplicate pairs together."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from icai.cli import main
from icai.split import duplicate_groups, stratified_test_indices, train_test_split
from icai.types import Comparison
from icai.validate import check_comparisons, validate_file

FIXTURES = Path(__file__).parent / "fixtures" / "shapes"


def checks(findings) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {f.check: f for f in findings}


def test_every_problem_is_found_in_one_pass() -> None:
    result = validate_file(FIXTURES / "problems.csv")
    found = checks(result.findings)
    # errors: the rows `icai run` would refuse, all of them, not the first only
    assert {f.check for f in result.errors} == {"empty text", "duplicate id", "bad label"}
    assert found["empty text"].examples == ("row 5 (text_a)",)
    assert found["duplicate id"].examples == ("row 8",)
    assert found["bad label"].examples == ("row 9 (preferred_text)",)
    # warnings: what loads but misleads
    assert found["duplicate pairs"].count == 3  # rows 1 and 2, and row 3 with its sides swapped
    assert found["duplicate pairs"].examples == ("1 = 2 = 3",)
    assert "conflicting duplicates" not in found  # the swapped copy prefers the same text
    assert found["identical responses"].examples == ("id 4",)
    assert found["extreme length ratio"].examples == ("id 6",)
    for kind in ("replacement characters", "control characters", "mojibake"):
        assert found[kind].examples == ("id 7",), kind
    assert result.report.n_invalid == 3 and result.report.n_loaded == 6


def test_conflicting_duplicates_and_position_skew() -> None:
    pairs = [Comparison(str(i), f"answer {i}", f"other {i}", "a", "p") for i in range(40)]
    pairs += [Comparison("x", "answer 0", "other 0", "b", "p")]
    found = checks(check_comparisons(pairs))
    assert found["conflicting duplicates"].count == 2
    skew = found["position skew"]
    assert skew.severity == "warning" and "40 of 41" in skew.detail
    balanced = [Comparison(str(i), f"answer {i}", f"other {i}", "ab"[i % 2], "p") for i in range(40)]  # type: ignore[arg-type]
    found = checks(check_comparisons(balanced))
    assert "position skew" not in found and found["position balance"].severity == "info"
    assert "duplicate pairs" not in found and "identical responses" not in found


def test_cli_table_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "problems.csv")]) == 2
    captured = capsys.readouterr()
    header = captured.out.splitlines()[1]
    assert header.split() == ["severity", "check", "rows", "detail"]
    assert "duplicate pairs" in captured.out and "identical responses" in captured.out
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("icai: error: ") and "1 rows with empty text" in err
    # warnings only: exit 0
    clean = tmp_path / "warn.csv"
    clean.write_text("id,text_a,text_b,preferred_text\n1,same,same,text_a\n2,x,y,text_b\n")
    assert main(["validate", str(clean)]) == 0
    assert "identical responses" in capsys.readouterr().out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "problems.csv"), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["n_errors"] == 3 and data["load"]["n_invalid"] == 3
    assert {f["check"] for f in data["findings"]} >= {"duplicate pairs", "identical responses", "mojibake"}


def test_a_file_that_cannot_be_read_is_still_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nx,y\n")
    proc = subprocess.run([sys.executable, "-m", "icai.cli", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "missing required column" in proc.stderr


def _pairs_with_duplicates(n: int = 60, copies: int = 12, seed: int = 3) -> list[Comparison]:
    rng = random.Random(seed)
    pairs = [Comparison(str(i), f"answer {i}", f"other {i}", rng.choice("ab"), "p") for i in range(n)]  # type: ignore[arg-type]
    for j in range(copies):
        src = pairs[rng.randrange(n)]
        swapped = j % 2 == 1
        pairs.append(
            Comparison(
                f"dup{j}",
                src.text_b if swapped else src.text_a,
                src.text_a if swapped else src.text_b,
                src.rejected if swapped else src.preferred,
                src.prompt,
            )
        )
    return pairs


@pytest.mark.parametrize("seed", range(5))
def test_the_split_keeps_duplicates_together(seed: int) -> None:
    pairs = _pairs_with_duplicates()
    groups = [g for g in duplicate_groups(pairs) if len(g) > 1]
    assert groups
    train, test = train_test_split(pairs, test_size=0.3, seed=seed)
    test_ids = {c.id for c in test}
    for g in groups:
        sides = {pairs[i].id in test_ids for i in g}
        assert len(sides) == 1, [pairs[i].id for i in g]
    assert len(train) + len(test) == len(pairs) and 0.2 < len(test) / len(pairs) < 0.4


def test_ungrouped_split_would_straddle_and_validate_says_so() -> None:
    pairs = _pairs_with_duplicates()
    groups = [g for g in duplicate_groups(pairs) if len(g) > 1]
    straddled = [
        g
        for seed in range(5)
        for g in groups
        if 0 < sum(i in stratified_test_indices(pairs, test_size=0.3, seed=seed) for i in g) < len(g)
    ]
    assert straddled  # the problem the grouped split fixes is real on this data
    detail = checks(check_comparisons(pairs))["duplicate pairs"].detail
    assert "would put copies of" in detail and "(0 straddle)" in detail


def test_without_duplicates_the_split_is_unchanged() -> None:
    pairs = [Comparison(str(i), f"answer {i}", f"other {i}", "ab"[i % 3 == 0], "p") for i in range(50)]  # type: ignore[arg-type]
    _, test = train_test_split(pairs, test_size=0.3, seed=7)
    assert {int(c.id) for c in test} == stratified_test_indices(pairs, test_size=0.3, seed=7)


def test_responses_in_different_scripts_are_flagged() -> None:
    pairs = [
        Comparison("1", "The cat sat quietly on the warm mat by the door.", "Кошка тихо сидела на тёплом коврике у двери.", "a", "p"),
        Comparison("2", "The cat sat quietly on the warm mat by the door.", "A dog lay quietly on the cold floor by the door.", "b", "p"),
    ]
    found = checks(check_comparisons(pairs))
    assert found["mixed scripts"].examples == ("id 1",)
