"""The owner's notification channel: where requests (with their match) and decisions are pushed.

The channel lives in the owner's state (notify.json, 0600), never in the world-readable config
and never in an argv: /proc/PID/cmdline is readable by the agent. It is one line the owner gave
`clawgate notify set` on stdin:

  https://...            POSTed the event's text (text/plain), certificate checked; an optional
                         CA (`notify set --ca FILE`) is stored with it and trusted instead of the
                         system store
  [VAR=value...] /abs/command [ARG...]
                         split as a shell would, run as the owner without a shell, with the
                         VAR=value words in its environment (where a token belongs) and one JSON
                         event on stdin: {"event", "text", "host", "time", and for requests
                         "id", "match", "what", "reason"}

Every delivery runs in a child of its own process group that is killed after BOUND seconds,
whatever the receiver does; a failure never stops the caller. A request is sent while the agent
waits (so it learns whether the owner was reached); every other event is pushed from a detached
child, so the agent's command is not held at all.

Events flow one way: the domain (context.Context) emits them and hands each to `send` or `push`
with a `failed` callback, Context.undelivered, the one place a failed delivery is recorded. This
module knows nothing of the context, the audit log or the caller: it formats and delivers.
It imports only os at the top: context.Context.audit asks text_for about every pushed record.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

    Channel = Dict[str, Any]  # {"kind": "url", "url", "ca"?} or {"kind": "command", "argv", "env"?}
    Failed = Callable[[str], None]  # told why a delivery failed (context.Context.undelivered)

    from .config import Config

BOUND = 5  # seconds a delivery may take, connection, TLS, answer or command included
FILE = "notify.json"
MAX_LINE = 4096
MAX_FIELD = 200  # characters of any caller-chosen text in a notification
# Audit events pushed as they happen, and the fields each one's text shows.
PUSHED = ("grant", "elevate", "lockout", "revoke", "enroll")  # context._PUSHED filters first (tested equal)


def plain(text: object, limit: int = MAX_FIELD) -> str:
    """Caller-chosen text as one bounded line, escaped by display.escape (the one escaping function)."""
    from .display import escape

    raw = str(text)
    return escape(raw[:limit]) + ("..." if len(raw) > limit else "")


def argv_text(argv: "list[str]") -> str:
    """An argv as the owner should read it: quoted as a shell would, each word escaped and WHOLE.
    Never cut: a cut word hid `; touch /root/x` from an approval (a request's argv is bounded
    by requests.MAX_ARGV_CHARS, a channel's by MAX_LINE)."""
    import shlex

    from .display import escape

    return " ".join(shlex.quote(escape(word)) for word in argv)


# -- the channel record ----------------------------------------------------------------------------

def _path(cfg: "Config") -> str:
    from . import state

    return state.path(cfg, FILE)


def parse_line(line: str) -> "Channel":
    """The one line `notify set` reads; a usage error (exit 2) for anything else."""
    import shlex
    import urllib.parse

    from .errors import usage

    line = line.strip()
    if not line or len(line) > MAX_LINE or any(not ch.isprintable() for ch in line):
        raise usage("notify set: give one line: an https:// URL, or an absolute command path and its arguments")
    if line.lower().startswith("https://"):
        parts = urllib.parse.urlsplit(line)
        if parts.scheme != "https" or not parts.hostname or " " in line:
            raise usage("notify set: not a valid https URL")
        return {"kind": "url", "url": line}
    if line.lower().startswith("http:"):
        raise usage("notify set: only https:// URLs (the text carries the match)")
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise usage(f"notify set: {err}") from None
    env = {}
    while words and "=" in words[0] and not words[0].startswith("/"):
        key, _, value = words.pop(0).partition("=")
        if not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
            raise usage("notify set: a VAR=value word needs a plain variable name")
        env[key] = value
    if not words or not os.path.isabs(words[0]):
        raise usage("notify set: give an https:// URL or the absolute path of a command")
    return {"kind": "command", "argv": words, "env": env}


def save(cfg: "Config", channel: "Channel") -> None:
    import json

    from . import fsio

    fsio.write_atomic(_path(cfg), json.dumps(channel).encode())


def load(cfg: "Config") -> "Optional[Channel]":
    """The channel, or None. A damaged record is refused, not taken for 'no channel'."""
    import json

    from . import fsio
    from .errors import unsafe

    raw = fsio.read_checked(_path(cfg), cfg.owner.uid)
    if raw is None:
        return None
    try:
        channel = json.loads(raw)
        ok = channel["kind"] in ("url", "command") and isinstance(channel.get("url", channel.get("argv")), (str, list))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise unsafe(f"{_path(cfg)}: damaged; the owner can set it again: clawgate notify set")
    return channel


def remove(cfg: "Config") -> bool:
    from . import fsio

    return fsio.remove(_path(cfg))


def is_set(cfg: "Config") -> bool:
    return load(cfg) is not None


def describe(channel: "Channel") -> str:
    """For `notify show` (owner only): the channel as set; secrets in VAR=value are shown masked."""
    if channel["kind"] == "url":
        return f"url {plain(channel['url'], MAX_LINE)}" + ("  (with its own CA)" if channel.get("ca") else "")
    env = " ".join(f"{key}=***" for key in channel.get("env", {}))
    return f"command {(env + ' ') if env else ''}{argv_text(channel['argv'])}"


# -- events ----------------------------------------------------------------------------------------

def event(kind: str, text: str, **fields: object) -> "Dict[str, object]":
    import time

    return {"event": kind, "text": f"clawgate on {plain(os.uname().nodename, 64)}: {text}",
            "host": os.uname().nodename, "time": int(time.time()), **fields}


def text_for(kind: str, fields: "Dict[str, Any]") -> "Optional[str]":
    """What the owner is told of an audit record (its fields and `caller`), or None: not pushed."""
    from . import durations

    who = plain(fields.get("caller", "?"), 64)
    if kind == "grant":
        what = "root session open" if fields.get("name") == "@root" else f"{plain(fields.get('name'), 128)} granted"
        ttl = fields.get("ttl")
        return f"{what} for {durations.show(int(ttl)) if isinstance(ttl, (int, float)) else '?'} (by {who})"
    if kind == "elevate" and fields.get("result") == "run":
        shown = argv_text(list(fields.get("argv") or []))  # ran already: a tail past MAX_LINE is only counted
        cut = f"... ({len(shown)} characters in all)" if len(shown) > MAX_LINE else ""
        return f"root runs: {shown[:MAX_LINE]}{cut} (by {who})"
    if kind == "lockout":
        return f"the agent is locked out until {plain(fields.get('until'), 64)} after {fields.get('failures')} wrong codes"
    if kind == "revoke" and fields.get("result") == "revoked":
        return f"{plain(fields.get('name'), 128)} revoked (by {who})"
    if kind == "enroll":
        which = "root seed" if fields.get("root") else "seed"
        return f"{which} {'rotated' if fields.get('rotate') else 'enrolled'} (by {who})"
    return None


# -- delivery ----------------------------------------------------------------------------------------

def send(cfg: "Config", message: "Dict[str, object]", failed: "Failed") -> bool:
    """Deliver now, within BOUND seconds; False (and failed(why)) if the owner was not reached.
    No channel set: False, and nothing failed."""
    channel = load(cfg)
    if channel is None:
        return False
    error = _bounded(cfg, channel, message)
    if error is not None:
        failed(error)
        return False
    return True


def push(cfg: "Config", message: "Dict[str, object]", failed: "Failed") -> None:
    """Deliver from a detached child: the caller goes on at once, holding none of its descriptors.
    A fork the caller made fail (a process limit, an exhausted table) is a failed delivery like
    any other, never swallowed: the owner must learn of a lockout or a grant, or find why not."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as err:
        failed(f"cannot start the delivery: {err.strerror or err}")
        return
    if pid:
        os.waitpid(pid, 0)
        return
    try:  # pragma: no cover - seen through the receiver
        os.setsid()
        try:
            if os.fork():
                os._exit(0)
        except OSError as err:
            failed(f"cannot start the delivery: {err.strerror or err}")
            os._exit(0)
        _detach_descriptors()
        send(cfg, message, failed)
    except BaseException as err:  # noqa: BLE001 - recorded as one line, never silent
        try:
            failed(f"{type(err).__name__}: {err}")
        except BaseException:  # noqa: BLE001 - the record itself failed: nothing left to tell
            pass
    finally:
        os._exit(0)


def _detach_descriptors() -> None:
    """stdin/stdout/stderr to /dev/null, every other descriptor closed: sudo's, a pipe's reader
    (privdrop, a test's capture) never wait for this child."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 65536)


def _bounded(cfg: "Config", channel: "Channel", message: "Dict[str, object]") -> "Optional[str]":
    """Run the delivery in a child leading its own process group; kill the group after BOUND s."""
    import select
    import signal
    import time

    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as err:
        os.close(read_end)
        os.close(write_end)
        return f"cannot start the delivery: {err.strerror or err}"
    if pid == 0:  # pragma: no cover - seen through the parent
        os.close(read_end)
        error = "delivery failed"
        try:
            os.setpgid(0, 0)
            error = _deliver(cfg, channel, message) or ""
        except BaseException as err:  # noqa: BLE001 - reported as one line, never a traceback
            error = f"{type(err).__name__}: {err}"
        finally:
            os.write(write_end, error.encode()[:400] or b"-")
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + BOUND
    answer = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                answer = b"timed out after %ds" % BOUND
                break
            chunk = os.read(read_end, 512)
            if not chunk:
                break
            answer += chunk
    finally:
        os.close(read_end)
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(pid, 0)
    text = answer.decode("utf-8", "replace")
    return None if text == "-" else (text or "delivery failed")


def _deliver(cfg: "Config", channel: "Channel", message: "Dict[str, object]") -> "Optional[str]":
    if channel["kind"] == "url":
        return _post(str(channel["url"]), channel.get("ca"), message)
    return _run_command(cfg, channel, message)


def _post(url: str, ca: "Optional[str]", message: "Dict[str, object]") -> "Optional[str]":
    import ssl
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kw):
            return None

    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    # No proxy from the environment, no redirect: the text carries the match, and only the
    # owner's URL may receive it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect(),
                                         urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, data=str(message["text"]).encode(), method="POST", headers={
        "Content-Type": "text/plain; charset=utf-8", "Title": f"clawgate {message['event']}",
        "X-Clawgate-Event": str(message["event"])})
    with opener.open(request, timeout=BOUND) as reply:
        if not 200 <= reply.status < 300:
            return f"HTTP {reply.status}"
    return None


def _run_command(cfg: "Config", channel: "Channel", message: "Dict[str, object]") -> "Optional[str]":
    import json
    import subprocess

    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin", "HOME": cfg.owner.home,
           "USER": cfg.owner.name, "LOGNAME": cfg.owner.name, "LANG": "C.UTF-8"}
    env.update(channel.get("env") or {})
    done = subprocess.run(list(channel["argv"]), input=(json.dumps(message) + "\n").encode(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/", check=False)
    return None if done.returncode == 0 else f"command exited {done.returncode}"
