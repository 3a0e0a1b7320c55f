# bash completion for clawgate(1): verbs, each verb's flags and, for the owner only, secret names.
# Works with or without the bash-completion package. Completing never runs anything privileged and
# never asks for a code: the only program it starts is the owner's own `clawgate list --json`.
# The verbs and flags follow lib/clawgate/helptext.py (tests/test_completion.py keeps them equal).

_clawgate_verbs="approve audit deny doctor elevate enroll get help list notify openclaw-config pending proxy proxy-token request resolve revoke route run secrets status unlock"
_clawgate_secrets_verbs="set rm tier use-only list import import-keychain migrate"
_clawgate_route_verbs="add list show rm rotate"
_clawgate_tiers="open controlled restricted"

# The secret names (route add --secret too), when the caller is the owner named in the installed config; nothing otherwise
# (the agent's `list` would go through sudo).
_clawgate_names() {
  local door conf line owner=''
  door=$(type -P clawgate) || return 0
  conf=${door%/*}/../etc/clawgate/clawgate.conf
  [[ -r $conf ]] || return 0
  while IFS= read -r line; do
    case $line in
      owner*[=:]*) owner=${line#*[=:]}; owner=${owner//[[:space:]]/}; break ;;
    esac
  done <"$conf"
  [[ -n $owner && $owner == "$(id -un 2>/dev/null)" ]] || return 0
  local json rest pattern='"name": "([A-Za-z0-9][A-Za-z0-9._/-]*)"'
  json=$("$door" list --json </dev/null 2>/dev/null) || return 0
  rest=$json
  while [[ $rest =~ $pattern ]]; do
    printf '%s\n' "${BASH_REMATCH[1]}"
    rest=${rest#*"${BASH_REMATCH[0]}"}
  done
}

# _clawgate_flags VERB [SUBVERB]: the flags the help table gives that verb.
_clawgate_flags() {
  case $1 in
    list | status | pending) echo "--json" ;;
    approve) echo "--ttl" ;;
    revoke) echo "--all" ;;
    request) echo "--ttl --reason" ;;
    run) echo "--env" ;;
    openclaw-config) echo "--proxy" ;;
    route) [[ -z ${2-} || ${2-} == add ]] && echo "--upstream --secret --inject --methods --path-prefix --ca --allow-private --force" ;;
    enroll) echo "--import --rotate --root" ;;
    notify) [[ ${2-} == set ]] && echo "--ca" ;;
    audit) [[ ${2-} == show ]] && echo "--json --since --until --event" ;;
    secrets)
      case ${2-} in
        set) echo "--tier --raw --allow-empty --force --use-only" ;;
        rm) echo "--force" ;;
        use-only) echo "--off" ;;
        list) echo "--json" ;;
        import) echo "--tier --shred" ;;
        import-keychain) echo "--keychain --service --tier" ;;
        migrate) echo "--to" ;;
      esac
      ;;
  esac
}

_clawgate() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=''
  [[ $COMP_CWORD -gt 0 ]] && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()
  local i
  # After `--` comes a command (elevate, run, request @root): complete command names, then files.
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [[ ${COMP_WORDS[i]} == -- ]]; then
      if [[ $i -eq $((COMP_CWORD - 1)) ]]; then
        mapfile -t COMPREPLY < <(compgen -c -- "$cur" | sort -u)
      else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      fi
      return 0
    fi
  done
  if [[ $COMP_CWORD -eq 1 ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_clawgate_verbs --help --version" -- "$cur")
    return 0
  fi
  local verb=${COMP_WORDS[1]} sub=''
  [[ $COMP_CWORD -gt 2 ]] && sub=${COMP_WORDS[2]}
  case $prev in
    --tier) mapfile -t COMPREPLY < <(compgen -W "$_clawgate_tiers" -- "$cur"); return 0 ;;
    --ca | --keychain) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
    --secret) [[ $verb == route ]] && mapfile -t COMPREPLY < <(compgen -W "$(_clawgate_names)" -- "$cur"); return 0 ;;
    --ttl | --reason | --service | --env | --upstream | --inject | --methods | --path-prefix | --proxy) return 0 ;;
  esac
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_clawgate_flags "$verb" "$sub") --help" -- "$cur")
    return 0
  fi
  local words=''
  case $verb in
    help)
      if [[ $COMP_CWORD -eq 2 ]]; then words=$_clawgate_verbs
      elif [[ $COMP_CWORD -eq 3 && $sub == secrets ]]; then words=$_clawgate_secrets_verbs
      elif [[ $COMP_CWORD -eq 3 && $sub == route ]]; then words=$_clawgate_route_verbs
      fi
      ;;
    get) [[ $COMP_CWORD -eq 2 ]] && words=$(_clawgate_names) ;;
    approve) [[ $COMP_CWORD -eq 2 ]] && words="@root $(_clawgate_names)" ;;
    request) [[ $COMP_CWORD -eq 2 ]] && words="@root $(_clawgate_names)" ;;
    revoke) words="@root $(_clawgate_names)" ;;
    elevate) [[ $COMP_CWORD -eq 2 ]] && words="session" ;;
    notify) [[ $COMP_CWORD -eq 2 ]] && words="set test show off" ;;
    audit) [[ $COMP_CWORD -eq 2 ]] && words="show verify" ;;
    route) [[ $COMP_CWORD -eq 2 ]] && words=$_clawgate_route_verbs ;;
    secrets)
      if [[ $COMP_CWORD -eq 2 ]]; then
        words=$_clawgate_secrets_verbs
      else
        case $sub in
          set | rm | use-only) [[ $COMP_CWORD -eq 3 ]] && words=$(_clawgate_names) ;;
          tier)
            if [[ $COMP_CWORD -eq 3 ]]; then words=$(_clawgate_names)
            elif [[ $COMP_CWORD -eq 4 ]]; then words=$_clawgate_tiers
            fi
            ;;
          import) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
        esac
      fi
      ;;
  esac
  [[ -n $words ]] && mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
  return 0
}
complete -F _clawgate clawgate
