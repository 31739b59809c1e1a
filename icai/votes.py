"""Votes as columns: one byte per (pair, principle, order) pick, one per (pair, principle) vote.

A run's exhaustive vote is a dense grid, pairs x principles x orders, so icai keeps it as numpy
arrays from the moment the answers arrive (`VoteTable`), optionally memory-mapped from files in the
run directory (`VoteTable.allocate(..., folder=...)`), and the statistics, selection and bootstrap
read the arrays directly. A `VoteTable` is also a `Sequence[Vote]`: code that wants records gets
them one at a time, in the order `icai.vote.vote` has always returned them (pair by pair, each
pair's principles in order), so nothing downstream needs to know the difference.

Codes (int8): a pick is 0 (not asked), 1 "a", 2 "b", 3 "neither", 4 "invalid"; a vote value is
-1 (no vote), 0 "for", 1 "against", 2 "abstain", 3 "invalid". Raw model text is kept only where
it says something (unreadable answers), keyed by flat cell index; log-prob margins, when the vote
was read from log-probs, are one float64 per cell and become the raw "margin=..." text on demand.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np

from icai.files import write_json_atomic
from icai.types import Pick, Side, Vote, VoteValue

PICKS: tuple[Pick | None, ...] = (None, "a", "b", "neither", "invalid")
"""Pick code -> pick (0: the order was not asked)."""
PICK_CODE: dict[str, int] = {"a": 1, "b": 2, "neither": 3, "invalid": 4}
VALUES: tuple[VoteValue, ...] = ("for", "against", "abstain", "invalid")
"""Value code -> vote value (-1: no vote in that cell)."""
VALUE_CODE: dict[str, int] = {v: i for i, v in enumerate(VALUES)}
SWAPPED_CODE = np.array([0, 2, 1, 3, 4], dtype=np.int8)
"""A pick code read in the swapped order, in the pair's own a/b terms."""

COLUMNS_FORMAT = "icai.votes/1"


def combine_codes(picks: np.ndarray, preferred_a: np.ndarray) -> np.ndarray:
    """Vote value codes from pick codes (..., orders), as `icai.debias.combine_picks` decides them.

    `preferred_a` broadcasts against picks[..., 0]: True where the label prefers side a. Cells
    with no pick asked get -1.
    """
    a = (picks == 1).sum(axis=-1, dtype=np.int16)
    b = (picks == 2).sum(axis=-1, dtype=np.int16)
    valid = ((picks >= 1) & (picks <= 3)).any(axis=-1)
    asked = (picks != 0).any(axis=-1)
    score = np.where(preferred_a, a - b, b - a)
    out = np.where(score > 0, 0, np.where(score < 0, 1, 2)).astype(np.int8)
    out[~valid] = 3
    out[~asked] = -1
    return out


def direction_codes(picks: np.ndarray) -> np.ndarray:
    """+1 where the valid picks lean to side a, -1 to side b, 0 otherwise (`icai.stats.direction`)."""
    lean = (picks == 1).sum(axis=-1, dtype=np.int16) - (picks == 2).sum(axis=-1, dtype=np.int16)
    return np.sign(lean).astype(np.int8)


class VoteTable(Sequence[Vote]):
    """Votes of `principle_ids` on `comparison_ids` as arrays; a read-only `Sequence[Vote]` over the voted cells.

    Attributes:
        picks: int8 (pairs, principles, orders) pick codes, in the pair's own a/b terms.
        values: int8 (pairs, principles) value codes; -1 where no vote was cast.
        raw: flat cell index (pair * n_principles + principle) -> the raw text kept for that vote.
        margins: float64 (pairs, principles) debiased log-prob margins (NaN: unreadable), or None.
    """

    def __init__(
        self,
        comparison_ids: Sequence[str],
        principle_ids: Sequence[str],
        picks: np.ndarray,
        values: np.ndarray,
        *,
        raw: Mapping[int, str] | None = None,
        margins: np.ndarray | None = None,
    ) -> None:
        self.comparison_ids = list(comparison_ids)
        self.principle_ids = list(principle_ids)
        if picks.shape[:2] != (len(self.comparison_ids), len(self.principle_ids)) or values.shape != picks.shape[:2]:
            raise ValueError(f"vote arrays of shape {picks.shape}/{values.shape} do not fit {len(self.comparison_ids)} pairs x {len(self.principle_ids)} principles")
        self.picks = picks
        self.values = values
        self.raw: dict[int, str] = dict(raw or {})
        self.margins = margins
        self._cells: np.ndarray | None = None

    # --- construction --------------------------------------------------------------------------------------
    @classmethod
    def allocate(
        cls,
        comparison_ids: Sequence[str],
        principle_ids: Sequence[str],
        *,
        orders: int,
        margins: bool = False,
        folder: str | Path | None = None,
    ) -> VoteTable:
        """An empty table (no cell voted); with `folder`, its arrays are memory-mapped .npy files there."""
        shape = (len(comparison_ids), len(principle_ids))
        if folder is None:
            picks = np.zeros((*shape, orders), dtype=np.int8)
            values = np.full(shape, -1, dtype=np.int8)
            margin_array = np.full(shape, np.nan) if margins else None
        else:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*"):
                stale.unlink()
            picks = np.lib.format.open_memmap(folder / "picks.npy", mode="w+", dtype=np.int8, shape=(*shape, orders))
            values = np.lib.format.open_memmap(folder / "values.npy", mode="w+", dtype=np.int8, shape=shape)
            values[:] = -1
            margin_array = None
            if margins:
                margin_array = np.lib.format.open_memmap(folder / "margins.npy", mode="w+", dtype=np.float64, shape=shape)
                margin_array[:] = np.nan
        return cls(comparison_ids, principle_ids, picks, values, margins=margin_array)

    @classmethod
    def from_votes(
        cls,
        votes: Sequence[Vote],
        comparison_ids: Sequence[str] | None = None,
        principle_ids: Sequence[str] | None = None,
    ) -> VoteTable | None:
        """The table of `votes` when they form one in their own order (pair by pair, principles in one order); else None.

        With ids given, the votes must cover exactly those pairs and principles; without, they are read from the votes.
        """
        if comparison_ids is None:
            comparison_ids = list(dict.fromkeys(v.comparison_id for v in votes))
        if principle_ids is None:
            principle_ids = list(dict.fromkeys(v.principle_id for v in votes))
        n_c, n_p = len(comparison_ids), len(principle_ids)
        if len(votes) != n_c * n_p or n_p == 0 or len(set(comparison_ids)) != n_c or len(set(principle_ids)) != n_p:
            return None
        orders = max((len(v.picks) for v in votes), default=0)
        if orders == 0 or any(v.raw.startswith("margin=") for v in votes[: min(len(votes), 50)]):
            return None  # log-prob votes keep their margins as text: left as records
        picks = np.zeros((n_c, n_p, orders), dtype=np.int8)
        values = np.empty((n_c, n_p), dtype=np.int8)
        raw: dict[int, str] = {}
        for k, v in enumerate(votes):
            i, j = divmod(k, n_p)
            if v.comparison_id != comparison_ids[i] or v.principle_id != principle_ids[j] or len(v.picks) != orders:
                return None
            for o, p in enumerate(v.picks):
                picks[i, j, o] = PICK_CODE[p]
            values[i, j] = VALUE_CODE[v.value]
            if v.raw:
                raw[k] = v.raw
        return cls(comparison_ids, principle_ids, picks, values, raw=raw)

    # --- Sequence[Vote] ---------------------------------------------------------------------------------------
    @property
    def cells(self) -> np.ndarray:
        """Flat indices of the voted cells, in order."""
        if self._cells is None:
            self._cells = np.flatnonzero(np.asarray(self.values).reshape(-1) >= 0)
        return self._cells

    def refresh(self) -> None:
        """Forget the voted-cell index (call after filling cells)."""
        self._cells = None

    @property
    def complete(self) -> bool:
        """Every (pair, principle) cell holds a vote."""
        return len(self) == self.values.size

    def __len__(self) -> int:
        return int(self.cells.size)

    @overload
    def __getitem__(self, index: int) -> Vote: ...
    @overload
    def __getitem__(self, index: slice) -> list[Vote]: ...
    def __getitem__(self, index: int | slice) -> Vote | list[Vote]:
        if isinstance(index, slice):
            return [self._vote(int(k)) for k in self.cells[index]]
        return self._vote(int(self.cells[index]))

    def __iter__(self) -> Iterator[Vote]:
        cells = self.cells
        for start in range(0, cells.size, 65536):
            for k in cells[start : start + 65536].tolist():
                yield self._vote(k)

    def _vote(self, k: int) -> Vote:
        n_p = len(self.principle_ids)
        i, j = divmod(k, n_p)
        picks = tuple(PICKS[c] for c in self.picks[i, j].tolist() if c)
        raw = self.raw.get(k, "")
        if not raw and self.margins is not None:
            margin = float(self.margins[i, j])
            raw = f"margin={margin:.4f}" if margin == margin else ""
        return Vote(self.comparison_ids[i], self.principle_ids[j], VALUES[int(self.values[i, j])], picks, raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[Vote]) -> list[Vote]:
        # no __radd__: CPython would call it for `a_list += table` instead of extending the list in place
        return [*self, *other]

    def __repr__(self) -> str:
        return f"VoteTable({len(self.comparison_ids)} pairs x {len(self.principle_ids)} principles, {len(self)} votes)"

    # --- views for the statistics -------------------------------------------------------------------------------
    def aligned(self, comparison_ids: Sequence[str], principle_ids: Sequence[str]) -> bool:
        """Whether the table's rows and columns are exactly these ids, in this order."""
        return self.comparison_ids == list(comparison_ids) and self.principle_ids == list(principle_ids)

    def rows_for(self, comparison_ids: Sequence[str]) -> np.ndarray:
        """Row index of each id (-1 where the table has no such pair)."""
        row = {c: i for i, c in enumerate(self.comparison_ids)}
        return np.array([row.get(c, -1) for c in comparison_ids], dtype=np.int64)

    def columns_for(self, principle_ids: Sequence[str]) -> np.ndarray:
        col = {p: j for j, p in enumerate(self.principle_ids)}
        return np.array([col.get(p, -1) for p in principle_ids], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Votes, invalid votes and unreadable picks in all."""
        values = np.asarray(self.values)
        return {
            "n_votes": int((values >= 0).sum()),
            "n_invalid_votes": int((values == 3).sum()),
            "n_invalid_picks": int((np.asarray(self.picks) == 4).sum()),
        }

    # --- files ------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the arrays (unless already memory-mapped there), the ids and the raw texts into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"picks.npy": self.picks, "values.npy": self.values}
        if self.margins is not None:
            arrays["margins.npy"] = self.margins
        for name, array in arrays.items():
            if isinstance(array, np.memmap) and Path(str(array.filename)).resolve() == (folder / name).resolve():
                array.flush()
            else:
                tmp = folder / f".{name}.tmp"
                with open(tmp, "wb") as f:
                    np.save(f, np.asarray(array))
                tmp.replace(folder / name)
        if self.margins is None and (folder / "margins.npy").exists():
            (folder / "margins.npy").unlink()
        write_json_atomic(
            folder / "meta.json",
            {
                "format": COLUMNS_FORMAT,
                "comparison_ids": self.comparison_ids,
                "principle_ids": self.principle_ids,
                "raw": {str(k): v for k, v in sorted(self.raw.items())},
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> VoteTable:
        """A table saved by `save`; its arrays memory-mapped read-only unless `mmap` is False."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != COLUMNS_FORMAT:
            raise ValueError(f"{folder}: not an icai vote table ({meta.get('format')!r})")
        mode: Literal["r"] | None = "r" if mmap else None
        picks = np.load(folder / "picks.npy", mmap_mode=mode)
        values = np.load(folder / "values.npy", mmap_mode=mode)
        margins = np.load(folder / "margins.npy", mmap_mode=mode) if (folder / "margins.npy").exists() else None
        raw = {int(k): str(v) for k, v in meta.get("raw", {}).items()}
        return cls(meta["comparison_ids"], meta["principle_ids"], picks, values, raw=raw, margins=margins)

    def write_csv(self, out: str | Path | IO[str], *, chunk_pairs: int = 4000) -> None:
        """votes.csv (comparison_id, principle_id, value, picks, raw), written in chunks of pairs.

        Byte for byte what `store.save_votes` wrote from records (pandas' minimal quoting), without the records.
        """
        n_p = len(self.principle_ids)
        orders = self.picks.shape[2]
        column = [f",{_csv_field(p)}" for p in self.principle_ids]
        # the end of a row without raw text, by value and pick codes

        def end(key: int) -> str:
            value, codes = divmod(key, 5**orders)
            digits = [(codes // 5**o) % 5 for o in reversed(range(orders))]
            text = ",".join(str(PICKS[c]) for c in digits if c)
            return f",{VALUES[value]},{_csv_field(text)},\n"

        with contextlib.ExitStack() as stack:
            f = out if not isinstance(out, (str, Path)) else stack.enter_context(open(out, "w", encoding="utf-8", newline=""))
            f.write("comparison_id,principle_id,value,picks,raw\n")
            columns = np.array(column, dtype=object)
            ending = np.array([end(k) for k in range(len(VALUES) * 5**orders)], dtype=object)
            for start in range(0, len(self.comparison_ids), chunk_pairs):
                stop = min(start + chunk_pairs, len(self.comparison_ids))
                values = np.asarray(self.values[start:stop]).astype(np.int64)
                keys = np.where(values >= 0, values, 0) * 5**orders
                picks = np.asarray(self.picks[start:stop]).astype(np.int64)
                for o in range(orders):
                    keys += picks[:, :, o] * 5 ** (orders - 1 - o)
                margins = None if self.margins is None else np.asarray(self.margins[start:stop])
                # rows without raw text: id + principle + a precomputed ending, concatenated by numpy
                ids = np.array([_csv_field(c) for c in self.comparison_ids[start:stop]], dtype=object)
                lines = ids[:, None] + columns[None, :] + ending[keys]
                special = {k - start * n_p for k in self.raw if start * n_p <= k < stop * n_p}
                if margins is not None:
                    special |= set(np.flatnonzero((values >= 0) & ~np.isnan(margins)).tolist())
                for flat in special:
                    i, j = divmod(flat, n_p)
                    raw = self.raw.get((start + i) * n_p + j, "")
                    if not raw and margins is not None and margins[i, j] == margins[i, j]:
                        raw = f"margin={float(margins[i, j]):.4f}"
                    text = ",".join(str(PICKS[c]) for c in picks[i, j].tolist() if c)
                    lines[i, j] = f"{ids[i]}{column[j]},{VALUES[values[i, j]]},{_csv_field(text)},{_csv_field(raw)}\n"
                f.write("".join(lines[values >= 0].tolist()))


def _csv_field(text: str) -> str:
    """`text` as a CSV field with minimal quoting (as pandas and the csv module write it)."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def preferred_a(comparisons: Sequence[Any]) -> np.ndarray:
    """True where a comparison's label prefers side a (`Comparison.preferred == "a"`)."""
    return np.fromiter((c.preferred == "a" for c in comparisons), dtype=bool, count=len(comparisons))


def side_of(code: int) -> Side | None:
    """The side a pick code names, if any."""
    return "a" if code == 1 else "b" if code == 2 else None
