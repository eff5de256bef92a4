#!/usr/bin/env python3
"""A client of causeway's control API that is not ours.

Python's grpcio, with its code generated at run time from
control/proto/causeway/v1/control.proto by grpcio-tools; reflection and
health from the grpcio-reflection and grpcio-health-checking packages; the
error details decoded by grpcio-status. Each subcommand prints one JSON
object; a gRPC error prints {"code", "message", "violations"} and exits 3.

Usage: causeway_client.py TARGET COMMAND ARGS...
TARGET is unix:///path/to/control.sock, or tls://HOST:PORT,CA,CERT,KEY.
"""

import json
import os
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from google.rpc import error_details_pb2

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROTO_DIR = os.path.join(ROOT, "control", "proto")


def generated():
    """causeway.v1's messages and stubs, generated now by grpcio-tools."""
    from grpc_tools import protoc
    import importlib.resources

    out = tempfile.mkdtemp(prefix="causeway-py-")
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main([
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(PROTO_DIR, "causeway", "v1", "control.proto"),
    ])
    if rc != 0:
        sys.exit(f"grpcio-tools could not compile the proto (exit {rc})")
    sys.path.insert(0, out)
    from causeway.v1 import control_pb2, control_pb2_grpc  # noqa: E402

    return control_pb2, control_pb2_grpc


def channel(target):
    if target.startswith("unix://"):
        # The default :authority of a unix target is its path, which HTTP/2
        # servers such as hyper refuse; name the host instead.
        return grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")])
    if target.startswith("tls://"):
        addr, ca, cert, key = target[len("tls://"):].split(",")
        read = lambda p: open(p, "rb").read()  # noqa: E731
        creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
        # The server's certificate names the lab's gateway, not the address.
        opts = [("grpc.ssl_target_name_override", "demo.causeway.lab")]
        return grpc.secure_channel(addr, creds, options=opts)
    sys.exit(f"target {target}: use unix:///PATH or tls://HOST:PORT,CA,CERT,KEY")


def fail(e):
    out = {"code": e.code().name, "message": e.details(), "violations": []}
    status = rpc_status.from_call(e)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                detail.Unpack(br)
                out["violations"] += [
                    {"field": v.field, "description": v.description}
                    for v in br.field_violations
                ]
    print(json.dumps(out))
    sys.exit(3)


def as_json(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def health(ch, _args):
    stub = health_pb2_grpc.HealthStub(ch)
    out = {}
    for service in ["", "causeway.v1.ConfigService"]:
        r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        out[service or "<server>"] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    return out


def reflect(ch, _args):
    """Lists the services by reflection (v1alpha and v1), then calls
    StatusService.GetStatus with messages built from the reflected
    descriptors alone: no generated code."""
    db = ProtoReflectionDescriptorDatabase(ch)
    services = sorted(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindMethodByName("causeway.v1.StatusService.GetStatus")
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    call = ch.unary_unary(
        "/causeway.v1.StatusService/GetStatus",
        request_serializer=req_cls.SerializeToString,
        response_deserializer=resp_cls.FromString,
    )
    status = call(req_cls(), timeout=5)
    # v1: the same messages on the v1 service name.
    v1 = ch.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    answers = list(v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    v1_services = sorted(s.name for s in answers[0].list_services_response.service)
    return {
        "services": services,
        "v1_services": v1_services,
        "generation": status.generation,
        "enforced_generation": status.enforced_generation,
    }


def apply(ch, args):
    pb, stubs = generated()
    files = []
    for path in args.get("files", []):
        files.append(pb.ManifestFile(name=path, text=open(path).read()))
    req = pb.ApplyRequest(files=files, wait_enforced=True)
    if args.get("expected") is not None:
        req.expected_generation = int(args["expected"])
    r = stubs.ConfigServiceStub(ch).Apply(req, timeout=30)
    return as_json(r) | {"generation": r.generation, "changed": r.changed}


CRASH_POLICY = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: crash}
spec:
  order: %d
  selector: role == 'nobody'
  ingress: [{action: Allow}]
"""


def apply_loop(ch, args):
    """Applies GlobalNetworkPolicy `crash` with order start, start+1, ...
    one after another, printing a line per acknowledged apply, until the
    count is reached or the appliance goes away."""
    pb, stubs = generated()
    stub = stubs.ConfigServiceStub(ch)
    start, count = int(args["start"]), int(args["count"])
    last = None
    for order in range(start, start + count):
        f = pb.ManifestFile(name="crash.yaml", text=CRASH_POLICY % order)
        try:
            r = stub.Apply(pb.ApplyRequest(files=[f]), timeout=10)
        except grpc.RpcError:
            break
        last = {"generation": r.generation, "order": order}
        print(json.dumps(last), flush=True)
    return {"done": True, "last": last}


FILL_POLICY = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: fill-%d
  annotations: {ballast: %s}
spec:
  selector: role == 'nobody'
  ingress: [{action: Allow}]
"""


def apply_fill(ch, args):
    """Applies a new GlobalNetworkPolicy fill-N (with `bytes` of ballast)
    after another, printing a line per acknowledged apply, until one is
    refused or `count` are made; the refusal's code and message are the
    last line."""
    pb, stubs = generated()
    stub = stubs.ConfigServiceStub(ch)
    count, ballast = int(args["count"]), "x" * int(args["bytes"])
    for n in range(count):
        f = pb.ManifestFile(name="fill.yaml", text=FILL_POLICY % (n, ballast))
        try:
            r = stub.Apply(pb.ApplyRequest(files=[f], wait_enforced=True), timeout=30)
        except grpc.RpcError as e:
            return {"refused": n, "code": e.code().name, "message": e.details()}
        print(json.dumps({"generation": r.generation, "n": n}), flush=True)
    return {"refused": None}


def watch(ch, args):
    """Watches from generation 0 for `seconds`; the events as a list."""
    pb, stubs = generated()
    req = pb.WatchRequest(from_generation=int(args.get("from", 0)), kind=args.get("kind", ""))
    stream = stubs.ConfigServiceStub(ch).Watch(req, timeout=float(args.get("seconds", 3)))
    events = []
    try:
        for ev in stream:
            events.append({
                "type": pb.WatchEvent.Type.Name(ev.type),
                "generation": ev.generation,
                "kind": ev.resource.kind,
                "name": ev.resource.name,
            })
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return {"events": events}


def get(ch, args):
    pb, stubs = generated()
    ref = pb.ResourceRef(kind=args["kind"], namespace=args.get("namespace", ""), name=args["name"])
    r = stubs.ConfigServiceStub(ch).Get(pb.GetRequest(resource=ref), timeout=5)
    return as_json(r) | {"manifest": json.loads(r.manifest_json)}


def explain(ch, args):
    pb, stubs = generated()
    req = pb.ExplainRequest(
        src=args["src"], dst=args["dst"], protocol=args["protocol"], dport=int(args.get("dport", 0))
    )
    return as_json(stubs.PolicyServiceStub(ch).Explain(req, timeout=5))


def status(ch, _args):
    pb, stubs = generated()
    r = stubs.StatusServiceStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    return as_json(r) | {"generation": r.generation}


COMMANDS = {"apply-loop": apply_loop, "apply-fill": apply_fill, "watch": watch, "health": health, "reflect": reflect, "apply": apply, "get": get,
            "explain": explain, "status": status}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in COMMANDS:
        sys.exit(__doc__)
    target, command = sys.argv[1], sys.argv[2]
    # Arguments: key=value, and bare words are files.
    args = {"files": []}
    for a in sys.argv[3:]:
        if "=" in a:
            k, v = a.split("=", 1)
            args[k] = v
        else:
            args["files"].append(a)
    try:
        print(json.dumps(COMMANDS[command](channel(target), args)))
    except grpc.RpcError as e:
        fail(e)


if __name__ == "__main__":
    main()
