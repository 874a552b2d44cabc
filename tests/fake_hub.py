"""A minimal Hub-compatible HTTP server on 127.0.0.1 for upload tests (stdlib only).

It implements just what ``HfApi.create_repo`` + ``upload_folder`` of huggingface_hub 2.x call:
``POST /api/repos/create``, ``POST /api/models/{repo}/preupload/{rev}`` (every file answered
as a "regular" git blob, so its content travels base64-encoded inside the commit) and
``POST /api/models/{repo}/commit/{rev}`` (ndjson: one header line, then one line per file)
and ``POST /api/validate-yaml`` (the README metadata check; answered valid, content kept).
Anything else is recorded in ``unexpected`` and answered 404. Request bodies and headers are
kept for the test to inspect; nothing is written to stdout or stderr.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREUPLOAD = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/?]+)")
COMMIT = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/?]+)")
MAX_BODY = 64 * 1024 * 1024


class FakeHub:
    """``with FakeHub() as hub:`` serves on ``hub.endpoint`` until the block ends."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.commits: list[dict] = []
        self.validated_yaml: list[str] = []
        self.auth_headers: list[str | None] = []
        self.unexpected: list[str] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # keep the test's stderr clean
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise ValueError("request too large")
                return self.rfile.read(length)

            def do_GET(self):  # noqa: N802
                hub._record(self, None)
                self._reply(404, {"error": f"not implemented: GET {self.path}"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                status, payload = hub._handle(self.path, self.headers, body)
                self._reply(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _record(self, handler, path) -> None:
        with self.lock:
            self.unexpected.append(f"{handler.command} {handler.path}")

    def _handle(self, path: str, headers, body: bytes) -> tuple[int, dict]:
        with self.lock:
            self.auth_headers.append(headers.get("Authorization"))
            if path.split("?")[0] == "/api/repos/create":
                data = json.loads(body)
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                self.repos[repo_id] = data
                self.files.setdefault(repo_id, {})
                return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id}
            if path.split("?")[0] == "/api/validate-yaml":
                self.validated_yaml.append(json.loads(body)["content"])
                return 200, {"errors": [], "warnings": []}
            if m := PREUPLOAD.match(path):
                if m["repo"] not in self.repos:
                    return 404, {"error": "Repository not found"}
                files = json.loads(body)["files"]
                return 200, {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                    ]
                }
            if m := COMMIT.match(path):
                repo = m["repo"]
                if repo not in self.repos:
                    return 404, {"error": "Repository not found"}
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                for line in lines:
                    if line["key"] == "file":
                        value = line["value"]
                        if value.get("encoding") != "base64":
                            return 400, {"error": f"unsupported encoding {value.get('encoding')}"}
                        self.files[repo][value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] != "header":
                        return 400, {"error": f"unsupported commit operation {line['key']}"}
                self.commits.append({"repo": repo, "revision": m["rev"], **header})
                oid = f"{len(self.commits):040x}"
                return 200, {
                    "commitUrl": f"{self.endpoint}/{repo}/commit/{oid}",
                    "commitOid": oid,
                    "pullRequestUrl": None,
                }
            self.unexpected.append(f"POST {path}")
            return 404, {"error": f"not implemented: POST {path}"}
