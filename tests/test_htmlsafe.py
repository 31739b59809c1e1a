"""JSON inside <script type="application/json">: no text can end the block or comment out the page's script."""

from __future__ import annotations

import json

import pytest

from icai.htmlsafe import json_for_script, json_script

HOSTILE = [
    "<!--<script>",
    "</script><script>alert(1)</script>",
    "<!-- --!> </SCRIPT >",
    "a & b > c",
    "line\u2028separator\u2029paragraph",
    "\"'`\\",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_block_holds_no_markup_character_and_parses_back(text: str) -> None:
    block = json_for_script({"text": text, "list": [text], text: 1})
    assert not set(block) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(block) == {"text": text, "list": [text], text: 1}


def test_a_page_with_a_hostile_text_keeps_its_own_script() -> None:
    html5lib = pytest.importorskip("html5lib")
    page = (
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        + json_script("state", {"principles": HOSTILE})
        + "<script>var own = 1;</script></body></html>"
    )
    doc = html5lib.parse(page, namespaceHTMLElements=False)
    scripts = doc.findall(".//script")
    assert [s.get("type") for s in scripts] == ["application/json", None]
    assert json.loads(scripts[0].text) == {"principles": HOSTILE}
    assert scripts[1].text == "var own = 1;"


def test_the_old_escape_of_only_close_tags_was_not_enough() -> None:
    """The reproduction of issue 27: escaping only "</" lets "<!--<script>" swallow the next script."""
    html5lib = pytest.importorskip("html5lib")
    old = json.dumps({"p": "<!--<script>"}).replace("</", "<\\/")
    page = f'<html><body><script type="application/json" id="s">{old}</script><script>var own = 1;</script></body></html>'
    scripts = html5lib.parse(page, namespaceHTMLElements=False).findall(".//script")
    assert len(scripts) == 1  # the page's own script became part of the data block


def test_non_finite_numbers_become_null() -> None:
    assert json.loads(json_for_script({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}


def test_the_element_id_is_escaped() -> None:
    assert json_script('x" onload="y', 1).startswith('<script type="application/json" id="x&quot; onload=&quot;y">')
