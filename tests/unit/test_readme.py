"""The README's first commands are the ones CI runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    lines = (REPO / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].endswith("mitmdump -s addons/cliproxy.py")
    assert block[1].endswith("pytest")
    assert lines.index("```sh") < 4
    assert block[1] in (REPO / ".ci" / "run").read_text().splitlines()
