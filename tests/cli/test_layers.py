#!/usr/bin/env python3
"""The architecture, checked: every `#include "..."` in daemon/ runs down the
layers that daemon/main.c's top comment declares (a file includes only its
own layer and those below), the modules' include graph has no cycle, every
module has a layer, and README's Layout names the same layers.

Usage: test_layers.py SOURCE_ROOT
"""

import os
import re
import sys
import unittest

SRC = None

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def module_of(filename):
    """A module's files are NAME.c, NAME.h and NAME-PART.[ch]: daemon/store-file.c,
    env-job.c and report-internal.h belong to store, env and report."""
    name = re.sub(r"\.(c|h)$", "", os.path.basename(filename))
    return name if name == "refreshd-messages" else name.split("-")[0]


def declared_layers(main_c):
    """[[module, ...], ...] top to bottom, from main.c's comment block that
    starts with 'Layers, top to bottom'."""
    m = re.search(r"Layers, top to bottom[^:]*:\n((?: \*   [^\n]*\n)+)", main_c)
    if not m:
        raise AssertionError("daemon/main.c has no 'Layers, top to bottom' block in its top comment")
    layers = []
    for line in m.group(1).splitlines():
        words = line[len(" *   "):].split()
        if words:
            layers.append(words)
    return layers


def readme_layers(readme):
    """The same, from README's table of layers (| N | `a` `b` ... |)."""
    m = re.search(r"\| layer \| modules \|\n\|[-| ]+\|\n((?:\|[^\n]*\|\n)+)", readme)
    if not m:
        raise AssertionError("README.md has no '| layer | modules |' table")
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # The modules are the names in backticks outside the explanations in brackets.
        rows.append(re.findall(r"`([^`]+)`", re.sub(r"\([^()]*\)", "", cells[1])))
    return rows


def includes(files):
    """{module: {module it includes}} from {filename: text}."""
    graph = {}
    for name, text in files.items():
        mod = module_of(name)
        for inc in INCLUDE.findall(text):
            target = module_of(inc)
            if target != mod:
                graph.setdefault(mod, set()).add(target)
        graph.setdefault(mod, set())
    return graph


def violations(graph, layers):
    """What runs against LAYERS: upward includes, unplaced modules, cycles."""
    rank = {}
    problems = []
    for i, layer in enumerate(layers):
        for mod in layer:
            if mod in rank:
                problems.append("%s is in two layers" % mod)
            rank[mod] = i
    for mod in sorted(graph):
        if mod not in rank:
            problems.append("%s has no layer: add it to main.c's list" % mod)
            continue
        for target in sorted(graph[mod]):
            if target not in rank:
                problems.append("%s includes %s, which has no layer" % (mod, target))
            elif rank[target] < rank[mod]:
                problems.append("%s (layer %d) includes %s (layer %d), above it" % (mod, rank[mod], target, rank[target]))
    # A cycle within a layer: depth-first search for a back edge.
    state = {}

    def visit(mod, path):
        state[mod] = "open"
        for target in sorted(graph.get(mod, ())):
            if state.get(target) == "open":
                problems.append("include cycle: %s" % " -> ".join(path + [mod, target]))
            elif target not in state:
                visit(target, path + [mod])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])
    return problems


def daemon_files():
    files = {}
    for name in sorted(os.listdir(os.path.join(SRC, "daemon"))):
        if name.endswith((".c", ".h")):
            files[name] = read("daemon", name)
    return files


class LayersTest(unittest.TestCase):
    def test_includes_run_down_the_layers(self):
        layers = declared_layers(read("daemon", "main.c"))
        problems = violations(includes(daemon_files()), layers)
        self.assertEqual(problems, [], "\n".join(problems))

    def test_readme_names_the_same_layers(self):
        self.assertEqual(readme_layers(read("README.md")), declared_layers(read("daemon", "main.c")))

    def test_every_layer_is_used(self):
        graph = includes(daemon_files())
        for layer in declared_layers(read("daemon", "main.c")):
            for mod in layer:
                self.assertIn(mod, graph, "%s is declared but no daemon/%s.[ch] exists" % (mod, mod))

    # The checker itself must be able to fail.
    def test_checker_finds_an_upward_include(self):
        files = {"env.c": '#include "manager.h"\n', "manager.c": '#include "env.h"\n'}
        problems = violations(includes(files), [["manager"], ["env"]])
        self.assertEqual(problems, ["env (layer 1) includes manager (layer 0), above it",
                                    "include cycle: env -> manager -> env"])

    def test_checker_finds_a_cycle_in_a_layer(self):
        files = {"a.c": '#include "b.h"\n', "b.h": '#include "c.h"\n', "c.c": ' # include "a.h"\n'}
        problems = violations(includes(files), [["a", "b", "c"]])
        self.assertEqual(problems, ["include cycle: a -> b -> c -> a"])

    def test_checker_finds_an_unplaced_module(self):
        problems = violations(includes({"new.c": '#include "macro.h"\n'}), [["macro"]])
        self.assertEqual(problems, ["new has no layer: add it to main.c's list"])

    def test_checker_reads_the_modules(self):
        self.assertEqual(module_of("daemon/store-file.c"), "store")
        self.assertEqual(module_of("report-internal.h"), "report")
        self.assertEqual(module_of("env-job.c"), "env")
        self.assertEqual(module_of("refreshd-messages.h"), "refreshd-messages")
        graph = includes({"x.c": '#include "x.h"\n#include <yaml.h>\n#include "y.h"\n'})
        self.assertEqual(graph, {"x": {"y"}})


if __name__ == "__main__":
    SRC = sys.argv.pop(1)
    unittest.main(verbosity=2)
