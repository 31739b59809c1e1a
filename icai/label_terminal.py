"""The terminal side of `icai label`: the pair side by side, one key per answer, the constitution after each.

Keys: a or 1 (response A), b or 2 (response B), t (tie), s (skip), u (undo the latest answer), q (quit;
every answer is already saved, rerun the same command to go on). On a terminal a key acts at once; from a
pipe, one key per line. Reads and writes only the given streams; the answers go through `LabelSession`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import TextIO

from icai.labelling import LabelSession, Summary
from icai.types import Comparison

KEYS = {"a": "a", "1": "a", "b": "b", "2": "b", "t": "tie", "s": "skip", "u": "undo", "q": "quit"}
HELP = "[a] A better  [b] B better  [t] tie  [s] skip  [u] undo  [q] quit"
MAX_LINES = 14
"""Lines of each response shown; the rest is cut with a note (the whole pair is in label_pairs.csv)."""


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    return lines


def side_by_side(left: str, right: str, *, width: int, max_lines: int = MAX_LINES) -> list[str]:
    """Two texts in two columns of a `width`-character line, each cut at `max_lines` lines."""
    column = max(12, (width - 3) // 2)
    a, b = _wrap(left, column), _wrap(right, column)
    cut_a, cut_b = len(a) > max_lines, len(b) > max_lines
    a, b = a[:max_lines], b[:max_lines]
    if cut_a:
        a[-1] = f"... ({len(_wrap(left, column)) - max_lines + 1} more lines)"
    if cut_b:
        b[-1] = f"... ({len(_wrap(right, column)) - max_lines + 1} more lines)"
    rows = max(len(a), len(b))
    a += [""] * (rows - len(a))
    b += [""] * (rows - len(b))
    return [f"{x:<{column}} | {y}".rstrip() for x, y in zip(a, b, strict=True)]


def render_pair(pair: Comparison, *, number: int, reason: str, width: int) -> str:
    rule = "-" * width
    head = f"Pair {number} (id {pair.id}, chosen {'at random' if reason == 'random' else 'as the most informative'})"
    lines = [rule, head]
    if pair.prompt:
        lines += ["Prompt: " + line for line in _wrap(pair.prompt, width - 8)[:6]]
    column = max(12, (width - 3) // 2)
    lines += [f"{'RESPONSE A':<{column}} | RESPONSE B", *side_by_side(pair.text_a, pair.text_b, width=width), rule, HELP]
    return "\n".join(lines)


def render_summary(summary: Summary, *, width: int) -> str:
    """The constitution from the labels so far, each principle with its agreement and 95% interval."""
    counts = f"{summary.n_labelled} labelled, {summary.n_ties} ties, {summary.n_skipped} skipped, of {summary.n_pairs} pairs"
    lines = [f"Constitution from your labels ({counts}):"]
    rows = summary.rows()
    if not rows:
        lines.append("  (none yet: no principle agrees with your labels on enough pairs)")
    for r in rows:
        s = r["stats"] or {}
        ci = s.get("agreement_ci")
        interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        agreement = s.get("agreement")
        stat = f"agreement {agreement:.2f}{interval}, {s.get('n_for', 0)} for / {s.get('n_against', 0)} against"
        text = textwrap.shorten(r["text"], max(20, width - len(stat) - 8))
        lines.append(f"  {r['rank']}. {text}  ({stat})")
    stable = f"Membership unchanged for {summary.stable_for} of {summary.patience} labels"
    if summary.should_stop:
        stable += ": the constitution is stable, you may stop (q); every label so far is saved"
    lines.append(stable)
    return "\n".join(lines)


def label_loop(session: LabelSession, *, read_key: Callable[[], str], write: Callable[[str], None], width: int = 100) -> str:
    """Ask pairs until the person quits or none is left; returns "quit", "done" or "eof" (input ended)."""
    number = len(session.records) + 1
    while True:
        nxt = session.next()
        if nxt is None:
            write(render_summary(session.summary(), width=width) + "\nEvery pair has an answer.\n")
            return "done"
        pair, choice = nxt
        write(render_pair(pair, number=number, reason=choice.reason, width=width) + "\n")
        while True:
            key = read_key()
            if key == "":
                return "eof"
            action = KEYS.get(key.strip().lower()[:1]) if key.strip() else None
            if action is None:
                write(f"Unknown key {key.strip()[:1]!r}. {HELP}\n")
                continue
            break
        if action == "quit":
            write(f"Saved {len(session.records)} answers in {session.store.path}; rerun the same command to go on.\n")
            return "quit"
        if action == "undo":
            undone = session.undo()
            write(("Nothing to undo." if undone is None else f"Took back the answer {undone['label']!r} to pair {undone['id']}.") + "\n")
            number = len(session.records) + 1
            continue
        summary = session.answer(pair.id, action)
        number = len(session.records) + 1
        write(f"Saved: pair {pair.id} -> {action}.\n" + render_summary(summary, width=width) + "\n")


@contextlib.contextmanager
def key_reader(stream: TextIO) -> Iterator[Callable[[], str]]:
    """A function that reads one answer: one key at once on a terminal (cbreak mode), else one line."""
    fd = stream.fileno() if hasattr(stream, "fileno") else None
    try:
        tty_in = fd is not None and os.isatty(fd)
    except (OSError, ValueError):
        tty_in = False
    if not tty_in or fd is None or sys.platform == "win32":
        yield stream.readline
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)

        def read() -> str:
            ch = os.read(fd, 1).decode("utf-8", "replace")
            if ch == "\x04":  # Ctrl-D
                return ""
            return ch

        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_width(stream: TextIO) -> int:
    return max(40, min(160, shutil.get_terminal_size((100, 24)).columns))
