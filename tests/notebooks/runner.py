"""Execute a notebook top to bottom in a kernel of a user's server, through the hub, as JupyterLab does.

The notebook is opened as a session (so its kernel starts in the notebook's folder), every code cell is
sent in order over the kernel's websocket, and the outputs are gathered into the notebook, which
nbformat can then write for inspection. Like papermill, values for the cell tagged `parameters` are
injected as a new cell right after it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import nbformat
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class CellError(AssertionError):
    pass


def inject_parameters(notebook: nbformat.NotebookNode, values: dict) -> None:
    if not values:
        return
    index = next(
        (i for i, c in enumerate(notebook.cells) if "parameters" in c.get("metadata", {}).get("tags", [])),
        None,
    )
    assert index is not None, "the notebook has a cell tagged 'parameters'"
    source = "# Parameters injected by the tests\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)


class ServerNotebooks:
    """A user's Jupyter server, reached through the hub with a token of that user."""

    def __init__(self, base_url: str, user: str, token: str, cell_timeout: float = 240) -> None:
        self.api = f"{base_url}/user/{user}/api"
        self.headers = {"Authorization": f"token {token}"}
        self.cell_timeout = cell_timeout

    def put_file(self, path: str, content: str, kind: str = "file") -> None:
        body = {"type": kind, "format": "text" if kind == "file" else "json", "content": content}
        if kind == "notebook":
            body["content"] = json.loads(content)
        response = requests.put(f"{self.api}/contents/{path}", headers=self.headers, json=body, timeout=60)
        assert response.status_code in (200, 201), response.text

    def make_folder(self, path: str) -> None:
        response = requests.put(
            f"{self.api}/contents/{path}", headers=self.headers, json={"type": "directory"}, timeout=30
        )
        assert response.status_code in (200, 201), response.text

    def execute(
        self, path: str, notebook: nbformat.NotebookNode, while_running=None
    ) -> nbformat.NotebookNode:
        """Run every code cell; `while_running(notebook)` is called after the last cell, while the
        kernel (and whatever it started) is still alive."""
        response = requests.post(
            f"{self.api}/sessions",
            headers=self.headers,
            json={
                "path": path,
                "name": path.rsplit("/", 1)[-1],
                "type": "notebook",
                "kernel": {"name": "python3"},
            },
            timeout=120,
        )
        assert response.status_code == 201, response.text
        session = response.json()
        try:
            asyncio.run(self._execute(session["kernel"]["id"], notebook))
            if while_running is not None:
                while_running(notebook)
        finally:
            requests.delete(f"{self.api}/sessions/{session['id']}", headers=self.headers, timeout=60)
        return notebook

    async def _execute(self, kernel_id: str, notebook: nbformat.NotebookNode) -> None:
        url = self.api.replace("http://", "ws://", 1) + f"/kernels/{kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(url, headers=self.headers, request_timeout=60))
        session = uuid.uuid4().hex
        try:
            for count, cell in enumerate((c for c in notebook.cells if c.cell_type == "code"), start=1):
                cell.outputs = []
                await asyncio.wait_for(self._run_cell(connection, session, cell), self.cell_timeout)
                cell.execution_count = count
                errors = [o for o in cell.outputs if o.output_type == "error"]
                if errors:
                    error = errors[0]
                    trace = "\n".join(error.get("traceback", []))
                    raise CellError(
                        f"cell {count} failed:\n{cell.source}\n--- {error.ename}: {error.evalue}\n{trace}"
                    )
        finally:
            connection.close()

    async def _run_cell(self, connection, session: str, cell) -> None:
        msg_id = uuid.uuid4().hex
        connection.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": session,
                        "username": "tests",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": cell.source,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        replied = idle = False
        while not (replied and idle):
            raw = await connection.read_message()
            if raw is None:
                raise ConnectionError("the kernel's websocket closed (did the kernel die?)")
            if isinstance(raw, bytes):  # binary frames carry buffers of widgets: not used here
                continue
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            content = message["content"]
            if kind in ("stream", "display_data", "execute_result", "error"):
                content = {k: v for k, v in content.items() if k != "transient"}
                if kind == "execute_result":
                    content.setdefault("metadata", {})
                if kind == "display_data":
                    content.setdefault("metadata", {})
                cell.outputs.append(
                    nbformat.v4.output_from_msg({"header": {"msg_type": kind}, "content": content})
                )
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True


def stdout(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        o.text
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream" and o.name == "stdout"
    )


def line_starting(text: str, prefix: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    assert found, f"no line starting with {prefix!r} in:\n{text}"
    return found[-1][len(prefix) :].strip()


def images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        1
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})
    )
