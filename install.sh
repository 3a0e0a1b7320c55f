#!/bin/bash
# Actions are functions handed to change(), which shellcheck cannot see being called:
# shellcheck disable=SC2317,SC2329
#
# clawgate installer: a dedicated non-admin agent user, a root-owned install, exact sudoers, a service.
#
#   sudo ./install.sh --owner "$USER"            install (or bring an install up to date)
#   sudo ./install.sh --dry-run                   print every action, change nothing
#   sudo ./install.sh --uninstall [--purge]       remove exactly what install added
#
# Structure after Homebrew's installer: helpers, then argument checks, then a plan shown to the
# user, then the actions. Every action first checks whether the system already is as wanted, so
# a second run changes nothing and says so. Nothing goes live unchecked: the sudoers file is
# written to a dot-named temp file (sudo skips those), passed through `visudo -cf`, made 0440,
# then renamed into place. The installer refuses an interpreter or any directory up to / that the
# agent could write, because code there runs as the owner and as root.
set -u
set -o pipefail
umask 022
# visudo and useradd live in sbin, which sudo's secure_path has and a user's PATH (a dry run) may not.
PATH=$PATH:/usr/sbin:/sbin

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
EX_DENIED=1
EX_USAGE=2
EX_UNSAFE=6

if [[ -t 1 ]]; then
  tty_bold=$'\033[1m' tty_blue=$'\033[1;34m' tty_red=$'\033[1;31m' tty_reset=$'\033[0m'
else
  tty_bold='' tty_blue='' tty_red='' tty_reset=''
fi

ohai() { printf '%s==>%s %s%s%s\n' "$tty_blue" "$tty_reset" "$tty_bold" "$*" "$tty_reset"; }
say() { printf '    %s\n' "$*"; }
warn() { printf '%sWarning%s: %s\n' "$tty_red" "$tty_reset" "$*" >&2; }
abort() {
  printf 'clawgate install: %s\n' "$1" >&2
  exit "${2:-$EX_DENIED}"
}

usage() {
  cat <<'USAGE'
usage: install.sh [options]
  --owner USER            the human who holds the secrets and the TOTP seed (default: $SUDO_USER)
  --agent-user NAME       the agent's own non-admin user, created if missing (default: openclaw)
  --agent-home DIR        its home (default: /opt/openclaw)
  --prefix DIR            code in PREFIX/libexec/clawgate, front door PREFIX/bin/clawgate (default: /usr/local)
  --state-dir DIR         the owner's state (default: /var/lib/clawgate, macOS /var/db/clawgate)
  --store file|keychain|openbao  where secret values live (default: file on Linux, keychain on macOS)
  --openbao-address URL   with --store openbao: https://HOST[:PORT] of the OpenBao (or Vault) server
  --openbao-ca FILE       the CA that signed its certificate (PEM)
  --openbao-role-id ID    the AppRole's role id; its secret id (or a response-wrapped one) on stdin
  --openbao-mount M       the KV version 2 mount (default: secret)
  --openbao-prefix P      this owner's prefix in it (default: clawgate/OWNER); hosts sharing it share
                          secrets, one TOTP seed, one once-only code and one lockout
  --python PATH           interpreter for the installed programs (default: /usr/bin/python3)
  --migrate-from DIR      move an existing ~/.openclaw into the agent's home and link it back
  --gateway-command CMD   what the service runs as the agent (default: `openclaw gateway`, if found)
  --service-dir DIR       where the unit or plist goes (default: /etc/systemd/system, /Library/LaunchDaemons);
                          a second install on one machine needs its own (the units' names are fixed)
  --no-service            install no service for the gateway
  --no-proxy              install no agent-blind proxy service
  --proxy-port PORT       the proxy's loopback port, 1024 to 65535 (default: 8217)
  --dry-run               print every action; change nothing
  --target-os darwin|linux  with --dry-run: show the plan for that OS
  --uninstall             remove what install added (keeps state and the agent user)
  --purge                 with --uninstall: also remove the state, the agent user and its home
  --yes                   do not ask for confirmation
  --version               print clawgate's version
USAGE
}

DRY_RUN=0
CHANGES=0
# Set when the install phase starts: the first change prints the header and, at a terminal without
# --yes, asks first. A run with nothing to do therefore never asks (it says so at the end).
CONFIRM_FIRST_CHANGE=0
confirm_first_change() {
  CONFIRM_FIRST_CHANGE=0
  if [[ $DRY_RUN == 0 && $YES == 0 && -t 0 ]]; then
    printf '\nPress RETURN to continue or any other key to abort: '
    IFS= read -r -n 1 reply
    [[ -z $reply ]] || abort "aborted; nothing was changed"
  fi
  [[ $UNINSTALL == 1 ]] || ohai "Installing"
}
# change DESCRIPTION CMD [ARG...]: the one way anything on the system is changed.
change() {
  local what=$1
  shift
  [[ $CONFIRM_FIRST_CHANGE == 0 ]] || confirm_first_change
  CHANGES=$((CHANGES + 1))
  if [[ $DRY_RUN == 1 ]]; then
    printf 'would: %s\n' "$what"
    return 0
  fi
  printf '  %s\n' "$what"
  "$@" || abort "failed: $what"
}

# A private scratch directory for rendered files and the Python helper.
STAGE=''
LOCK_DIR=/var/run/clawgate-install.lock LOCKED=0
cleanup() {
  [[ -n $STAGE && -d $STAGE ]] && rm -rf "$STAGE"
  [[ $LOCKED == 0 ]] || rm -rf "$LOCK_DIR"
}

# One install.sh changes the system at a time (mkdir is atomic; macOS has no flock(1)): a second
# one waits for the first, up to five minutes. A lock whose holder died is taken over.
take_lock() {
  local holder tries=0 said=0
  until mkdir "$LOCK_DIR" 2>/dev/null; do
    holder=$(cat "$LOCK_DIR/pid" 2>/dev/null) || holder=''
    if [[ -n $holder ]] && ! kill -0 "$holder" 2>/dev/null; then
      rm -rf "$LOCK_DIR" # its holder is gone
      continue
    fi
    [[ $said == 1 ]] || {
      say "waiting for another install.sh to finish (pid ${holder:-?}: $(ps -o args= -p "${holder:-0}" 2>/dev/null | cut -c1-160))"
      said=1
    }
    tries=$((tries + 1))
    [[ $tries -lt 1500 ]] || abort "another install.sh (pid ${holder:-?}) has held $LOCK_DIR for five minutes"
    sleep 0.2
  done
  LOCKED=1
  echo $$ >"$LOCK_DIR/pid"
}
trap cleanup EXIT
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/clawgate-install.XXXXXX") || abort "cannot make a temp directory"
chmod 700 "$STAGE"

# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------
HOST_OS=$(uname -s | tr '[:upper:]' '[:lower:]')
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P) || abort "cannot find the source tree"

OWNER='' AGENT=openclaw AGENT_HOME='' PREFIX=/usr/local STATE_DIR='' STORE=''
PYTHON=/usr/bin/python3 MIGRATE_FROM='' GATEWAY_COMMAND='' GATEWAY_EXPLICIT=0 SERVICE_DIR=''
NO_SERVICE=0 UNINSTALL=0 PURGE=0 YES=0 TARGET_OS='' PROXY_OFF=0 PROXY_PORT=8217
BAO_ADDRESS='' BAO_CA='' BAO_ROLE_ID='' BAO_MOUNT='' BAO_PREFIX='' STORE_GIVEN=0

need_value() { # an empty value, or the next option in its place (--role-id "$(cat missing)"), is a mistake
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || abort "$1 needs a value${2:+ (got the option $2)}" "$EX_USAGE"
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --owner) need_value "$@"; OWNER=$2; shift ;;
    --agent-user) need_value "$@"; AGENT=$2; shift ;;
    --agent-home) need_value "$@"; AGENT_HOME=$2; shift ;;
    --prefix) need_value "$@"; PREFIX=$2; shift ;;
    --state-dir) need_value "$@"; STATE_DIR=$2; shift ;;
    --store) need_value "$@"; STORE=$2; STORE_GIVEN=1; shift ;;
    --openbao-address) need_value "$@"; BAO_ADDRESS=$2; shift ;;
    --openbao-ca) need_value "$@"; BAO_CA=$2; shift ;;
    --openbao-role-id) need_value "$@"; BAO_ROLE_ID=$2; shift ;;
    --openbao-mount) need_value "$@"; BAO_MOUNT=$2; shift ;;
    --openbao-prefix) need_value "$@"; BAO_PREFIX=$2; shift ;;
    --python) need_value "$@"; PYTHON=$2; shift ;;
    --migrate-from) need_value "$@"; MIGRATE_FROM=$2; shift ;;
    --gateway-command) need_value "$@"; GATEWAY_COMMAND=$2; GATEWAY_EXPLICIT=1; shift ;;
    --service-dir) need_value "$@"; SERVICE_DIR=$2; shift ;;
    --target-os) need_value "$@"; TARGET_OS=$2; shift ;;
    --no-service) NO_SERVICE=1 ;;
    --no-proxy) PROXY_OFF=1 ;;
    --proxy-port) need_value "$@"; PROXY_PORT=$2; shift ;;
    --dry-run) DRY_RUN=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --yes | -y) YES=1 ;;
    -h | --help) usage; exit 0 ;;
    --version)  # the one version string: lib/clawgate/__init__.py
      sed -n 's/^__version__ = "\(.*\)"$/clawgate \1/p' "$SRC/lib/clawgate/__init__.py"; exit 0 ;;
    *) abort "$1: unknown option (install.sh --help lists them)" "$EX_USAGE" ;;
  esac
  shift
done

case $HOST_OS in darwin | linux) ;; *) [[ -n $TARGET_OS ]] || abort "$HOST_OS is not supported (macOS and Linux are)" "$EX_USAGE" ;; esac
[[ -n $TARGET_OS ]] || TARGET_OS=$HOST_OS
case $TARGET_OS in darwin | linux) ;; *) abort "--target-os must be darwin or linux" "$EX_USAGE" ;; esac
[[ $TARGET_OS == "$HOST_OS" || $DRY_RUN == 1 ]] || abort "--target-os $TARGET_OS is only for --dry-run on $HOST_OS" "$EX_USAGE"
[[ $PURGE == 0 || $UNINSTALL == 1 ]] || abort "--purge goes with --uninstall" "$EX_USAGE"
FOREIGN=0
[[ $TARGET_OS == "$HOST_OS" ]] || FOREIGN=1

if [[ $TARGET_OS == darwin ]]; then
  ROOT_GROUP=wheel
  : "${STATE_DIR:=/var/db/clawgate}" "${STORE:=keychain}" "${SERVICE_DIR:=/Library/LaunchDaemons}"
  SERVICE_MANAGER=launchd SERVICE_NAME=ai.openclaw.gateway # the launchd label
  SERVICE_FILE_NAME=$SERVICE_NAME.plist SERVICE_TEMPLATE=launchd/$SERVICE_NAME.plist
  PROXY_NAME=ai.clawgate.proxy PROXY_FILE_NAME=ai.clawgate.proxy.plist PROXY_TEMPLATE=launchd/ai.clawgate.proxy.plist
  AGENT_SHELL=/bin/zsh
else
  ROOT_GROUP=root
  : "${STATE_DIR:=/var/lib/clawgate}" "${STORE:=file}" "${SERVICE_DIR:=/etc/systemd/system}"
  SERVICE_MANAGER=systemd SERVICE_NAME=openclaw-gateway.service
  SERVICE_FILE_NAME=$SERVICE_NAME SERVICE_TEMPLATE=systemd/$SERVICE_NAME
  PROXY_NAME=clawgate-proxy.service PROXY_FILE_NAME=clawgate-proxy.service PROXY_TEMPLATE=systemd/clawgate-proxy.service
  AGENT_SHELL=/bin/bash
fi
case $STORE in file | keychain | openbao) ;; *) abort "--store must be file, keychain or openbao" "$EX_USAGE" ;; esac
[[ $PROXY_PORT =~ ^[1-9][0-9]{0,4}$ && $PROXY_PORT -ge 1024 && $PROXY_PORT -le 65535 ]] \
  || abort "--proxy-port must be a number from 1024 to 65535 (the proxy runs as the owner, who cannot listen below 1024)" "$EX_USAGE"

# Names and paths end up in sudoers, the config and the unit: allow only what needs no quoting.
check_name() {
  [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_.-]{0,31}$ ]] || abort "$1 '$2' is not a plain user name" "$EX_USAGE"
  # The agent's name also names /etc/sudoers.d/clawgate-NAME, and sudo silently skips a file with a dot.
  [[ $1 != --agent-user || $2 != *.* ]] || abort "$1 '$2': no dot (sudo would skip /etc/sudoers.d/clawgate-$2)" "$EX_USAGE"
}
check_path() {
  [[ $2 =~ ^/[A-Za-z0-9._/+-]*$ && $2 != *//* && $2 != */../* && $2 != */.. ]] \
    || abort "$1 '$2' must be an absolute path of letters, digits and ._/+- only" "$EX_USAGE"
}
check_name --agent-user "$AGENT"
if [[ -z $AGENT_HOME ]]; then
  # An existing agent user keeps its home; a new one gets /opt/openclaw.
  AGENT_HOME=/opt/openclaw
  if [[ $TARGET_OS == "$HOST_OS" ]] && id -u "$AGENT" >/dev/null 2>&1; then
    if [[ $HOST_OS == darwin ]]; then
      AGENT_HOME=$(dscl . -read "/Users/$AGENT" NFSHomeDirectory | awk '{ print $2 }')
    else
      AGENT_HOME=$(getent passwd "$AGENT" | cut -d: -f6)
    fi
  fi
fi
for flag_path in "--prefix:$PREFIX" "--state-dir:$STATE_DIR" "--agent-home:$AGENT_HOME" \
  "--service-dir:$SERVICE_DIR" "--python:$PYTHON"; do
  check_path "${flag_path%%:*}" "${flag_path#*:}"
done
[[ -z $MIGRATE_FROM ]] || check_path --migrate-from "$MIGRATE_FROM"

if [[ $DRY_RUN == 0 && $(id -u) != 0 ]]; then
  abort "run me as root: sudo $0 $*  (or see the plan with --dry-run)" "$EX_DENIED"
fi
# Everything from here on looks at the system, so it waits its turn behind another install.sh.
[[ $DRY_RUN == 1 ]] || take_lock
[[ -x $PYTHON ]] || [[ $FOREIGN == 1 ]] || abort "$PYTHON: no such interpreter (pass --python PATH)" "$EX_UNSAFE"

# macOS: /usr/bin/python3 is an xcrun shim. Without the Command Line Tools it opens an install
# dialog and exits 1; with Xcode selected and its licence not accepted xcrun exits 69; CLT 13 ships
# Python 3.8. Each is told here, before the interpreter runs anything else. A plan made on another
# machine checks only when it is given an xcode-select to ask (tests pass fakes).
XCODE_SELECT=${CLAWGATE_XCODE_SELECT:-/usr/bin/xcode-select}
check_developer_tools() {
  local out status
  "$XCODE_SELECT" -p >/dev/null 2>&1 \
    || abort "the Command Line Tools are not installed (xcode-select -p fails); install them with: xcode-select --install, then run me again" "$EX_UNSAFE"
  out=$("$PYTHON" -I -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 9))' 2>&1)
  status=$?
  case $status in
    0) ;;
    69) abort "$PYTHON: Xcode's licence is not accepted (xcrun exit 69); accept it with: sudo xcodebuild -license accept (or select the Command Line Tools: sudo xcode-select --switch /Library/Developer/CommandLineTools)" "$EX_UNSAFE" ;;
    1) if [[ $out =~ ^3\.[0-9]+$ ]]; then
         abort "$PYTHON is Python $out; clawgate needs 3.9 or later: update the Command Line Tools to 14 or later (softwareupdate --list, or xcode-select --install), or pass --python PATH" "$EX_UNSAFE"
       fi
       abort "$PYTHON does not run (${out%%$'\n'*}); install the Command Line Tools with: xcode-select --install, then run me again" "$EX_UNSAFE" ;;
    *) abort "$PYTHON does not run (exit $status: ${out%%$'\n'*}); pass --python PATH" "$EX_UNSAFE" ;;
  esac
}
if [[ $TARGET_OS == darwin && ( $FOREIGN == 0 || -x $XCODE_SELECT ) ]]; then
  check_developer_tools
fi

# The helper runs on the host's interpreter (for a foreign plan the target's may not exist here).
HELPER_PY=$PYTHON
[[ $FOREIGN == 0 ]] || HELPER_PY=$(command -v python3) || abort "python3 is needed to show a plan"

# ---------------------------------------------------------------------------------------------
# the Python helper: path checks, rendering (lib/clawgate/installcheck.py, shared with doctor),
# run from a staged copy with -I (no environment, no user site) and -B (nothing written beside it)
# ---------------------------------------------------------------------------------------------
{ mkdir "$STAGE/helper" && cp -R "$SRC/lib/clawgate" "$STAGE/helper/"; } || abort "cannot stage the Python helper"
helper() { "$HELPER_PY" -I -B "$STAGE/helper/clawgate/installcheck.py" "$@"; }

# All paths are used in their canonical form: sudo, the chain check and doctor see the same path.
# A helper that cannot run stops the install here, not several checks later with a wrong reason.
canonical() {
  if [[ $FOREIGN == 1 ]]; then printf '%s\n' "$1"; return 0; fi
  helper realpath "$1" || abort "$HELPER_PY cannot run the installer's helper (resolving $1); pass --python PATH" "$EX_UNSAFE"
}
PREFIX=$(canonical "$PREFIX") || exit
STATE_DIR=$(canonical "$STATE_DIR") || exit
AGENT_HOME=$(canonical "$AGENT_HOME") || exit
SERVICE_DIR=$(canonical "$SERVICE_DIR") || exit
LIBEXEC=$PREFIX/libexec/clawgate
BINDIR=$PREFIX/bin
ETCDIR=$PREFIX/etc/clawgate
CONF=$ETCDIR/clawgate.conf
MANIFEST=$ETCDIR/install.manifest
FRONT_DOOR=$BINDIR/clawgate
# How the output names the front door: `clawgate` where a default PATH (a login shell's, sudo's
# secure_path) finds it, else its full path (a --prefix elsewhere).
case $BINDIR in /usr/local/bin | /usr/bin | /bin) CLAWGATE=clawgate ;; *) CLAWGATE=$FRONT_DOOR ;; esac
SUDOERS_DIR=/etc/sudoers.d
SUDOERS_FILE=$SUDOERS_DIR/clawgate-$AGENT
SERVICE_FILE=$SERVICE_DIR/$SERVICE_FILE_NAME
PROXY_FILE=$SERVICE_DIR/$PROXY_FILE_NAME

# A rerun keeps the [openbao] settings it is not given: the default prefix (clawgate/OWNER) would
# quietly move this host out of its fleet's.
if [[ $STORE == openbao && $FOREIGN == 0 && -f $CONF && $(helper conf-value "$CONF" clawgate store) == openbao ]]; then
  [[ -n $BAO_ADDRESS ]] || BAO_ADDRESS=$(helper conf-value "$CONF" openbao address)
  [[ -n $BAO_CA ]] || BAO_CA=$(helper conf-value "$CONF" openbao ca)
  [[ -n $BAO_ROLE_ID ]] || BAO_ROLE_ID=$(helper conf-value "$CONF" openbao role_id)
  [[ -n $BAO_MOUNT ]] || BAO_MOUNT=$(helper conf-value "$CONF" openbao mount)
  [[ -n $BAO_PREFIX ]] || BAO_PREFIX=$(helper conf-value "$CONF" openbao prefix)
fi
if [[ $STORE == openbao ]]; then
  [[ -n $BAO_ADDRESS && -n $BAO_CA && -n $BAO_ROLE_ID ]] \
    || abort "--store openbao needs --openbao-address URL, --openbao-ca FILE and --openbao-role-id ID" "$EX_USAGE"
  [[ $BAO_ADDRESS =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$ || $BAO_ADDRESS =~ ^https://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?/?$ ]] \
    || abort "--openbao-address '$BAO_ADDRESS' must be https://HOST[:PORT] (TLS always)" "$EX_USAGE"
  [[ $BAO_ROLE_ID =~ ^[A-Za-z0-9_.-]{1,128}$ ]] || abort "--openbao-role-id '$BAO_ROLE_ID' is not a role id" "$EX_USAGE"
  check_path --openbao-ca "$BAO_CA"
  [[ $FOREIGN == 1 || -f $BAO_CA ]] || abort "--openbao-ca $BAO_CA: no such file" "$EX_USAGE"
  : "${BAO_MOUNT:=secret}"
  for flag_value in "--openbao-mount:$BAO_MOUNT" "--openbao-prefix:$BAO_PREFIX"; do
    [[ ${flag_value#*:} =~ ^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$ && ${flag_value#*:} != *..* ]] \
      || abort "${flag_value%%:*} '${flag_value#*:}' must be a KV path (letters, digits, ._- and /)" "$EX_USAGE"
  done
elif [[ -n $BAO_ADDRESS$BAO_CA$BAO_ROLE_ID$BAO_MOUNT$BAO_PREFIX ]]; then
  abort "the --openbao-* options go with --store openbao" "$EX_USAGE"
fi

# stat_of PATH: "type owner group mode" or "missing" (on a foreign plan everything is missing).
# Read from `ls -ld`, the same on macOS and Linux, at a fraction of an interpreter start.
stat_of() {
  if [[ $FOREIGN == 1 ]]; then # a plan for another machine: assume its standard directories only
    case $1 in
      / | /usr | /usr/local | /usr/local/bin | /etc | /etc/sudoers.d | /var | /var/db | /var/lib | /opt | /Library | \
        /Library/LaunchDaemons | /etc/systemd | /etc/systemd/system) echo "dir root $ROOT_GROUP 0755" ;;
      *) echo missing ;;
    esac
    return 0
  fi
  if [[ ! ( -e $1 || -L $1 ) ]]; then
    echo missing
    return 0
  fi
  local perms owner group kind bits=0 special=0 i
  # Only the leading columns are read, never the name: SC2012 does not apply.
  # shellcheck disable=SC2012
  read -r perms _ owner group _ < <(LC_ALL=C ls -ldn -- "$1" | sed 's/^\(..........\)[^ ]*/\1/')
  owner=$(name_of_uid "$owner") group=$(name_of_gid "$group")
  case ${perms:0:1} in d) kind='dir' ;; -) kind='file' ;; l) kind='link' ;; *) kind='other' ;; esac
  for i in 1 2 3 4 5 6 7 8 9; do
    bits=$((bits * 2))
    case ${perms:i:1} in [rwxst]) bits=$((bits + 1)) ;; esac
  done
  case ${perms:3:1} in [sS]) special=$((special + 2048)) ;; esac
  case ${perms:6:1} in [sS]) special=$((special + 1024)) ;; esac
  case ${perms:9:1} in [tT]) special=$((special + 512)) ;; esac
  printf '%s %s %s %04o\n' "$kind" "$owner" "$group" $((bits + special))
}
# Numeric ids from ls -n, turned into names once each (ls without -n may cut long names).
UID_NAMES='' GID_NAMES=''
name_of_uid() {
  local cached
  cached=$(printf '%s' "$UID_NAMES" | awk -v id="$1" '$1 == id { print $2; exit }')
  if [[ -z $cached ]]; then
    cached=$(id -un "$1" 2>/dev/null) || cached=$1
    UID_NAMES="$UID_NAMES$1 $cached"$'\n'
  fi
  printf '%s' "$cached"
}
name_of_gid() {
  local cached
  cached=$(printf '%s' "$GID_NAMES" | awk -v id="$1" '$1 == id { print $2; exit }')
  if [[ -z $cached ]]; then
    cached=$(getent group "$1" 2>/dev/null | cut -d: -f1)
    [[ -n $cached ]] || cached=$(dscl . -search /Groups PrimaryGroupID "$1" 2>/dev/null | awk 'NR == 1 { print $1 }')
    [[ -n $cached ]] || cached=$1
    GID_NAMES="$GID_NAMES$1 $cached"$'\n'
  fi
  printf '%s' "$cached"
}
user_exists() { [[ $FOREIGN == 0 ]] && id -u "$1" >/dev/null 2>&1; }
dscl_bin() { "${CLAWGATE_DSCL:-/usr/bin/dscl}" "$@"; }
# A user listed in the manifest may be half-made on macOS (a dscl refused mid-way): any record counts.
user_left() {
  user_exists "$1" || { [[ $TARGET_OS == darwin && $FOREIGN == 0 ]] \
    && { dscl_bin . -read "/Users/$1" >/dev/null 2>&1 || dscl_bin . -read "/Groups/$1" >/dev/null 2>&1; }; }
}
primary_group() { id -gn "$1" 2>/dev/null || echo "$1"; }

# ---------------------------------------------------------------------------------------------
# the manifest: what this install created, so that --uninstall removes exactly that
# ---------------------------------------------------------------------------------------------
RECORDS=()
record() { # a plan (--dry-run) records nothing
  [[ $DRY_RUN == 0 ]] || return 0
  RECORDS+=("$*")
  flush_manifest
}
flush_manifest() {
  [[ $DRY_RUN == 0 && -d $ETCDIR ]] || return 0
  local new=$STAGE/manifest
  {
    [[ -f $MANIFEST ]] && cat "$MANIFEST"
    [[ ${#RECORDS[@]} -gt 0 ]] && printf '%s\n' "${RECORDS[@]}"
  } | sort -u >"$new"
  cmp -s "$new" "$MANIFEST" 2>/dev/null && return 0
  install_file_raw "$new" "$MANIFEST" root "$ROOT_GROUP" 0644
}

# ---------------------------------------------------------------------------------------------
# idempotent actions
# ---------------------------------------------------------------------------------------------
install_file_raw() { # SRC DEST OWNER GROUP MODE: temp file beside DEST, then an atomic rename
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").clawgate-tmp.$$"
  rm -f "$tmp" && cp "$1" "$tmp" && chown "$3:$4" "$tmp" && chmod "$5" "$tmp" && mv -f "$tmp" "$2"
}
make_dir() { mkdir "$1" && chown "$2:$3" "$1" && chmod "$4" "$1"; }
fix_owner_mode() { chown "$2:$3" "$1" && chmod "$4" "$1"; }

# ensure_dir PATH OWNER GROUP MODE: create it or bring owner and mode back to what they must be.
ensure_dir() {
  local info
  info=$(stat_of "$1")
  case $info in
    missing)
      change "create $1 ($2:$3 $4)" make_dir "$@"
      return 0
      ;;
    "dir $2 $3 $4") return 0 ;;
    dir*) change "set $1 to $2:$3 $4 (was ${info#dir })" fix_owner_mode "$@" ;;
    *) abort "$1: exists and is not a directory" "$EX_UNSAFE" ;;
  esac
}

# ensure_file SRC DEST OWNER GROUP MODE
ensure_file() {
  local info
  info=$(stat_of "$2")
  case $info in
    missing) change "install $2 ($3:$4 $5)" install_file_raw "$@" ;;
    file*)
      if ! cmp -s "$1" "$2"; then
        change "update $2" install_file_raw "$@"
      elif [[ $info != "file $3 $4 $5" ]]; then
        change "set $2 to $3:$4 $5 (was ${info#file })" fix_owner_mode "$2" "$3" "$4" "$5"
      fi
      ;;
    *) abort "$2: exists and is not a regular file" "$EX_UNSAFE" ;;
  esac
}

# ensure_parents DIR: create missing directories above DIR (root, 0755), recorded for uninstall.
ensure_parents() {
  local dir=$1 missing=()
  while [[ $dir != / && $(stat_of "$dir") == missing ]]; do
    missing=("$dir" ${missing[@]+"${missing[@]}"})
    dir=$(dirname "$dir")
  done
  local each
  for each in ${missing[@]+"${missing[@]}"}; do
    [[ $each == "$1" ]] && continue
    ensure_dir "$each" root "$ROOT_GROUP" 0755
    record "dir $each"
  done
}

# ensure_root_dir DIR: DIR and any missing parents created root 0755 and recorded; an existing one left alone.
ensure_root_dir() {
  [[ $(stat_of "$1") == missing ]] || return 0
  ensure_parents "$1"
  ensure_dir "$1" root "$ROOT_GROUP" 0755
  record "dir $1"
}

# refuse_writable WHAT PATH [OWNER...]: PATH and every directory up to / safe from the agent.
refuse_writable() {
  local what=$1 path=$2 problems
  shift 2
  [[ $FOREIGN == 0 ]] || return 0
  problems=$(helper chain "$path" "$@") && return 0
  abort "$what: the agent could change it: $(printf '%s' "$problems" | paste -sd ';' -)" "$EX_UNSAFE"
}

# ---------------------------------------------------------------------------------------------
# uninstall
# ---------------------------------------------------------------------------------------------
manifest_lines() { [[ -f $MANIFEST ]] && grep -E "^$1 " "$MANIFEST" | cut -d' ' -f2-; }

uninstall() {
  ohai "Uninstalling clawgate from $PREFIX"
  [[ -f $MANIFEST ]] || {
    echo "clawgate: no install found at $PREFIX (no $MANIFEST); nothing to do"
    exit 0
  }
  # What it lists is removed as root (rm -rf, userdel): only a manifest nobody but root could have
  # written, listing only what install.sh makes, is acted on.
  refuse_writable "$MANIFEST" "$MANIFEST"
  local problems
  problems=$(helper manifest "$MANIFEST" "$PREFIX" "$SERVICE_FILE_NAME" "$PROXY_FILE_NAME") \
    || abort "$MANIFEST: not removing anything: $(printf '%s' "$problems" | paste -sd ';' -)" "$EX_UNSAFE"
  local owner agent
  owner=$(manifest_lines owner | head -1)
  agent=$(manifest_lines agent | head -1)
  # userdel fails on a user with processes, after the state is gone: check before any change.
  # ps -U (real uid) also finds the agent's sudo and what sudo runs for it as another user.
  if [[ $PURGE == 1 && $DRY_RUN == 0 ]] && user_exists "$agent"; then
    local running
    running=$(ps -U "$agent" -o pid= 2>/dev/null | paste -sd ' ' - | tr -s ' ')
    [[ -z ${running// /} ]] || abort "$agent still runs processes (${running# }); nothing was removed. Stop them first (stop the OpenClaw service, then: pkill -u $agent) and run this again" "$EX_DENIED"
  fi
  if [[ $PURGE == 1 && $YES == 0 && $DRY_RUN == 0 ]]; then
    [[ -t 0 ]] || abort "--purge deletes the secrets in the state directory; add --yes to confirm" "$EX_USAGE"
    printf 'Delete the state (secrets, seed, audit log), the user %s and its home? Type yes: ' "$agent"
    local answer
    read -r answer
    [[ $answer == yes ]] || abort "nothing was removed"
  else
    CONFIRM_FIRST_CHANGE=1 # as install: at a terminal without --yes, ask before the first removal
    # (so the loops below read on descriptor 3: their standard input stays the terminal)
  fi

  local line kind path
  while read -r -u 3 kind path; do
    [[ -n $kind ]] || continue
    case $kind in
      sudoers | file) [[ -e $path || -L $path ]] && change "remove $path" rm -f "$path" ;;
      service) stop_service "$path" ;;
    esac
  done 3<"$MANIFEST"
  local -a pids
  read -r -a pids <<<"$(proxy_pids "$owner")"
  [[ ${#pids[@]} == 0 ]] || change "stop the proxy still running from $LIBEXEC (pid ${pids[*]})" stop_pids "${pids[@]}"
  while read -r -u 3 line; do
    local from=${line%% *} to=${line#* }
    if [[ -L $from && $(readlink "$from") == "$to" && -d $to && ! -L $to ]]; then
      change "move $to back to $from (owned by $owner)" move_back "$to" "$from" "$owner"
    fi
  done 3< <(manifest_lines migrated)
  [[ -e $FRONT_DOOR ]] && change "remove $FRONT_DOOR" rm -f "$FRONT_DOOR"
  [[ -e $LIBEXEC ]] && change "remove $LIBEXEC" rm -rf "$LIBEXEC"
  local fleet=0 # read before the config goes: what this host leaves in OpenBao is said at the end
  [[ -f $CONF && $(helper conf-value "$CONF" clawgate store) == openbao ]] && fleet=1
  [[ -e $CONF ]] && change "remove $CONF" rm -f "$CONF"

  local kept=()
  if [[ $PURGE == 1 ]]; then
    while read -r -u 3 path; do
      [[ -e $path ]] && change "remove the state $path" rm -rf "$path"
    done 3< <(manifest_lines state)
    while read -r -u 3 path; do
      user_left "$path" && change "delete the user $path" delete_user "$path"
    done 3< <(manifest_lines user)
    while read -r -u 3 path; do
      [[ -e $path ]] && change "remove the agent's home $path" rm -rf "$path"
    done 3< <(manifest_lines home)
  else
    while read -r -u 3 path; do [[ -e $path ]] && kept+=("state $path"); done 3< <(manifest_lines state)
    while read -r -u 3 path; do user_left "$path" && kept+=("user $path"); done 3< <(manifest_lines user)
    while read -r -u 3 path; do [[ -e $path ]] && kept+=("home $path"); done 3< <(manifest_lines home)
  fi

  # Directories this install created, deepest first, each only if nothing else is in it.
  manifest_lines dir | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- >"$STAGE/dirs"
  if [[ ${#kept[@]} -gt 0 ]]; then
    # What is kept stays listed, so that a later --uninstall --purge still finds it.
    printf '%s\n' "${kept[@]}" "owner $owner" "agent $agent" >"$STAGE/kept"
    grep -E '^dir ' "$MANIFEST" >>"$STAGE/kept"
    if ! sort -u "$STAGE/kept" | cmp -s - "$MANIFEST"; then
      sort -u "$STAGE/kept" >"$STAGE/kept.sorted"
      change "keep $MANIFEST listing what stays" install_file_raw "$STAGE/kept.sorted" "$MANIFEST" root "$ROOT_GROUP" 0644
    fi
  else
    change "remove $MANIFEST" rm -f "$MANIFEST"
    [[ -d $ETCDIR ]] && change "remove $ETCDIR" rmdir "$ETCDIR"
  fi
  while read -r -u 3 path; do # the manifest's own directory stays while it lists what is kept
    [[ -d $path ]] && [[ -z $(ls -A "$path") || ($DRY_RUN == 1 && ${#kept[@]} -eq 0) ]] && change "remove $path" rmdir "$path"
  done 3<"$STAGE/dirs"

  if [[ $CHANGES == 0 ]]; then
    echo "clawgate: nothing to remove"
  elif [[ $DRY_RUN == 1 ]]; then
    echo "clawgate: dry run: $CHANGES changes would be made; nothing was changed"
  else
    echo "clawgate: uninstalled"
    [[ ${#kept[@]} -eq 0 ]] || say "kept: ${kept[*]}, and $MANIFEST listing them (remove with --uninstall --purge)"
  fi
  [[ $fleet == 0 || $DRY_RUN == 1 ]] || say "OpenBao still has this host's AppRole secret id, which still logs in, and the fleet's secrets: destroy the secret id there (docs/OPENBAO.md, Setting up a host)"
  exit 0
}

move_back() { # TO FROM OWNER: undo --migrate-from
  local group
  group=$(primary_group "$3")
  rm -f "$2" && mv "$1" "$2" && helper give "$2" "$3" "$group"
}

delete_user() {
  if [[ $TARGET_OS == darwin ]]; then
    local record
    for record in "/Users/$1" "/Groups/$1"; do # each that exists: a half-made user may lack either
      if dscl_bin . -read "$record" >/dev/null 2>&1; then dscl_bin . -delete "$record" || return 1; fi
    done
  else
    userdel "$1"
  fi
}

refuse_foreign_unit() { # FILE
  [[ -e $1 || -L $1 ]] || return 0
  [[ -f $MANIFEST ]] && grep -qxF "service $1" "$MANIFEST" && return 0
  abort "$1 exists and is not this install's (another clawgate install's, or another service of that name); give this install units of its own: --service-dir DIR (nothing was changed)" "$EX_UNSAFE"
}

proxy_pids() { # OWNER: this install's proxy, however it was started (its unit, or the owner by hand)
  # The owner's processes whose whole argv is the proxy's (INTERPRETER -IS LIBEXEC/proxy, as its
  # shebang starts it; its session is a fork of it): anyone can put the proxy's path in an argv of
  # their own, and the agent can keep an owner's broker alive with it among its arguments.
  local uid
  uid=$(id -u "$1" 2>/dev/null) || return 0
  ps -A -o pid= -o uid= -o args= 2>/dev/null | awk -v uid="$uid" -v program="$LIBEXEC/proxy" \
    '$2 == uid && NF == 5 && $4 == "-IS" && $5 == program { printf "%s ", $1 }'
}

stop_pids() { kill "$@" 2>/dev/null || true; } # one that ended meanwhile has stopped already

stop_service() {
  local path=$1
  [[ -e $path ]] || return 0
  if [[ $path == *.plist ]]; then
    [[ $HOST_OS == darwin ]] && change "stop $(basename "$path" .plist)" launchctl bootout "system/$(basename "$path" .plist)"
  elif [[ -d /run/systemd/system && $(dirname "$path") == /etc/systemd/system ]]; then
    change "stop and disable $(basename "$path")" systemctl disable --now "$(basename "$path")"
  fi
  change "remove $path" rm -f "$path"
  if [[ $path != *.plist && -d /run/systemd/system ]]; then
    change "reload systemd" systemctl daemon-reload
  fi
}

[[ $UNINSTALL == 0 ]] || uninstall

# A rerun without --store keeps a fleet's store: the default would leave an openbao host with an
# empty store of its own. Leaving the fleet takes an explicit --store file (or keychain).
if [[ $STORE_GIVEN == 0 && $FOREIGN == 0 && $STORE != openbao && -f $CONF ]] \
  && [[ $(helper conf-value "$CONF" clawgate store) == openbao ]]; then
  abort "$CONF says store = openbao: rerun with --store openbao (its [openbao] settings and, with nothing on stdin, its secret id are kept), or leave the fleet with --store $STORE" "$EX_USAGE"
fi

# ---------------------------------------------------------------------------------------------
# install: checks first
# ---------------------------------------------------------------------------------------------
if [[ -z $OWNER ]]; then
  OWNER=${SUDO_USER:-}
  [[ -n $OWNER && $OWNER != root ]] || abort "--owner USER is required (who holds the secrets?)" "$EX_USAGE"
fi
check_name --owner "$OWNER"
[[ $OWNER != root && $OWNER != "$AGENT" ]] || abort "--owner must be a person, not root or the agent user" "$EX_USAGE"
[[ $STORE != openbao ]] || : "${BAO_PREFIX:=clawgate/$OWNER}"
if [[ $FOREIGN == 0 ]]; then
  id -u "$OWNER" >/dev/null 2>&1 || abort "--owner $OWNER: no such user" "$EX_USAGE"
  [[ $(id -u "$OWNER") != 0 ]] || abort "--owner must not be uid 0" "$EX_USAGE"
fi
OWNER_GROUP=$(primary_group "$OWNER")
[[ $FOREIGN == 0 ]] || OWNER_GROUP=staff
# The home is chowned to the agent: never /, a system directory, or one that holds the code or the state.
helper ordinary-dir "$AGENT_HOME" || abort "--agent-home $AGENT_HOME: a system directory; give the agent a home of its own" "$EX_UNSAFE"
case $AGENT_HOME/ in "$PREFIX"/* | "$STATE_DIR"/*) abort "--agent-home must lie outside the prefix and the state" "$EX_USAGE" ;; esac
# A file with other hard links cannot change hands (chowned, its other names would be the agent's
# too): named before anything changes, never skipped.
if [[ -n $MIGRATE_FROM && $FOREIGN == 0 && -d $MIGRATE_FROM && ! -L $MIGRATE_FROM ]]; then
  linked=$(helper linked "$MIGRATE_FROM") \
    || abort "--migrate-from $MIGRATE_FROM: files with other hard links: $(printf '%s' "$linked" | paste -sd ',' - | sed 's/,/, /g'); nothing was changed (make each a file of its own: cp -p F F.new && mv F.new F)" "$EX_UNSAFE"
fi

ADMIN_GROUPS=" root sudo admin wheel "
AGENT_EXISTS=0
if user_exists "$AGENT"; then
  AGENT_EXISTS=1
  [[ $(id -u "$AGENT") != 0 ]] || abort "--agent-user $AGENT has uid 0" "$EX_UNSAFE"
  for group in $(id -Gn "$AGENT"); do
    [[ $ADMIN_GROUPS != *" $group "* ]] \
      || abort "--agent-user $AGENT is in the admin group $group; remove it first" "$EX_UNSAFE"
  done
fi
AGENT_GROUP=$AGENT
[[ $AGENT_EXISTS == 0 ]] || AGENT_GROUP=$(primary_group "$AGENT")

# macOS: writing a user record's home needs Full Disk Access (TCC) for the terminal; refused
# half-way, dscl leaves a half-made user. Asked before anything changes, as nix-darwin does: set
# nobody's home to what it already is (a dry run asks too, as root; other users cannot write).
may_change_user_records() {
  local home
  home=$(dscl_bin . -read /Users/nobody NFSHomeDirectory 2>/dev/null) || return 1
  home=${home#NFSHomeDirectory: }
  dscl_bin . -change /Users/nobody NFSHomeDirectory "$home" "$home" >/dev/null 2>&1
}
if [[ $TARGET_OS == darwin && $AGENT_EXISTS == 0 && $(id -u) == 0 ]] && [[ -x ${CLAWGATE_DSCL:-/usr/bin/dscl} ]]; then
  may_change_user_records \
    || abort "macOS refused dscl a change to a user record (it needs Full Disk Access): allow your terminal in System Settings > Privacy & Security > Full Disk Access (over SSH: General > Sharing > Remote Login (i) > Allow full disk access for remote users), then run me again; nothing was changed" "$EX_DENIED"
fi

# Code runs as the owner and as root: the interpreter, its stdlib and every directory above the
# install must be beyond the agent's reach (and the owner's: elevate runs as root).
if [[ $FOREIGN == 0 ]]; then
  # The shebang keeps the name given (/usr/bin/python3 outlives a minor upgrade): the directories
  # above that name and the file it resolves to must both be beyond the agent's reach.
  # Refused, it says why: Homebrew's and pyenv's interpreters belong to the user who installed them.
  interpreter="interpreter $PYTHON (it runs elevate as root, so it and every directory above it must be root's alone: use /usr/bin/python3 or a root-owned Python 3.9+)"
  refuse_writable "$interpreter" "$(dirname "$PYTHON")"
  refuse_writable "$interpreter" "$(helper realpath "$PYTHON")"
  pypaths=$(helper pyinfo) || abort "$PYTHON: $pypaths" "$EX_UNSAFE"
  while read -r pypath; do
    refuse_writable "the standard library of $PYTHON" "$pypath"
  done <<<"$pypaths"
  # Below PREFIX too: whoever can write PREFIX/libexec can replace elevate, which runs as root.
  for below_prefix in "$LIBEXEC" "$ETCDIR" "$BINDIR"; do refuse_writable "--prefix" "$below_prefix"; done
  refuse_writable "--state-dir" "$(dirname "$STATE_DIR")" "$OWNER"
  refuse_writable "--agent-home" "$(dirname "$AGENT_HOME")"
  [[ $NO_SERVICE == 1 && $PROXY_OFF == 1 ]] || refuse_writable "--service-dir" "$SERVICE_DIR"
  # A unit of that name this install did not write (another install's on this machine, its owner
  # and prefix in it) is never taken over: its install would run this one's, and remove it.
  [[ $NO_SERVICE == 1 ]] || refuse_foreign_unit "$SERVICE_FILE"
  [[ $PROXY_OFF == 1 ]] || refuse_foreign_unit "$PROXY_FILE"
  [[ ! -e $STATE_DIR || -d $STATE_DIR ]] || abort "$STATE_DIR: exists and is not a directory" "$EX_UNSAFE"
  # The home is handed to the agent: only one made now, or one that is the agent's already.
  home_info=$(stat_of "$AGENT_HOME")
  [[ $home_info == missing || $home_info == "dir $AGENT "* ]] \
    || abort "--agent-home $AGENT_HOME: exists and is not a directory of $AGENT ($home_info); not handing it over" "$EX_UNSAFE"
  case $STATE_DIR/ in "$AGENT_HOME"/* | "$PREFIX"/*) abort "--state-dir must lie outside the agent's home and the prefix" "$EX_USAGE" ;; esac
  case $PREFIX/ in "$AGENT_HOME"/*) abort "--prefix must lie outside the agent's home" "$EX_USAGE" ;; esac
  command -v visudo >/dev/null || abort "visudo not found: install sudo first" "$EX_UNSAFE"
  if [[ $DRY_RUN == 0 ]] && ! grep -qE '^[#@]includedir[[:space:]]+(/private)?/etc/sudoers.d' /etc/sudoers; then
    abort "/etc/sudoers does not include /etc/sudoers.d; add: @includedir /etc/sudoers.d" "$EX_UNSAFE"
  fi
fi
for program in broker approve revoke; do
  [[ -f $SRC/bin/$program ]] || abort "$SRC/bin/$program missing: run me from a clawgate source tree" "$EX_USAGE"
done

# The service: what it runs, resolved to an absolute path now (launchd and systemd search no PATH).
SERVICE=$SERVICE_MANAGER
if [[ $NO_SERVICE == 1 ]]; then
  SERVICE=none
else
  [[ -n $GATEWAY_COMMAND ]] || GATEWAY_COMMAND="openclaw gateway"
  gateway_program=$(helper first-word "$GATEWAY_COMMAND") || abort "--gateway-command: cannot parse it" "$EX_USAGE"
  if [[ $gateway_program != /* ]]; then
    found=$(PATH="$PATH:/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin" command -v "$gateway_program") || found=''
    if [[ $found == /* ]]; then
      GATEWAY_COMMAND="$found${GATEWAY_COMMAND#*"$gateway_program"}"
    elif [[ $GATEWAY_EXPLICIT == 1 ]]; then
      abort "--gateway-command: $gateway_program not found; give its absolute path" "$EX_USAGE"
    else
      SERVICE=none
      SERVICE_NOTE="OpenClaw (openclaw) not found: no service installed; rerun with --gateway-command CMD once it is"
    fi
  elif [[ ! -x $gateway_program && $FOREIGN == 0 ]]; then
    [[ $DRY_RUN == 1 ]] || abort "--gateway-command: $gateway_program is not an executable" "$EX_USAGE"
    warn "$gateway_program is not an executable (yet)"
  fi
fi
# The service's PATH. launchd gives a daemon PATH=/usr/bin:/bin:/usr/sbin:/sbin and systemd a
# default without /usr/local: npm's and Homebrew's openclaw is `#!/usr/bin/env node`, which finds
# no node there. So: the program's directory, the real node's (beside it, or on this PATH),
# Homebrew's (macOS), the system's, and clawgate's front door (the skill runs `clawgate`), each once.
service_search_path() { # PROGRAM
  local dirs=("$(dirname "$1")") node real dir joined=''
  node=$(dirname "$1")/node
  [[ -x $node || $FOREIGN == 1 ]] || node=$(PATH="$PATH:/opt/homebrew/bin:/usr/local/bin" command -v node) || node=''
  if [[ -x $node && $node == /* ]]; then
    real=$(helper realpath "$node") || real=$node
    dirs+=("$(dirname "$node")" "$(dirname "$real")")
  fi
  [[ $TARGET_OS != darwin ]] || dirs+=(/opt/homebrew/bin)
  for dir in "${dirs[@]}" /usr/local/bin /usr/bin /bin /usr/sbin /sbin "$BINDIR"; do
    case :$joined: in *":$dir:"*) ;; *) joined=${joined:+$joined:}$dir ;; esac
  done
  printf '%s\n' "$joined"
}
if [[ $SERVICE != none ]]; then
  helper render-service "$SERVICE_MANAGER" "$SRC/$SERVICE_TEMPLATE" "$AGENT" "$AGENT_GROUP" "$AGENT_HOME" \
    "$GATEWAY_COMMAND" "$(service_search_path "$(helper first-word "$GATEWAY_COMMAND")")" >"$STAGE/service" \
    || abort "--gateway-command: cannot turn it into a service" "$EX_USAGE"
fi

# ---------------------------------------------------------------------------------------------
# render everything that will be written, then show the plan
# ---------------------------------------------------------------------------------------------
# sudoers alias names are [A-Z0-9_] and each agent's file needs its own (a second definition of a
# name breaks sudo for everyone): CLAWGATE_ and the agent's name in hex, as doctor renders it too.
SUDOERS_ALIAS=CLAWGATE_$(printf '%s' "$AGENT" | od -An -tx1 | tr -d ' \n' | tr abcdef ABCDEF)
fill() { # TEMPLATE: the values sudoers and the front door are made of
  sed -e "s|@OWNER@|$OWNER|g" -e "s|@AGENT@|$AGENT|g" -e "s|@LIBEXEC@|$LIBEXEC|g" -e "s|@ALIAS@|$SUDOERS_ALIAS|g" \
    -e "s|@RESOLVE_LAUNCHER@|$RESOLVE_LAUNCHER|g" -e "s|@AGENT_HOME@|$AGENT_HOME|g" -e "s|@STATE_DIR@|$STATE_DIR|g" \
    -e "s|@PROXY_PORT@|$PROXY_PORT|g" "$1"
}
# OpenClaw runs an exec provider only if the gateway's own user owns it (not a symlink, not group- or
# world-writable): the agent's launcher, which asks sudo for the broker as any agent process can.
RESOLVE_LAUNCHER=$AGENT_HOME/.local/libexec/clawgate-resolve
SKILL_FILE=$AGENT_HOME/.agents/skills/clawgate/SKILL.md
mkdir -p "$STAGE/code/lib" "$STAGE/templates"
fill "$SRC/sudoers/clawgate.sudoers" >"$STAGE/sudoers"
fill "$SRC/bin/clawgate" >"$STAGE/clawgate"
[[ $PROXY_OFF == 1 ]] || fill "$SRC/$PROXY_TEMPLATE" | sed -e "s|@OWNER_GROUP@|$OWNER_GROUP|g" >"$STAGE/proxy-service"
printf '#!/bin/sh\n# %s\n# %s\nexec /usr/bin/sudo -n -u %s %s/broker resolve\n' \
  "clawgate: OpenClaw's exec SecretRef provider for $AGENT, written by install.sh as $AGENT." \
  "No privilege here: sudo's exact rule and the broker decide; rerun install.sh to change it." \
  "$OWNER" "$LIBEXEC" >"$STAGE/clawgate-resolve"
cp "$SRC/skill/clawgate/SKILL.md" "$STAGE/SKILL.md"
for template in sudoers/clawgate.sudoers bin/clawgate systemd/openclaw-gateway.service launchd/ai.openclaw.gateway.plist; do
  cp "$SRC/$template" "$STAGE/templates/$(basename "$template")"
done
mv "$STAGE/templates/clawgate" "$STAGE/templates/clawgate.frontdoor"
PROGRAMS=()
for source in "$SRC"/bin/*; do
  program=$(basename "$source")
  [[ -f $source && $program != clawgate ]] || continue
  [[ $(head -c 2 "$source") == '#!' ]] || abort "$source: no #! line" "$EX_USAGE"
  { printf '#!%s -IS\n' "$PYTHON" && tail -n +2 "$source"; } >"$STAGE/code/$program"
  PROGRAMS+=("$program")
done
(cd "$SRC/lib" && find clawgate -name '*.py' -type f) | sort >"$STAGE/libfiles"
while read -r libfile; do
  mkdir -p "$STAGE/code/lib/$(dirname "$libfile")"
  cp "$SRC/lib/$libfile" "$STAGE/code/lib/$libfile"
done <"$STAGE/libfiles"

{
  echo "# clawgate configuration, written by install.sh (root 0644). Rerun install.sh to change it."
  echo "# Edits to [ttl], [keychain] and [audit] are kept across runs; a cap may be shortened, never lengthened."
  echo "[clawgate]"
  echo "owner = $OWNER"
  echo "agent_user = $AGENT"
  echo "state_dir = $STATE_DIR"
  echo "store = $STORE"
  carried=''
  [[ $FOREIGN == 1 || ! -f $CONF ]] || carried=$(helper keep "$CONF")
  if [[ $carried == *"[ttl]"* ]]; then
    printf '%s\n' "$carried"
  else
    printf '\n[ttl]\ncontrolled = 4h\nrestricted = 15m\nroot = 30m\n'
    [[ -z $carried ]] || printf '%s\n' "$carried"
  fi
  echo
  echo "[service]"
  echo "manager = $SERVICE"
  [[ $SERVICE == none ]] || echo "path = $SERVICE_FILE"
  echo
  echo "[proxy]"
  echo "port = $PROXY_PORT"
  echo "service = $([[ $PROXY_OFF == 1 ]] && echo none || echo "$PROXY_FILE")"
  if [[ $STORE == openbao ]]; then
    printf '\n[openbao]\naddress = %s\nca = %s\nrole_id = %s\nmount = %s\nprefix = %s\n' \
      "${BAO_ADDRESS%/}" "$BAO_CA" "$BAO_ROLE_ID" "$BAO_MOUNT" "$BAO_PREFIX"
  fi
} >"$STAGE/clawgate.conf"

if [[ $FOREIGN == 0 ]] || command -v visudo >/dev/null; then
  visudo -cf "$STAGE/sudoers" >/dev/null || abort "the sudoers text does not pass visudo -cf: not installing" "$EX_UNSAFE"
fi

# OpenBao, before the plan and before any change (a dry run too), AS THE OWNER, whose programs talk
# to it: the CA readable by the owner, reachable over TLS verified against it, unsealed, an AppRole
# login with the secret id on stdin (a wrapped one unwrapped; a dry run leaves a wrapped one alone:
# it works once) or the one the host keeps, and the token's capabilities on the prefix. A failure is
# one line and exit 6 (2: no secret id), with nothing changed. A new secret id is staged here and
# written 0600 for the owner in step 4. Without root a dry run cannot become the owner: it says so.
BAO_CHECKED=''
if [[ $STORE == openbao ]]; then
  if [[ $FOREIGN == 1 ]]; then
    BAO_CHECKED="not checked from here (a plan for $TARGET_OS): the real run checks it as $OWNER first"
  elif [[ $(id -u) != 0 && $(id -u) != "$(id -u "$OWNER")" ]]; then
    BAO_CHECKED="not checked: the check runs as $OWNER, which needs root"
  else
    BAO_CHECKED=$(helper openbao-check "$([[ $DRY_RUN == 1 ]] && echo dry-run || echo install)" "$OWNER" \
      "${BAO_ADDRESS%/}" "$BAO_CA" "$BAO_ROLE_ID" "$BAO_MOUNT" "$BAO_PREFIX" "$STATE_DIR" \
      "$STAGE/openbao-secret-id") || exit # the helper said why, in one line
  fi
fi

# row LABEL VALUE: one line of the plan; what varies (names, modes) goes in VALUE, so the column holds.
row() { printf '    %-41s %s\n' "$1:" "$2"; }
ohai "This script will install clawgate for $TARGET_OS:"
row "owner (holds secrets and the TOTP seed)" "$OWNER"
row "agent user (non-admin, no password)" "$AGENT$([[ $AGENT_EXISTS == 1 ]] && echo ' (exists)'), home $AGENT_HOME"
row "code (root-owned)" "$LIBEXEC, run by $PYTHON -IS"
row "front door" "$FRONT_DOOR"
row "config (root 0644)" "$CONF"
row "state (the owner's, 0700)" "$STATE_DIR ($OWNER, $STORE store)"
row "sudoers (root 0440, visudo-checked)" "$SUDOERS_FILE"
if [[ $SERVICE == none ]]; then
  row "service" "none${SERVICE_NOTE:+ ($SERVICE_NOTE)}"
else
  row "service (as the agent)" "$SERVICE_FILE ($SERVICE_MANAGER) running: $GATEWAY_COMMAND"
fi
if [[ $PROXY_OFF == 1 ]]; then
  row "proxy" "none (--no-proxy)"
else
  row "proxy (as the owner, loopback only)" "$PROXY_FILE, http://127.0.0.1:$PROXY_PORT/ROUTE/"
fi
[[ -z $MIGRATE_FROM ]] || row "migrate" "$MIGRATE_FROM -> $AGENT_HOME/.openclaw (linked back)"
if [[ $STORE == openbao ]]; then
  row "OpenBao (KV v2, check-and-set)" "${BAO_ADDRESS%/} $BAO_MOUNT/$BAO_PREFIX, AppRole $BAO_ROLE_ID"
  if [[ $BAO_CHECKED == *"the one kept in"* ]]; then
    row "its secret id (kept)" "$STATE_DIR/openbao-secret-id ($OWNER 0600)"
  else
    row "its secret id (from stdin)" "$STATE_DIR/openbao-secret-id ($OWNER 0600)"
  fi
  row "checked first, as the owner" "$BAO_CHECKED"
fi

if [[ $DRY_RUN == 1 ]]; then
  show() { # what a file would contain, between markers a test can cut on
    echo "--- begin $1"
    cat "$2"
    echo "--- end $1"
  }
  show "$SUDOERS_FILE" "$STAGE/sudoers"
  show "$CONF" "$STAGE/clawgate.conf"
  [[ $SERVICE == none ]] || show "$SERVICE_FILE" "$STAGE/service"
  [[ $PROXY_OFF == 1 ]] || show "$PROXY_FILE" "$STAGE/proxy-service"
fi

# ---------------------------------------------------------------------------------------------
# install: the actions, each skipped when already done
# ---------------------------------------------------------------------------------------------
CONFIRM_FIRST_CHANGE=1
# What only root can read is not guessed at in a dry run by another user: it is named instead.
UNCOMPARED=()

# 1. Directories above the code and the manifest that lists what we create.
ensure_parents "$LIBEXEC"
ensure_parents "$ETCDIR"
ensure_root_dir "$BINDIR"
ensure_dir "$ETCDIR" root "$ROOT_GROUP" 0755
record "owner $OWNER"
record "agent $AGENT"

# 2. The agent user: a system account, no password, no admin group.
create_user_linux() {
  useradd --system --user-group --home-dir "$AGENT_HOME" --no-create-home --shell "$AGENT_SHELL" \
    --comment "OpenClaw agent (clawgate)" "$AGENT"
}
free_darwin_id() {
  # Hidden users live below 500; take the lowest id that no user and no group holds.
  local listing
  if listing=$({ dscl_bin . -list /Users UniqueID && dscl_bin . -list /Groups PrimaryGroupID; } 2>/dev/null); then
    :
  elif [[ $DRY_RUN == 1 ]]; then
    warn "dscl cannot be asked here: the plan takes every id from 401 up as free"
    listing=''
  else
    return 1
  fi
  printf '%s\n' "$listing" | helper free-id 401 499
}
dscl_create() { # RECORD [KEY VALUE]: the one list of dscl commands, run, or shown in a dry run
  if [[ $DRY_RUN == 1 ]]; then
    local word shown=''
    for word in "$@"; do [[ $word == *' '* ]] && word="\"$word\""; shown+=" $word"; done
    echo "would: dscl . -create${shown}"
    return 0
  fi
  dscl_bin . -create "$@"
}
create_user_darwin() {
  local id=$1 user=/Users/$AGENT group=/Groups/$AGENT
  dscl_create "$group" && dscl_create "$group" PrimaryGroupID "$id" && dscl_create "$group" Password '*' \
    && dscl_create "$user" && dscl_create "$user" UniqueID "$id" \
    && dscl_create "$user" PrimaryGroupID "$id" && dscl_create "$user" UserShell "$AGENT_SHELL" \
    && dscl_create "$user" NFSHomeDirectory "$AGENT_HOME" \
    && dscl_create "$user" RealName "OpenClaw agent (clawgate)" \
    && dscl_create "$user" IsHidden 1 && dscl_create "$user" Password '*'
}
if [[ $AGENT_EXISTS == 0 ]]; then
  if [[ $TARGET_OS == darwin ]]; then
    agent_id=$(free_darwin_id) || abort "no free user id between 401 and 499 (or dscl failed)" "$EX_UNSAFE"
    # Listed before the first dscl -create: a run stopped half-way leaves a user --uninstall --purge removes.
    if [[ $DRY_RUN == 1 ]]; then echo "would: list user $AGENT in $MANIFEST"; else record "user $AGENT"; fi
    change "create the hidden user $AGENT (uid $agent_id, group $AGENT, no password, not admin)" \
      create_user_darwin "$agent_id"
    [[ $DRY_RUN == 0 ]] || create_user_darwin "$agent_id"
  else
    change "create the system user $AGENT (no password, not in any admin group)" create_user_linux
    record "user $AGENT"
  fi
fi
[[ $(stat_of "$AGENT_HOME") != missing ]] || record "home $AGENT_HOME"
ensure_parents "$AGENT_HOME"
ensure_dir "$AGENT_HOME" "$AGENT" "$AGENT_GROUP" 0711

# 3. The code: root-owned, shebangs pointing at the checked interpreter, nothing left over.
ensure_dir "$LIBEXEC" root "$ROOT_GROUP" 0755
ensure_dir "$LIBEXEC/lib" root "$ROOT_GROUP" 0755
ensure_dir "$LIBEXEC/templates" root "$ROOT_GROUP" 0755
while read -r libdir; do
  ensure_dir "$LIBEXEC/lib/$libdir" root "$ROOT_GROUP" 0755
done < <(sed -e 's|/[^/]*$||' "$STAGE/libfiles" | sort -u)
for program in ${PROGRAMS[@]+"${PROGRAMS[@]}"}; do
  ensure_file "$STAGE/code/$program" "$LIBEXEC/$program" root "$ROOT_GROUP" 0755
done
while read -r libfile; do
  ensure_file "$STAGE/code/lib/$libfile" "$LIBEXEC/lib/$libfile" root "$ROOT_GROUP" 0644
done <"$STAGE/libfiles"
for template in "$STAGE"/templates/*; do
  ensure_file "$template" "$LIBEXEC/templates/$(basename "$template")" root "$ROOT_GROUP" 0644
done
if [[ $FOREIGN == 0 && -d $LIBEXEC ]]; then
  # Anything in the code directory that this version did not put there goes (bytecode aside).
  while IFS= read -r -d '' stale; do
    relative=${stale#"$LIBEXEC"/}
    case $relative in
      lib/* | templates/*) [[ -e $STAGE/code/$relative || -e $STAGE/$relative ]] && continue ;;
      *) [[ -e $STAGE/code/$relative ]] && continue ;;
    esac
    change "remove $stale (not part of this version)" rm -f "$stale"
  done < <(find "$LIBEXEC" \( -name __pycache__ -prune \) -o \( -type f -print0 \) -o \( -type l -print0 \))
fi
if [[ $DRY_RUN == 0 ]]; then
  # Bytecode compiled now, as root: the owner cannot write __pycache__ here, and without it every
  # `clawgate get` would compile its imports again.
  "$PYTHON" -I -m compileall -q "$LIBEXEC/lib" >/dev/null || abort "compiling $LIBEXEC/lib failed"
fi
ensure_file "$STAGE/clawgate" "$FRONT_DOOR" root "$ROOT_GROUP" 0755

# 3b. Manual pages and shell completions below PREFIX/share, where man, bash-completion and zsh
# look by default for PREFIX=/usr/local (clawgate(1) FILES says what another PREFIX needs). Never
# outside PREFIX (/etc/bash_completion.d): two installs would share it. Listed for --uninstall.
shared_files=$(helper shared-files "$PREFIX") || abort "cannot list the manual pages and completions"
shared_dirs=' '  # each directory once, also in a plan, where the ones above are not made yet
while read -r shared_source shared_dest; do
  shared_dir=${PREFIX%/}
  IFS=/ read -ra shared_parts <<<"$(dirname "${shared_dest#"${PREFIX%/}"/}")"
  for shared_part in "${shared_parts[@]}"; do
    shared_dir+=/$shared_part
    [[ $shared_dirs != *" $shared_dir "* ]] || continue
    shared_dirs+="$shared_dir "
    [[ $(stat_of "$shared_dir") == missing ]] || continue
    ensure_dir "$shared_dir" root "$ROOT_GROUP" 0755
    record "dir $shared_dir"
  done
  record "file $shared_dest"
  ensure_file "$SRC/$shared_source" "$shared_dest" root "$ROOT_GROUP" 0644
done <<<"$shared_files"

# 4. Config (root 0644) and state (the owner's, 0700), then the store's own set-up as the owner.
ensure_file "$STAGE/clawgate.conf" "$CONF" root "$ROOT_GROUP" 0644
[[ $(stat_of "$STATE_DIR") != missing ]] || record "state $STATE_DIR"
ensure_parents "$STATE_DIR"
ensure_dir "$STATE_DIR" "$OWNER" "$OWNER_GROUP" 0700
as_owner() {
  if [[ $TARGET_OS == darwin ]]; then
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 sudo -H -n -u "$OWNER" -- "$@"
  else
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 runuser -u "$OWNER" -- "$@"
  fi
}
init_store() { as_owner "$LIBEXEC/secrets" init >/dev/null; } # the change line says it; errors still show
if [[ $STORE == openbao && $DRY_RUN == 1 ]]; then
  change "write $STATE_DIR/openbao-secret-id ($OWNER 0600) from stdin, once checked by a login" true
elif [[ -f $STAGE/openbao-secret-id ]]; then
  ensure_file "$STAGE/openbao-secret-id" "$STATE_DIR/openbao-secret-id" "$OWNER" "$OWNER_GROUP" 0600
  if [[ -f $STATE_DIR/openbao-token ]]; then
    change "forget the cached OpenBao token ($STATE_DIR/openbao-token)" rm -f "$STATE_DIR/openbao-token"
  fi
fi
store_ready=1
for sub in secrets tiers grants; do [[ -d $STATE_DIR/$sub ]] || store_ready=0; done
[[ $STORE != keychain && $STORE != openbao ]] || store_ready=0 # its init is idempotent and cheap to ask
if [[ $store_ready == 0 ]]; then
  if [[ $STORE != file && $DRY_RUN == 0 && -d $STATE_DIR/grants ]]; then
    init_said=$(init_store 2>&1) \
      || abort "setting up the $STORE store as $OWNER failed: ${init_said##*$'\n'}" "$EX_UNSAFE"
  else
    change "set up the $STORE store as $OWNER ($LIBEXEC/secrets init)" init_store
  fi
fi

# 5. sudoers: the exact lines, checked before they go live.
install_sudoers() {
  local tmp=$SUDOERS_DIR/.clawgate-$AGENT.tmp
  rm -f "$tmp"
  if ! { cp "$STAGE/sudoers" "$tmp" && chown "root:$ROOT_GROUP" "$tmp" && chmod 0440 "$tmp" \
    && visudo -cf "$tmp" >/dev/null && mv -f "$tmp" "$SUDOERS_FILE"; }; then
    rm -f "$tmp"
    return 1
  fi
  if ! visudo -c >/dev/null 2>&1; then
    rm -f "$SUDOERS_FILE"
    echo "the sudoers configuration as a whole failed visudo -c; $SUDOERS_FILE removed again" >&2
    return 1
  fi
}
[[ $(stat_of "$SUDOERS_DIR") != missing ]] || ensure_dir "$SUDOERS_DIR" root "$ROOT_GROUP" 0755
sudoers_info=$(stat_of "$SUDOERS_FILE")
if [[ $sudoers_info == missing ]]; then
  change "install $SUDOERS_FILE (visudo -cf, then 0440, then rename)" install_sudoers
elif [[ $(id -u) != 0 && ! -r $SUDOERS_FILE ]]; then
  UNCOMPARED+=("$SUDOERS_FILE (readable by root only)")
elif ! cmp -s "$STAGE/sudoers" "$SUDOERS_FILE" || [[ $sudoers_info != "file root $ROOT_GROUP 0440" ]]; then
  change "replace $SUDOERS_FILE (visudo -cf, then 0440, then rename)" install_sudoers
fi
record "sudoers $SUDOERS_FILE"

# 6. Migration of an existing ~/.openclaw into the agent's home, linked back for the owner.
migrate() {
  # Modes and owners are set before the move, on descriptors (helper migrate): the agent may
  # already run code and swap anything in its home for a link at any instant.
  helper migrate "$MIGRATE_FROM" "$AGENT_HOME" "$OWNER" "$AGENT" "$AGENT_GROUP" \
    && ln -s "$AGENT_HOME/.openclaw" "$MIGRATE_FROM" && chown -h "$OWNER:$OWNER_GROUP" "$MIGRATE_FROM"
}
if [[ -n $MIGRATE_FROM ]]; then
  target=$AGENT_HOME/.openclaw
  if [[ -L $MIGRATE_FROM && $(readlink "$MIGRATE_FROM") == "$target" ]]; then
    : # done before
  elif [[ $FOREIGN == 1 || $DRY_RUN == 1 && ! -e $MIGRATE_FROM ]]; then
    change "move $MIGRATE_FROM to $target (711; workspace 755; credentials 700, kept by $OWNER) and link it back" true
  else
    [[ -d $MIGRATE_FROM && ! -L $MIGRATE_FROM ]] || abort "--migrate-from $MIGRATE_FROM: not a directory" "$EX_USAGE"
    [[ ! -e $target ]] || abort "$target already exists: not moving $MIGRATE_FROM over it" "$EX_UNSAFE"
    change "move $MIGRATE_FROM to $target (711; workspace 755; credentials 700, kept by $OWNER) and link it back" migrate
    record "migrated $MIGRATE_FROM $target"
  fi
  [[ ! -d $target/credentials ]] \
    || say "then move the credentials into the store: $CLAWGATE secrets import --shred $target/credentials/*"
fi

# 6b. The agent's own files: the OpenClaw provider launcher and the clawgate skill. Written AS the
# agent (its home is the agent's to change: root never walks a path there), each to a temp file
# beside its target and renamed over it, so a planted symlink is replaced, never followed.
# The agent's process may be attached to by the agent itself (same uid): it gets nothing of root's.
# No controlling terminal (setsid: TIOCSTI into root's terminal was the way in), cwd /, stdin the
# staged file only, stdout to nowhere, stderr to a file of the stage, no other descriptor.
as_agent() {
  local run_as=(runuser -u "$AGENT" --)
  [[ $TARGET_OS != darwin ]] || run_as=(sudo -H -n -u "$AGENT" --)
  (cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$HELPER_PY" -I -c '
import os, sys
os.setsid()
os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1024)
os.execvp(sys.argv[1], sys.argv[1:])' "${run_as[@]}" "$@") >/dev/null 2>>"$STAGE/as-agent.log"
}
# agent_file_current SRC DEST MODE: DEST is a regular file of the agent, not a link, mode MODE, content SRC.
agent_file_current() {
  # shellcheck disable=SC2016 # expanded by the agent's shell, from its arguments
  as_agent /bin/sh -c '[ -f "$1" ] && [ ! -L "$1" ] && [ -O "$1" ] && [ -z "$(find "$1" ! -perm "$2")" ] \
    && cmp -s "$1" -' sh "$2" "$3" <"$1"
}
agent_file_write() { # SRC DEST MODE
  # shellcheck disable=SC2016 # expanded by the agent's shell, from its arguments
  as_agent /bin/sh -c 'umask 077 && mkdir -p "${1%/*}" && tmp=$(mktemp "${1%/*}/.clawgate.XXXXXX") \
    && { cat >"$tmp" && chmod "$2" "$tmp" && mv -f "$tmp" "$1"; } || { rm -f "$tmp"; exit 1; }' \
    sh "$2" "$3" <"$1"
}
for agent_file in "clawgate-resolve $RESOLVE_LAUNCHER 0755" "SKILL.md $SKILL_FILE 0644"; do
  read -r staged dest mode <<<"$agent_file"
  if [[ $FOREIGN == 0 && $(id -u) != 0 ]] && user_exists "$AGENT"; then
    UNCOMPARED+=("$dest (read as $AGENT, which needs root)")
  elif [[ $FOREIGN == 1 ]] || ! user_exists "$AGENT" || ! agent_file_current "$STAGE/$staged" "$dest" "$mode"; then
    change "write $dest as $AGENT ($mode)" agent_file_write "$STAGE/$staged" "$dest" "$mode"
  fi
done

# 7. The services: the gateway as the agent, the agent-blind proxy as the owner.
service_running() { # NAME
  if [[ $SERVICE_MANAGER == launchd ]]; then
    "${CLAWGATE_LAUNCHCTL:-/bin/launchctl}" print "system/$1" >/dev/null 2>&1
  else
    systemctl is-enabled --quiet "$1" 2>/dev/null && systemctl is-active --quiet "$1" 2>/dev/null
  fi
}
start_service() { # NAME FILE
  if [[ $SERVICE_MANAGER == launchd ]]; then
    bash "$SRC/launchd/load-job" "$1" "$2" # waits out a bootout, retries once
  else
    systemctl daemon-reload && systemctl enable "$1" && systemctl restart "$1"
  fi
}
can_manage_service() {
  if [[ $SERVICE_MANAGER == launchd ]]; then
    [[ $HOST_OS == darwin && $SERVICE_DIR == /Library/LaunchDaemons ]]
  else
    [[ -d /run/systemd/system && $SERVICE_DIR == /etc/systemd/system ]]
  fi
}
put_service() { # STAGED FILE NAME RESTART(1: restart even if its file is unchanged) HINT
  local before=$CHANGES
  ensure_root_dir "$SERVICE_DIR"
  ensure_file "$1" "$2" root "$ROOT_GROUP" 0644
  record "service $2"
  if [[ $DRY_RUN == 1 && $FOREIGN == 1 && $SERVICE_MANAGER == launchd ]]; then
    change "load it: launchctl bootstrap system $2" true
    bash "$SRC/launchd/load-job" --dry-run "$3" "$2"
  elif can_manage_service; then
    if [[ $CHANGES != "$before" || $4 == 1 ]] || ! service_running "$3"; then
      change "start $3" start_service "$3" "$2"
    fi
  elif [[ $DRY_RUN == 0 ]]; then
    local -a by_hand=()
    [[ $3 != "$PROXY_NAME" ]] || read -r -a by_hand <<<"$(proxy_pids "$OWNER")"
    if [[ ${#by_hand[@]} != 0 ]]; then # the owner runs it by hand: only they can restart it
      [[ $4 == 0 ]] || warn "the proxy runs by hand here (pid ${by_hand[*]}): as $OWNER, stop it and start it again ($CLAWGATE proxy) to load this run's changes"
    elif [[ $CHANGES != "$before" ]]; then
      say "($3 written; no running $SERVICE_MANAGER manages $SERVICE_DIR here, so it was not started${5:+; $5})"
    else
      say "($3 is not running: no running $SERVICE_MANAGER manages $SERVICE_DIR here${5:+; $5})"
    fi
  fi
}
[[ $SERVICE == none ]] || put_service "$STAGE/service" "$SERVICE_FILE" "$SERVICE_NAME" 0 ""
# The proxy restarts whenever this run changed anything: its code may have.
if [[ $PROXY_OFF == 0 ]]; then
  put_service "$STAGE/proxy-service" "$PROXY_FILE" "$PROXY_NAME" "$([[ $CHANGES != 0 ]] && echo 1 || echo 0)" \
    "run it by hand as $OWNER: $CLAWGATE proxy"
elif [[ -e $PROXY_FILE ]] && manifest_lines service | grep -qxF "$PROXY_FILE"; then
  stop_service "$PROXY_FILE" # --no-proxy on a rerun: the proxy an earlier run installed goes
fi
flush_manifest

# ---------------------------------------------------------------------------------------------
# done
# ---------------------------------------------------------------------------------------------
if [[ $DRY_RUN == 1 ]]; then
  for uncompared in "${UNCOMPARED[@]}"; do
    say "not compared without root: $uncompared; run the dry run with sudo to see whether it changes"
  done
  echo "clawgate: dry run: $CHANGES changes would be made${UNCOMPARED[0]:+ (and maybe ${#UNCOMPARED[@]} more)}; nothing was changed"
  exit 0
fi
if [[ $CHANGES == 0 ]]; then
  echo "clawgate: already installed as asked; nothing to do"
else
  ohai "Installation successful ($CHANGES change$([[ $CHANGES == 1 ]] || echo s))"
fi
if [[ $STORE == file && ! -e $STATE_DIR/totp-seed ]] || [[ $STORE != file && $CHANGES != 0 ]]; then
  ohai "Next steps"
  steps=("$CLAWGATE enroll" "$CLAWGATE secrets set NAME --tier T" "sudo $CLAWGATE doctor")
  width=0
  for step in "${steps[@]}"; do [[ ${#step} -le $width ]] || width=${#step}; done
  if [[ $STORE == openbao ]]; then # the seed is the fleet's: one enrolment serves every host
    say "as $OWNER: $(printf '%-*s' "$width" "${steps[0]}")  (once for the fleet: not if a host on $BAO_PREFIX has)"
  else
    say "as $OWNER: $(printf '%-*s' "$width" "${steps[0]}")  (scan the QR code with your authenticator)"
  fi
  say "as $OWNER: $(printf '%-*s' "$width" "${steps[1]}")  (value from stdin or a hidden prompt)"
  say "as $OWNER: $(printf '%-*s' "$width" "${steps[2]}")  (checks this install; without sudo, root's checks are skipped)"
  if [[ $PROXY_OFF == 0 ]] && ! can_manage_service; then
    say "as $OWNER: $(printf '%-*s' "$width" "$CLAWGATE proxy")  (no $SERVICE_MANAGER here to start the proxy: it stays in the foreground)"
  fi
fi
if [[ $CHANGES != 0 && -x $PREFIX/bin/clawgate ]]; then
  ohai "OpenClaw: the provider block for openclaw.json (also: $CLAWGATE openclaw-config)"
  "$PREFIX/bin/clawgate" openclaw-config || true
fi
exit 0
