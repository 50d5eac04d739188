#!/usr/bin/env python3
"""The workspace builds with the Rust Buildroot builds the image with.

Usage: check-msrv.py BUILDER_RUST MANIFEST PACKAGE...

Fails (exit 1), naming the crate, when
- a workspace member's rust-version is not BUILDER_RUST (clippy's incompatible_msrv lint
  reads it, so it must be the builder's Rust, neither older nor newer), or
- a crate that PACKAGE... need to build for the Pi (their normal and build dependencies,
  transitively; dev-dependencies are not built by Buildroot) declares a rust-version
  above BUILDER_RUST: the builder's cargo refuses to compile it.

The graph is cargo's own (`cargo metadata`), resolved for aarch64-unknown-linux-gnu, the
target Buildroot builds for, so crates only other platforms use do not count.
"""
import json
import subprocess
import sys

TARGET = "aarch64-unknown-linux-gnu"


def version(text):
    """'1.88' and '1.88.0' are the same Rust: compare as three numbers."""
    parts = [int(p) for p in text.split("-")[0].split(".")]
    return tuple((parts + [0, 0, 0])[:3])


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    builder, manifest, roots = sys.argv[1], sys.argv[2], sys.argv[3:]
    want = version(builder)
    run = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked",
         "--filter-platform", TARGET, "--manifest-path", manifest],
        stdout=subprocess.PIPE, check=False)
    if run.returncode != 0:
        sys.exit(f"check-msrv: cargo metadata failed on {manifest} (above)")
    meta = json.loads(run.stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    errors = []

    members = [packages[i] for i in meta["workspace_members"]]
    for p in members:
        rv = p.get("rust_version")
        if rv is None:
            errors.append(f"workspace crate {p['name']} declares no rust-version: give it "
                          f"rust-version.workspace = true (clippy checks std APIs against it)")
        elif version(rv) != want:
            errors.append(f"workspace crate {p['name']} has rust-version {rv}, but Buildroot "
                          f"builds with Rust {builder}: set rust-version = \"{builder}\" "
                          f"(the root Cargo.toml's [workspace.package])")

    by_name = {p["name"]: p["id"] for p in members}
    missing = [r for r in roots if r not in by_name]
    if missing:
        errors.append("Buildroot builds " + ", ".join(missing) + ", which no workspace "
                      "crate is called (renamed? update minebox-services.mk)")
    # Walk normal and build edges from the binaries Buildroot builds; remember who pulled
    # each crate in, so the message can show the chain a fix has to break.
    via = {}
    stack = [by_name[r] for r in roots if r in by_name]
    seen = set(stack)
    while stack:
        cur = stack.pop()
        for dep in nodes[cur]["deps"]:
            if not any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                continue
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                via[dep["pkg"]] = cur
                stack.append(dep["pkg"])
    for pid in sorted(seen, key=lambda i: packages[i]["name"]):
        p = packages[pid]
        rv = p.get("rust_version")
        # Workspace crates were checked above, against equality.
        if rv is None or version(rv) <= want or pid in meta["workspace_members"]:
            continue
        chain, cur = [], pid
        while cur in via:
            cur = via[cur]
            chain.append(packages[cur]["name"])
        errors.append(f"crate {p['name']} {p['version']} declares rust-version {rv}, above the "
                      f"Rust {builder} Buildroot builds with (cargo would refuse it); pulled in "
                      f"by {' <- '.join(chain)}: hold it back (cargo update -p {p['name']} "
                      f"--precise <older>) or replace it")
    for e in errors:
        print(f"check-msrv: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check-msrv: {len(seen)} crates that {', '.join(roots)} build with need at most "
          f"Rust {builder}, the workspace's rust-version")


if __name__ == "__main__":
    main()
