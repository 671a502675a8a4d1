"""Generate ``docs/api.md`` from the package's numpydoc docstrings.

Usage::

    python docs/make_api.py            # rewrite docs/api.md
    python docs/make_api.py --check    # exit 1 if docs/api.md is out of date

``tests/test_docs.py`` calls :func:`generate` and compares its output with
the checked-in ``docs/api.md``, so a docstring change needs a rerun of this
script. Modules that are not there (yet) are left out and named on stderr;
nothing here depends on the machine (no addresses, paths or versions), so the
output is the same everywhere the same modules import.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
import warnings
from pathlib import Path

from numpydoc.docscrape import NumpyDocString

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"

# (section title, module, names or None for the module's public API, intro).
# ``None`` means the module's ``__all__`` (else its public top-level functions
# and classes, in source order): new functions in those modules show up
# without editing this list.
SECTIONS = [
    ("Estimator", "sklearn_resbuilder.estimator", ["ResBuilderClassifier"],
     "The scikit-learn estimator: `from sklearn_resbuilder import ResBuilderClassifier`."),
    ("Architectures", "sklearn_resbuilder.architecture", ["Architecture", "Stage", "Stem"],
     "The immutable network spec the search edits: `from sklearn_resbuilder import "
     "Architecture, Stage, Stem`. See [architecture.md](architecture.md) for the "
     "network it builds and how FLOPs are counted."),
    ("Data sets", "sklearn_resbuilder.datasets", ["load_mnist", "load_image_folder", "make_shifted_templates"],
     "Real data that works offline, and folders of image files "
     "(see [Images in folders](user_guide.md#images-in-folders))."),
    ("Plotting", "sklearn_resbuilder.plotting", None,
     "Figures of a search (needs matplotlib: `pip install sklearn-resbuilder[plots]`). "
     "See [plotting.md](plotting.md)."),
    ("Saving and loading", "sklearn_resbuilder.persistence", None,
     "A pickle-free file format for fitted estimators. See [persistence.md](persistence.md)."),
    ("Export", "sklearn_resbuilder.export", None,
     "The fitted network as plain PyTorch, `torch.export` or ONNX. "
     "See [persistence.md](persistence.md)."),
    ("Resumable searches", "sklearn_resbuilder.checkpoint", ["CheckpointError"],
     "Raised by `fit` with `checkpoint_dir` when a checkpoint cannot be written "
     "(`from sklearn_resbuilder import CheckpointError`). See "
     "[Resuming a long search](user_guide.md#resuming-a-long-search)."),
    ("Search hooks", "sklearn_resbuilder.progress", ["SearchCallback", "format_record"],
     "For code that drives `sklearn_resbuilder.search.run_search` itself and wants "
     "progress events (also importable from `sklearn_resbuilder.search`)."),
    ("History records", "sklearn_resbuilder.records", ["SearchRecord", "ScoreRecord"],
     "The keys of `history_`'s records (plain dicts; these types document them)."),
]

# Methods every scikit-learn estimator inherits; listed by name, not documented
# here (their set varies with the scikit-learn version).
SKLEARN_INHERITED = "`score`, `get_params`, `set_params` (from scikit-learn)"

_ROLE = re.compile(r":(?:\w+:)+`~?([^`]+)`")


def _md(text: str) -> str:
    """reST inline markup -> markdown: ``x`` -> `x`, :meth:`x` -> `x`."""
    text = _ROLE.sub(r"`\1`", text)
    return text.replace("``", "`")


def _fmt_default(value) -> str:
    if isinstance(value, float):
        # 100000000.0 -> 1e8, 1e-07 -> 1e-7: what a user would type.
        return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:g}")
    return repr(value)


def _signature(name: str, obj, drop_first: bool = False) -> str:
    """``name(a, b=1, *, c=None)`` without annotations (they are in the docs)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    parts, star_done = [], False
    params = list(sig.parameters.values())
    if drop_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            star_done = True
        elif p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = p.default
            if dataclasses.is_dataclass(obj) and repr(default) == "<factory>":
                # A dataclass default_factory: show the value it makes.
                default = obj.__dataclass_fields__[p.name].default_factory()
            parts.append(f"{p.name}={_fmt_default(default)}")
        if p.kind is p.POSITIONAL_ONLY and (
                params.index(p) == len(params) - 1
                or params[params.index(p) + 1].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    one_line = f"{name}({', '.join(parts)})"
    if len(one_line) <= 88:
        return one_line
    return f"{name}(\n" + "".join(f"    {p},\n" for p in parts) + ")"


def _doc(obj) -> NumpyDocString:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpydoc warns on unknown section names
        return NumpyDocString(inspect.getdoc(obj) or "")


def _paragraphs(lines) -> list[str]:
    return [_md(line) for line in lines]


def _param_list(title: str, params) -> list[str]:
    if not params:
        return []
    out = [f"**{title}**", ""]
    for p in params:
        head = f"- `{p.name}`" if p.name else "-"
        if p.type:
            kind = p.type.replace("*", r"\*")
            head += f" : *{_md(kind)}*" if p.name else f" *{_md(kind)}*"
        out.append(head)
        # Continuation lines indented under the bullet keep the docstring's
        # line breaks and paragraphs inside the list item.
        out.extend(f"  {_md(line)}".rstrip() for line in p.desc)
    out.append("")
    return out


def _render_doc(doc: NumpyDocString, with_examples: bool = True) -> list[str]:
    out = []
    if doc["Summary"]:
        out += _paragraphs(doc["Summary"]) + [""]
    if doc["Extended Summary"]:
        out += _paragraphs(doc["Extended Summary"]) + [""]
    out += _param_list("Parameters", doc["Parameters"])
    out += _param_list("Other parameters", doc["Other Parameters"])
    out += _param_list("Returns", doc["Returns"])
    out += _param_list("Yields", doc["Yields"])
    out += _param_list("Raises", doc["Raises"])
    out += _param_list("Warns", doc["Warns"])
    out += _param_list("Attributes", doc["Attributes"])
    if doc["Notes"]:
        out += ["**Notes**", ""] + _paragraphs(doc["Notes"]) + [""]
    if with_examples and doc["Examples"]:
        out += ["**Examples**", "", "```pycon"] + list(doc["Examples"]) + ["```", ""]
    return out


def _members(cls):
    """Public methods and properties defined on ``cls`` itself, in source order."""
    for name, attr in cls.__dict__.items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            yield name, attr, "property"
        elif isinstance(attr, classmethod):
            yield name, attr.__func__, "classmethod"
        elif isinstance(attr, staticmethod):
            yield name, attr.__func__, "staticmethod"
        elif inspect.isfunction(attr):
            yield name, attr, "method"


def _render_class(name: str, cls) -> list[str]:
    out = [f"### {name}", "", "```python", _signature(name, cls), "```", ""]
    out += _render_doc(_doc(cls))
    members = list(_members(cls))
    for mname, func, kind in members:
        if kind == "property":
            out += [f"#### {name}.{mname}", "", "*property*", ""]
            out += _render_doc(_doc(func), with_examples=True)
            continue
        label = f"{name}.{mname}"
        out += [f"#### {label}", "", "```python",
                _signature(label, func, drop_first=kind != "staticmethod"), "```", ""]
        if kind != "method":
            out += [f"*{kind}*", ""]
        out += _render_doc(_doc(func))
    if any(c.__name__ == "BaseEstimator" for c in cls.__mro__):
        out += [f"Also: {SKLEARN_INHERITED}.", ""]
    return out


def _render_function(name: str, func) -> list[str]:
    out = [f"### {name}", "", "```python", _signature(name, func), "```", ""]
    return out + _render_doc(_doc(func))


def _render_value(name: str, value) -> list[str]:
    return [f"### {name}", "", "```python", f"{name} = {value!r}", "```", ""]


def _public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    own = [(_line(obj), name) for name, obj in vars(module).items()
           if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
           and obj.__module__ == module.__name__]
    return [name for _, name in sorted(own)]


def _line(obj) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 0


def _render_object(name: str, obj) -> list[str]:
    if inspect.isclass(obj):
        return _render_class(name, obj)
    if callable(obj):
        return _render_function(name, obj)
    return _render_value(name, obj)


def _slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def collect():
    """Import every documented module.

    Returns
    -------
    found : list of (title, module, names, intro)
        The sections whose module imports, with the names to document.
    skipped : dict
        ``{module name: reason}`` for the modules left out: ``"missing"`` when
        there is no such module, otherwise the import error.
    """
    found, skipped = [], {}
    for title, modname, names, intro in SECTIONS:
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            skipped[modname] = "missing" if exc.name == modname else f"{type(exc).__name__}: {exc}"
            continue
        except Exception as exc:  # a module that is there but broken: say why
            skipped[modname] = f"{type(exc).__name__}: {exc}"
            continue
        names = [n for n in (names or _public_names(module)) if hasattr(module, n)]
        found.append((title, module, names, intro))
    return found, skipped


def generate() -> tuple[str, dict]:
    """The markdown of ``docs/api.md``.

    Returns
    -------
    text : str
        The page.
    skipped : dict
        Modules left out and why (see :func:`collect`).
    """
    found, skipped = collect()
    out = [
        "# API reference",
        "",
        "<!-- Generated by docs/make_api.py from the docstrings: do not edit by hand; "
        "rerun `python docs/make_api.py`. -->",
        "",
        "Everything a user imports. The [user guide](user_guide.md) explains how the "
        "pieces fit together.",
        "",
    ]
    for title, module, names, _ in found:
        entries = ", ".join(f"[`{n}`](#{_slug(n)})" for n in names)
        out.append(f"- [{title}](#{_slug(title)}) (`{module.__name__}`): {entries}")
    out.append("")
    for title, module, names, intro in found:
        out += [f"## {title}", "", intro, ""]
        for name in names:
            out += _render_object(name, getattr(module, name))
    text = "\n".join(out).rstrip("\n") + "\n"
    return re.sub(r"\n{3,}", "\n\n", text), skipped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/api.md differs from the docstrings")
    args = parser.parse_args(argv)
    text, skipped = generate()
    for mod, why in skipped.items():
        print(f"make_api: left out {mod} ({why})", file=sys.stderr)
    if args.check:
        current = API_MD.read_text(encoding="utf-8") if API_MD.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run `python docs/make_api.py`", file=sys.stderr)
            return 1
        return 0
    API_MD.write_text(text, encoding="utf-8")
    print(f"wrote {API_MD.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    sys.exit(main())
