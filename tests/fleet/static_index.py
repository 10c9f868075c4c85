"""Serve a static simple-index tree (tests.support.IndexTree's layout) on a given address.

For the fleet the upstream must listen on the bridge address (198.18.0.1), where the mirror host can
reach it. Directory URLs are answered with `index.v1_json` or `index.html` by the request's Accept
header (PEP 691, q-values honoured); everything else is a plain file. Sidecars are not served.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
HIDDEN = ("serials.json", "serials.map", ".previous")


def choose_page(accept: str) -> tuple[str, str]:
    """(file name, content type) of the page a client with this Accept header gets."""
    best: tuple[float, int, str, str] = (0.0, 0, "index.html", "text/html")
    offers = {JSON_TYPE: ("index.v1_json", JSON_TYPE), HTML_TYPE: ("index.html", HTML_TYPE),
              "text/html": ("index.html", "text/html"), "*/*": ("index.html", "text/html")}
    for position, part in enumerate((accept or "*/*").split(",")):
        fields = [f.strip() for f in part.split(";")]
        media, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media in offers and q > 0 and (q, -position) > (best[0], best[1]):
            best = (q, -position, *offers[media])
    return best[2], best[3]


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def send_head(self):  # type: ignore[no-untyped-def]
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        if any(part in HIDDEN for part in rel.split("/")):
            self.send_error(404)
            return None
        target = Path(self.directory) / rel
        if rel.startswith("simple") and target.is_dir():
            if not self.path.split("?")[0].endswith("/"):
                self.send_response(301)
                self.send_header("Location", self.path.split("?")[0] + "/")
                self.end_headers()
                return None
            name, ctype = choose_page(self.headers.get("Accept", ""))
            page = target / name
            if not page.is_file():
                self.send_error(404)
                return None
            body = page.open("rb")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(page.stat().st_size))
            self.send_header("Vary", "Accept")
            self.end_headers()
            return body
        if target.is_dir():
            self.send_error(404)
            return None
        return super().send_head()

    def guess_type(self, path):  # type: ignore[no-untyped-def]
        if str(path).endswith(".metadata"):
            return "text/plain"
        return "application/octet-stream"


@contextmanager
def serve_index(root: Path, host: str, port: int = 0) -> Iterator[str]:
    """Serve `root` on host:port (0: any free port) for the block; yields the base URL."""
    server = ThreadingHTTPServer((host, port), partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fleet-upstream", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
