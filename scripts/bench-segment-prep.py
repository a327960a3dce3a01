#!/usr/bin/env python3
"""How a new log segment should be prepared on this machine's file system (issue 12).

Compares four ways to make a segment, on scratch files in DIR (removed at the end):
  zero    write zeros over the whole file first (what the engine does), then overwrite
  sparse  ftruncate to the size (a hole; blocks allocated as the log is written)
  falloc  posix_fallocate (ext4: unwritten extents, converted as they are written)
  grow    nothing: the file grows with each write
For each: MiB/s of 2 MiB writes each followed by fdatasync (a batched append group),
with and without the preparation's own time, and the latency of 4 KiB write + fdatasync
at increasing offsets (a single-append group), sampled in interleaved blocks so that the
machine's load hits every variant alike.

usage: scripts/bench-segment-prep.py DIR [SEGMENT_MIB] [ROUNDS]
"""
import os
import statistics
import sys
import time

MIB = 1 << 20
KINDS = ["zero", "sparse", "falloc", "grow"]


def prepare(path, kind, size):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    started = time.perf_counter()
    if kind == "zero":
        zeros = b"\0" * MIB
        for offset in range(0, size, MIB):
            os.pwrite(fd, zeros, offset)
    elif kind == "sparse":
        os.ftruncate(fd, size)
    elif kind == "falloc":
        os.posix_fallocate(fd, 0, size)
    os.fsync(fd)
    return fd, time.perf_counter() - started


def main():
    directory = sys.argv[1]
    size = int(sys.argv[2] if len(sys.argv) > 2 else 512) * MIB
    rounds = int(sys.argv[3] if len(sys.argv) > 3 else 2)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "segment-prep.tmp")
    block = os.urandom(2 * MIB)
    for round_number in range(1, rounds + 1):
        for kind in KINDS:
            fd, prepare_secs = prepare(path, kind, size)
            started = time.perf_counter()
            for offset in range(0, size, len(block)):
                os.pwrite(fd, block, offset)
                os.fdatasync(fd)
            write_secs = time.perf_counter() - started
            os.close(fd)
            print(f"round {round_number} {kind:6} 2 MiB write+fdatasync: "
                  f"{size / write_secs / MIB:5.0f} MiB/s, with preparation "
                  f"{size / (write_secs + prepare_secs) / MIB:5.0f} MiB/s", flush=True)
    files = {kind: prepare(f"{path}.{kind}", kind, 64 * MIB)[0] for kind in KINDS}
    offsets = dict.fromkeys(KINDS, 0)
    samples = {kind: [] for kind in KINDS}
    page = os.urandom(4096)
    for _ in range(12):
        for kind in KINDS:
            for _ in range(150):
                started = time.perf_counter()
                os.pwrite(files[kind], page, offsets[kind])
                os.fdatasync(files[kind])
                samples[kind].append(time.perf_counter() - started)
                offsets[kind] += 4096
    for kind in KINDS:
        os.close(files[kind])
        os.unlink(f"{path}.{kind}")
        ordered = sorted(samples[kind])
        print(f"{kind:6} 4 KiB write+fdatasync: p50 {ordered[len(ordered) // 2] * 1e6:6.0f} us, "
              f"mean {statistics.mean(ordered) * 1e6:6.0f} us", flush=True)
    if os.path.exists(path):
        os.unlink(path)


if __name__ == "__main__":
    main()
