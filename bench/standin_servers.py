"""HTTP answers at many instances' addresses, where their Jupyter servers would listen (bench/hub_scale.py).

    python bench/standin_servers.py PORT IP [IP ...]

The hub checks, when it restarts and every poll, that each server answers HTTP at its instance's
address; 1,000 real Jupyter servers would need about 100 GB of memory on this machine. One asyncio
process listens on every address instead and answers each request as Jupyter's API root does.
Prints "ready" once every address listens; runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from jupyterhub._version import __version__ as HUB_VERSION

BODY = json.dumps({"version": "2.17.0"}).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    # What jupyterhub-singleuser says of itself; the hub warns about servers that do not.
    + f"X-JupyterHub-Version: {HUB_VERSION}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        writer.write(RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, addresses: list[str]) -> None:
    servers = [await asyncio.start_server(answer, address, port) for address in addresses]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2:]))
