"""What `grpcurl -plaintext ADDR list` / `describe` and `grpc_health_probe -addr ADDR` do,
from PyPI's grpcio, grpcio-reflection and grpcio-health-checking (Debian has no grpcurl):
used by tests/process/status.rs against real cells and proxies.

Usage: python3 grpc_tools.py ADDR
Prints one JSON object: the services server reflection lists over v1alpha and over v1, the
methods of warren.v1.Warren resolved from the served descriptors, and the health status
(`Check` with service "" and "warren.v1.Warren"). Exits 2 with a message on a failed call.
"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def list_services(channel, version):
    """ListServices over reflection `version` (v1 and v1alpha share the message schema)."""
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    (resp,) = list(call(iter([req]), timeout=10))
    return sorted(s.name for s in resp.list_services_response.service)


def health(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    except grpc.RpcError as e:
        return f"error {e.code().name}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def main():
    addr = sys.argv[1]
    with grpc.insecure_channel(addr) as channel:
        out = {
            "v1alpha": list_services(channel, "v1alpha"),
            "v1": list_services(channel, "v1"),
            "health": health(channel, ""),
            "warren_health": health(channel, "warren.v1.Warren"),
        }
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        warren = pool.FindServiceByName("warren.v1.Warren")
        out["warren_methods"] = sorted(m.name for m in warren.methods)
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        print(f"grpc call failed: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(2)
