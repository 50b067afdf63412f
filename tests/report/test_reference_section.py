"""The whitepaper's paragraph on the shipped reference run (report/sections/reference.py): a study of
`fake` engines against its own export on "another machine" (the copy's CPU and versions edited)
names what differs and each engine's cliff in both, with every number traced; no reference is one
sentence; a reference that cannot be compared is one sentence, not a crash; `load_report_data`
finds data/reference/<study>."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cliffbench.audit.claims import load_claims
from cliffbench.bench.store.levels import load_results
from cliffbench.bench.store.reference import export_reference, load_reference
from cliffbench.config import PROJECT_ROOT
from cliffbench.report.data import ReferenceRun, ReportData, load_report_data
from cliffbench.report.sections.reference import reference_section
from cliffbench.trace import number_tokens, recording
from tests.report.study_data import fake_results

OTHER_CPU = "Intel Xeon Platinum 8488C"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, reference_study_root: Path) -> Path:
    """A project root: study `a` stored, its reference exported and edited to another machine."""
    root = tmp_path_factory.mktemp("project")
    (root / "data").mkdir()
    (root / "data" / "published").symlink_to(PROJECT_ROOT / "data" / "published")
    # tests/bench/store/test_reference.py's study `a` (study_spec), run once a session: a copy
    shutil.copytree(reference_study_root / "a", root / "data" / "results" / "a")
    ref = root / "data" / "reference" / "a"
    export_reference("a", ref, root=root / "data" / "results")
    manifest = json.loads((ref / "manifest.json").read_text())
    manifest["cpu"] |= {"model": OTHER_CPU, "usable_cpus": 96}
    manifest["versions"]["numpy"] = "1.26.4"
    (ref / "manifest.json").write_text(json.dumps(manifest))
    return root


def _data(project: Path, reference: ReferenceRun | None) -> ReportData:
    res = load_results("a", project / "data" / "results")
    return ReportData(study="a", results=res, claims=load_claims(), reference=reference)


@pytest.fixture(scope="module")
def with_reference(project: Path) -> ReportData:
    return _data(project, ReferenceRun("data/reference/a", load_reference(project / "data" / "reference" / "a")))


def test_the_paragraph_names_the_machines_the_differences_and_each_cliff(
    with_reference: ReportData, no_files: list[str]
) -> None:
    data = with_reference  # read before no_files: the section itself reads no file
    with recording() as log:
        text = reference_section(data, "chat")
    assert f"`data/reference/a`): {OTHER_CPU}, 96 cores" in text
    assert f"CPU {OTHER_CPU} → " in text and "usable cores 96 → " in text and "numpy 1.26.4 → " in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| engine |")]
    assert len(rows) == 2, text  # wide and narrow, matched by configuration
    # the same levels on both sides: neither cliff moved, no engine shown faster or slower
    assert all("| not moved |" in r for r in rows), rows
    assert all(r.rstrip(" |").endswith(("same within noise", "undecided")) for r in rows), rows
    narrow = next(r for r in rows if "1 slot" in r or "narrow" in r)
    assert narrow.count("1-4 users") == 2, narrow  # its cliff between 1 and 4 users, in both runs
    assert len(number_tokens(text)) >= 10 and log.untraced(text) == [], log.untraced(text)


def test_no_reference_is_one_sentence(project: Path) -> None:
    text = reference_section(_data(project, None), "chat")
    assert text.startswith("No reference run of the study `a` is shipped") and "\n" not in text


def test_a_reference_that_cannot_be_compared_is_said_not_raised(project: Path) -> None:
    # another study's engines entirely (none with a configuration or a label of this one's)
    other = ReferenceRun("data/reference/other", fake_results(1))
    text = reference_section(_data(project, other), "chat")
    assert text.startswith("The reference run `data/reference/other` cannot be compared with this one: engines:")
    damaged = ReferenceRun("data/reference/a", None, "study: every stored level of 'a' is damaged")
    text = reference_section(_data(project, damaged), "chat")
    assert text.endswith("cannot be compared with this one: study: every stored level of 'a' is damaged.")


def test_load_report_data_finds_the_reference_of_the_same_study(project: Path) -> None:
    data = load_report_data("a", project)
    assert data.reference is not None and data.reference.path == "data/reference/a"
    assert data.reference.results is not None and data.reference.results.manifest.cpu.model == OTHER_CPU
