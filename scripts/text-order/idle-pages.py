#!/usr/bin/env python3
"""Lists the pages of a binary's code an idle process really touches.

The kernel maps file pages around every fault (64 KiB on this kernel), so a process's
resident code says little about which functions it runs. This measures them exactly,
given that the process runs a private copy of the binary opened while the disk's
read-ahead was 0 (so each fault reads and maps one page) and that the process trims
itself (unmaps its clean file pages, `skiff_runtime::resident::trim`):

1. wait for the process's next trim (its RSS drops by several MiB at once);
2. drop the page cache at once, so none of the binary's unmapped pages stay cached and
   fault-around has nothing around a fault to map;
3. after SECS, read /proc/PID/pagemap for the binary's mappings: the present pages are
   the ones the process touched since the trim.

Prints one line per present page of executable mappings: `0xADDRESS` (the binary is
linked at a fixed address, so these are the symbols' addresses); a summary on stderr.
Root only. Usage: idle-pages.py PID BINARY SECS
"""
import os
import struct
import sys
import time

PAGE = 4096


def rss_pages(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1])


def mappings(pid, binary):
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == binary:
                a, b = (int(x, 16) for x in parts[0].split("-"))
                out.append((a, b, parts[1]))
    return out


def present(pid, start, end):
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read((end - start) // PAGE * 8)
    pages = []
    for i in range((end - start) // PAGE):
        (entry,) = struct.unpack_from("<Q", data, i * 8)
        if entry >> 63 & 1:
            pages.append(start + i * PAGE)
    return pages


def main():
    pid, binary, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    last = rss_pages(pid)
    deadline = time.time() + 90
    while True:
        time.sleep(0.01)
        now = rss_pages(pid)
        if last - now >= 4 * 1024 * 1024 // PAGE:
            break
        last = now
        if time.time() > deadline:
            sys.exit("no trim seen within 90 s")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1")
    print(f"trim seen ({last * 4} -> {now * 4} KiB), caches dropped; watching {secs} s", file=sys.stderr)
    time.sleep(secs)
    for a, b, perms in mappings(pid, binary):
        pages = present(pid, a, b)
        print(f"{perms} {a:#x}-{b:#x}: {len(pages)} pages ({len(pages) * 4} KiB) present", file=sys.stderr)
        if "x" in perms:
            for p in pages:
                print(f"{p:#x}")


if __name__ == "__main__":
    main()
