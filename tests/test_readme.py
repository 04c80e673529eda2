"""The snippets of the README and of docs/own-scripts.md run as they stand; the README links only to files that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OWN_SCRIPTS = ROOT / "docs" / "own-scripts.md"


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", OWN_SCRIPTS.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_section_has_a_snippet_per_method_and_one_with_the_trainer():
    snippets = _snippets()
    assert len(snippets) == 4
    for name in ("group_lasso", "widen", "MorphNetRegularizer", "Trainer("):
        assert any(name in snippet for snippet in snippets), name


@pytest.mark.parametrize("index", range(4), ids=["prunetrain", "net2net", "morphnet", "trainer"])
def test_readme_snippet_runs(index, capsys):
    from thesis_lib.models import ResNet, count_parameters

    namespace: dict = {}
    exec(compile(_snippets()[index], f"README snippet {index + 1}", "exec"), namespace)
    trained = namespace.get("found") or namespace.get("grown") or namespace["model"]
    assert isinstance(trained, ResNet)
    if index == 0:  # the plain PruneTrain loop prunes
        assert count_parameters(namespace["model"]) < 0.8 * namespace["dense"]
    if index == 3:
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == ["PruneTrain", "Net2NetHook", "MorphNetHook"]
        pruned, grown = lines[0].split(), lines[1].split()
        assert int(pruned[3]) < 0.8 * int(pruned[1])  # PruneTrain shrank: trainer.model is the smaller net
        assert float(pruned[5]) > 0.9
        assert int(grown[3]) > int(grown[1])  # Net2Net widened: trainer.model is the bigger net


def test_the_pandas_snippet_runs_and_finds_its_runs(isolated_results):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Where figures, tables and runs land", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    namespace: dict = {}
    exec(compile(snippet, "README pandas snippet", "exec"), namespace)
    assert len(namespace["table"].summary) == 4 and len(namespace["result"].history) == 2
    listed = namespace["cached_runs"]("smoke")
    assert set(listed["status"]) == {"finished"} and len(listed) == 4  # the narrow seed-1 run is one of the grid
    folder = Path(namespace["result"].path)
    assert folder.parent.parent == isolated_results / "results" / "smoke" and folder.parent.name == "baseline"
    assert {"config.json", "history.csv", "summary.json", "model.pt", "DONE"} <= {p.name for p in folder.iterdir()}


def test_the_readme_is_short_and_its_links_lead_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    assert text.splitlines().index("## The two commands") < 30  # within the first screen
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert "docs/own-scripts.md" in links and "CHANGELOG.md" in links
    for link in links:
        assert (ROOT / link).exists(), link


def test_the_docs_links_lead_to_files_that_exist():
    """Links of docs/*.md to the repository's files (a results file that .gitignore swallowed once went
    missing this way: a clean clone has only what is tracked)."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / link).exists(), f"{page.name}: {link}"


def test_the_changelog_names_the_package_version_first():
    import thesis_lib

    entries = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    assert entries[0] == thesis_lib.__version__
