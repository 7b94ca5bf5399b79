"""The package's layers import only downwards, with no circle: data, algorithms, run, report,
then the commands. Type-hint imports count too."""

import ast
from pathlib import Path

import fewshot_cli

PACKAGE = Path(fewshot_cli.__file__).parent
# Lower numbers sit lower; a module may import its own layer or any lower one.
LAYERS = {"base": 0, "data": 1, "algorithms": 2, "run": 3, "report": 4, "top": 5}
BASE = {"errors", "atomic", "choices", "l2l", "__init__"}


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]  # without "fewshot_cli"
    if not parts or parts[0] in BASE:
        return LAYERS["base"]
    return LAYERS.get(parts[0], LAYERS["top"])


def imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, anywhere in its code."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("fewshot_cli", *path.relative_to(PACKAGE).with_suffix("").parts))
        name = name.removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "fewshot_cli"):
                for alias in node.names:  # `from fewshot_cli.run import protocol` names a module
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if (PACKAGE / Path(*sub.split(".")[1:])).with_suffix(
                        ".py").exists() else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("fewshot_cli.")}
        graph[name] = found - {name}
    return graph


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} -> {target}" for module, targets in imports().items()
              for target in targets if layer_of(target) > layer_of(module)]
    assert upward == []


def test_no_import_circle():
    graph = imports()
    circles = []

    def visit(module, path):
        for target in graph.get(module, ()):
            if target in path:
                loop = path[path.index(target):]
                start = loop.index(min(loop))  # one circle, whichever module it was met from
                circles.append(" -> ".join([*loop[start:], *loop[:start], min(loop)]))
            elif len(path) < 12:
                visit(target, [*path, target])

    for module in graph:
        visit(module, [module])
    assert sorted(set(circles)) == []
