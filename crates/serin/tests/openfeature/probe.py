"""Calls flagd's gRPC services directly with the stubs the flagd provider ships, to see what
providers cannot show: the raw sync configuration and a refused selector's status.

Usage: python probe.py <host:port> <call> [selector]
  call: fetch-all (flagd.sync.v1 FetchAllFlags) | sync-first (the first SyncFlags message)
        | resolve-all (flagd.evaluation.v1 ResolveAll)
Prints one JSON object: {"code": gRPC status name, "message", "configuration"?, "flags"?}.
"""

import json
import sys

import grpc
from openfeature.schemas.protobuf.flagd.evaluation.v1 import (
    evaluation_pb2,
    evaluation_pb2_grpc,
)
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc


def main():
    target, call = sys.argv[1], sys.argv[2]
    selector = sys.argv[3] if len(sys.argv) > 3 else None
    metadata = (("flagd-selector", selector),) if selector else None
    channel = grpc.insecure_channel(target)
    out = {"code": "OK", "message": ""}
    try:
        if call == "fetch-all":
            r = sync_pb2_grpc.FlagSyncServiceStub(channel).FetchAllFlags(
                sync_pb2.FetchAllFlagsRequest(), metadata=metadata, timeout=10
            )
            out["configuration"] = json.loads(r.flag_configuration)
        elif call == "sync-first":
            stream = sync_pb2_grpc.FlagSyncServiceStub(channel).SyncFlags(
                sync_pb2.SyncFlagsRequest(), metadata=metadata, timeout=10
            )
            out["configuration"] = json.loads(next(stream).flag_configuration)
            stream.cancel()
        elif call == "resolve-all":
            r = evaluation_pb2_grpc.ServiceStub(channel).ResolveAll(
                evaluation_pb2.ResolveAllRequest(), metadata=metadata, timeout=10
            )
            out["flags"] = sorted(r.flags.keys())
        else:
            raise SystemExit(f"unknown call {call}")
    except grpc.RpcError as e:
        out = {"code": e.code().name, "message": e.details()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
