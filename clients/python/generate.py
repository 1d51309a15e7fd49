#!/usr/bin/env python3
"""Generates the gRPC modules of the query API from the repository's protos.

    python generate.py            # writes credtrail_client/_gen/

Runs grpcio-tools' bundled protoc on proto/proto/credtrail/query/v1/query.proto
(with its google/protobuf imports from grpcio-tools itself). The output is
not committed: it is regenerated whenever the client is installed or tested,
so it always matches the protos and the installed protobuf runtime.
"""

import pathlib
import shutil
import sys

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto" / "proto"
PROTOS = ["credtrail/query/v1/query.proto"]


def main() -> int:
    out = HERE / "credtrail_client" / "_gen"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    include = pathlib.Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    rc = protoc.main(args)
    if rc != 0:
        print(f"protoc failed ({rc}): {' '.join(args)}", file=sys.stderr)
        return 1
    # Package markers, so `credtrail.query.v1` imports from _gen/.
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    print(f"generated {', '.join(PROTOS)} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
