"""List the import circles among the project's modules: `python scripts/import_circles.py`.

Every `import` and `from ... import` statement in a file counts, wherever it stands (module level, inside a
function, under `if`): an import inside a function still makes the two modules depend on each other, it only
hides the circle from the interpreter until that function runs. An import names the most specific project
module it loads (`from eval.video import mlvu` -> eval.video.mlvu; `from eval.video.mlvu import SYSTEM` ->
eval.video.mlvu), and the packages above it, whose __init__ runs first (eval, eval.video), except the
importer's own packages (already running). A circle is a strongly connected group of modules; each is printed with one cycle through
it (every member reached, e.g. `a -> b -> a`).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("adapters", "bench", "core", "eval", "evolve", "zoo")


def project_modules(repo: Path = REPO, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the project's packages (a package is its __init__)."""
    modules = {}
    for package in packages:
        for path in sorted((repo / package).rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict) -> str | None:
    """The longest prefix of a dotted name that is a project module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """The project modules one file imports, from every import statement anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is None:
                continue
            parts = target.split(".")  # importing a.b.c runs a's and a.b's __init__ first
            for end in range(1, len(parts) + 1):
                loaded = ".".join(parts[:end])
                if loaded in modules and loaded != module and not module.startswith(loaded + "."):
                    found.add(loaded)
    return found


def graph(repo: Path = REPO, packages=PACKAGES) -> dict[str, set[str]]:
    modules = project_modules(repo, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted, the list sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(start):
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def cycle_through(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A closed walk inside the group from its first member that visits every member (shortest hops)."""
    inside = set(group)

    def path(src, dst):
        previous, frontier = {src: None}, [src]
        while frontier:
            nxt = []
            for node in frontier:
                for child in sorted(edges[node] & inside):
                    if child not in previous:
                        previous[child] = node
                        nxt.append(child)
            frontier = nxt
        hops, node = [], dst
        while node != src:
            hops.append(node)
            node = previous[node]
        return hops[::-1]

    walk, here = [group[0]], group[0]
    for target in group[1:] + [group[0]]:
        if target in walk and target != group[0]:
            continue
        walk += path(here, target)
        here = target
    return walk


def main() -> int:
    edges = graph()
    found = circles(edges)
    for group in found:
        print(" -> ".join(cycle_through(group, edges)))
    if not found:
        print("no import circles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
