"""broker: serve the secrets namespace to the agent and the owner (get, list, status, resolve).

Runs as the owner, reached by the agent only through its sudoers entry.
It serves secret values by validated name and nothing else: never the TOTP
seed, a grant record or a path outside the store.

The broker program's body: bin/broker runs run(). A program, not the library: it may use cli.
"""

import os
import sys

from clawgate import access, cli, durations, names
from clawgate.errors import usage
from clawgate.store import open_store

USAGE = "usage: clawgate get NAME | list [--json] | status [--json] | resolve | request ... | proxy-token ROUTE"


def get(ctx: cli.Context, name: str) -> int:
    names.check(name)
    tier, value = access.read(ctx, open_store(ctx.cfg), "get", name, ctx.now())
    ctx.audit("get", name=name, tier=tier, result="ok")
    out = sys.stdout.buffer
    out.write(value)
    if not value.endswith(b"\n") and os.isatty(1):
        out.write(b"\n")  # a terminal's prompt should not start after the value; a pipe gets the exact bytes
    out.flush()
    return 0


def list_secrets(ctx: cli.Context, args: "list[str]") -> int:
    from clawgate import listing

    listing.print_secrets(listing.secrets_table(ctx, ctx.now()), as_json=_json_flag("list", args))
    return 0


def status(ctx: cli.Context, args: "list[str]") -> int:
    from clawgate import listing

    listing.print_status(listing.status(ctx, ctx.now()), as_json=_json_flag("status", args))
    return 0


def resolve(ctx: cli.Context, args: "list[str]") -> int:
    from clawgate import resolver

    if args:
        raise usage(_usage_of("resolve"))
    return resolver.serve(ctx, sys.stdin.buffer, sys.stdout)


REQUEST_USAGE = "usage: clawgate request NAME [--ttl DUR] [--reason TEXT] | request @root [--reason TEXT] -- CMD [ARG...]"


def request(ctx: cli.Context, args: "list[str]") -> int:
    """`clawgate request ...`: make the request, tell the owner, print its id."""
    import time

    from clawgate import requests

    head, argv = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, None)
    parser = cli.parser("request", "Ask the owner for a secret or for one root command.")
    parser.add_argument("name", metavar="NAME|@root")
    parser.add_argument("--ttl", type=durations.parse, metavar="DUR")
    parser.add_argument("--reason", metavar="TEXT")
    parsed = parser.parse_args(head)
    if (parsed.name == names.ROOT) != (argv is not None) or (parsed.name == names.ROOT and parsed.ttl):
        raise usage(REQUEST_USAGE)
    made = requests.create(ctx, parsed.name, parsed.ttl, parsed.reason, argv, time.time())
    told = requests.announce(ctx, made) if made.match is not None else False
    print(made.id)
    sys.stdout.flush()
    if parsed.ttl and parsed.ttl > made.ttl:  # as approve says it: the output tells of the cut
        cli.say(f"{made.id}: --ttl {durations.show(parsed.ttl)} cut to the {made.tier} cap of {durations.show(made.ttl)}")
    if told:
        cli.say(f"{made.id}: the owner was sent {made.what()} with a match; relay their code and the match: "
                f"clawgate approve {made.id} CODEMATCH")
    elif made.match is not None:
        cli.say(f"{made.id}: the owner could not be notified; they can approve it at their terminal "
                f"(clawgate pending, clawgate approve {made.id})")
    else:
        cli.say(f"{made.id}: ask the owner for a code for {made.what()}, then: clawgate approve {made.id} CODE")
    return 0


def proxy_token(ctx: cli.Context, args: "list[str]") -> int:
    """The route's token: what the agent's client sends as its API key. Not a secret from the
    agent (it only works through the proxy, within the route and the secret's tier)."""
    from clawgate import routes

    if len(args) != 1:
        raise usage("usage: clawgate proxy-token ROUTE")
    route = routes.load(ctx.cfg, routes.check_name(args[0]))
    ctx.audit("proxy-token", route=route.name)
    sys.stdout.write(route.token + ("\n" if os.isatty(1) else ""))
    return 0


def _json_flag(verb: str, args: "list[str]") -> bool:
    if args not in ([], ["--json"]):
        bad = next((arg for arg in args if arg != "--json"), args[-1])
        what = "unknown option" if bad.startswith("-") else "unexpected argument"
        raise usage(f"{verb}: {what} {names.shown(bad)} (usage: clawgate {verb} [--json])")
    return bool(args)


def main(script: str, argv: "list[str]") -> int:
    if not argv:
        raise usage(USAGE)
    verb, args = argv[0], argv[1:]
    if verb == "get" and len(args) == 1:
        return get(cli.context(script), args[0])
    handlers = {"list": list_secrets, "status": status, "resolve": resolve, "request": request,
                "proxy-token": proxy_token}
    if verb not in handlers:
        raise usage(_usage_of(verb) if verb == "get" else USAGE)
    return handlers[verb](cli.context(script), args)


def _usage_of(verb: str) -> str:
    from clawgate import helptext  # a wrong call only

    return helptext.usage_of(verb)


def run(script: str) -> None:
    """The broker program: bin/broker calls this with its own installed path."""
    cli.run(lambda argv: main(script, argv), fast_exit=True)  # every secret read passes here: skip the teardown
