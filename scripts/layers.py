#!/usr/bin/env python3
"""Checks the core's layering from its object files.

Usage: scripts/layers.py BUILD_DIR

Reads the symbols every object of src/ defines and uses (nm), draws the
file -> file call graph, and fails when two files call each other through
any path (a circle), or when a file calls up into a higher layer than the
one src/internal.h gives it more than MAX_UP times.
"""
import os, re, subprocess, sys

MAX_UP = 4

def layers(src):
    text = open(os.path.join(src, "internal.h")).read()
    block = text[text.index(" * Layers"):text.index("*/", text.index(" * Layers"))]
    out, cur = {}, None
    for line in block.splitlines():
        m = re.match(r"\s*\*\s+(\d)\s+(.*)", line)
        if m:
            cur = int(m.group(1))
        if cur is None:
            continue
        for f in re.findall(r"\b([a-z_]+\.c)\b", line):
            out[f] = cur
    return out

def main():
    build = sys.argv[1]
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    objdir = os.path.join(build, "CMakeFiles", "tmfalloc_core.dir", "src")
    defs, uses = {}, {}
    for o in sorted(os.listdir(objdir)):
        if not o.endswith(".c.o"):
            continue
        f = o[:-2]
        nm = subprocess.run(["nm", os.path.join(objdir, o)], capture_output=True, text=True, check=True).stdout
        uses[f] = set()
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBRW" and parts[1].isupper():
                defs[parts[2]] = f
            elif len(parts) == 2 and parts[0] == "U":
                uses[f].add(parts[1])
    edges = {f: {defs[s] for s in u if s in defs and defs[s] != f} for f, u in uses.items()}
    lay = layers(src)
    bad = 0
    # circles: strongly connected components of more than one file
    index, low, stack, on, comps = {}, {}, [], set(), []
    def visit(v, n=[0]):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            comps.append(comp)
    for v in edges:
        if v not in index:
            visit(v)
    for c in comps:
        if len(c) > 1:
            print("circle:", " ".join(sorted(c)))
            bad = 1
    up = []
    for f, ts in edges.items():
        for t in ts:
            if f not in lay or t not in lay:
                print("not in the layer list of internal.h:", f if f not in lay else t)
                bad = 1
            elif lay[t] > lay[f]:
                names = sorted(s for s in uses[f] if defs.get(s) == t)
                up.append(f"{f} ({lay[f]}) -> {t} ({lay[t]}): {', '.join(names)}")
    for u in up:
        print("up:", u)
    if len(up) > MAX_UP:
        print(f"{len(up)} calls run up, more than {MAX_UP}")
        bad = 1
    for f in sorted(lay, key=lambda f: (lay[f], f)):
        lines = sum(1 for _ in open(os.path.join(src, f)))
        if lines > 600:
            print(f"{f}: {lines} lines, more than 600")
            bad = 1
    print("layers:", "ok" if not bad else "FAILED", f"({len(edges)} files, {sum(len(e) for e in edges.values())} arrows, {len(up)} up)")
    return bad

sys.exit(main())
