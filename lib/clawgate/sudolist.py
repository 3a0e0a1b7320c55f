"""What `sudo -l -U USER` says about a user: the rules it lists, and the settings sudo applies to
one of its commands (requiretty, I/O logging), each traced to the entry that set it.

doctor's reading of the host's sudo policy (sudoers(5)): parsed from sudo's own listing, so
that every file, include and alias is taken as sudo itself takes it.
"""

import fnmatch
import grp
import os
import pwd
import re
import subprocess

SUDO = "/usr/bin/sudo"
SUDOERS_DIR = "/etc/sudoers.d"


def parse_sudo_list(text: str) -> "set[tuple[str, str]]":
    """The (run-as, command) pairs in `sudo -l -U USER` output, wrapped lines included."""
    return {(runas, command) for runas, _tags, command in sudo_rule_entries(text)}


def sudo_rule_entries(text: str) -> "list[tuple[str, frozenset, str]]":
    """(run-as, tags, command) in `sudo -l -U USER` order; a tag holds for the rest of its rule, as in sudoers."""
    entries: "list[tuple[str, frozenset, str]]" = []
    runas = "root"
    tags: "frozenset[str]" = frozenset()
    for line in _section(text, " may run the following commands"):
        text = line.strip()
        if text.startswith("(") and ")" in text:  # a new rule; a line without one continues the last
            runas = text[1:text.index(")")].split(":")[0].strip()
            text, tags = text[text.index(")") + 1:], frozenset()
        for chunk in text.split(","):
            words = chunk.split()
            while words and words[0][:1].isupper() and (words[0].endswith(":") or "=" in words[0]):
                word = words.pop(0)  # a tag (NOPASSWD:) or an option (CWD=/x), never the command
                if word.endswith(":"):  # NOLOG_INPUT: replaces LOG_INPUT:, and so on
                    tags = frozenset(t for t in tags if t.removeprefix("NO") != word[:-1].removeprefix("NO"))
                    tags = tags | {word[:-1]}
            if words:
                entries.append((runas, tags, " ".join(words)))
    return entries


def _section(text: str, header: str) -> "list[str]":
    """The indented lines under the first header line of `sudo -l` output that contains `header`."""
    lines, inside = [], False
    for line in text.splitlines():
        if line[:1].strip():  # a header: not indented
            inside = header in line
        elif inside and line.strip():
            lines.append(line)
    return lines


# -- what sudo does with a command: I/O logging and requiretty -----------------------------------

# log_input and log_output are shorthands for these (sudoers(5)); the tags override all of them.
IO_LOG_FLAGS = {"log_input": ("log_stdin", "log_ttyin"), "log_output": ("log_stdout", "log_stderr", "log_ttyout")}
IO_LOG_TAGS = {"LOG_INPUT": ("log_input", True), "NOLOG_INPUT": ("log_input", False),
               "LOG_OUTPUT": ("log_output", True), "NOLOG_OUTPUT": ("log_output", False)}


def sudo_listing(user: str) -> "tuple[str | None, str]":
    """`sudo -l -U user` output, or None and why not (a host's `Defaults!ALL requiretty` stops it too)."""
    try:
        result = subprocess.run([SUDO, "-n", "-l", "-U", user], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "LANG": "C"})
    except OSError as err:
        return None, err.strerror or str(err)
    if result.returncode != 0:
        return None, (result.stderr.strip().splitlines() or ["failed"])[-1]
    return result.stdout, ""


def split_unquoted(text: str, separator: str = ",") -> "list[str]":
    """text cut at each separator outside double quotes and not escaped with a backslash."""
    parts: "list[str]" = []
    current, quoted, escaped = "", False, False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            current, escaped = current + char, True
        elif char == '"':
            current, quoted = current + char, not quoted
        elif char == separator and not quoted:
            parts, current = parts + [current.strip()], ""
        else:
            current += char
    return [part for part in parts + [current.strip()] if part]


def sudo_defaults(text: str) -> "tuple[list[str], list[tuple[str, list[str], list[str], str]]]":
    """From `sudo -l -U USER`: the settings that apply to all the user's commands, in order, and the
    bound entries (kind '>' run-as or '!' command, its list, its settings, the entry as sudo shows it)."""
    common = split_unquoted(" ".join(line.strip() for line in _section(text, "Matching Defaults entries")))
    joined = " ".join(line.strip() for line in _section(text, "Runas and Command-specific defaults"))
    bound = []
    for entry in re.split(r"\s*(?=Defaults[!>])", joined):
        match = re.match(r"Defaults([!>])((?:[^\s,]+\s*,\s*)*[^\s,]+)\s+(.*)$", entry.strip())
        if match:
            targets = [t.strip() for t in match.group(2).split(",")]
            bound.append((match.group(1), targets, split_unquoted(match.group(3)), entry.strip()))
    return common, bound


def _runas_matches(targets: "list[str]", runas: str) -> bool:
    for target in targets:
        if target in ("ALL", runas):
            return True
        if target.startswith("%"):
            try:
                group = grp.getgrnam(target[1:])
                if runas in group.gr_mem or pwd.getpwnam(runas).pw_gid == group.gr_gid:
                    return True
            except KeyError:
                continue
    return False


def _command_matches(pattern: str, command: str) -> bool:
    pattern = pattern.split()[0] if pattern.split() else pattern
    return pattern == "ALL" or fnmatch.fnmatchcase(command, pattern) or (
        pattern.endswith("/") and os.path.dirname(command) + "/" == pattern)


def sudo_settings(listing: str, runas: str, command: str) -> "dict[str, tuple[bool, str]]":
    """requiretty and the I/O log flags as sudo decides them for this run, each with the entry that set it.

    sudoers(5): global, host and user Defaults, then run-as ones, then command ones, the last
    match winning within each; a LOG_/NOLOG_ tag on the matching rule beats them all."""
    common, bound = sudo_defaults(listing)
    settings: "dict[str, tuple[bool, str]]" = {}

    def apply(params: "list[str]", source: "str | None") -> None:
        for param in params:
            name = param.lstrip("!").split("=")[0].rstrip("+-")
            on = not param.startswith("!")
            for flag in IO_LOG_FLAGS.get(name, (name,)):
                if flag == "requiretty" or flag in IO_LOG_FLAGS["log_input"] + IO_LOG_FLAGS["log_output"]:
                    settings[flag] = (on, source or sudoers_line(name))

    apply(common, None)
    for kind, matches in ((">", lambda targets: _runas_matches(targets, runas)),
                          ("!", lambda targets: any(_command_matches(t, command) for t in targets))):
        for entry_kind, targets, params, shown in bound:
            if entry_kind == kind and matches(targets):
                apply(params, shown)
    rules = [tags for who, tags, what in sudo_rule_entries(listing)
             if _runas_matches([w.strip() for w in who.split(",")], runas) and _command_matches(what, command)]
    for tag in sorted(rules[-1] if rules else ()):
        if tag in IO_LOG_TAGS:
            name, on = IO_LOG_TAGS[tag]
            for flag in IO_LOG_FLAGS[name]:
                settings[flag] = (on, f"the {tag} tag on the rule for {command}")
    return settings


def sudoers_line(name: str) -> str:
    """Where a setting of sudo's Defaults probably comes from: the last plain, user or host Defaults
    line naming it, in the order sudo reads /etc/sudoers and then /etc/sudoers.d."""
    found = f"Defaults {name}"
    try:
        included = os.listdir(SUDOERS_DIR)
    except OSError:
        included = []
    files = ["/etc/sudoers"] + sorted(os.path.join(SUDOERS_DIR, f) for f in included if "." not in f and not f.endswith("~"))
    for path in files:
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            words = line.replace(",", " ").split()
            if words and words[0].split(":")[0].split("@")[0] == "Defaults" and \
                    any(w.lstrip("!").split("=")[0] == name for w in words[1:]):
                found = f"{' '.join(line.split())} ({path}:{number})"
    return found
