# Test "image": a small HTTP server whose behaviour is steered by files in
# $APP_DIR and by env vars. Every request is logged to $APP_DIR/hits.
import http.server, json, os, signal, subprocess, sys, threading, time

d = os.environ["APP_DIR"]
port = int(os.environ["PORT"])

def append(name, line):
    with open(os.path.join(d, name), "a") as f:
        f.write(line + "\n")

def exists(name):
    return os.path.exists(os.path.join(d, name))

append("starts", f"{os.getpid()} {time.time()}")

def on_term(signum, frame):
    append("sigterm", f"{os.getpid()} {time.time()}")
    if os.environ.get("IGNORE_TERM") != "1":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_term)

if os.environ.get("SPAWN_CHILD") == "1":
    child = subprocess.Popen(["sleep", "300"])
    append("child", str(child.pid))

def beat():
    while True:
        append(f"beat-{os.getpid()}", str(time.time()))
        time.sleep(0.1)

if os.environ.get("HEARTBEAT") == "1":
    threading.Thread(target=beat, daemon=True).start()

hog = []
def eat():
    while len(hog) < 60:
        hog.append(bytearray(8 * 1024 * 1024))
        time.sleep(0.05)
    time.sleep(300)

if os.environ.get("MEM_HOG") == "1":
    threading.Thread(target=eat, daemon=True).start()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = 200, b"ok"
        if self.path == "/ready":
            if exists("hang"):
                time.sleep(4)
            code = 503 if exists("unready") else 200
        elif self.path == "/live":
            code = 200 if exists("alive") else 500
        elif self.path == "/info":
            body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid()}).encode()
        append("hits", f"{port} {time.time()} {self.path} {code} {self.headers.get('X-Probe', '')}")
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    # Malformed requests (e.g. a TLS ClientHello on the plain port).
    def log_error(self, format, *args):
        append("errors", f"{port} {time.time()} " + (format % args))

srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
srv.daemon_threads = True
if os.environ.get("TLS_CERT"):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(f"listening on {port}", flush=True)
srv.serve_forever()
