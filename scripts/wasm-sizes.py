#!/usr/bin/env python3
"""Where a WASM file's code goes: function body bytes summed by crate.

Reads the code section and the `name` section (present in the file rustc
writes, before wasm-bindgen/wasm-opt strip it) and groups demangled
function names by their first path segment. Usage:
    scripts/wasm-sizes.py target/front/wasm32-unknown-unknown/wasm-release/sse_notify.wasm [top]
"""
import re
import sys
from collections import Counter


def leb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def sections(data):
    pos = 8
    while pos < len(data):
        sid = data[pos]
        size, pos = leb(data, pos + 1)
        yield sid, data[pos:pos + size]
        pos += size


def imported_functions(body):
    count, pos = leb(body, 0)
    funcs = 0
    for _ in range(count):
        for _ in range(2):  # module, field
            n, pos = leb(body, pos)
            pos += n
        kind = body[pos]
        pos += 1
        if kind == 0:
            _, pos = leb(body, pos)
            funcs += 1
        elif kind == 1:  # table: reftype + limits
            pos += 1
            flags, pos = leb(body, pos)
            _, pos = leb(body, pos)
            if flags & 1:
                _, pos = leb(body, pos)
        elif kind == 2:  # memory
            flags, pos = leb(body, pos)
            _, pos = leb(body, pos)
            if flags & 1:
                _, pos = leb(body, pos)
        elif kind == 3:  # global
            pos += 2
        elif kind == 4:  # tag
            pos += 1
            _, pos = leb(body, pos)
    return funcs


def body_sizes(body):
    count, pos = leb(body, 0)
    sizes = []
    for _ in range(count):
        size, pos = leb(body, pos)
        sizes.append(size)
        pos += size
    return sizes


def function_names(body):
    n, pos = leb(body, 0)
    pos += n  # "name"
    names = {}
    while pos < len(body):
        sub = body[pos]
        size, pos = leb(body, pos + 1)
        end = pos + size
        if sub == 1:
            count, p = leb(body, pos)
            for _ in range(count):
                idx, p = leb(body, p)
                ln, p = leb(body, p)
                names[idx] = body[p:p + ln].decode("utf-8", "replace")
                p += ln
        pos = end
    return names


def crate_of(name):
    legacy = re.match(r"_ZN(\d+)", name)
    if legacy:
        n = int(legacy.group(1))
        seg = name[legacy.end():legacy.end() + n]
        if seg.startswith("_$LT$"):
            inner = re.search(r"\$LT\$([A-Za-z0-9_]+)", seg)
            return inner.group(1) if inner else seg
        return seg
    v0 = re.match(r"_R.*?C[s_0-9a-zA-Z]*?(\d+)([a-z_][a-z0-9_]*)", name)
    if v0:
        return v0.group(2)
    return "(other: " + name.split("::")[0][:30] + ")"


def main():
    data = open(sys.argv[1], "rb").read()
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    imports = 0
    sizes = []
    names = {}
    section_sizes = Counter()
    for sid, body in sections(data):
        section_sizes[sid] += len(body)
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            sizes = body_sizes(body)
        elif sid == 0:
            n, p = leb(body, 0)
            if body[p:p + n] == b"name":
                names = function_names(body)
    by_crate = Counter()
    for i, size in enumerate(sizes):
        by_crate[crate_of(names.get(imports + i, "?"))] += size
    total = sum(sizes)
    print(f"file {len(data)} B; code {total} B in {len(sizes)} functions; "
          f"data section {section_sizes[11]} B")
    for crate, size in by_crate.most_common(top):
        print(f"{size:>9} {100 * size / total:5.1f}%  {crate}")


if __name__ == "__main__":
    main()
