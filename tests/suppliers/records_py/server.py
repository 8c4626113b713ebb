"""An independent Python implementation of carerecord.records.v1.RecordHostingService.

Written from proto/carerecord/{common,records}/v1/*.proto alone, as another supplier would, to
prove the contract can be implemented on a gRPC stack carerecord did not write and to validate
the conformance kit. Storage is SQLite; the generated code is produced from proto/ at start.

    python server.py --port 50062 [--db records.db] [--payload-limit 1048576] [--fhir-base URL ...]

Prints `listening on 127.0.0.1:<port>` once serving (port 0 picks a free one).
"""

import argparse
import os
import pathlib
import signal
import sys
from concurrent import futures

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import codegen  # noqa: E402

PROTO_ROOT = pathlib.Path(os.environ.get("CARERECORD_PROTO_ROOT", HERE.parent.parent.parent / "proto"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50062)
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--payload-limit", type=int, default=1024 * 1024, help="bytes, 65536 to 3145728")
    parser.add_argument("--fhir-base", action="append", default=[], help="a FHIR base URL patient references may use")
    args = parser.parse_args()
    if not 64 * 1024 <= args.payload_limit <= 3 * 1024 * 1024:
        parser.error("--payload-limit must be between 65536 and 3145728")

    codegen.generate(PROTO_ROOT)
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from carerecord.records.v1 import records_pb2, records_pb2_grpc
    from service import RecordHostingService
    from store import Store

    options = [
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=options)
    service = RecordHostingService(Store(args.db), args.payload_limit, args.fhir_base)
    records_pb2_grpc.add_RecordHostingServiceServicer_to_server(service, server)
    name = records_pb2.DESCRIPTOR.services_by_name["RecordHostingService"].full_name
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service_name in ("", name):
        health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([name, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        raise SystemExit(f"cannot listen on {args.host}:{args.port}")
    server.start()
    print(f"listening on {args.host}:{port}", flush=True)

    def stop(signum, frame):
        server.stop(grace=2)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
