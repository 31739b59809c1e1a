"""Feedback Forensics' own numbers for AnnotatedPairs files (run by the Feedback Forensics venv's python).

Usage: python ff_metrics.py QUERIES.json

QUERIES.json is a list of [path, null] or [path, [metadata key, value]]. For each, the
file is loaded with `feedback_forensics.DatasetHandler().add_data_from_path`, the
comparisons whose metadata key is value are kept (`split_by_col`, as the app's split
control does), and Feedback Forensics' metrics are computed. Prints one JSON list (on
a line after RESULT_MARKER), one object per query: the principle annotators' strength,
relevance and kappa keyed by principle text, the number of pairs and the reference column.
One process answers every query: importing Feedback Forensics takes seconds.
"""

import importlib.metadata
import json
import sys
from pathlib import Path

import feedback_forensics

RESULT_MARKER = "ICAI-INTEROP-RESULT "


def metrics_of(path: str, where: list[str] | None) -> dict:
    handler = feedback_forensics.DatasetHandler()
    handler.add_data_from_path(path)
    if where:
        key, value = where
        handler.split_by_col(key, [value])
    (column,) = handler.col_handlers.values()
    metrics = column.compute_annotator_metrics()
    meta = column.annotator_metadata
    text_of = {meta[col]["annotator_in_row_name"]: meta[col]["principle_text"] for col in column.shown_annotator_rows}
    by_metric = metrics["metrics"]
    return {
        "version": importlib.metadata.version("feedback-forensics"),
        "num_pairs": int(metrics["num_pairs"]),
        "reference_annotator": column.reference_annotator_col,
        "principles": {
            text_of[row]: {
                "strength": float(by_metric["strength"][row]["strength"]),
                "relevance": float(by_metric["relevance"][row]),
                "kappa": float(by_metric["cohens_kappa"][row]),
            }
            for row in metrics["annotator_names"]
        },
    }


def main(argv: list[str]) -> int:
    queries = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out = [metrics_of(path, where) for path, where in queries]
    # the tools log to stdout too: the result is the one line after this marker
    print(f"\n{RESULT_MARKER}{json.dumps(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
