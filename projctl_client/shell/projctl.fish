# projctl prompt segment for fish: `projctl shell-init fish | source` in config.fish.
# Every prompt runs fish built-ins only, never a process: it finds the repository root and
# branch by reading .git, then reads the segment the daemon wrote for them (a missing file
# reads as nothing). $PROJCTL_PROMPT holds the segment, and fish_prompt prints it in front of
# the prompt you had. `set -g PROJCTL_PROMPT_COLOR 0` turns colours off.
set -g __projctl_prompt_dir @PROMPT_DIR@
set -g __projctl_gone_after @GONE_AFTER@

function __projctl_prompt --description 'the projctl segment of the prompt'
    set -g PROJCTL_PROMPT ''
    set -l dir (path resolve -- $PWD)
    while not test -e "$dir/.git"
        test -z "$dir"; and return 0
        set dir (string replace -r -- '/[^/]*$' '' $dir)
    end
    set -l gitdir "$dir/.git"
    if test -f "$dir/.git"
        read -l line < "$dir/.git"
        set gitdir (string replace -- 'gitdir: ' '' $line)
        string match -q -- '/*' $gitdir; or set gitdir "$dir/$gitdir"
    end
    read -l head < "$gitdir/HEAD"; or test -n "$head"; or return 0
    set -l root $dir
    test -z "$root"; and set root /
    set -l file "$__projctl_prompt_dir$root/.repo"
    set -l branch (string replace -- 'ref: refs/heads/' '' $head)
    if test "$branch" != "$head"; and test -f "$__projctl_prompt_dir$dir/.branch/$branch"
        set file "$__projctl_prompt_dir$dir/.branch/$branch"
    end
    test -f "$file"; or return 0
    # Lines: plain, ansi, bash, zsh; each fresh, then as it reads with the daemon gone.
    set -l want 3
    test "$PROJCTL_PROMPT_COLOR" = 0; and set want 1
    set -l age (path mtime --relative -- "$__projctl_prompt_dir/.alive")
    if test -z "$age"; or test "$age" -gt $__projctl_gone_after
        set want (math $want + 1)
    end
    set -l n 0
    while read -l line
        set n (math $n + 1)
        if test $n -eq $want
            set -g PROJCTL_PROMPT $line
            return 0
        end
    end < "$file"
end

function __projctl_return
    return $argv[1]
end

if not functions -q __projctl_user_fish_prompt
    functions -q fish_prompt; and functions -c fish_prompt __projctl_user_fish_prompt
    function fish_prompt --description 'projctl segment, then the prompt you had'
        set -l last_status $status
        __projctl_prompt
        test -n "$PROJCTL_PROMPT"; and printf '%s ' $PROJCTL_PROMPT
        if functions -q __projctl_user_fish_prompt
            # The prompt you had may show the last command's status: give it back.
            __projctl_return $last_status
            __projctl_user_fish_prompt
        end
    end
end
