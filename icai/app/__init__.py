"""`icai app`: a local web workbench over a run directory (needs the `app` extra: starlette, uvicorn).

`icai.app.workbench` holds the logic (no web imports); `icai.app.server` is the HTTP layer over it.
"""

from icai.app.workbench import MAX_PRINCIPLE_CHARS, PrincipleTextError, Workbench, check_principle_text

__all__ = ["MAX_PRINCIPLE_CHARS", "PrincipleTextError", "Workbench", "check_principle_text"]
