"""Run code in a user's kernel through the Jupyter API, as a notebook would (through the proxy)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class Execution:
    stdout: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Kernel:
    """One kernel in a user's server, used with a token of that user."""

    def __init__(self, base_url: str, user: str, token: str, timeout: float = 120) -> None:
        self.api = f"{base_url}/user/{user}/api"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout = timeout
        response = requests.post(f"{self.api}/kernels", headers=self.headers, json={}, timeout=60)
        response.raise_for_status()
        self.id = response.json()["id"]
        self.session = uuid.uuid4().hex

    def run(self, code: str) -> Execution:
        return asyncio.run(asyncio.wait_for(self._run(code), self.timeout))

    async def _run(self, code: str) -> Execution:
        url = self.api.replace("http://", "ws://", 1) + f"/kernels/{self.id}/channels"
        connection = await websocket_connect(HTTPRequest(url, headers=self.headers))
        msg_id = uuid.uuid4().hex
        connection.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": self.session,
                        "username": "test",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        result = Execution()
        replied = idle = False
        try:
            while not (replied and idle):
                raw = await connection.read_message()
                if raw is None:
                    raise ConnectionError("the kernel's websocket closed")
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                content = message["content"]
                if kind == "stream" and content.get("name") == "stdout":
                    result.stdout += content["text"]
                elif kind == "error":
                    result.errors.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        finally:
            connection.close()
        return result

    def shutdown(self) -> None:
        requests.delete(f"{self.api}/kernels/{self.id}", headers=self.headers, timeout=30)
