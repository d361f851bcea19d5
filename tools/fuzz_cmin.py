#!/usr/bin/env python3
"""Corpus minimisation for tools/fuzz.sh (docs/fuzzing.md, "Corpora"): afl-cmin's rule,
done fast. AFL++'s afl-showmap runs every candidate once (one process, persistent mode)
and records the edges (with hit-count buckets) each one covers; for every edge the
smallest candidate covering it is kept. The seeds (seed-*) and the crash regressions
(crash-*) are always kept, under their names; the rest are written as found-NNNN.

AFL++'s own afl-cmin.bash takes minutes per thousand files here (a shell loop per edge),
and its Python afl-cmin (what `cargo afl cmin` runs) recorded no edges for these targets.

usage: fuzz_cmin.py AFL_SHOWMAP TARGET_BINARY CORPUS_DIR [QUEUE_DIR]
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    showmap, binary, corpus = sys.argv[1:4]
    queue = sys.argv[4] if len(sys.argv) == 5 else None

    kept = {}  # name -> bytes: seeds and crashes, always kept
    candidates = {}  # sha256 -> bytes
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), "rb") as f:
            data = f.read()
        if name.startswith(("seed-", "crash-")):
            kept[name] = data
        candidates[hashlib.sha256(data).hexdigest()] = data
    if queue and os.path.isdir(queue):
        for name in os.listdir(queue):
            path = os.path.join(queue, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    data = f.read()
                candidates[hashlib.sha256(data).hexdigest()] = data

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(corpus))) as work:
        inputs = os.path.join(work, "in")
        traces = os.path.join(work, "traces")
        os.mkdir(inputs)
        for digest, data in candidates.items():
            with open(os.path.join(inputs, digest), "wb") as f:
                f.write(data)
        env = dict(os.environ, AFL_NO_AFFINITY="1")
        subprocess.run(
            [showmap, "-q", "-t", "1000", "-i", inputs, "-o", traces, "--", binary],
            check=False,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        edges = {}  # digest -> set of "edge:bucket"
        for digest in candidates:
            path = os.path.join(traces, digest)
            if os.path.exists(path):
                with open(path) as f:
                    edges[digest] = {line.strip() for line in f if line.strip()}
    if not edges:
        print("afl-showmap recorded no edges; the corpus is left as it was", file=sys.stderr)
        return 1

    covered = set()
    for name, data in kept.items():
        covered |= edges.get(hashlib.sha256(data).hexdigest(), set())
    kept_digests = {hashlib.sha256(d).hexdigest() for d in kept.values()}
    # afl-cmin's rule: the smallest input covering each edge is its candidate; going from
    # the rarest edge up, an edge not yet covered brings in its candidate, and everything
    # that input covers.
    best = {}
    count = {}
    for digest in sorted(edges, key=lambda d: (len(candidates[d]), d)):
        for edge in edges[digest]:
            best.setdefault(edge, digest)
            count[edge] = count.get(edge, 0) + 1
    chosen = set()
    for edge in sorted(best, key=lambda e: (count[e], e)):
        if edge not in covered:
            chosen.add(best[edge])
            covered |= edges[best[edge]]
    found = sorted(chosen - kept_digests, key=lambda d: (len(candidates[d]), d))

    shutil.rmtree(corpus)
    os.mkdir(corpus)
    for name, data in kept.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    for n, digest in enumerate(found, 1):
        with open(os.path.join(corpus, f"found-{n:04d}"), "wb") as f:
            f.write(candidates[digest])
    size = sum(len(d) for d in kept.values()) + sum(len(candidates[d]) for d in found)
    print(
        f"{corpus}: {len(kept) + len(found)} files ({len(kept)} seeds and crashes), "
        f"{size} bytes, from {len(candidates)} candidates covering "
        f"{len(set().union(*edges.values()))} edges"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
