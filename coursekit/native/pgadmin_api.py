"""pgAdmin 4 driven over HTTP with the calls its own browser UI makes (for tests and `make images`).

    client = PgAdminClient(5050)
    servers = client.servers()                      # {"pg-dwh": Server(gid, sid, ...), ...}
    client.connect(servers["pg-dwh"])               # no password: the passfile answers
    columns, rows = client.query(servers["pg-dwh"], "dwh", "select 1")

The session cookie comes from opening /browser/ (desktop mode logs the one local user in); the
CSRF token is the one the page's /browser/js/utils.js hands to its scripts, sent back in the
X-pgA-CSRFToken header as the UI does.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

CSRF = re.compile(r"pgAdmin\['csrf_token'\] = '([^']+)'")


class PgAdminApiError(RuntimeError):
    """pgAdmin answered with an error; the message is pgAdmin's."""


@dataclass
class Server:
    """One registered server as pgAdmin's tree lists it."""

    gid: int
    sid: int
    name: str
    group: str
    host: str
    username: str
    connected: bool


class PgAdminClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.opener.open(f"{self.base}/browser/", timeout=timeout).read()
        script = self.opener.open(f"{self.base}/browser/js/utils.js", timeout=timeout).read().decode()
        match = CSRF.search(script)
        if match is None:
            raise PgAdminApiError("no CSRF token in /browser/js/utils.js (a login page? not desktop mode?)")
        self.csrf_token = match.group(1)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON answer) of one API call."""
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-pgA-CSRFToken": self.csrf_token, "Content-Type": "application/json"},
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def ok(self, method: str, path: str, body: dict | None = None) -> Any:
        status, answer = self.call(method, path, body)
        if status != 200 or not answer.get("success"):
            raise PgAdminApiError(f"{method} {path}: HTTP {status}: {answer.get('errormsg') or answer}")
        return answer.get("result") if answer.get("result") is not None else answer.get("data")

    def servers(self) -> dict[str, Server]:
        """Every registered server, by name (the tree's server groups, then their servers)."""
        found = {}
        for group in self.ok("GET", "/browser/server_group/nodes/"):
            status, answer = self.call("GET", f"/browser/server/nodes/{group['_id']}")
            if status == 410:
                continue  # an empty group
            for node in answer.get("result") or []:
                found[node["label"]] = Server(
                    int(group["_id"]),
                    int(node["_id"]),
                    node["label"],
                    group["label"],
                    node["host"],
                    node["username"],
                    node["connected"],
                )
        return found

    def connect(self, server: Server) -> dict:
        """What the tree does on a click: connect with no password in the body."""
        return self.ok("POST", f"/browser/server/connect/{server.gid}/{server.sid}")

    def database_id(self, server: Server, name: str) -> int:
        for node in self.ok("GET", f"/browser/database/nodes/{server.gid}/{server.sid}/"):
            if node["label"] == name:
                return int(node["_id"])
        raise PgAdminApiError(f"{server.name} has no database {name}")

    def query(self, server: Server, database: str, sql: str, timeout: float = 60) -> tuple[list[str], list[list]]:
        """Run `sql` in a query tool, as the Execute button does; (column names, rows)."""
        did = self.database_id(server, database)
        trans_id = secrets.randbelow(9_000_000) + 1
        tool = f"{trans_id}/{server.gid}/{server.sid}/{did}"
        self.ok("POST", f"/sqleditor/initialize/sqleditor/{tool}", {"dbname": database})
        try:
            self.ok("POST", f"/sqleditor/query_tool/start/{trans_id}", {"sql": sql, "explain_plan": None})
            deadline = time.monotonic() + timeout
            while True:
                answer = self.ok("GET", f"/sqleditor/poll/{trans_id}")
                if answer["status"] == "Success":
                    return [c["name"] for c in answer.get("colinfo") or []], answer.get("result") or []
                if answer["status"] != "Busy":
                    raise PgAdminApiError(f"query failed: {answer.get('result')}")
                if time.monotonic() > deadline:
                    raise PgAdminApiError(f"query still running after {timeout:.0f} s")
                time.sleep(0.3)
        finally:
            self.call("DELETE", f"/sqleditor/close/{trans_id}")
