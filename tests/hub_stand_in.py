"""A local stand-in for the Hugging Face hub's file endpoint, for tests that must not reach the
internet: it answers ``HEAD`` and ``GET /{owner}/{name}/resolve/{revision}/{file}`` with the headers
huggingface_hub's ``hf_hub_download`` reads (``X-Repo-Commit``, an LFS file's ``X-Linked-Etag``
= its sha256 and ``X-Linked-Size``; ``X-Error-Code`` on errors), as the hub documents them for its
``resolve`` URLs. Point ``HF_ENDPOINT`` at `HubStandIn.url`.

A repository may need a token (401 ``RepoNotFound`` without it, as the hub answers for a private
repository), and a file may be served falsely (its ``GET`` body replaced, the ``HEAD`` kept true)
to test what a client does with a tampered or truncated download.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Repo:
    commit: str  # 40 hex digits: what "main" resolves to
    files: dict[str, bytes]
    token: str | None = None  # the bearer token it needs, if private
    served: dict[str, bytes] = field(default_factory=dict)  # false GET bodies, by file
    gets: int = 0  # GET requests answered with a body


class HubStandIn:
    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the test reads `requests`
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
                parts = unquote(self.path.split("?")[0]).lstrip("/").split("/", 4)
                if len(parts) != 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound")
                repo = hub.repos.get(f"{parts[0]}/{parts[1]}")
                if repo is None:
                    return self._error(401, "RepoNotFound")
                if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                    return self._error(401, "RepoNotFound")
                if parts[3] not in ("main", repo.commit):
                    return self._error(404, "RevisionNotFound")
                if parts[4] not in repo.files:
                    return self._error(404, "EntryNotFound")
                data = repo.files[parts[4]]
                self.send_response(200)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                if not body:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                sent = repo.served.get(parts[4], data)
                repo.gets += 1
                self.send_header("Content-Length", str(len(sent)))
                self.end_headers()
                self.wfile.write(sent)

        return Handler


def prefill_cache(
    cache: Path,
    repo_id: str,
    filename: str,
    data: bytes,
    commit: str = "2" * 40,
    revision: str = "main",
) -> Path:
    """Write ``data`` into a Hugging Face hub cache folder (``HF_HUB_CACHE``) the way
    huggingface_hub lays out a downloaded LFS file, as a cache copied from a connected machine
    would hold it: ``models--{owner}--{name}/blobs/{sha256}``, ``snapshots/{commit}/{filename}``
    a relative link to that blob, and ``refs/{revision}`` holding the commit. The snapshot path."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    pointer = storage / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return pointer
