"""Write docs/measures.md from the hierarchy definitions: ``python -m gim_jobs.aggregation.docs``."""

from __future__ import annotations

from pathlib import Path

from gim_jobs.aggregation.hierarchies import measures_markdown

TARGET = Path(__file__).resolve().parents[2] / "docs" / "measures.md"

if __name__ == "__main__":
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(measures_markdown(), encoding="utf-8")
    print(f"wrote {TARGET}")
