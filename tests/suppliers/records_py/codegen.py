"""Generates the Python gRPC code for carerecord's contracts from proto/ at run time.

Nothing generated is checked in: a supplier works from the .proto files alone, and so does this
implementation. The code goes to a fresh temporary directory that is put on sys.path.
"""

import importlib.resources
import pathlib
import sys
import tempfile

from grpc_tools import protoc


def generate(proto_root: pathlib.Path) -> pathlib.Path:
    """Compiles every .proto under proto_root/carerecord; returns the output directory."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="carerecord-py-gen-"))
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    files = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "carerecord").rglob("*.proto"))
    if not files:
        raise SystemExit(f"no .proto files under {proto_root / 'carerecord'}")
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed to compile the contracts")
    sys.path.insert(0, str(out))
    return out
