from pathlib import Path

from suricate.protocol.diagram import c2s_mermaid


def test_state_diagram_in_docs_matches_the_transition_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    assert c2s_mermaid() in doc, "regenerate with: python -m suricate.protocol.diagram"
