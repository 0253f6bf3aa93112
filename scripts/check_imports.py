#!/usr/bin/env python3
"""The module table of ARCHITECTURE.md, checked against the sources (make build, make test, CI).

SwiftPM's `--explicit-target-dependency-import-check error` (also on in the Makefile) fails a
build only when a target imports a target of the package graph that is not among its
*recursive* dependencies, and it looks neither at system modules nor at unused dependencies.
The table is stricter, so this script checks, for every target of Package.swift
(`swift package dump-package`):

1. every module a target imports is one of its *direct* dependencies (a target of this
   package or a product of a package dependency) or a module of the toolchain (`TOOLCHAIN`):
   `POP3ServerTests` may not reach `CShim` through `POP3Server`, `POP3Server` may not reach
   `SystemPackage` through swift-configuration;
2. every dependency a target declares is imported by at least one of its files (no stale
   edges in the table);
3. the pure targets (`PURE` below: the protocol code) import no module of the toolchain or
   the system (Glibc, Dispatch, Foundation...), only their declared dependencies.

Exit status 1 with one line per finding; 0 and a summary line when the table holds.
"""
import json
import os
import re
import subprocess
import sys

# Targets whose sources may import no toolchain or system module (ARCHITECTURE.md: "Swift
# stdlib only").
PURE = {"POP3", "ProxyProtocol", "ByteCodec"}
# Modules of the toolchain and the system, which need no entry in Package.swift. Anything
# else a target imports must be one of its direct dependencies.
TOOLCHAIN = {"Swift", "_Concurrency", "Glibc", "Musl", "Darwin", "Dispatch", "Synchronization",
             "Foundation", "FoundationEssentials", "Testing", "XCTest"}
# Product names whose module is named differently (product -> modules it brings).
PRODUCT_MODULES = {}
IMPORT = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?"
                    r"import\s+(?:(?:struct|class|enum|protocol|typealias|func|let|var)\s+)?([A-Za-z_][A-Za-z0-9_]*)",
                    re.M)


def target_dir(target):
    if target.get("path"):
        return target["path"]
    kind = "Tests" if target["type"] == "test" else "Sources"
    return os.path.join(kind, target["name"])


def imports_in(directory):
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if not name.endswith(".swift"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for module in IMPORT.findall(text):
                found.setdefault(module, path)
    return found


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    swift = os.environ.get("SWIFT", "swift")
    manifest = json.loads(subprocess.run([swift, "package", "dump-package"], check=True,
                                         capture_output=True, text=True).stdout)
    targets = {t["name"]: t for t in manifest["targets"]}
    declared = {}
    for t in manifest["targets"]:
        deps = set()
        for dep in t.get("dependencies", []):
            if "byName" in dep:
                deps.add(dep["byName"][0])
            elif "target" in dep:
                deps.add(dep["target"][0])
            elif "product" in dep:
                for module in PRODUCT_MODULES.get(dep["product"][0], [dep["product"][0]]):
                    deps.add(module)
        declared[t["name"]] = deps
    problems = []
    for name, target in sorted(targets.items()):
        if target["type"] in ("system", "binary", "plugin", "macro"):
            continue
        imported = imports_in(target_dir(target))
        if name in PURE:
            for module, path in sorted(imported.items()):
                if module in TOOLCHAIN:
                    problems.append(f"{path}: {name} is pure (Swift stdlib only) but imports {module}")
        for module, path in sorted(imported.items()):
            if module not in TOOLCHAIN and module not in declared[name]:
                problems.append(f"{path}: {name} imports {module}, which Package.swift does not list "
                                f"among {name}'s dependencies")
        for module in sorted(declared[name]):
            if module not in imported:
                problems.append(f"Package.swift: {name} declares {module} but no file of it imports it")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"check_imports: {len(problems)} violation(s) of the module table", file=sys.stderr)
        return 1
    print(f"check_imports: {len(targets)} targets follow the module table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
