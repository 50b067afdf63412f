"""Engine facts are sealed in `cliffbench.engines`: no module outside it decides on an engine's kind
(a kind string compared, matched or prefix-tested) or on a spec class (`isinstance`, `type(x) is`,
a class pattern); what it needs is a fact of the spec or a lookup of `engines.specs`. The union of
kinds is written once.

How a decision is told from text: the check reads only the operands of comparisons (and the
members of a literal tuple/list/set tested with `in`), the arguments of `isinstance`/`issubclass`
and of `str.startswith`/`endswith`, and `match` patterns. A docstring is a bare expression
statement and a help text a call's argument, so neither is ever such an operand.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

import cliffbench.engines.http_specs
import cliffbench.engines.local_specs
import cliffbench.engines.parallel
import cliffbench.engines.spec_base
from cliffbench.engines.registry import ENGINE_CLASSES
from cliffbench.engines.specs import (
    ENGINE_KINDS,
    ENGINE_SPECS,
    SERVER_KINDS,
    EngineSpec,
    LlamaCppSerialSpec,
    LlamaCppSlotsSpec,
    OpenAIHttpSpec,
    ServerSpec,
    VllmSpec,
    family_kind,
    family_of,
    kinds_with,
    slot_bound,
    spec_class,
    stands_for,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "cliffbench"
ENGINES = SRC / "engines"
KINDS = frozenset(ENGINE_KINDS) | frozenset(SERVER_KINDS)
SPEC_CLASSES = frozenset(
    name
    for module in (
        cliffbench.engines.spec_base,
        cliffbench.engines.local_specs,
        cliffbench.engines.http_specs,
        cliffbench.engines.parallel,
    )
    for name, obj in vars(module).items()
    if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__.startswith("cliffbench.engines")
)

# literals spelled like a kind that are not one: an engine's *name* (its label; the kind where a study
# leaves it unlabeled) or a published claim's engine (the audit's and the seed section's pairs are
# named so in the default study and in data/published/claims.csv), a setting's value.
# (module, function, literal): what it is.
NOT_KINDS: dict[tuple[str, str, str], str] = {
    ("bench/plan.py", "study_tokenizer", "fake"): "the study's tokenizer setting",
    ("audit/shape_verdicts.py", "published_shapes", "vllm"): "claims.csv's engine column",
    ("audit/shape_verdicts.py", "ollama_like", "llamacpp"): "the study's llama.cpp engines by name",
    ("audit/shape_verdicts.py", "shape_verdicts", "vllm"): "the study's engine named vllm; claims' vllm",
    ("report/sections/summary.py", "_seed_engines", "vllm"): "the study's engine named vllm",
    ("report/sections/summary.py", "seed_comparison", "llamacpp"): "the study's llama.cpp engines by name",
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _kind_literal(node: ast.AST, prefix: bool = False) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        s = node.value
        if s in KINDS or (prefix and s and any(k.startswith(s) for k in KINDS)):
            return s
    return None


def _members(node: ast.AST) -> list[ast.AST]:
    return list(node.elts) if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]


def _pattern_hits(pattern: ast.pattern) -> list[str]:
    hits = []
    for p in ast.walk(pattern):
        if isinstance(p, ast.MatchValue) and (s := _kind_literal(p.value)):
            hits.append(s)
        if isinstance(p, ast.MatchClass) and _dotted(p.cls) in SPEC_CLASSES:
            hits.append(str(_dotted(p.cls)))
    return hits


def _node_hits(node: ast.AST) -> list[str]:
    """The kind literals and spec classes `node` decides on (empty: none)."""
    hits: list[str] = []
    if isinstance(node, ast.Compare):
        containers = {i + 1 for i, op in enumerate(node.ops) if isinstance(op, ast.In | ast.NotIn)}
        for i, operand in enumerate([node.left, *node.comparators]):
            for m in _members(operand) if i in containers else [operand]:
                if s := _kind_literal(m):
                    hits.append(s)
                if _dotted(m) in SPEC_CLASSES:
                    hits.append(str(_dotted(m)))
    elif isinstance(node, ast.Call):
        func = _dotted(node.func)
        if func in ("isinstance", "issubclass") and len(node.args) == 2:
            hits += [str(_dotted(m)) for m in _members(node.args[1]) if _dotted(m) in SPEC_CLASSES]
        if isinstance(node.func, ast.Attribute) and func in ("startswith", "endswith"):
            hits += [s for a in node.args for m in _members(a) if (s := _kind_literal(m, prefix=True))]
    elif isinstance(node, ast.match_case):
        hits += _pattern_hits(node.pattern)
    return hits


def kind_decisions(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, kind literal or spec class) of every decision on an engine's kind."""
    out: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            here = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            at = child.pattern if isinstance(child, ast.match_case) else child  # a case has no line of its own
            line = int(getattr(at, "lineno", 0))
            out.extend((line, here, hit) for hit in _node_hits(child))
            visit(child, here)

    visit(ast.parse(source), "<module>")
    return out


def _outside_engines() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if ENGINES not in p.parents and "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _outside_engines(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_outside_engines_decides_on_a_kind(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    found = [
        f"{rel}:{line} ({function}) decides on {hit!r}"
        for line, function, hit in kind_decisions(path.read_text())
        if (rel, function, hit) not in NOT_KINDS
    ]
    assert not found, "ask a fact of the spec (cliffbench.engines) instead:\n" + "\n".join(found)


def test_every_exemption_is_still_needed() -> None:
    # a stale exemption would let a later kind decision in that function through unseen
    used = {
        (str(p.relative_to(SRC)), function, hit)
        for p in _outside_engines()
        for _, function, hit in kind_decisions(p.read_text())
    }
    assert set(NOT_KINDS) <= used, set(NOT_KINDS) - used


PLANTED = '''
"""A docstring naming vllm, llamacpp-slots and VllmSpec decides nothing."""
import typer
from cliffbench.engines.specs import VLLM, LlamaCppSpec, VllmSpec


def speed(es, kind, opt):
    help_text = typer.Option(help="llama-server: parallel slots (-np)")
    if es.kind == "vllm":
        return 1
    if kind in ("llamacpp-serial", "fake"):
        return 2
    if es.kind.startswith("llamacpp"):
        return 3
    if isinstance(es, (VllmSpec, int)):
        return 4
    if type(es) is LlamaCppSpec:
        return 5
    match es:
        case VllmSpec():
            return 6
    match kind:
        case "openai-http" | "other":
            return 7
    if es.family == VLLM and opt.engine != "llama-server":
        return 8
    return help_text
'''


def test_a_planted_kind_decision_is_caught() -> None:
    hits = [(line, hit) for line, _, hit in kind_decisions(PLANTED)]
    assert hits == [
        (9, "vllm"),
        (11, "llamacpp-serial"),
        (11, "fake"),
        (13, "llamacpp"),
        (15, "VllmSpec"),
        (17, "LlamaCppSpec"),
        (20, "VllmSpec"),
        (23, "openai-http"),
        (25, "llama-server"),
    ]
    # the docstring (line 2), the help text (line 8) and the family fact (line 25's left side) pass


def test_the_check_bites_on_the_real_tree() -> None:
    # the same check over a real module with one kind decision planted in it
    path = SRC / "report" / "sections" / "methods.py"
    planted = path.read_text() + '\n\ndef _planted(es: object) -> bool:\n    return getattr(es, "kind", "") == "vllm"\n'
    assert [hit for _, function, hit in kind_decisions(planted) if function == "_planted"] == ["vllm"]


def test_the_union_of_kinds_is_written_once() -> None:
    # every spec class appears in exactly one union of kinds (`A | B | ...` naming two or more) of
    # the engines package; `FakeSpec | None` is not one
    kinds = {c.__name__ for c in ENGINE_SPECS}
    unions: dict[str, int] = {}
    for path in sorted(ENGINES.glob("*.py")):
        tree = ast.parse(path.read_text())
        ors = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)]
        inner = {id(side) for n in ors for side in (n.left, n.right)}
        for node in (n for n in ors if id(n) not in inner):
            named = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & kinds
            for name in named if len(named) > 1 else ():
                unions[name] = unions.get(name, 0) + 1
    assert unions == {
        "VllmSpec": 1,
        "LlamaCppSerialSpec": 1,
        "LlamaCppSlotsSpec": 1,
        "OpenAIHttpSpec": 1,
        "FakeSpec": 1,
    }
    assert get_args(get_args(EngineSpec)[0]) == ENGINE_SPECS
    assert tuple(ENGINE_CLASSES) == ENGINE_KINDS == ("vllm", "llamacpp-serial", "llamacpp-slots", "openai-http", "fake")


def test_lookups_by_kind() -> None:
    assert [family_of(k) for k in (*ENGINE_KINDS, "sglang")] == ["vllm", "llama.cpp", "llama.cpp", None, None, None]
    assert family_kind("vllm") == "vllm" and family_kind("llama.cpp") == "llamacpp-slots"
    assert kinds_with("url") == ("openai-http",) and kinds_with("slots") == ("llamacpp-slots",)
    assert [slot_bound(k) for k in ("llamacpp-slots", "llamacpp-serial", "vllm", "none")] == [True, True, False, False]
    assert spec_class("vllm") is VllmSpec and spec_class("none") is None
    matrix = [("vllm", None), ("llamacpp-slots", None), ("llamacpp-slots", 4), ("llamacpp-slots", 1), ("none", None)]
    assert {k: [stands_for(k, e, s) for e, s in matrix] for k in (*ENGINE_KINDS, "nan")} == {
        "vllm": [True, False, False, False, False],
        "llamacpp-serial": [False, False, False, True, False],
        "llamacpp-slots": [False, True, True, False, False],
        "openai-http": [False] * 5,
        "fake": [False] * 5,
        "nan": [False] * 5,
    }


def test_facts_of_an_http_engine_follow_its_server() -> None:
    managed = OpenAIHttpSpec(server=ServerSpec(kind="vllm", mirrors=VllmSpec(device="cuda", tensor_parallel_size=2)))
    external = OpenAIHttpSpec(url="http://10.0.0.7:8000/v1")
    assert (managed.in_process, managed.external, managed.server_kind, managed.remote_host) == (
        False,
        False,
        "vllm",
        None,
    )
    assert (external.external, external.server_kind, external.remote_host) == (True, None, "10.0.0.7")
    assert (managed.title(), external.title()) == ("vLLM", "an OpenAI-compatible server")
    assert (managed.node_gpus(0), external.node_gpus(8), managed.family) == (2, 0, None)
    assert VllmSpec().node_gpus(0) == 0 and VllmSpec().node_gpus(1) == 1  # 'auto': CUDA where the cluster has GPUs


def test_speed_settings_name_what_decides_speed() -> None:
    assert VllmSpec().speed_settings() == ["OpenMP on every core", "eager", "prefix caching off"]
    assert LlamaCppSlotsSpec(slots=1, kv_unified=True, max_queue=3).speed_settings() == [
        "1 slots, one shared KV cache",
        "rejects past 3 waiting",
    ]
    assert LlamaCppSerialSpec().speed_settings() == ["one request at a time"]
    assert LlamaCppSlotsSpec().speed_key("q8_0") == ("llama.cpp", "q8_0", 4, False)
    assert OpenAIHttpSpec(url="http://h/v1").speed_key("fp32") is None
