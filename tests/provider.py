"""A loopback HTTPS server that plays an API provider for the proxy's tests (and the bench).

Its certificate comes from a throwaway CA (trustme), written to `ca_path` for `route add --ca`.
It speaks enough of OpenAI's chat completions and Anthropic's messages APIs for their SDKs
(plain and streamed), and it misbehaves on demand: echoes request headers (in the body, in a
header, encoded), redirects elsewhere, compresses against Accept-Encoding. Every request it
receives is recorded with the SNI name the client sent, so a test can see exactly what reached it.
"""

import base64
import gzip
import http.server
import json
import ssl
import threading
import time
import urllib.parse
import zlib
from pathlib import Path
from typing import Dict, List, Optional

import trustme


class Seen:
    def __init__(self, method: str, path: str, headers: Dict[str, str], body: bytes, sni: Optional[str],
                 client_port: int = 0) -> None:
        self.method, self.path, self.headers, self.body, self.sni = method, path, headers, body, sni
        self.client_port = client_port  # which connection it came on


def _openai_reply(text: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _openai_chunks(words: List[str]) -> List[dict]:
    chunks = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "test-model",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}]}
              for word in words]
    chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "test-model",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def _anthropic_reply(text: str) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "test-model",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}


def _anthropic_events(words: List[str]) -> List[tuple]:
    message = dict(_anthropic_reply(""), content=[])
    events = [("message_start", {"type": "message_start", "message": message}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": word}}) for word in words]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": 1}}),
               ("message_stop", {"type": "message_stop"})]
    return events


ANSWER = ["Hello", " from", " the", " provider"]


class Provider:
    def __init__(self, directory: Path, hostnames=("localhost", "127.0.0.1", "::1"), delay: float = 0.0) -> None:
        self.ca = trustme.CA()
        self.ca_path = directory / "provider-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.ca_path.chmod(0o644)
        self.seen: List[Seen] = []
        self.delay = delay  # between streamed events
        self._sni = threading.local()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*hostnames).configure_cert(context)
        context.sni_callback = self._note_sni
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # a provider answers at once (and a stream event by event)

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                provider._serve(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815 - http.server's names

            def setup(self):
                super().setup()
                self.sni = getattr(self.request, "clawgate_sni", None)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client the proxy cut off: expected, quiet
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _note_sni(self, sock, name, _context):
        sock.clawgate_sni = name

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def last(self) -> Seen:
        return self.seen[-1]

    # -- behaviour -------------------------------------------------------------------------
    def _serve(self, handler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        if handler.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(handler.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    handler.rfile.readline()
                    break
                body += handler.rfile.read(size)
                handler.rfile.readline()
        else:
            body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.seen.append(Seen(handler.command, handler.path, headers, body, handler.sni, handler.client_address[1]))
        path, _, query = handler.path.partition("?")
        params = urllib.parse.parse_qs(query)
        wants_stream = b'"stream": true' in body or b'"stream":true' in body
        if path.endswith("/chat/completions"):
            if wants_stream and "/json/" not in path:  # .../json/...: a plain answer to a stream request
                return self._sse(handler, [(None, chunk) for chunk in _openai_chunks(ANSWER)] + [(None, "[DONE]")])
            time.sleep(self.delay * 3)  # a model thinking: the answer comes a moment after the request
            return self._json(handler, 200, _openai_reply("".join(ANSWER)))
        if path.endswith("/messages"):
            if wants_stream:
                return self._sse(handler, _anthropic_events(ANSWER))
            return self._json(handler, 200, _anthropic_reply("".join(ANSWER)))
        if path.endswith("/echo"):
            return self._echo(handler, headers, params.get("enc", ["plain"])[0])
        if path.endswith("/redirect"):
            return self._send(handler, 302, b"", {"Location": "https://evil.invalid/steal"})
        if path.endswith("/brotli"):
            return self._send(handler, 200, b"\x0b\x02\x80hello\x03", {"Content-Encoding": "br"})
        if path.endswith("/events"):
            count = int(params.get("n", ["3"])[0])
            delay = float(params.get("delay", [self.delay])[0])
            return self._sse(handler, [(None, {"n": i}) for i in range(count)], delay)
        if path.endswith("/big"):
            return self._send(handler, 200, b"x" * int(params.get("size", ["1000000"])[0]), {})
        return self._json(handler, 200, {"path": handler.path})

    def _echo(self, handler, headers: Dict[str, str], encoding: str) -> None:
        secret_bearing = headers.get("authorization", "") or headers.get("x-api-key", "")
        raw = json.dumps(headers).encode()
        key = secret_bearing.split(" ")[-1].encode()
        extra = {"X-Echo": secret_bearing}
        if encoding == "b64":
            raw = base64.b64encode(raw)
        elif encoding == "basic":  # the key inside user:key, as HTTP basic auth would carry it
            raw = base64.b64encode(b"user:" + key)
        elif encoding == "url":
            raw = urllib.parse.quote(raw.decode(), safe="").encode()
        elif encoding == "hex":
            raw = raw.hex().encode()
        elif encoding == "gzip":
            raw = gzip.compress(raw)
            extra["Content-Encoding"] = "gzip"
        elif encoding == "gzip2":  # two gzip members, the key in the second
            raw = gzip.compress(b"first member ") + gzip.compress(raw)
            extra["Content-Encoding"] = "gzip"
        elif encoding in ("deflate", "rawdeflate"):
            packer = zlib.compressobj(wbits=zlib.MAX_WBITS if encoding == "deflate" else -zlib.MAX_WBITS)
            raw = packer.compress(raw) + packer.flush()
            extra["Content-Encoding"] = "deflate"
        elif encoding == "fold":  # the key split across an obsolete folded header line
            extra = {"Link": f"<https://x/{secret_bearing[:14]}\r\n {secret_bearing[14:]}>"}
        elif encoding == "tegzip":  # gzip as a transfer coding: what a proxy that undoes only chunked relays raw
            packed = gzip.compress(raw)
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "gzip, chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed))
            return
        elif encoding == "headers":  # the key as a header's name, and a cookie
            extra = {secret_bearing.split(" ")[-1]: "x", "Set-Cookie": "session=" + secret_bearing,
                     "X-Request-Id": "req-1"}
        elif encoding == "slow":  # the key split across two writes, a moment apart
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for piece in (secret_bearing[:14].encode(), secret_bearing[14:].encode()):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                handler.wfile.flush()
                time.sleep(0.2)
            handler.wfile.write(b"0\r\n\r\n")
            return
        self._send(handler, 200, raw, extra)

    def _send(self, handler, status: int, body: bytes, headers: Dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _json(self, handler, status: int, payload: dict) -> None:
        self._send(handler, status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _sse(self, handler, events, delay: "float | None" = None) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for name, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            piece = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            chunk = piece.encode()
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.wfile.flush()
            pause = self.delay if delay is None else delay
            if pause:
                time.sleep(pause)
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
