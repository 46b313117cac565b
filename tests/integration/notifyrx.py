"""Receivers for notification tests: a real SMTP server (aiosmtpd, Debian's
python3-aiosmtpd) and an HTTP webhook receiver that checks the HMAC
signature. Both keep every delivery they saw, duplicates included, so a test
can count by idempotency key."""

import hashlib
import hmac
import json
import threading
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from aiosmtpd.controller import Controller
except ImportError:  # a python3 other than Debian's: use Debian's python3-aiosmtpd
    import sys
    sys.path.append("/usr/lib/python3/dist-packages")
    from aiosmtpd.controller import Controller

from harness import free_port


class Mail:
    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.got = []  # (rcpt, raw bytes, parsed message)
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = message_from_bytes(envelope.original_content)
                with outer.lock:
                    outer.got.append((tuple(envelope.rcpt_tos), envelope.original_content, msg))
                return "250 OK"

        self.ctl = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.ctl.start()

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def messages(self):
        with self.lock:
            return list(self.got)

    def by_key(self):
        out = {}
        for rcpt, raw, msg in self.messages():
            out.setdefault(msg["X-Appeal-Idempotency-Key"], []).append((rcpt, raw, msg))
        return out

    @staticmethod
    def text(msg):
        return msg.get_payload(decode=True).decode("utf-8").strip()

    @staticmethod
    def subject(msg):
        return str(make_header(decode_header(msg["Subject"])))

    def stop(self):
        self.ctl.stop()


class Webhook:
    """POST receiver. `down` makes it answer 503 (a gateway outage); every
    request that arrives while up is kept with its headers and body."""

    def __init__(self, key):
        self.key = key
        self.port = free_port()
        self.lock = threading.Lock()
        self.got = []  # (headers dict, body bytes, parsed json, signature ok)
        self.down = False
        self.refused = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.down:
                    with outer.lock:
                        outer.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                want = "sha256=" + hmac.new(outer.key, body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(want, self.headers.get("X-Appeal-Signature", ""))
                with outer.lock:
                    outer.got.append((dict(self.headers), body, json.loads(body), ok))
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/sms"

    def posts(self):
        with self.lock:
            return list(self.got)

    def by_key(self):
        out = {}
        for h, body, j, ok in self.posts():
            out.setdefault(h["Idempotency-Key"], []).append((h, body, j, ok))
        return out

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def write_conf(path, mail=None, hook=None, key_path=None, **extra):
    lines = ["# test notifications"]
    if mail is not None:
        lines += [f"smtp_url = {mail.url}", "smtp_from = registry@kz75.example"]
    if hook is not None:
        with open(key_path, "wb") as f:
            f.write(hook.key)
        lines += [f"webhook_url = {hook.url}", f"webhook_key_file = {key_path}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
