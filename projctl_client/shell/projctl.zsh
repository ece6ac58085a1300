# projctl prompt segment for zsh: `eval "$(projctl shell-init zsh)"` in ~/.zshrc.
# Every prompt runs shell built-ins only, never a process: it finds the repository root and
# branch by reading .git, then reads the segment the daemon wrote for them (a missing file
# reads as nothing). PROJCTL_PROMPT holds the segment; it is put in front of PROMPT unless
# PROMPT already uses it. PROJCTL_PROMPT_COLOR=0 turns colours off.
typeset -g __projctl_prompt_dir=@PROMPT_DIR@
typeset -g __projctl_gone_after=@GONE_AFTER@
zmodload zsh/datetime

__projctl_prompt() {
    emulate -L zsh
    typeset -g PROJCTL_PROMPT=
    local dir=${PWD:A} gitdir head branch file line alive want n=0
    until [[ -e $dir/.git ]]; do
        [[ -z $dir ]] && return 0
        dir=${dir%/*}
    done
    if [[ -f $dir/.git ]]; then
        read -r line < $dir/.git || [[ -n $line ]] || return 0
        gitdir=${line#gitdir: }
        [[ $gitdir == /* ]] || gitdir=$dir/$gitdir
    else
        gitdir=$dir/.git
    fi
    read -r head < $gitdir/HEAD || [[ -n $head ]] || return 0
    file=$__projctl_prompt_dir${dir:-/}/.repo
    if [[ $head == "ref: refs/heads/"* ]]; then
        branch=${head#ref: refs/heads/}
        [[ -f $__projctl_prompt_dir$dir/.branch/$branch ]] &&
            file=$__projctl_prompt_dir$dir/.branch/$branch
    fi
    [[ -f $file ]] || return 0
    # Lines: plain, ansi, bash, zsh; each fresh, then as it reads with the daemon gone.
    want=7
    [[ ${PROJCTL_PROMPT_COLOR:-1} == 0 ]] && want=1
    alive=0
    [[ -f $__projctl_prompt_dir/.alive ]] && read -r alive < $__projctl_prompt_dir/.alive
    (( EPOCHSECONDS - ${alive:-0} > __projctl_gone_after )) && want=$((want + 1))
    while IFS= read -r line; do
        n=$((n + 1))
        if (( n == want )); then
            PROJCTL_PROMPT=$line
            return 0
        fi
    done < $file
}

setopt prompt_subst
(( ${precmd_functions[(Ie)__projctl_prompt]} )) || precmd_functions=(__projctl_prompt $precmd_functions)
[[ $PROMPT == *PROJCTL_PROMPT* ]] || PROMPT='${PROJCTL_PROMPT:+$PROJCTL_PROMPT }'$PROMPT
