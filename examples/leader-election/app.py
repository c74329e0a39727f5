"""The application run by `podkit elect` while its replica leads: it serves who leads and
with which fencing token. Usage: app.py PORT"""
import http.server
import os
import sys

PORT = int(sys.argv[1])
BODY = "leader {} token {}\n".format(
    os.environ.get("PODKIT_LEADER_ID", "?"), os.environ.get("PODKIT_FENCING_TOKEN", "?")
).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
