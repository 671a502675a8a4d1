"""The documentation matches the code.

- every public parameter is documented (numpydoc ``Parameters``), and nothing
  documented is missing from the signature;
- every documented fitted attribute exists after ``fit``, and every public
  fitted attribute is documented;
- ``docs/api.md`` equals what ``docs/make_api.py`` generates now;
- every relative link in ``docs/*.md`` and ``README.md`` points to a file (and
  heading) that exists, and ``docs/index.md`` links every page;
- the README's quick start names ``make demo`` and ``make test``, and the
  Makefile has both targets.

Each failure names the object, parameter, attribute, file or link at fault.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("numpydoc")
from numpydoc.docscrape import NumpyDocString  # noqa: E402

import sklearn_resbuilder  # noqa: E402
from sklearn_resbuilder import ResBuilderClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Pages docs/index.md and the README must link.
PAGES = ["user_guide", "algorithm", "architecture", "api", "plotting", "persistence",
         "distributed", "benchmarks", "faq"]


# ----------------------------------------------------------------- helpers
def _numpydoc(obj) -> NumpyDocString:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown section names are not our concern here
        return NumpyDocString(inspect.getdoc(obj) or "")


def _documented(obj, section: str) -> dict[str, str]:
    """``{name: description}`` of a numpydoc section; ``a, b : type`` documents both."""
    out = {}
    for p in _numpydoc(obj)[section]:
        desc = " ".join(p.desc).strip()
        for name in p.name.split(","):
            if name.strip():
                out[name.strip()] = desc
    return out


def _arguments(func) -> list[str]:
    """Named arguments of ``func`` (no self/cls, no *args/**kwargs)."""
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _compare(label: str, arguments, documented: dict) -> list[str]:
    problems = []
    missing = [a for a in arguments if a not in documented]
    if missing:
        problems.append(f"{label}: not documented under 'Parameters': {missing}")
    empty = [a for a in arguments if a in documented and not documented[a]]
    if empty:
        problems.append(f"{label}: documented with an empty description: {empty}")
    extra = [d for d in documented if d not in arguments and not d.startswith("*")]
    if extra:
        problems.append(f"{label}: documented but not in the signature: {extra}")
    return problems


def _public_callables():
    """``(label, func, doc_owner)`` for every public callable users call.

    The package's ``__all__`` (classes: constructor args from the class
    docstring, then each public method), ``datasets.load_mnist`` and the
    plotting functions. ``ResBuilderClassifier``'s constructor has its own test.
    """
    items = []

    def add_class(name, cls):
        if cls is not ResBuilderClassifier:
            items.append((name, cls, cls))
        for mname, attr in vars(cls).items():
            if mname.startswith("_"):
                continue
            if isinstance(attr, (classmethod, staticmethod)):
                attr = attr.__func__
            if inspect.isfunction(attr):
                items.append((f"{name}.{mname}", attr, attr))

    for name in sklearn_resbuilder.__all__:
        obj = getattr(sklearn_resbuilder, name)
        if inspect.isclass(obj):
            add_class(name, obj)
        elif callable(obj):
            items.append((name, obj, obj))
    from sklearn_resbuilder.datasets import load_mnist
    items.append(("datasets.load_mnist", load_mnist, load_mnist))
    try:
        plotting = importlib.import_module("sklearn_resbuilder.plotting")
    except Exception:  # not there yet, or broken: tests/test_plotting.py says why
        plotting = None
    if plotting is not None:
        for name in getattr(plotting, "__all__", []):
            obj = getattr(plotting, name)
            if inspect.isfunction(obj):
                items.append((f"plotting.{name}", obj, obj))
    # Callables with no arguments and no documented ones have nothing to check.
    return [(label, func, owner) for label, func, owner in items
            if _arguments(func) or _documented(owner, "Parameters")]


# --------------------------------------------------- (a) parameters documented
def test_estimator_parameters_documented_both_ways():
    params = set(ResBuilderClassifier().get_params())
    documented = _documented(ResBuilderClassifier, "Parameters")
    init_args = set(_arguments(ResBuilderClassifier.__init__))
    problems = _compare("ResBuilderClassifier", sorted(params), documented)
    not_in_init = sorted(set(documented) - init_args)
    if not_in_init:
        problems.append(f"ResBuilderClassifier: documented parameters missing from "
                        f"__init__: {not_in_init}")
    assert not problems, "\n".join(problems)
    assert params == init_args  # get_params reads __init__: a sanity check of the helper


@pytest.mark.parametrize("label, func, owner", _public_callables(),
                         ids=[item[0] for item in _public_callables()])
def test_public_callable_arguments_documented(label, func, owner):
    problems = _compare(label, _arguments(func), _documented(owner, "Parameters"))
    assert not problems, "\n".join(problems)


def test_public_callables_cover_the_estimator_methods():
    """The list above is not silently empty: fit/predict/predict_proba are in it."""
    labels = {item[0] for item in _public_callables()}
    assert {"ResBuilderClassifier.fit", "ResBuilderClassifier.predict",
            "ResBuilderClassifier.predict_proba", "Architecture.build"} <= labels


# ------------------------------------------------------ (b) fitted attributes
@pytest.fixture(scope="module")
def fitted(digits):
    pd = pytest.importorskip("pandas")
    X_train, _, y_train, _ = digits
    # A DataFrame with string columns, so feature_names_in_ exists too.
    X = pd.DataFrame(X_train[:400], columns=[f"px{i}" for i in range(X_train.shape[1])])
    return ResBuilderClassifier(flop_budget=2e5, n_morph_steps=1, n_insertions=1,
                                max_epochs=1, device="cpu", random_state=0).fit(X, y_train[:400])


def test_documented_attributes_exist_after_fit(fitted):
    documented = _documented(ResBuilderClassifier, "Attributes")
    assert "best_architecture_" in documented  # the parser found the section
    missing = sorted(a for a in documented if not hasattr(fitted, a))
    assert not missing, f"documented under 'Attributes' but not set by fit: {missing}"


def test_public_fitted_attributes_are_documented(fitted):
    documented = _documented(ResBuilderClassifier, "Attributes")
    public = sorted(a for a in vars(fitted)
                    if a.endswith("_") and not a.startswith("_"))
    assert "history_" in public  # fit ran and set its attributes
    undocumented = [a for a in public if a not in documented]
    assert not undocumented, (
        f"fit sets {undocumented} but ResBuilderClassifier's docstring does not "
        "document them under 'Attributes'")


def test_user_guide_parameter_table_matches_the_estimator():
    guide = (DOCS / "user_guide.md").read_text(encoding="utf-8")
    m = re.search(r"^## Parameters\n(.*?)(?=^## )", guide, flags=re.M | re.S)
    assert m, "docs/user_guide.md has no '## Parameters' section"
    rows = set(re.findall(r"^\| `(\w+)` \|", m.group(1), flags=re.M))
    params = set(ResBuilderClassifier().get_params())
    assert not params - rows, (
        f"docs/user_guide.md's parameter table lacks {sorted(params - rows)}")
    assert not rows - params, (
        f"docs/user_guide.md's parameter table lists unknown parameters {sorted(rows - params)}")


# ------------------------------------------------------------- (c) api.md
def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_md_is_up_to_date():
    make_api = _make_api()
    text, skipped = make_api.generate()
    broken = {m: why for m, why in skipped.items() if why != "missing"}
    if broken:  # e.g. an optional dependency missing here: the page would differ
        pytest.skip(f"modules that do not import here: {broken}")
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    if text != current:
        diff = "".join(list(difflib.unified_diff(
            current.splitlines(True), text.splitlines(True),
            "docs/api.md (checked in)", "docs/make_api.py (now)"))[:80])
        pytest.fail("docs/api.md is out of date with the docstrings: run "
                    f"`python docs/make_api.py`\n{diff}")


def test_api_md_documents_the_core_api():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for heading in ("### ResBuilderClassifier", "#### ResBuilderClassifier.fit",
                    "### Architecture", "#### Architecture.resnet18", "### load_mnist",
                    "### SearchCallback"):
        assert f"\n{heading}\n" in text, f"docs/api.md lacks the section {heading!r}"
    for param in ResBuilderClassifier().get_params():
        assert f"- `{param}` :" in text, f"docs/api.md does not list parameter {param!r}"


# ------------------------------------------------------------- (d) links
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
CODE_SPAN = re.compile(r"`[^`]*`")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(path: Path):
    """``(line number, text)`` outside fenced code blocks."""
    in_fence = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield n, line


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def _links(path: Path):
    for n, line in _prose_lines(path):
        prose = CODE_SPAN.sub("", line)
        for m in INLINE_LINK.finditer(prose):
            yield n, m.group(1)
        m = REF_LINK.match(prose)
        if m:
            yield n, m.group(1)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _broken_links(md: Path) -> list[str]:
    broken = []
    for n, target in _links(md):
        if SCHEME.match(target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        dest = (md.parent / file_part).resolve() if file_part else md
        where = f"{_rel(md)}:{n}: {target}"
        if not dest.exists():
            broken.append(f"{where} -> no such file {_rel(dest)}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{where} -> no heading '#{anchor}' in {_rel(dest)}")
    return broken


MARKDOWN = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("md", MARKDOWN, ids=[_rel(p) for p in MARKDOWN])
def test_relative_links_resolve(md):
    broken = _broken_links(md)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_flags_bad_links(tmp_path):
    """The checker is not vacuous: good links pass, each kind of bad one is named."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    md = tmp_path / "page.md"
    md.write_text(
        "# Title\n"
        "[ok](other.md) [ok](other.md#other-page) [ok](other.md#a-code-heading) [ok](#title)\n"
        "[web](https://example.org/x.md) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[bad file](missing.md) [bad anchor](other.md#nope) ![img](pic.png)\n"
        "[ref]: gone.md\n")
    broken = _broken_links(md)
    assert len(broken) == 4, broken
    assert [b.split(": ", 1)[1].split(" ->")[0] for b in broken] == [
        "missing.md", "other.md#nope", "pic.png", "gone.md"]
    assert "quick-start" in _anchors(ROOT / "README.md")


@pytest.mark.parametrize("md", [DOCS / "index.md", ROOT / "README.md"],
                         ids=["docs/index.md", "README.md"])
def test_every_page_is_linked(md):
    prefix = "" if md.parent == DOCS else "docs/"
    targets = {t.partition("#")[0] for _, t in _links(md)}
    pages = set(PAGES) | {p.stem for p in DOCS.glob("*.md") if p.stem != "index"}
    missing = sorted(p for p in pages if f"{prefix}{p}.md" not in targets)
    assert not missing, f"{md.relative_to(ROOT)} does not link these pages: {missing}"


# ------------------------------------------------------------- (e) README
def test_readme_quick_start_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Quick start\n(.*?)(?=^## )", readme, flags=re.M | re.S)
    assert m, "README.md has no '## Quick start' section"
    for cmd in ("make demo", "make test"):
        assert cmd in m.group(1), f"README.md's quick start does not show `{cmd}`"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no '{target}' target"
