#!/usr/bin/env python3
"""A Warren client in Python, written from proto/ and docs/protocol.md alone.

Generates the warren.v1 stubs from proto/ with grpcio-tools into a temporary directory
(nothing generated is committed), opens sessions against the data cells of a partitioned
deployment and through a proxy, provokes Warren's errors and decodes each one with the
standard gRPC error-details API: grpc_status.rpc_status.from_call, then Any.Unpack into
warren.v1.ErrorDetail (docs/protocol.md, "Errors").

Driven by tests/process/lang.rs:

    python3 tests/python/error_details.py --proto proto/proto \
        --cell c1=127.0.0.1:P1 --cell c2=127.0.0.1:P2 --proxy 127.0.0.1:P3

Prints one line per decoded error (`ok TIER CODE grpc=STATUS effect=...`) and exits 0 when
every check passed; any failure raises with a message naming the check.
"""

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import uuid

import grpc
from grpc_status import rpc_status

# The gRPC status each Warren code travels as, and whether the call may have taken effect
# (docs/protocol.md, "The error table").
EXPECTED = {
    "NOT_FOUND": (grpc.StatusCode.NOT_FOUND, "EFFECT_NOT_APPLIED"),
    "LOCK_HELD": (grpc.StatusCode.ABORTED, "EFFECT_NOT_APPLIED"),
    "GENERATION_MISMATCH": (grpc.StatusCode.ABORTED, "EFFECT_NOT_APPLIED"),
    "WRONG_CELL": (grpc.StatusCode.FAILED_PRECONDITION, "EFFECT_NOT_APPLIED"),
    "SESSION_EXPIRED": (grpc.StatusCode.FAILED_PRECONDITION, "EFFECT_NOT_APPLIED"),
}
ERROR_DETAIL_TYPE_URL = "type.googleapis.com/warren.v1.ErrorDetail"
TIMEOUT = 10  # seconds per call


def generate_stubs(proto_dir, out_dir):
    """python -m grpc_tools.protoc from proto/, into out_dir; returns (pb2, pb2_grpc)."""
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", proto_dir,
        "--python_out", out_dir,
        "--grpc_python_out", out_dir,
        "warren/v1/warren.proto",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"grpc_tools.protoc failed ({done.returncode}): {done.stderr}")
    sys.path.insert(0, out_dir)
    return (importlib.import_module("warren.v1.warren_pb2"),
            importlib.import_module("warren.v1.warren_pb2_grpc"))


class Checker:
    def __init__(self, pb, pb_grpc):
        self.pb = pb
        self.pb_grpc = pb_grpc
        self.seen = []

    def stub(self, addr):
        return self.pb_grpc.WarrenStub(grpc.insecure_channel(addr))

    def session(self, stub, principal="python"):
        r = stub.CreateSession(self.pb.CreateSessionRequest(principal=principal), timeout=TIMEOUT)
        assert len(r.session_id) == 16 and len(r.secret) == 16, r
        return self.pb.SessionContext(session_id=r.session_id, secret=r.secret, epoch=r.epoch), r

    def decode(self, err):
        """The standard decoding: from_call, then the one Any unpacked as ErrorDetail."""
        status = rpc_status.from_call(err)  # raises ValueError if code/message disagree
        assert status is not None, f"no grpc-status-details-bin in {err.code()} {err.details()!r}"
        assert status.code == err.code().value[0], (status.code, err.code())
        assert status.message == err.details(), (status.message, err.details())
        anys = [a for a in status.details if a.type_url == ERROR_DETAIL_TYPE_URL]
        assert len(anys) == 1, f"want one {ERROR_DETAIL_TYPE_URL}, got {list(status.details)}"
        detail = self.pb.ErrorDetail()
        assert anys[0].Unpack(detail), "Any.Unpack into warren.v1.ErrorDetail failed"
        return detail

    def expect(self, tier, code_name, call):
        """Runs `call`, which must fail with Warren's `code_name`; returns the detail."""
        try:
            call()
        except grpc.RpcError as err:
            detail = self.decode(err)
            got = self.pb.ErrorCode.Name(detail.code)
            assert got == code_name, f"{tier}: want {code_name}, got {got}: {err.details()}"
            grpc_code, effect = EXPECTED[code_name]
            assert err.code() == grpc_code, f"{tier} {code_name}: gRPC {err.code()}, want {grpc_code}"
            got_effect = self.pb.Effect.Name(detail.effect)
            assert got_effect == effect, f"{tier} {code_name}: effect {got_effect}, want {effect}"
            print(f"ok {tier} {code_name} grpc={err.code().name} effect={got_effect}: {err.details()}")
            self.seen.append((tier, code_name))
            return detail
        raise AssertionError(f"{tier}: the call succeeded; want {code_name}")

    def open(self, stub, ctx, path, create=False, intent=None):
        pb = self.pb
        req = pb.OpenRequest(ctx=ctx, path=path,
                             intent=intent if intent is not None else (pb.READ | pb.WRITE))
        if create:
            req.create.CopyFrom(pb.CreateSpec(kind=pb.FILE, initial_contents=b"v1"))
        return stub.Open(req, timeout=TIMEOUT)

    def errors_at(self, tier, stub, ctx_a, ctx_b, path):
        """NOT_FOUND, LOCK_HELD, GENERATION_MISMATCH at a server that owns `path`."""
        pb = self.pb
        self.expect(tier, "NOT_FOUND", lambda: self.open(stub, ctx_a, path + "-missing"))
        h_a = self.open(stub, ctx_a, path, create=True).handle
        stat = stub.GetStat(pb.GetStatRequest(ctx=ctx_a, handle=h_a), timeout=TIMEOUT).stat
        self.expect(tier, "GENERATION_MISMATCH", lambda: stub.SetContents(
            pb.SetContentsRequest(ctx=ctx_a, handle=h_a, contents=b"v2",
                                  if_content_generation=stat.content_generation + 7),
            timeout=TIMEOUT))
        stub.TryAcquire(pb.TryAcquireRequest(ctx=ctx_a, handle=h_a, mode=pb.EXCLUSIVE),
                        timeout=TIMEOUT)
        h_b = self.open(stub, ctx_b, path).handle
        self.expect(tier, "LOCK_HELD", lambda: stub.TryAcquire(
            pb.TryAcquireRequest(ctx=ctx_b, handle=h_b, mode=pb.EXCLUSIVE), timeout=TIMEOUT))

    def session_expired(self, tier, stub):
        pb = self.pb
        ctx, _ = self.session(stub, "python-closer")
        stub.CloseSession(pb.CloseSessionRequest(ctx=ctx), timeout=TIMEOUT)
        self.expect(tier, "SESSION_EXPIRED", lambda: self.open(stub, ctx, "/ls/x"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proto", required=True, help="the proto/ include dir (proto/proto)")
    ap.add_argument("--cell", action="append", default=[], help="NAME=HOST:PORT of a data cell")
    ap.add_argument("--proxy", required=True, help="HOST:PORT of a proxy")
    args = ap.parse_args()
    cells = dict(c.split("=", 1) for c in args.cell)
    if len(cells) < 2:
        raise SystemExit("give at least two --cell NAME=HOST:PORT (WRONG_CELL needs a partitioned deployment)")

    with tempfile.TemporaryDirectory(prefix="warren-py-") as out:
        pb, pb_grpc = generate_stubs(args.proto, out)
        c = Checker(pb, pb_grpc)

        # Straight to the cells: one session per cell, as a direct client keeps.
        stubs = {name: c.stub(addr) for name, addr in cells.items()}
        sessions = {name: (c.session(s), c.session(s)) for name, s in stubs.items()}
        deployment = sessions[next(iter(cells))][0][1].deployment
        path = f"/ls/{deployment}/py-{uuid.uuid4().hex[:12]}"

        # WRONG_CELL: ask each cell for the path; the cells that do not own it say which does.
        owner = None
        for name, stub in stubs.items():
            ctx = sessions[name][0][0]
            try:
                c.open(stub, ctx, path + "-probe", create=True)
                owner = owner or name
            except grpc.RpcError as err:
                if c.pb.ErrorCode.Name(c.decode(err).code) != "WRONG_CELL":
                    raise
                detail = c.expect(f"cell {name}", "WRONG_CELL", lambda: c.open(stub, ctx, path + "-probe"))
                assert detail.owner in cells and detail.owner != name, detail
                assert detail.map_epoch >= 1, detail
                owner = detail.owner
        assert any(t.startswith("cell") and k == "WRONG_CELL" for t, k in c.seen), \
            f"no cell answered WRONG_CELL for {path}: the deployment is not partitioned"
        (ctx_a, _), (ctx_b, _) = sessions[owner]
        c.errors_at(f"cell {owner}", stubs[owner], ctx_a, ctx_b, path)
        c.session_expired(f"cell {owner}", stubs[owner])

        # Through a proxy: the same errors, the same details.
        proxy = c.stub(args.proxy)
        (pa, _), (pbb, _) = c.session(proxy), c.session(proxy)
        c.errors_at("proxy", proxy, pa, pbb, path + "-p")
        c.session_expired("proxy", proxy)

    print(f"all {len(c.seen)} errors decoded")


if __name__ == "__main__":
    main()
