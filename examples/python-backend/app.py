"""A backend in plain Python that honours Banyan's read-your-writes contract (docs/protocol.md).

    DATABASE_URL=postgres://… DATABASE_REPLICA_URL=postgres://… PORT=8001 python3 app.py

GET /py/notes/<id> reads a note; POST /py/notes (the body is the note) writes one.
Standard library (wsgiref) and psycopg2 only (Debian: python3-psycopg2).
"""
import json, os, re
from wsgiref.simple_server import make_server, WSGIRequestHandler
import psycopg2

PRIMARY, REPLICA = os.environ["DATABASE_URL"], os.environ["DATABASE_REPLICA_URL"]
LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def query(url, sql, args=()):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:  # commits on leaving the block
            cur.execute(sql, args)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def reader(environ):
    """Rule 1: a read honours X-Banyan-Min-LSN: a replica that has replayed it, else the primary."""
    fence = environ.get("HTTP_X_BANYAN_MIN_LSN", "")
    if fence == "primary":
        return PRIMARY, "primary"
    if LSN.match(fence):
        replayed = query(REPLICA, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (fence,))[0]
        return (REPLICA, "replica") if replayed else (PRIMARY, "primary")
    return REPLICA, "replica"  # no fence: any replica will do


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if method == "POST" and path == "/py/notes":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        note_id = query(PRIMARY, "INSERT INTO notes (body) VALUES (%s) RETURNING id", (body,))[0]
        # Rule 2: after the commit, report the primary's WAL position; the proxy pins the session there.
        lsn = query(PRIMARY, "SELECT pg_current_wal_lsn()::text")[0]
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Banyan-Write-LSN", lsn)])
        return [json.dumps({"id": note_id}).encode()]
    m = re.fullmatch(r"/py/notes/(\d+)", path)
    if method == "GET" and m:
        url, where = reader(environ)
        row = query(url, "SELECT body FROM notes WHERE id = %s", (int(m.group(1)),))
        status = "200 OK" if row else "404 Not Found"
        start_response(status, [("Content-Type", "application/json"), ("X-Read-From", where)])
        return [json.dumps({"body": row[0]} if row else {"error": "no such note"}).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ.get("PORT", "8001")), app, handler_class=Quiet).serve_forever()
