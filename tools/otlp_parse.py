"""Parses OTLP/HTTP JSON logs bodies with the official protobuf bindings.

Reads one body per line on stdin (JSON text, or its UTF-8 bytes base64-encoded) and writes one line of JSON per body on stdout:
{"ok": true, "request": "..."} with the request as protobuf's own `MessageToJson` writes it
back (a string, so that a reader with a nesting limit of its own needs to parse it only when it
looks inside), or {"ok": false, "error": "..."} when `json_format.Parse` refuses the
body. Unknown fields are NOT ignored: a field the proto does not define is an error, as it is
for a collector. tools/collector.mjs runs this once per OTLP collector and feeds it bodies.
"""
import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if not line.startswith("{"):
            line = base64.b64decode(line).decode("utf-8")
        request = ExportLogsServiceRequest()
        try:
            json_format.Parse(line, request, ignore_unknown_fields=False)
            out = {"ok": True, "request": json_format.MessageToJson(request, indent=None)}
        except Exception as e:  # json_format.ParseError, RecursionError, DecodeError
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
