"""install.sh's Python: path checks, the config sections it carries over, service rendering.

install.sh runs this file from the source tree, before anything is installed, on the host's
interpreter with -I: `python3 -I lib/clawgate/installcheck.py COMMAND ARG...`. Each command
prints its answer (or its problems, one a line) and exits 0, 1 (the answer is no) or 2
(bad arguments). bin/doctor imports chain_problems from here: one ownership/mode chain check.
"""

import os
import pwd
import re
import shlex
import stat
import sys
import sysconfig
from typing import Callable, Dict, List, Sequence, Tuple

if __name__ == "__main__":  # run as a script from the source tree: the package is beside it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from clawgate.config import read_ini

# / and every top-level directory, whatever lies in the system's own trees, and what sits right below /var.
SYSTEM_TREES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc",
                "/sys", "/run", "/System", "/Library", "/private/etc")
SYSTEM_PARENTS = ("/", "/var", "/private", "/private/var")
CARRIED_SECTIONS = ("ttl", "keychain", "audit")  # what the owner may tune in the config and a reinstall keeps


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def chain_problems(path: str, allowed_uids: "Sequence[int]" = (0,), missing_ok: bool = False) -> "List[str]":
    """path and every directory above it: no link, owned by an allowed uid, not group/other-writable.

    A part that does not exist is a problem, unless missing_ok (install.sh checks where it is
    about to create a directory).
    """
    problems = []
    current = path
    while True:
        try:
            st = os.lstat(current)
        except FileNotFoundError as err:
            if not missing_ok:
                problems.append(f"{current}: {err.strerror}")
        except OSError as err:
            problems.append(f"{current}: {err.strerror}")
        else:
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{current}: is a symbolic link")
            elif st.st_uid not in allowed_uids:
                problems.append(f"{current}: owned by {user_name(st.st_uid)}")
            elif st.st_mode & 0o022:
                problems.append(f"{current}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
        if current == "/":
            return problems
        current = os.path.dirname(current)


def carried_sections(text: str) -> str:
    """The sections of an existing config the owner may have tuned, as INI text; none if unreadable."""
    try:
        sections = read_ini(text)
    except ValueError:
        return ""
    return "".join(
        f"\n[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in sections[name].items())
        for name in CARRIED_SECTIONS if name in sections)


def systemd_word(word: str) -> str:
    if not word.replace("_", "").replace(".", "").replace("/", "").replace("-", "").replace("=", "") \
            .replace(":", "").replace("@", "").replace("+", "").replace(",", "").isalnum():
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word.replace("%", "%%").replace("$", "$$")


def render_service(kind: str, text: str, agent: str, group: str, home: str, argv: "List[str]",
                   search_path: str = "") -> str:
    if kind == "systemd":
        text = text.replace("@EXEC_START@", " ".join(systemd_word(word) for word in argv))
        text = text.replace("@SERVICE_PATH@", systemd_word("PATH=" + search_path))
    else:
        from xml.sax.saxutils import escape

        lines = "\n".join(f"\t\t<string>{escape(word)}</string>" for word in argv)
        text = text.replace("@PROGRAM_ARGUMENTS@", lines).replace("@SERVICE_PATH@", escape(search_path))
    return text.replace("@AGENT_GROUP@", group).replace("@AGENT_HOME@", home).replace("@AGENT@", agent)


def is_system_dir(path: str) -> bool:
    return path == "/" or os.path.dirname(path) in SYSTEM_PARENTS \
        or any(path == tree or path.startswith(tree + "/") for tree in SYSTEM_TREES)


def plain_path(path: str) -> bool:
    return re.fullmatch(r"/[A-Za-z0-9._/+-]*", path) is not None and "//" not in path \
        and "/../" not in path + "/" and not path.endswith("/.")


def below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def shared_files(prefix: str) -> "List[Tuple[str, str]]":
    """(file in the repository, where it goes) for the manual pages, shell completions and the
    OpenBao guide doctor points to: below PREFIX/share, where man, bash-completion and zsh look for
    a PREFIX/bin on the PATH (and where a doc of the install is found without its repository)."""
    share = prefix.rstrip("/") + "/share"
    return [("man/clawgate.1", f"{share}/man/man1/clawgate.1"),
            ("man/clawgate.conf.5", f"{share}/man/man5/clawgate.conf.5"),
            ("docs/OPENBAO.md", f"{share}/doc/clawgate/OPENBAO.md"),
            ("completion/clawgate.bash", f"{share}/bash-completion/completions/clawgate"),
            ("completion/_clawgate", f"{share}/zsh/site-functions/_clawgate")]


def manifest_problems(text: str, prefix: str, *service_names: str) -> "List[str]":
    """Every line of an install manifest that names something install.sh could not have made."""
    entries: "Dict[str, List[str]]" = {}
    for line in filter(None, text.splitlines()):
        kind, _, value = line.partition(" ")
        entries.setdefault(kind, []).append(value)
    name = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
    bad = [f"{kind} {value}" for kind in ("owner", "agent", "user") for value in entries.get(kind, [])
           if not name.fullmatch(value)]
    agents, owners = set(entries.get("agent", [])), set(entries.get("owner", []))
    for user in entries.get("user", []):
        try:
            root = pwd.getpwnam(user).pw_uid == 0
        except KeyError:
            root = False
        if user not in agents or user in owners or root:
            bad.append(f"user {user}")
    bad += [f"sudoers {path}" for path in entries.get("sudoers", [])
            if path not in {f"/etc/sudoers.d/clawgate-{agent}" for agent in agents}]
    bad += [f"service {path}" for path in entries.get("service", [])
            if not plain_path(path) or os.path.basename(path) not in service_names]
    homes = entries.get("home", [])
    for kind in ("state", "home"):
        bad += [f"{kind} {path}" for path in entries.get(kind, [])
                if not plain_path(path) or is_system_dir(path) or below(prefix, path) or below(path, prefix)]
    for line in entries.get("migrated", []):
        source, _, target = line.partition(" ")
        if not plain_path(source) or is_system_dir(source) or target not in {f"{home}/.openclaw" for home in homes}:
            bad.append(f"migrated {line}")
    made_below = entries.get("state", []) + homes + entries.get("service", []) + [prefix]
    bad += [f"dir {path}" for path in entries.get("dir", [])
            if not plain_path(path) or path == "/" or not below(path, prefix)
            and not any(below(made, path) for made in made_below)]
    bad += [f"file {path}" for path in entries.get("file", [])
            if path not in {installed for _, installed in shared_files(prefix)}]
    known = {"owner", "agent", "user", "sudoers", "service", "state", "home", "migrated", "dir", "file"}
    bad += [f"{kind} {value}" for kind in entries if kind not in known for value in entries[kind]]
    return bad


# -- the commands install.sh runs ------------------------------------------------------------------

def cmd_shared_files(prefix: str) -> int:
    for source, installed in shared_files(prefix):
        print(source, installed)
    return 0


def cmd_realpath(path: str) -> int:
    print(os.path.realpath(path))
    return 0


def cmd_chain(path: str, *owners: str) -> int:
    """Every existing directory from path up to / owned by root (or one of owners), not g/o-writable."""
    allowed = {0} | {pwd.getpwnam(owner).pw_uid for owner in owners if owner}
    problems = chain_problems(path, tuple(allowed), missing_ok=True)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def cmd_pyinfo() -> int:
    """The stdlib directories an isolated interpreter imports from; exit 1 below Python 3.9."""
    if sys.version_info < (3, 9):
        print(f"Python {sys.version_info[0]}.{sys.version_info[1]} is too old (3.9 or later)")
        return 1
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        print(os.path.realpath(paths[key]))
    print(os.path.realpath(os.path.join(paths["platstdlib"], "lib-dynload")))
    return 0


def cmd_keep(conf: str) -> int:
    try:
        with open(conf, encoding="utf-8", newline=None) as handle:
            text = handle.read()
    except (OSError, ValueError):
        return 0
    sys.stdout.write(carried_sections(text))
    return 0


def cmd_conf_value(conf: str, section: str, key: str) -> int:
    """A value an existing config holds (nothing if it cannot be read): a rerun keeps a fleet's
    store and its [openbao] settings."""
    try:
        with open(conf, encoding="utf-8", newline=None) as handle:
            print(read_ini(handle.read()).get(section, {}).get(key, "").strip())
    except (OSError, ValueError):
        pass
    return 0


def cmd_render_service(kind: str, template: str, agent: str, group: str, home: str, command: str,
                       search_path: str = "") -> int:
    argv = shlex.split(command)
    if not argv or any("\n" in word or "\0" in word for word in argv):
        print("the gateway command is empty or has a newline", file=sys.stderr)
        return 2
    with open(template, encoding="utf-8") as handle:
        sys.stdout.write(render_service(kind, handle.read(), agent, group, home, argv, search_path))
    return 0


def cmd_first_word(command: str) -> int:
    argv = shlex.split(command)
    print(argv[0] if argv else "")
    return 0


def cmd_free_id(low: str, high: str) -> int:
    """The lowest id in [low, high] that no user and no group has (dscl listings on stdin)."""
    used = set()
    for line in sys.stdin:
        fields = line.split()
        if len(fields) >= 2 and fields[-1].lstrip("-").isdigit():
            used.add(int(fields[-1]))
    for candidate in range(int(low), int(high) + 1):
        if candidate not in used:
            print(candidate)
            return 0
    return 1


def cmd_ordinary_dir(path: str) -> int:
    """Exit 1 if path is /, a top-level directory or a system directory: never one to hand to a user."""
    return 1 if is_system_dir(path) else 0


def cmd_manifest(manifest: str, prefix: str, *service_names: str) -> int:
    with open(manifest, encoding="utf-8", errors="replace") as handle:
        bad = manifest_problems(handle.read(), prefix, *service_names)
    for line in bad:
        print(f"{line!r} is not something install.sh makes")
    return 1 if bad else 0


NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str) -> int:
    """A directory opened one component at a time from /, following no link on the way."""
    fd = os.open("/", NOFOLLOW_DIR)  # the parent is resolved first: it is root's or the owner's
    parts = os.path.realpath(os.path.dirname(path)).split("/") + [os.path.basename(path)]
    for part in [p for p in parts if p]:
        try:
            child = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


MAX_COPY = 256 << 20  # bytes of a multi-linked file uninstall copies; a larger one leaves the tree


class LinkedFile(Exception):
    """A file with other hard links where a tree changes hands: its other names would change too."""


def linked_files(fd: int, where: str, skip: "Sequence[str]" = ()) -> "List[str]":
    """Every non-directory below directory fd with more than one hard link (no link followed)."""
    found = []
    for entry in sorted(os.listdir(fd)):
        if entry in skip:
            continue
        st = os.lstat(entry, dir_fd=fd)
        if stat.S_ISDIR(st.st_mode):
            child = os.open(entry, NOFOLLOW_DIR, dir_fd=fd)
            try:
                found += linked_files(child, os.path.join(where, entry))
            finally:
                os.close(child)
        elif st.st_nlink > 1:
            found.append(f"{os.path.join(where, entry)} ({st.st_nlink} links)")
    return found


def give_tree(fd: int, uid: int, gid: int, skip: "Sequence[str]" = (), where: str = "",
              fresh: "List[str] | None" = None, holders: "Sequence[int]" = ()) -> None:
    """chown -R on descriptors: no link is followed, a link is changed itself; each directory is
    given after what it holds when the agent receives the tree (install), before when the owner
    does (uninstall): the agent never holds a directory whose entries are still changing hands. A file with other hard
    links (one made from elsewhere, by whoever owned the file) must not change hands with them:
    with `fresh` (uninstall) the name gets a fresh copy, the new owner's alone, the other names
    keep the old inode and its owner, and the name is added to `fresh`; without it (install) that
    is refused (LinkedFile), as install.sh checked before changing anything."""
    for entry in os.listdir(fd):
        if entry in skip:
            continue
        st = os.lstat(entry, dir_fd=fd)
        name = os.path.join(where, entry)
        if stat.S_ISDIR(st.st_mode):
            child = os.open(entry, NOFOLLOW_DIR, dir_fd=fd)
            try:  # the more trusted user holds the directory while its entries change hands
                if fresh is not None:
                    os.fchown(child, uid, gid)
                give_tree(child, uid, gid, where=name, fresh=fresh, holders=holders)
                if fresh is None:
                    os.fchown(child, uid, gid)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode):
            _give_file(fd, entry, st, uid, gid, name, fresh, holders)
        elif stat.S_ISLNK(st.st_mode) or st.st_nlink == 1:
            os.chown(entry, uid, gid, dir_fd=fd, follow_symlinks=False)
        elif fresh is not None:  # a multi-linked FIFO or device: not copied, not given; named
            fresh.append(f"{name} (not a regular file, {st.st_nlink} links: left as it was)")
        else:
            raise LinkedFile(f"{name} ({st.st_nlink} links)")


def _give_file(fd: int, entry: str, st: os.stat_result, uid: int, gid: int, name: str,
               fresh: "List[str] | None", holders: "Sequence[int]" = ()) -> None:
    """One regular file: chowned through a descriptor, then checked again (its old owner may have
    linked it from elsewhere after the lstat); still or now multi-linked, it is copied. With
    `holders` (uninstall: the tree's last holder and the new owner), a file of anyone else (a hard
    link the agent made to root's file where no kernel rule forbids it) is neither given nor
    copied, whose content the new owner may not read: its name leaves the tree, and is named."""
    child = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    try:
        before = os.fstat(child)
        if (before.st_dev, before.st_ino) != (st.st_dev, st.st_ino):
            raise LinkedFile(f"{name} changed while it was handed over")
        if holders and before.st_uid not in holders:
            os.unlink(entry, dir_fd=fd)
            if fresh is not None:
                fresh.append(f"{name} (a link to a file of uid {before.st_uid}: removed from the tree, not handed over)")
            return
        if before.st_nlink == 1:
            os.fchown(child, uid, gid)
            if os.fstat(child).st_nlink == 1:
                return
        if fresh is None:
            raise LinkedFile(f"{name} ({os.fstat(child).st_nlink} links)")
        if before.st_size > MAX_COPY:  # a sparse terabyte would fill the disk half-way through
            os.unlink(entry, dir_fd=fd)
            fresh.append(f"{name} (had other hard links and {before.st_size} bytes, more than a copy may take:"
                         " removed from the tree, left to its other names)")
            return
        _fresh_copy(fd, entry, child, uid, gid)
        os.fchown(child, before.st_uid, before.st_gid)  # the other names keep what they had
        fresh.append(f"{name} (had other hard links; given back as a fresh copy)")
    finally:
        os.close(child)


def _fresh_copy(fd: int, entry: str, source: int, uid: int, gid: int) -> None:
    """Replace ENTRY (in directory fd, which is the new owner's by now) with a copy of source: a new
    inode, one link, owned by uid:gid, the same permission bits (never set-id)."""
    mode = stat.S_IMODE(os.fstat(source).st_mode) & 0o1777
    temp = f".clawgate-give-{os.getpid()}"  # short: ENTRY may be as long as a name can be
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
    try:
        os.fchown(out, uid, gid)
        offset = 0
        while True:
            chunk = os.pread(source, 1 << 20, offset)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
            offset += len(chunk)
        os.fchmod(out, mode)
        os.fsync(out)
    except BaseException:
        os.unlink(temp, dir_fd=fd)
        raise
    finally:
        os.close(out)
    os.rename(temp, entry, src_dir_fd=fd, dst_dir_fd=fd)


def set_mode(fd: int, name: str, mode: int, kind: str) -> None:
    """chmod NAME (in directory fd) if it is a KIND ('dir' or 'file'), through a descriptor, never a link."""
    flags = NOFOLLOW_DIR if kind == "dir" else os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        st = os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return
    if not (stat.S_ISDIR if kind == "dir" else stat.S_ISREG)(st.st_mode):
        return
    child = os.open(name, flags, dir_fd=fd)
    try:
        if (os.fstat(child).st_dev, os.fstat(child).st_ino) == (st.st_dev, st.st_ino):
            os.fchmod(child, mode)
    finally:
        os.close(child)


def cmd_migrate(source: str, agent_home: str, owner: str, agent: str, agent_group: str) -> int:
    """--migrate-from: set every mode and owner while SOURCE is still in the owner's directory,
    where the agent can change nothing, then move it into the agent's home with one rename (which
    never follows a link planted at the destination). Root acts on descriptors only: nothing
    under the agent's home is touched after the move. credentials stays the owner's (0700, files
    0600): plaintext that `clawgate secrets import --shred` is to take into the store."""
    import grp

    owner_pw, agent_pw = pwd.getpwnam(owner), pwd.getpwnam(agent)
    gid = grp.getgrnam(agent_group).gr_gid
    parent = open_dir(os.path.dirname(source))
    name = os.path.basename(source)
    top = os.open(name, NOFOLLOW_DIR, dir_fd=parent)
    home = open_dir(agent_home)
    if os.fstat(top).st_uid != owner_pw.pw_uid:
        print(f"{source}: not owned by {owner}", file=sys.stderr)
        return 1
    if os.fstat(top).st_dev != os.fstat(home).st_dev:  # no rename across file systems; root copies nothing there
        print(f"{source} and {agent_home} are on different file systems; nothing was changed "
              "(pass an --agent-home on the same one)", file=sys.stderr)
        return 1
    set_mode(top, "credentials", 0o700, "dir")
    try:
        cred: "int | None" = os.open("credentials", NOFOLLOW_DIR, dir_fd=top)
    except OSError:  # none, or not a directory (the owner's own link): left as it is
        cred = None
    if cred is not None:
        for entry in os.listdir(cred):
            set_mode(cred, entry, 0o600, "file")
        os.close(cred)
    linked = linked_files(top, source, skip=("credentials",))
    if linked:  # chowned, their other names would be the agent's too; copied, the owner's links break
        print(f"{source}: files with other hard links: {', '.join(linked)}; nothing was changed "
              "(make each a file of its own, e.g. cp -p F F.new && mv F.new F, and run this again)", file=sys.stderr)
        return 1
    set_mode(top, "workspace", 0o755, "dir")
    give_tree(top, agent_pw.pw_uid, gid, skip=("credentials",))
    os.fchmod(top, 0o711)
    os.fchown(top, agent_pw.pw_uid, gid)
    os.rename(name, ".openclaw", src_dir_fd=parent, dst_dir_fd=home)
    return 0


def cmd_give(path: str, user: str, group: str) -> int:
    """--uninstall's move back: the tree becomes USER's alone, by descriptors (see give_tree); each
    file that had other hard links (the agent's, made to keep writing it) is given back as a fresh
    copy, each of a third user's left out of the tree, and both named."""
    import grp

    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    fd = open_dir(path)
    holder = os.fstat(fd).st_uid  # the agent, who held the tree until now
    os.fchown(fd, uid, gid)
    fresh: "List[str]" = []
    give_tree(fd, uid, gid, where=path, fresh=fresh, holders=(holder, uid))
    for name in fresh:
        print(f"    {name}")
    return 0


def cmd_linked(path: str) -> int:
    """install.sh's check before --migrate-from changes anything: name every multi-linked file."""
    fd = open_dir(path)
    linked = linked_files(fd, path, skip=("credentials",))
    for name in linked:
        print(name)
    return 1 if linked else 0


# How the installer names what the config calls [openbao] KEY: its lines speak of the flags given.
FLAG_NAMES = (("[openbao] address", "--openbao-address"), ("[openbao] ca", "--openbao-ca"),
              ("[openbao] role_id", "--openbao-role-id"), ("[openbao] mount", "--openbao-mount"),
              ("[openbao] prefix", "--openbao-prefix"))


def cmd_openbao_check(mode: str, owner: str, address: str, ca: str, role_id: str, mount: str, prefix: str,
                      state_dir: str, out: str) -> int:
    """install.sh --store openbao, before any change (and its --dry-run): check OpenBao AS THE OWNER,
    whose programs will talk to it: the CA file readable by the owner, the server reachable over TLS
    verified against it, unsealed and active, an AppRole login with the secret id, and the token's
    capabilities on the prefix. The secret id is the one on stdin (a prompt at a terminal; anything
    not shaped as a UUID is a response-wrapped one, unwrapped here), else the one the host keeps in
    STATE/openbao-secret-id (read by the owner). mode "install": a new secret id is written to `out`
    (0600, root's; install.sh installs it for the owner); nothing given and none kept is exit 2.
    mode "dry-run": nothing is written, no prompt, and a wrapped secret id is not unwrapped (it
    works once): the rest is checked all the same. Prints what was checked, one line; a failure is
    one line on stderr and its exit code (6: OpenBao or the CA; 2: no secret id)."""
    from clawgate import config, fsio
    from clawgate.config import openbao_settings
    from clawgate.errors import ClawgateError
    from clawgate.store.baoclient import SECRET_ID_FILE, Bao
    from clawgate.store.openbao import OpenBaoStore

    dry = mode == "dry-run"
    given = ""
    if sys.stdin.isatty():
        if not dry:
            import getpass

            given = getpass.getpass("AppRole secret id (or a response-wrapped one): ").strip()
    elif sys.stdin is not None:
        given = sys.stdin.readline().strip()
    kept_path = os.path.join(state_dir, SECRET_ID_FILE)
    try:
        settings = openbao_settings("install.sh", {"openbao": {
            "address": address, "ca": ca, "role_id": role_id, "mount": mount, "prefix": prefix}}, owner)
        who = config.principal(owner, "owner")

        wrapped = bool(given) and not _is_uuid(given) and not dry

        def check() -> "Dict[str, str]":
            # What a refusal must add about a wrapped secret id: unused (give it again) until the
            # unwrap, spent (and the secret id it held left in OpenBao) after it.
            said = ["; the wrapping token was not used: give the same one again, within its TTL" if wrapped else ""]
            try:
                return checked(said)
            except ClawgateError as err:
                raise ClawgateError(err.code, err.message + said[0]) from None

        def checked(said: "List[str]") -> "Dict[str, str]":
            try:
                with open(ca, "rb") as handle:
                    handle.read(1)
            except OSError as err:
                raise ClawgateError(6, f"--openbao-ca {ca}: {owner} cannot read it ({err.strerror}); "
                                       f"clawgate talks to OpenBao as {owner}: make the file and every "
                                       f"directory above it readable by {owner}") from None
            bao = Bao(settings, who.uid, state_dir)
            status, body = bao.request("GET", "sys/health?standbyok=false&sealedcode=503&uninitcode=501")
            if status == 503 or body.get("sealed") is True:
                raise bao.fail("sealed", "its operators unseal it (bao operator unseal), then run me again")
            if status == 429:
                raise bao.fail("a standby node answered (429)", "point --openbao-address at the active node")
            if status != 200:
                raise bao.fail(f"sys/health answered {status}", "check the server (bao status)")
            if given and not _is_uuid(given) and dry:
                return {"checked": "reachable, unsealed; a wrapped secret id is unwrapped and logged in "
                                   "with by the real run only (it works once)"}
            if given and _is_uuid(given):
                secret_id, whose = given, "the one given"
            elif given:
                role = bao.wrapped_role(given) or "ROLE"  # asked before the unwrap spends it
                secret_id, accessor = bao.unwrap(given)
                whose = "the one given, wrapped"
                said[0] = ("; the wrapping token is now spent: give a new one, and destroy the secret id it held "
                           f"(bao write auth/approle/role/{role}/secret-id-accessor/destroy secret_id_accessor="
                           f"{accessor or 'ACCESSOR'})")
            else:
                raw = fsio.read_checked(kept_path, who.uid)
                if raw is None:
                    if dry:
                        return {"checked": "reachable, unsealed; no secret id given to this dry run "
                                           "(the real run reads it on stdin)"}
                    raise ClawgateError(2, "--store openbao: give the AppRole secret id on stdin "
                                           "(a wrapped one is fine)")
                secret_id, whose = raw.decode("utf-8", "replace").strip(), f"the one kept in {kept_path}"
            try:
                bao.use(bao.authenticate(secret_id)[0])
                missing, _beyond = OpenBaoStore(settings, bao).policy()
                if missing:
                    raise bao.fail(f"the AppRole's policy lacks {'; '.join(missing)}",
                                   "grant it the policy in docs/OPENBAO.md for this prefix")
            except ClawgateError as err:
                raise ClawgateError(err.code, f"{err.message} (secret id: {whose})") from None
            return {"checked": f"reachable, unsealed, AppRole login ({whose}), policy covers {mount}/{prefix}/",
                    "secret_id": secret_id if given else ""}

        if os.geteuid() == 0 and who.uid != 0:
            from clawgate import privdrop

            answer = privdrop.call_as(who, check, timeout=60)
        elif os.geteuid() == who.uid:
            answer = check()
        else:
            raise ClawgateError(6, f"OpenBao is checked as {owner}: run me as root")
        if not isinstance(answer, dict):
            raise ClawgateError(6, "the OpenBao check did not finish")
    except ClawgateError as err:
        message = err.message
        for key, flag in FLAG_NAMES:
            message = message.replace(key, flag)
        print(f"clawgate install: {message}; nothing was changed", file=sys.stderr)
        return err.code
    if answer.get("secret_id") and not dry:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(answer["secret_id"] + "\n")
    print(answer.get("checked", ""))
    return 0


def _is_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdefABCDEF" for c in "".join(parts))


COMMANDS: "Dict[str, Callable[..., int]]" = {
    "realpath": cmd_realpath, "chain": cmd_chain, "pyinfo": cmd_pyinfo, "keep": cmd_keep, "conf-value": cmd_conf_value,
    "render-service": cmd_render_service, "first-word": cmd_first_word, "free-id": cmd_free_id,
    "ordinary-dir": cmd_ordinary_dir, "manifest": cmd_manifest, "migrate": cmd_migrate, "give": cmd_give,
    "shared-files": cmd_shared_files, "linked": cmd_linked, "openbao-check": cmd_openbao_check,
}


def main(argv: "Sequence[str]") -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: installcheck.py {{{','.join(COMMANDS)}}} ARG...", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](*argv[1:])
    except (ValueError, TypeError, KeyError) as err:  # a bad argument, an unknown user
        print(err, file=sys.stderr)
        return 2
    except LinkedFile as err:
        print(f"{err}; not handed over", file=sys.stderr)
        return 1
    except OSError as err:  # one line, never a traceback: install.sh says what it was doing
        print(f"{err.filename or argv[0]}: {err.strerror or err}", file=sys.stderr)
        return 1
    except RecursionError:  # a tree nested deeper than the walk goes (made so by whoever held it)
        print(f"{argv[1] if len(argv) > 1 else argv[0]}: nested too deep to walk; nothing more was changed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
