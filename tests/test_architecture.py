"""The package structure: `tflite` below `tfkd`, no import cycles, modules of a readable size.

Imports are read from the source (every `import` statement, including those inside
functions), so the test fails on a cycle even where Python would tolerate it.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("tfkd", "tflite", "configs")
MAX_LINES = 450  # "one idea per file": past this, a module holds more than one


def module_files():
  """Module name → path of every module of the project's packages."""
  found = {}
  for package in PACKAGES:
    for path in sorted((ROOT / package).glob("*.py")):
      name = package if path.stem == "__init__" else f"{package}.{path.stem}"
      found[name] = path
  return found


def project_imports(path: pathlib.Path, modules) -> set:
  """The project modules `path` imports (`from tfkd import x` counts as tfkd.x when x is one)."""
  imported = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from tfkd import data` imports the module tfkd.data; `from tfkd import Distiller`, tfkd.
      names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
               else node.module for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        imported.add(name)
  return imported


def import_graph():
  modules = module_files()
  return {name: project_imports(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, stack + [nxt])
        if cycle:
          return cycle
    state[node] = "done"
    return None

  for start in sorted(graph):
    if start not in state:
      cycle = visit(start, [start])
      if cycle:
        return cycle
  return None


def test_tflite_imports_nothing_from_tfkd():
  offenders = {name: sorted(i for i in imports if i.split(".")[0] == "tfkd")
               for name, imports in import_graph().items() if name.startswith("tflite")}
  assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycle():
  graph = import_graph()
  # tfkd/__init__.py re-exports the public API: importing it from inside tfkd is the cycle.
  inside = {name: imports for name, imports in graph.items() if name != "tfkd"}
  assert "tfkd" not in set().union(*[i for n, i in inside.items() if n.startswith("tfkd.")])
  assert find_cycle(inside) is None


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({"tfkd.a": {"tfkd.b"}, "tfkd.b": {"tfkd.c"}, "tfkd.c": {"tfkd.a"}}) == [
      "tfkd.a", "tfkd.b", "tfkd.c", "tfkd.a"]
  assert find_cycle({"tfkd.a": {"tfkd.b"}, "tfkd.b": set()}) is None


def test_modules_stay_readable():
  long = {name: n for name, path in module_files().items()
          if (n := len(path.read_text().splitlines())) > MAX_LINES}
  assert not long
