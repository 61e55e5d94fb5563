#!/usr/bin/env python3
"""Turns touched code pages (idle-pages.py's output) into a linker symbol-ordering file.

Every function whose code overlaps a touched page is listed (a superset of the functions
run: a page holds several). With several page lists (one per process kind, all recorded
from the same BINARY), the functions every list touched come first, then each list's
others in the order given, so each kind's idle code is one or two contiguous runs. Each
group is in address order. Prints the file on stdout and a summary on stderr.
Usage: order-file.py BINARY PAGES...
"""
import subprocess
import sys

PAGE = 4096


def text_symbols(binary):
    nm = subprocess.run(["nm", "-n", "-S", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    for line in nm.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[2] in "tTwW":
            yield int(parts[0], 16), int(parts[1], 16), parts[3]


def touched_functions(symbols, pages):
    """The (address, size, name) of each symbol overlapping a page in `pages`."""
    out = []
    for addr, length, name in symbols:
        first, last = addr // PAGE * PAGE, (addr + max(length, 1) - 1) // PAGE * PAGE
        if any(p in pages for p in range(first, last + 1, PAGE)):
            out.append((addr, length, name))
    return out


def main():
    binary, lists = sys.argv[1], sys.argv[2:]
    symbols = list(text_symbols(binary))
    sets = []
    for path in lists:
        with open(path) as f:
            pages = {int(line, 16) for line in f if line.strip()}
        funcs = touched_functions(symbols, pages)
        print(f"{path}: {len(pages)} pages touched -> {len(funcs)} functions, "
              f"{sum(s for _, s, _ in funcs) / 1024:.0f} KiB of code", file=sys.stderr)
        sets.append(funcs)
    common = set.intersection(*(set(s) for s in sets))
    groups = [sorted(common)] + [[f for f in s if f not in common] for s in sets]
    seen = set()
    for group in groups:
        for f in group:
            if f not in seen:
                seen.add(f)
                print(f[2])
    print(f"order: {len(seen)} functions, {sum(s for _, s, _ in seen) / 1024:.0f} KiB of code "
          f"({len(common)} touched by every list)", file=sys.stderr)


if __name__ == "__main__":
    main()
