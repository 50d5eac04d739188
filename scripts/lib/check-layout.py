#!/usr/bin/env python3
"""The workspace's layout rules, checked from `cargo metadata` (tests/checks.d/layout.sh).

- Every crate is in one role folder: crates/{daemons,libs,tools,testkits}/<name>, or tests/e2e.
- A daemon never depends on another daemon; a library never on a daemon or a tool.
- Test kits are dev-dependencies only: nothing that ships links them.
- No two crates depend on each other, counting dev-dependencies (a test that needs both goes
  to tests/e2e).
Prints each broken rule with the crates involved; exits 1 if any.
"""
import json
import subprocess
import sys

meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
    check=True, capture_output=True, text=True).stdout)
root = meta["workspace_root"].rstrip("/") + "/"
role, deps = {}, {}
problems = []
for p in meta["packages"]:
    rel = p["manifest_path"][len(root):].rsplit("/Cargo.toml", 1)[0]
    parts = rel.split("/")
    if rel == "tests/e2e":
        role[p["name"]] = "e2e"
    elif len(parts) == 3 and parts[0] == "crates" and parts[1] in ("daemons", "libs", "tools", "testkits"):
        role[p["name"]] = parts[1]
    else:
        problems.append(f"{p['name']} is at {rel}: put it in crates/<daemons|libs|tools|testkits>/ or tests/e2e")
    deps[p["name"]] = [(d["name"], d.get("kind") or "normal") for d in p["dependencies"]]

for name, ds in deps.items():
    for dep, kind in ds:
        if dep not in deps:
            continue
        r, dr = role.get(name), role.get(dep)
        if r == "daemons" and dr == "daemons":
            problems.append(f"daemon {name} depends on daemon {dep} ({kind}): share through crates/libs or test in tests/e2e")
        if r == "libs" and dr in ("daemons", "tools"):
            problems.append(f"library {name} depends on {dr[:-1]} {dep} ({kind})")
        if dr == "testkits" and kind != "dev" and r not in ("testkits", "e2e", "tools"):
            problems.append(f"{name} links test kit {dep} as a {kind} dependency: test kits never ship")
        if any(d == name for d, _ in deps.get(dep, [])):
            a, b = sorted((name, dep))
            problems.append(f"{a} and {b} depend on each other: move the test that needs both to tests/e2e")

for p in sorted(set(problems)):
    print("layout:", p, file=sys.stderr)
if problems:
    sys.exit(1)
counts = {r: sum(1 for v in role.values() if v == r) for r in ("daemons", "libs", "tools", "testkits", "e2e")}
print("layout: ok (" + ", ".join(f"{n} {r}" for r, n in counts.items()) + "; no dependency runs both ways)")
