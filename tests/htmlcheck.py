"""Checks of an HTML page as a browser's parser sees it (html5lib, spec-compliant): nothing that hostile
text introduced, and the page's JSON state parses (importable by name: `from htmlcheck import ...`)."""

from __future__ import annotations

import json
from typing import Any

MARKER = "icai_pwned"
"""Every hostile payload calls this function, so any trace of it in markup is a payload that escaped."""

OWN_HANDLERS = {"this.form.submit()"}
"""Inline event handlers the pages themselves write (the workbench's subset filter)."""

EXTERNAL_TAGS = {"img", "iframe", "object", "embed", "base", "link", "frame", "frameset", "audio", "video", "source", "math"}


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1].lower()


def check_page(page: str, *, own_script: str | None = None) -> dict[str, Any] | None:
    """Parse `page`; fail if any element, attribute or script came from a payload; return its JSON state (if any).

    Args:
        own_script: the text of the page's one inline script (None: a page with no script, like report.html).
    """
    import html5lib

    doc = html5lib.parse(page, namespaceHTMLElements=False)
    elements = list(doc.iter())
    problems: list[str] = []
    for el in elements:
        tag = _local(el.tag)
        if tag in EXTERNAL_TAGS:
            problems.append(f"a <{tag}> element")
        for name, value in el.attrib.items():
            name, value = _local(name), str(value)
            # a payload in a data attribute (value, data-sort) is text; in a name, a URL or a style it is markup
            if MARKER in name or (MARKER in value and name in ("href", "src", "action", "formaction", "style", "srcdoc")):
                problems.append(f"<{tag} {name}={value[:80]!r}>")
            if name.startswith("on") and value not in OWN_HANDLERS:
                problems.append(f"an event handler <{tag} {name}={value[:80]!r}>")
            if name in ("href", "src", "action", "formaction", "xlink:href") and value.strip().lower().startswith(("javascript:", "data:", "vbscript:")):
                problems.append(f"a script URL <{tag} {name}={value[:80]!r}>")
    # inline SVG belongs to the report's plots only: each inside a <figure class="plot">
    plotted = {id(s) for fig in elements if _local(fig.tag) == "figure" and "plot" in (fig.get("class") or "")
               for s in fig.iter() if _local(s.tag) == "svg"}
    strays = [el for el in elements if _local(el.tag) == "svg" and id(el) not in plotted]
    problems += [f"an <svg> outside the plots ({len(strays)})"] if strays else []
    styles = [el for el in elements if el.tag == "style"]  # HTML ones: the plots' SVG have their own
    if len(styles) != 1:
        problems.append(f"{len(styles)} <style> elements, not the page's one")
    scripts = [el for el in elements if _local(el.tag) == "script"]
    code = [s for s in scripts if s.get("type") != "application/json"]
    expected = [] if own_script is None else [own_script]
    if [s.text or "" for s in code] != expected:
        problems.append(f"scripts other than the page's own: {[(s.text or '')[:80] for s in code]}")
    data = [s for s in scripts if s.get("type") == "application/json"]
    assert not problems, problems
    if not data:
        return None
    assert len(data) == 1, "more than one JSON block"
    state: dict[str, Any] = json.loads(data[0].text or "")
    return state
