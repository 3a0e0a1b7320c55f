"""Every verb's help, in one table: `clawgate VERB --help`, `clawgate help VERB` and each program's
own --help print from here, so they cannot differ (and the man page has one text to match).

Written for the person at the keyboard: verbs, flags, tiers and defaults, never an internal
program name. Kept out of the hot path: only `help` and an argparse --help import it.
"""

from . import __version__

TIERS = """tiers (a secret with no tier is restricted):
  open        served to the agent without a code
  controlled  needs a code; grants last 4h (the config's [ttl] controlled)
  restricted  needs a code; grants last 15m (the config's [ttl] restricted)"""

SUMMARY = """usage: clawgate VERB [ARG...]      clawgate help VERB      clawgate --version (-V)
  get NAME                       print a secret (exact bytes)
  list [--json]                  names, tiers, grant state
  status [--json]                open grants, root session, lockout
  approve NAME|@root|ID [CODE] [--ttl DUR]
                                 check a code from the owner's authenticator, grant access
  revoke NAME...|@root|--all     end grants now
  request NAME|@root ...         ask the owner for access (prints a request id)
  elevate CODE|session -- CMD [ARG...]   |   elevate ID
                                 run one command as root: in a session a code opens, or the
                                 root request ID the owner approved
  run [--env VAR=NAME]... -- CMD [ARG...]
                                 run a tool with secrets in its environment, output redacted
  resolve                        OpenClaw exec SecretRef provider (JSON on stdin)
  openclaw-config [--proxy ROUTE[:API]...]
                                 the provider block for openclaw.json
  proxy-token ROUTE              the API key the agent's client sends to the proxy's ROUTE
owner only:
  secrets set|rm|tier|use-only|list|import|import-keychain|migrate ...
  route add|list|show|rm|rotate ...   proxy   (agent-blind credentials)
  enroll [--import] [--rotate] [--root]
  pending [--json]   deny ID   notify set|test|show|off
  audit [show [--json] [--since W] [--event E]|verify]   unlock   doctor
exit codes: 0 ok, 1 denied, 2 usage, 3 approval required, 4 no such secret, 5 locked out,
6 unsafe or incomplete installation"""

HELP = {
    "get": """usage: clawgate get NAME
Print the secret NAME: its exact bytes, nothing added (a newline only when printing to a terminal).
An open secret is served at once; a controlled or restricted one only while a grant is open
(exit 3 otherwise: the message says how to get one).""",

    "list": """usage: clawgate list [--json]
The secrets by name with their tier and whether the agent may read them now (and for how long).
Never a value.
  --json   one JSON array of {name, tier, access, expires_in, use_only}""",

    "status": """usage: clawgate status [--json]
Open grants with the time left, the root session, the agent's lockout and recent wrong codes.
  --json   one JSON object""",

    "resolve": """usage: clawgate resolve
OpenClaw's exec SecretRef provider (protocol v1): a JSON request on stdin, the values and
per-id errors as JSON on stdout. OpenClaw runs it; see: clawgate openclaw-config.""",

    "openclaw-config": """usage: clawgate openclaw-config [--proxy ROUTE[:API]...]
Print the secrets provider block to merge into the agent's ~/.openclaw/openclaw.json.
  --proxy ROUTE[:API]  also a model provider per ROUTE whose baseUrl is the proxy's route and
                 whose apiKey is the route's proxy token (resolved through the same provider);
                 API: openai-completions (default), openai-responses or anthropic-messages""",

    "proxy-token": """usage: clawgate proxy-token ROUTE
Print the token the agent's client sends where the API key would go, to
http://127.0.0.1:PORT/ROUTE/. It works only through the proxy, only for ROUTE, and only while
the route's secret is usable (its tier; a grant for controlled and restricted).""",

    "route": """usage: clawgate route add|list|show|rm|rotate ...
(owner) Bind a secret to one upstream for the agent-blind proxy: the agent uses the key, never reads it.
  add NAME --upstream https://HOST[:PORT][/BASE] --secret SECRET --inject 'HEADER: FORMAT'
      [--methods M,...] [--path-prefix P] [--ca FILE] [--allow-private] [--force]
  list   show NAME   rm NAME   rotate NAME (a new token; the old one is refused)
clawgate help route add for the flags.""",

    "route add": """usage: clawgate route add NAME --upstream https://HOST[:PORT][/BASE] --secret SECRET
         --inject 'HEADER: FORMAT' [--methods M,...] [--path-prefix P] [--ca FILE] [--allow-private] [--force]
(owner) Requests to http://127.0.0.1:PORT/NAME/REST go to https://HOST:PORT/BASE/REST with
HEADER set to FORMAT, its {secret} replaced by SECRET's value.
  --upstream URL      https only; the host, port and base are fixed here, never by the agent
  --secret SECRET     a stored secret (mark it: clawgate secrets use-only SECRET)
  --inject 'H: F'     for example 'Authorization: Bearer {secret}' or 'x-api-key: {secret}'
  --methods M,...     allowed methods (default GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS)
  --path-prefix P     only paths under P (below the base)
  --ca FILE           trust this CA for the upstream instead of the system store
  --allow-private     the host may resolve to a loopback or private address
  --force             replace an existing route (its token is kept)""",

    "route list": """usage: clawgate route list
(owner) The routes: name, upstream, secret.""",

    "route show": """usage: clawgate route show NAME
(owner) One route in full (never its secret's value).""",

    "route rm": """usage: clawgate route rm NAME
(owner) Remove a route: the proxy refuses it from the next request.""",

    "route rotate": """usage: clawgate route rotate NAME
(owner) Give the route a new proxy token; the old one is refused from the next request.""",

    "proxy": """usage: clawgate proxy
(owner) Run the agent-blind proxy in the foreground (install.sh installs it as a service).
It listens on 127.0.0.1 and ::1 at the config's [proxy] port (default 8217; `clawgate route show
NAME` prints this install's base URL). As root, it runs as the owner.""",

    "approve": """usage: clawgate approve NAME|@root|ID [CODE] [--ttl DUR]
Check a code from the owner's authenticator and grant access that expires:
  NAME     the secret, for its tier's time (open secrets need no approval)
  @root    a root session for `clawgate elevate session` (30m by default)
  ID       a pending request (see: clawgate pending)
  CODE     the 6 digits the authenticator shows (8 if enrolled so); for a request the agent
           relays, followed by its 2 match digits (482916 47; a space or - between is accepted).
           The owner leaves CODE out and types it at the prompt (arguments show in ps);
           the agent relays it as an argument.
  --ttl DUR  how long, like 90s, 15m, 4h or 1h30m; default and maximum: the tier's cap
A code works once. A code of the wrong shape is refused (exit 2) and not counted; wrong codes
from the agent are, and too many lock it out (exit 5) until they age out or the owner runs
clawgate unlock.
""" + TIERS,

    "revoke": """usage: clawgate revoke NAME...|@root|--all
End grants now: the next `get` needs a new approval.
  NAME...  the secrets' grants (a name that is no secret: exit 4)
  @root    the root session
  --all    every grant and the root session
Note: OpenClaw keeps a value it already resolved until the gateway restarts.""",

    "request": """usage: clawgate request NAME [--ttl DUR] [--reason TEXT]
       clawgate request @root [--reason TEXT] -- CMD [ARG...]
Ask the owner for access; prints the request's id. The owner sees it (clawgate pending, or the
notification channel) and approves it: clawgate approve ID. Requests expire after 10 minutes.
  --ttl DUR      how long the grant should last (cut to the tier's cap)
  --reason TEXT  a short reason shown to the owner
  -- CMD ARG...  for @root: exactly this command, run once as root (clawgate elevate ID)""",

    "pending": """usage: clawgate pending [--json]
(owner) The pending requests: id, what they ask, the command for a root request, reason, age.
  --json   one JSON array""",

    "deny": """usage: clawgate deny ID
(owner) Drop the pending request ID.""",

    "notify": """usage: clawgate notify set [--ca FILE]|test|show|off
(owner) The channel every request, grant, lockout and revoke is pushed to.
  set    read one line on stdin: an https:// URL to POST to, or a command's absolute path and
         its arguments (run as the owner, one JSON event on its stdin); leading VAR=value
         words are the command's environment (where a token goes, never in its arguments)
         --ca FILE  trust this CA certificate for the URL instead of the system's
  test   send a test notification
  show   show the channel
  off    remove it
With a channel, the agent's approvals need the code and the request's 2 match digits,
which only the notification carries.""",

    "elevate": """usage: clawgate elevate CODE -- CMD [ARG...]
       clawgate elevate session -- CMD [ARG...]
       clawgate elevate ID
Run one command as root. CMD is run directly (never through a shell), a bare name found on
/usr/sbin:/usr/bin:/sbin:/bin, with a clean environment, in / (not your working
directory) and with root's standard resource limits (one root cannot restore: exit 6).
  CODE     a code from the owner's authenticator: opens a root session (30m by default)
  session  use the session that is still open (none or expired: exit 3)
  ID       run the command of an approved root request, once
Returns the command's own exit status once it runs.""",

    "run": """usage: clawgate run [--env VAR=NAME]... -- CMD [ARG...]
Run CMD with secrets in its environment; its output reaches you with every secret value
replaced by [redacted:NAME].
  --env VAR=NAME   put secret NAME in variable VAR (repeat for more; each needs access)""",

    "enroll": """usage: clawgate enroll [--import] [--rotate] [--root]
(owner) Create the TOTP seed: shows it as a QR code, as a secret to type (groups of four) and
as an otpauth:// URI, then saves it once you type a current code from your authenticator.
Run it at a terminal.
  --import   read a base32 seed or an otpauth:// URI from stdin instead (then a code)
  --rotate   replace the enrolled seed; every grant is revoked
  --root     a second seed, only for root (a second authenticator entry, "clawgate root")""",

    "secrets": """usage: clawgate secrets set|rm|tier|use-only|list|import|import-keychain|migrate|init ...
(owner) Manage the secrets; values never go in arguments.
  set NAME [--tier T] [--raw] [--allow-empty] [--force] [--use-only]   store a value
  rm NAME [--force]                                       delete a secret and its grant
  tier NAME T                                             change a secret's tier
  use-only NAME [--off]                                   the agent never reads it (the proxy sends it)
  list [--json]                                           names and tiers
  import [--tier T] [--shred] PATH...                     move credential files into the store
  import-keychain --keychain PATH --service NAME [--tier T]
                                                          copy a keychain made by the guide's scripts
  migrate --to openbao                                    move this host's store into OpenBao
  init                                                    create the store (install.sh does it)
clawgate help secrets set (and so on) for each.
""" + TIERS,

    "secrets set": """usage: clawgate secrets set NAME [--tier T] [--raw] [--allow-empty] [--force] [--use-only]
(owner) Store the secret NAME. The value comes from stdin, or from a hidden prompt typed twice
at a terminal; never from an argument (every user can read arguments with ps).
  --tier T       open, controlled or restricted; a new secret with no tier is restricted,
                 an existing one keeps its tier
  --raw          keep the value exactly; without it one trailing newline is dropped
  --allow-empty  store an empty value (refused otherwise)
  --force        replace an existing secret without asking (at a terminal it asks
                 "Overwrite it? [y/N]"; without a terminal, replacing needs --force)
  --use-only     the agent can never read it (get, resolve, run refuse); only the proxy sends it
""" + TIERS,

    "secrets use-only": """usage: clawgate secrets use-only NAME [--off]
(owner) Mark NAME use-only: the agent can never read it, with or without a grant; only the
proxy sends it, to the upstream of a route (clawgate route add). Its tier still decides when.
  --off   readable again under its tier""",

    "secrets rm": """usage: clawgate secrets rm NAME [--force]
(owner) Delete the secret NAME, its tier and its grant. Asks first at a terminal;
without a terminal, it needs --force.
  --force   do not ask""",

    "secrets tier": """usage: clawgate secrets tier NAME T
(owner) Set the tier of NAME to T: open, controlled or restricted. An open grant is cut to
the new tier's cap.
""" + TIERS,

    "secrets list": """usage: clawgate secrets list [--json]
(owner) The secrets by name with their tier and grant state. Never a value.
  --json   one JSON array""",

    "secrets import": """usage: clawgate secrets import [--tier T] [--shred] PATH...
(owner) Move plaintext credential files into the store, one secret per file, named after it.
  --tier T   the tier for every imported secret (default: restricted)
  --shred    overwrite and delete each original once it is stored""",

    "secrets migrate": """usage: clawgate secrets migrate --to openbao
(owner) Once install.sh has set store = openbao: move the secrets, tiers and TOTP seeds this
host's file store kept into OpenBao's prefix, all or nothing. A name already there with another
value, or another host's seed, stops it before anything is written; everything is read back
before the local copies are removed.
  --to openbao   the one target""",

    "secrets import-keychain": """usage: clawgate secrets import-keychain --keychain PATH --service NAME [--tier T]
(owner, macOS) Copy the items of a keychain made with the guide's scripts into the store.
A locked keychain, or an item that `security` did not make, makes macOS ask: a dialog on the
Mac's screen, or, over SSH where none can show, exit 36 ("User interaction is not allowed").
Run it in Terminal on the Mac's own screen and click Always Allow, or give the keychain's
password when asked.
  --keychain PATH   the keychain file
  --service NAME    the service name the items were stored under
  --tier T          the tier for every copied secret (default: restricted)""",

    "secrets init": """usage: clawgate secrets init
(installer) Create the state directories and the store; install.sh runs it.""",

    "audit": """usage: clawgate audit [show [--json] [--since WHEN] [--until WHEN] [--event NAME[,NAME...]] | verify]
(owner) The hash-chained audit log of every decision, with its rotated files.
  show      the log, one line per event, oldest kept first (the default)
  --json    with show: the records as JSON
  --since WHEN, --until WHEN
            with show: only records of that span; WHEN is a UTC time (2026-11-24, 2026-11-24T13:05)
            or how long ago (90m, 4h, 7d)
  --event NAME[,NAME...]
            with show: only those events (get, grant, code, rotate...)
  verify    check the chain across every kept file and say where the kept history starts; an edited,
            deleted or reordered line, a rotated file removed, renamed or reordered is reported (exit 1)""",

    "unlock": """usage: clawgate unlock
(owner) Clear the agent's lockout and its count of recent wrong codes.""",

    "doctor": """usage: clawgate doctor
(owner, root) Check the installation and every invariant on the live system, one line per
check; exit 1 if any fails.""",

    "help": """usage: clawgate help [VERB]
Show the help of VERB (the same as: clawgate VERB --help), or the list of verbs.""",
}

VERBS = sorted({key.split()[0] for key in HELP})


def text(topic: str) -> "str | None":
    """The help for `topic` ("get", "secrets set"...), or None."""
    return HELP.get(" ".join(topic.split()))


def closest(words: "list[str]") -> "str | None":
    """The help for `VERB SUB` if the table has it, else for VERB (`audit show --help` is audit's);
    None for a verb that does not exist."""
    verb, sub = (words + [""])[:2]
    found = text(f"{verb} {sub}") if sub and not sub.startswith("-") else None
    return found or text(verb)


def usage_of(topic: str) -> str:
    """The usage line of `topic`'s help: what a wrong call of it is told."""
    found = text(topic)
    return found.splitlines()[0] if found else SUMMARY.splitlines()[0]


def version() -> str:
    return f"clawgate {__version__}"


def suggestion(typed: str) -> str:
    """`unknown verb 'gte'; did you mean: get?` for a mistyped verb."""
    import difflib

    near = difflib.get_close_matches(typed[:40], VERBS, n=1, cutoff=0.5)
    hint = f"; did you mean: {near[0]}?" if near else ""
    return f"unknown verb '{typed[:40]}'{hint} (clawgate --help lists them)"  # cli.say escapes it
