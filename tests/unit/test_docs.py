"""The README's option table is generated from the config schema; it must be current."""

from gim_jobs.docs import render_readme
from gim_jobs.paths import PROJECT_ROOT


def test_readme_option_table_matches_the_schema() -> None:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert render_readme(text) == text, "README options drifted: run `python -m gim_jobs.docs`"
