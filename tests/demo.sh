#!/bin/bash
# make demo: the whole clawgate flow on this machine, as a printed transcript, then cleaned up.
#
# Root, Linux. Makes a throwaway owner, installs into a temp prefix with a throwaway agent user,
# and walks: an open secret read, a restricted secret denied, approved with a code computed here
# (standing in for the owner's phone), read, the same code refused, revoked, denied again.
# Every step checks its exit code; the demo fails loudly if any differs from the design.
set -u
set -o pipefail

[[ $(id -u) == 0 ]] || { echo "make demo needs root (it creates two throwaway users)" >&2; exit 1; }
[[ $(uname -s) == Linux ]] || { echo "make demo runs on Linux" >&2; exit 1; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PYTHON=/usr/bin/python3

suffix=$(LC_ALL=C tr -dc '[:lower:]' </dev/urandom | head -c 5)
OWNER=cgdemo$suffix
AGENT=cgagent$suffix
ROOT=$(mktemp -d /opt/clawgate-demo.XXXXXX)
chmod 755 "$ROOT"
PREFIX=$ROOT/prefix
DOOR=$PREFIX/bin/clawgate
SEED_FILE=$ROOT/seed # root 0600: the demo's stand-in for the owner's phone
FAILED=0

cleanup() {
  echo
  echo "### cleaning up"
  bash "$REPO/install.sh" --uninstall --purge --yes --prefix "$PREFIX" >/dev/null 2>&1
  id -u "$OWNER" >/dev/null 2>&1 && userdel "$OWNER"
  id -u "$AGENT" >/dev/null 2>&1 && userdel "$AGENT"
  rm -f "/etc/sudoers.d/clawgate-$AGENT"
  rm -rf "$ROOT"
  echo "removed $OWNER, $AGENT, $ROOT and /etc/sudoers.d/clawgate-$AGENT"
}
trap cleanup EXIT

as() { # WHO CMD...: run as WHO with a clean environment, the way a login would
  local who=$1
  shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 runuser -u "$who" -- "$@"
}

# step WHO EXPECTED_EXIT [INPUT] -- ARGS: show the command as typed, run it as WHO, check the exit code.
step() {
  local who=$1 expected=$2 input=$3
  shift 4
  printf '\n%s$ clawgate %s\n' "$who" "$*"
  local status output
  output=$(printf '%s' "$input" | as "$who" "$DOOR" "$@" 2>&1)
  status=$?
  [[ -z $output ]] || printf '%s\n' "$output"
  printf '[exit %s' "$status"
  if [[ $status == "$expected" ]]; then
    printf ']\n'
  else
    printf ' -- expected %s]\n' "$expected"
    FAILED=$((FAILED + 1))
  fi
}

code_now() { # what the owner's authenticator shows right now, for a step not yet spent
  PYTHONPATH=$REPO/lib "$PYTHON" - "$SEED_FILE" <<'PY'
import sys, time
from clawgate import totp
params = totp.Params(totp.from_base32(open(sys.argv[1]).read().strip()))
step = int(time.time()) // 30
with open(sys.argv[1] + ".last", "a+") as last:
    last.seek(0)
    spent = int(last.read() or -1)
    step = max(step, spent + 1)
    if step > int(time.time()) // 30 + 1:  # both usable steps spent: wait for the next one
        time.sleep((step - 1) * 30 - time.time() + 0.1)
    last.seek(0)
    last.truncate()
    last.write(str(step))
print(totp.hotp(params.secret, step))
PY
}

echo "### clawgate demo: owner $OWNER, agent $AGENT, everything under $ROOT"
useradd --no-create-home --user-group --shell /bin/sh "$OWNER"
(umask 077 && PYTHONPATH=$REPO/lib "$PYTHON" -c 'from clawgate import totp; print(totp.to_base32(totp.new_secret()))' >"$SEED_FILE")

echo
echo "### root installs clawgate (install.sh)"
bash "$REPO/install.sh" --owner "$OWNER" --agent-user "$AGENT" --prefix "$PREFIX" --state-dir "$ROOT/state" \
  --agent-home "$ROOT/agent-home" --no-service --yes | sed -n '1,9p;/Installation/p' || { echo "install failed"; exit 1; }

echo
echo "### the owner enrols a seed (imported here; interactively: clawgate enroll shows a QR code)"
step "$OWNER" 0 "$(cat "$SEED_FILE")"$'\n'"$(code_now)"$'\n' -- enroll --import
step "$OWNER" 0 "sk-demo-open-key" -- secrets set weather-api --tier open
step "$OWNER" 0 "hunter2-production-db" -- secrets set db/prod-password

echo
echo "### the agent works through sudo, with exactly the rights sudoers gives it"
step "$AGENT" 0 "" -- list
step "$AGENT" 0 "" -- get weather-api
step "$AGENT" 3 "" -- get db/prod-password
CODE=$(code_now)
echo
echo "(the owner reads $CODE off their phone and tells the agent)"
step "$AGENT" 0 "" -- approve db/prod-password "$CODE" --ttl 1h
step "$AGENT" 0 "" -- get db/prod-password
step "$AGENT" 1 "" -- approve db/prod-password "$CODE"
step "$AGENT" 0 "" -- status
step "$AGENT" 0 "" -- revoke db/prod-password
step "$AGENT" 3 "" -- get db/prod-password
step "$AGENT" 2 "" -- get ../../etc/shadow
step "$AGENT" 1 "" -- secrets list
printf '\n%s$ sudo -n -u %s /bin/cat %s/state/totp-seed\n' "$AGENT" "$OWNER" "$ROOT"
as "$AGENT" sudo -n -u "$OWNER" /bin/cat "$ROOT/state/totp-seed" 2>&1 && FAILED=$((FAILED + 1))
echo "(refused: sudoers names three programs for the agent and nothing else)"

echo
echo "### root checks the install (clawgate doctor)"
"$DOOR" doctor
doctor_status=$?
[[ $doctor_status == 0 ]] || FAILED=$((FAILED + 1))

echo
echo "### the audit log, as the owner"
step "$OWNER" 0 "" -- audit verify

echo
if [[ $FAILED == 0 ]]; then
  echo "demo: every step behaved as designed"
else
  echo "demo: $FAILED step(s) did not behave as designed"
  exit 1
fi
