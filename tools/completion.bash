# Bash completion of appeal-node and appealctl, installed under both names in
# /usr/share/bash-completion/completions/. It reads the program's own --help
# when it completes, so it offers exactly the commands and options of the
# installed version:
#   - a command: a help line "  NAME ..." (two spaces, then a lower-case word);
#   - its options: the --words on its lines, and those outside any command;
#   - an option's values: "--outcome a|b|c", or "--type TYPE" with a line
#     "TYPE: a, b, c"; files for FILE, PUBLIC, F, FROM and TO, directories
#     for DIR.

# The help text, once per shell and program.
_appeal_help() {
    local var="_appeal_help_${1//-/_}"
    if [[ -z ${!var-} ]]; then
        printf -v "$var" '%s' "$("$1" --help 2>/dev/null)"
    fi
    printf '%s\n' "${!var}"
}

_appeal_complete() {
    local prog=${COMP_WORDS[0]##*/} cur=${COMP_WORDS[COMP_CWORD]}
    local prev=${COMP_WORDS[COMP_CWORD - 1]} help cmd="" w i
    help=$(_appeal_help "$prog")
    local commands
    commands=$(awk '/^  [a-z]/ { print $1 }' <<<"$help")
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w != -* ]] && grep -qxF -- "$w" <<<"$commands"; then
            cmd=$w
            break
        fi
    done
    if [[ $prev == --* ]]; then
        # What follows the option in the help: its placeholder, or a|b|c.
        local arg
        arg=$(grep -oE -- "${prev}( [^] [|]+(\|[^] [|]+)*)?" <<<"$help" | head -n1)
        arg=${arg#"$prev"}
        arg=${arg# }
        if [[ $arg == *'|'* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "${arg//|/ }" -- "$cur")
            return
        fi
        case $arg in
        "") ;;
        DIR) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
        FILE | PUBLIC | F | FROM | TO) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        *)
            local values
            values=$(sed -n "s/^ *${arg}: //p" <<<"$help" | head -n1 | tr -d ',')
            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
            return
            ;;
        esac
    fi
    if [[ -z $cmd && $cur != -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        return
    fi
    # The options of the command's lines, and those outside any command.
    local opts
    opts=$(awk -v cmd="$cmd" '
        /^  [a-z]/ { cur = $1 }
        /^[^ ]/ || /^$/ { cur = "" }
        cur == cmd || cur == "" {
            while (match($0, /--[a-z][a-z-]*/)) {
                print substr($0, RSTART, RLENGTH)
                $0 = substr($0, RSTART + RLENGTH)
            }
        }' <<<"$help" | sort -u)
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
}

complete -o default -F _appeal_complete appeal-node appealctl
