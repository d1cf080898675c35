"""The package's imports go one way: cli -> studies (classification, mt) -> data, modelprep
-> core, the grid -> core and the study interface; no import cycle anywhere inside peft_utils
(imports inside functions count too). A method's behaviour lives in its registry entry, and a
data set's in its own: no module outside core/methods.py branches on a method's name, none
outside the data set registry and loaders on a data set's name."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "peft_utils"

# Top-level part -> the parts it may import (besides itself).
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "modelprep": {"core"},
    "classification": {"core", "data", "modelprep"},
    "mt": {"core", "data"},
    "grid": {"core"},
    "cli": {"core", "data", "modelprep", "classification", "mt", "grid"},
    "__main__": {"cli"},
    "__init__": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """peft_utils modules imported anywhere in `path` (`from a import b` names the module
    a.b when b is one, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if is_module(sub) else node.module)
    return {name for name in found if name.split(".")[0] == "peft_utils"}


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycle_inside_the_package():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_go_one_way():
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph().items() for target in targets
                   if part(target) != part(module) and part(target) not in ALLOWED[part(module)])
    assert wrong == []


def test_every_part_of_the_package_has_a_rule():
    assert {part(module) for module in graph()} <= set(ALLOWED)


def test_every_package_folder_is_a_regular_package():
    """A folder of modules without __init__.py is left out by setuptools' find_packages, so
    a non-editable install would lack it."""
    from setuptools import find_packages

    folders = {str(p.parent.relative_to(PACKAGE.parent)).replace("/", ".")
               for p in PACKAGE.rglob("*.py")}
    assert folders <= set(find_packages(str(PACKAGE.parent), include=["peft_utils*"]))


# ---- method behaviour lives in the registry -------------------------------------------------
# A method's behaviour is a field or hook of its entry in core/methods.py; elsewhere a method's
# name is data (a default list, a plotting order), never a branch. Exceptions, each with why:
# (module, method name).
NAME_CHECKS_ALLOWED: set[tuple[str, str]] = set()


def method_name_checks(path: Path, names: set[str]) -> list[tuple[str, int]]:
    """(name, line) wherever `path` branches on a registry method's name written as
    a string literal: a comparison (`== "fft"`, `in ("pfeiffer", "houlsby")`), pandas'
    `.eq` / `.ne` / `.isin`, a dict keyed by names (a dispatch table), a `case "fft":`."""
    def literals(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*map(literals, node.elts))
        return set()

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("eq", "ne", "isin"):
            operands = node.args
        elif isinstance(node, ast.Dict):
            operands = [key for key in node.keys if key is not None]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        else:
            continue
        found += [(name, node.lineno) for name in sorted(set().union(*map(literals, operands)))]
    return found


def test_no_module_branches_on_a_method_name():
    from peft_utils.core.methods import REGISTRY

    registry = PACKAGE / "core" / "methods.py"
    found = [(module_name(path), name, line) for path in sorted(PACKAGE.rglob("*.py"))
             if path != registry for name, line in method_name_checks(path, set(REGISTRY))
             if (module_name(path), name) not in NAME_CHECKS_ALLOWED]
    assert found == [], "branch on the registry entry's fields or hooks (core/methods.py)"


def test_the_name_check_scan_finds_name_checks(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('if method == "fft": pass\nok = m in ("pfeiffer", "houlsby")\n'
                      'runs[runs["method"].ne("lora")]\nf = {"bitfit": 1}[name]\n'
                      'match method:\n    case "cross_attn": pass\n'
                      'ORDER = ("fft", "lora")\nif knob == "lora_r": pass\n')   # data, a knob: fine
    names = {"fft", "pfeiffer", "houlsby", "lora", "bitfit", "cross_attn"}
    assert method_name_checks(source, names) == [
        ("fft", 1), ("houlsby", 2), ("pfeiffer", 2), ("lora", 3), ("bitfit", 4),
        ("cross_attn", 6)]


# ---- library behaviour lives in its backend ---------------------------------------------------
# What peft, the adapters library or the project's own methods do differently is a method of
# that library's backend in core/backends.py (`entry.backend`); elsewhere a library's name is
# data (a record's field, a message), never a branch.
BACKENDS_MODULE = "core/backends.py"


def is_library(node) -> bool:
    """`x.library` or a variable `library`."""
    return (isinstance(node, ast.Attribute) and node.attr == "library") or \
        (isinstance(node, ast.Name) and node.id == "library")


def is_literal(node) -> bool:
    """A string literal, or a tuple, list or set of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and bool(node.elts) \
        and all(map(is_literal, node.elts))


def library_checks(path: Path, libraries: set[str]) -> list[tuple[str, int]]:
    """(what, line) wherever `path` branches on a library's name: `library` or `x.library`
    compared with a string literal (`==`, `!=`, `in`), a lookup keyed by it (`X[entry.library]`,
    `X.get(entry.library)`), or a library's name written as a literal in a comparison, a
    dict's keys (a dispatch table) or a `case`."""
    found = [(f"{name!r}", line) for name, line in method_name_checks(path, libraries)]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(map(is_library, operands)) and any(map(is_literal, operands)):
                found.append(("library compared", node.lineno))
        elif isinstance(node, ast.Subscript) and is_library(node.slice):
            found.append(("lookup by library", node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and node.args and is_library(node.args[0]):
            found.append(("lookup by library", node.lineno))
    return sorted(set(found), key=lambda item: (item[1], item[0]))


def test_no_module_branches_on_a_library_name():
    from peft_utils.core.backends import BUILTIN

    found = [(module_name(path), what, line) for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).as_posix() != BACKENDS_MODULE
             for what, line in library_checks(path, set(BUILTIN))]
    assert found == [], "call the library's backend instead (entry.backend, core/backends.py)"


def test_the_library_check_scan_finds_library_checks(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('if entry.library == "peft": pass\n'
                      'x = 1 if library != "adapters" else 2\n'
                      'ok = entry.library in ("peft", "adapters")\n'
                      'TRAINED = {"peft": "default"}\n'
                      'load = LOADING[run.entry.library]\n'
                      'kind = TABLE.get(library, None)\n'
                      'if kind == "project": pass\n'
                      'print(f"{entry.library}"); row = {"library": entry.library}\n'   # data
                      'same = a.library == b.library\n')                              # no literal
    assert library_checks(source, {"peft", "adapters", "project"}) == [
        ("'peft'", 1), ("library compared", 1), ("'adapters'", 2), ("library compared", 2),
        ("'adapters'", 3), ("'peft'", 3), ("library compared", 3), ("'peft'", 4),
        ("lookup by library", 5), ("lookup by library", 6), ("'project'", 7)]


# ---- data set knowledge lives in the data set registry ---------------------------------------
# A data set's languages, tasks, metric, layout and parallelism are fields of its entry in
# data/registry.py; its own loader module may name it (its DATASET constant). Elsewhere a
# data set's name is never a branch.
DATA_SET_MODULES = {"data/registry.py", "data/semeval.py", "data/sib200.py", "data/brighter.py",
                    "data/ntrex.py"}
# The functions that look a data set's entry up by name (data/registry.py).
LOOKUPS = {"get", "get_parallel"}


def data_set_names() -> set[str]:
    """The built-in data sets' names: classification and parallel (MT) entries."""
    from peft_utils.data.registry import BUILTIN, PARALLEL_BUILTIN

    return set(BUILTIN) | set(PARALLEL_BUILTIN)


def test_no_module_branches_on_a_data_set_name():
    found = [(module_name(path), name, line) for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).as_posix() not in DATA_SET_MODULES
             for name, line in method_name_checks(path, data_set_names())]
    assert found == [], "read the data set's registry entry (data/registry.py) instead"


def data_set_lookups(path: Path, names: set[str]) -> list[tuple[str, int]]:
    """(name, line) wherever `path` looks a data set up by its name written as a string
    literal: `get("semeval2023")`, `registry.get_parallel("ntrex")`, `get(name="sib200")`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        if called not in LOOKUPS:
            continue
        for arg in [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]:
            if isinstance(arg, ast.Constant) and arg.value in names:
                found.append((arg.value, node.lineno))
    return sorted(found, key=lambda item: item[1])


def test_no_module_looks_a_data_set_up_by_a_literal_name():
    """A data set's entry is found from the run's config (`dataset:`) or, in its own loader
    module, from the module's DATASET constant; a literal name passed to the registry's
    lookup elsewhere (`get("semeval2023")`, `get_parallel("ntrex")`) hard-codes the data set
    that the registry exists to make replaceable."""
    found = [(module_name(path), name, line) for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).as_posix() not in DATA_SET_MODULES
             for name, line in data_set_lookups(path, data_set_names())]
    assert found == [], ("look the entry up by the config's dataset, or by the DATASET "
                         "constant of the data set's own module (data/<name>.py)")


def test_the_data_set_scans_find_names_and_lookups(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('from peft_utils.data.registry import get\n'
                      'table = get("semeval2023").languages\n'
                      'entry = registry.get_parallel("ntrex", root)\n'
                      'if self.dataset != "ntrex": pass\n'
                      'ok = get(DATASET)\n'                         # a module's constant: fine
                      'other = mapping.get("unrelated")\n'
                      'dataset: str = "ntrex"\n')                   # a default: data
    names = {"semeval2023", "ntrex", "sib200"}
    assert data_set_lookups(source, names) == [("semeval2023", 2), ("ntrex", 3)]
    assert method_name_checks(source, names) == [("ntrex", 4)]


# ---- model-family knowledge lives in one table per family -------------------------------------
# Module names per architecture (core/methods.py), how a family is told the language pair
# (mt/families.py), which encoder output a head reads (classification/head.py); the tiny-model
# builders name the architecture they build. Elsewhere a model type or family is never a branch.
FAMILY_TABLES = {"core/methods.py", "mt/families.py", "classification/head.py",
                 "classification/testing.py", "mt/testing.py"}


def family_names() -> set[str]:
    """Model types the tables know, and the MT study's family names."""
    from peft_utils.classification.head import MEAN_POOLING_SLOT
    from peft_utils.core.methods import FAMILIES
    from peft_utils.mt.families import FAMILIES as MT_FAMILIES

    return {*FAMILIES, *MEAN_POOLING_SLOT, *MT_FAMILIES,
            *(t for family in MT_FAMILIES.values() for t in family.model_types)}


def test_no_module_branches_on_a_model_family_name():
    found = [(module_name(path), name, line) for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).as_posix() not in FAMILY_TABLES
             for name, line in method_name_checks(path, family_names())]
    assert found == [], "read the family's row of its table (see FAMILY_TABLES) instead"


def test_the_family_scan_finds_family_checks(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('if model_type in ("t5", "mt5"): pass\n'
                      'if scheme.name == "nllb": pass\n'
                      'SLOT = {"bert": 1}\n'
                      'TYPES = ("roberta", "camembert")\n')   # a table: data
    assert method_name_checks(source, family_names()) == [
        ("mt5", 1), ("t5", 1), ("nllb", 2), ("bert", 3)]


# ---- one run pipeline -----------------------------------------------------------------
STUDIES = ("classification", "mt")
# What a run does around the study's steps (timed phases, the record, the kept weights,
# serving, pruning): core.pipeline's, never a study's own.
PIPELINE_PARTS = {"peft_utils.core.timing", "peft_utils.core.checkpoints",
                  "peft_utils.core.serving.measure_serving", "peft_utils.core.runs.execute_run",
                  "peft_utils.core.runs.write_run_record"}


def imported_names(path: Path) -> set[str]:
    """Every `module.name` that `path` imports with `from module import name`."""
    return {f"{node.module}.{alias.name}"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names}


def test_no_study_writes_the_run_pipeline_again():
    """The run's frame is written once, in core.pipeline: a study that times its phases,
    writes its record or checkpoint, measures serving or guards its folder itself has a
    second pipeline."""
    wrong = sorted(f"{path.relative_to(PACKAGE)} imports {name}"
                   for study in STUDIES for path in (PACKAGE / study).rglob("*.py")
                   for name in imported_names(path)
                   if any(name == part or name.startswith(part + ".") for part in PIPELINE_PARTS))
    assert wrong == []


def test_both_studies_train_through_the_core_pipeline(tmp_path, monkeypatch):
    """Each study's train_and_evaluate runs core.pipeline.run with that study's steps."""
    from peft_utils.classification import training as classification
    from peft_utils.classification.config import RunConfig
    from peft_utils.core import pipeline
    from peft_utils.mt import training as mt
    from peft_utils.mt.config import MTConfig

    ran = []
    monkeypatch.setattr(pipeline, "execute_run", lambda config, root, body: body(tmp_path))
    monkeypatch.setattr(pipeline, "run", lambda config, out, steps: ran.append(steps))
    classification.train_and_evaluate(RunConfig(), tmp_path)
    mt.train_and_evaluate(MTConfig(), tmp_path)
    assert ran == [classification.STEPS, mt.STEPS]
    assert all(isinstance(steps, pipeline.Steps) for steps in ran)


# ---- function length ----------------------------------------------------------------------
MAX_FUNCTION_LINES = 60


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """`path:line name (n lines)` of every function or method in `root` longer than `limit`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_sixty_lines():
    assert long_functions(PACKAGE) == []


def test_the_length_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n", encoding="utf-8")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n", encoding="utf-8")
    assert [f.rsplit(" ", 3)[1] for f in long_functions(tmp_path)] == ["long"]
