"""Feedback Forensics' own numbers for an AnnotatedPairs file (run by the Feedback Forensics venv's python).

Usage: python ff_metrics.py PAIRS.json [METADATA_KEY VALUE]

Loads the file with `feedback_forensics.DatasetHandler().add_data_from_path`, optionally
keeps the comparisons whose metadata KEY is VALUE (`split_by_col`, as the app's split
control does), and prints one JSON object (on a line after RESULT_MARKER): the principle annotators' strength,
relevance and kappa, keyed by principle text, plus the number of pairs.
"""

import importlib.metadata
import json
import sys

import feedback_forensics

RESULT_MARKER = "ICAI-INTEROP-RESULT "


def main(argv: list[str]) -> int:
    path, where = argv[0], argv[1:]
    handler = feedback_forensics.DatasetHandler()
    handler.add_data_from_path(path)
    if where:
        key, value = where
        handler.split_by_col(key, [value])
    (name,) = handler.col_handlers
    column = handler.col_handlers[name]
    metrics = column.compute_annotator_metrics()
    meta = column.annotator_metadata
    text_of = {meta[col]["annotator_in_row_name"]: meta[col]["principle_text"] for col in column.shown_annotator_rows}
    by_metric = metrics["metrics"]
    out = {
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
    # the tools log to stdout too: the result is the one line after this marker
    print(f"\n{RESULT_MARKER}{json.dumps(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
