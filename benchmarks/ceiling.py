"""The HTTP stack's ceiling: the inference API's FastAPI and uvicorn, serving a constant.

The same framework, server, route shape and uvicorn settings as `inference.server`; the handler
reads and parses the same JSON body (so the request costs what it costs the API to get there)
and answers a fixed prediction-shaped document.  What the API does beyond this is batching and
the model: its throughput over this one's is how close it gets to the HTTP stack's limit.

    python -m benchmarks.ceiling --port 8081
"""

from __future__ import annotations

import argparse
import sys

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

ANSWER = orjson.dumps({"predictions": [[0.1] * 10]})


def create_app() -> FastAPI:
    app = FastAPI(title="HTTP stack ceiling")

    @app.post("/v1/models/{call}")
    async def call(call: str, request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(ANSWER, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return JSONResponse({"status": "ready"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # As inference.server runs the API.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
