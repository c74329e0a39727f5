"""A small application that keeps counters in Redis through its ambassador.

It knows one Redis address, the ambassador's on localhost, and nothing of the shards
behind it (chapter 3: the ambassador hides the sharding from the application).

  GET /incr/<name>          INCR name, answers the new value
  GET /get/<name>,<name>... MGET of the names (the ambassador splits it by shard)
"""

import argparse
import http.server
import json
import socket
import urllib.parse


def command(redis, *args):
    """Sends one command in RESP and returns the reply (integers, bulk strings, arrays)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(redis, timeout=5) as conn:
        conn.sendall(request)
        return read_reply(conn.makefile("rb"))


def read_reply(stream):
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [read_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


def handler(redis):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/", 1)
            try:
                if parts[0] == "incr" and len(parts) == 2:
                    body = command(redis, "INCR", urllib.parse.unquote(parts[1]))
                elif parts[0] == "get" and len(parts) == 2:
                    names = [urllib.parse.unquote(n) for n in parts[1].split(",")]
                    body = dict(zip(names, command(redis, "MGET", *names)))
                elif parts[0] == "ready":
                    body = command(redis, "PING")
                else:
                    self.send_error(404, "try /incr/<name> or /get/<name>,<name>")
                    return
            except (OSError, RuntimeError) as err:
                self.send_error(503, str(err))
                return
            data = (json.dumps(body) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to serve HTTP on")
    parser.add_argument("--redis", required=True, help="host:port of the ambassador")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    redis_host, redis_port = args.redis.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer(
        (host, int(port)), handler((redis_host, int(redis_port)))
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
