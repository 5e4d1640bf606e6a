"""The reference of the HTTP benchmark: the stack fernd serves HTTP with
(quart-trio on hypercorn, with fernd's hypercorn settings). It reads the
body of `POST /api/v1/command` and replies with an empty 204.

`python -m bench.bare_app` serves on a free loopback port, prints
`bare app serving on http://HOST:PORT` and runs until it is terminated.
"""

import trio
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from fernd.config import Settings
from fernd.domain.constants import MAX_REQUEST_BODY_BYTES
from fernd.server import hypercorn_config

SERVING_LINE = "bare app serving on"

app = QuartTrio(__name__)
# The Quart settings fernd's app sets.
app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BODY_BYTES
app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
app.config["RESPONSE_TIMEOUT"] = None


@app.post("/api/v1/command")
async def command() -> Response:
    await request.get_data(cache=False)
    return Response(b"", status=204)


async def _serve() -> None:
    config = hypercorn_config(Settings(bind="127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        bound: list[str] = await nursery.start(serve, app, config)
        print(f"{SERVING_LINE} {bound[0]}", flush=True)


if __name__ == "__main__":
    trio.run(_serve)
