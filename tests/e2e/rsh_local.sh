#!/bin/sh
# rsh_local.sh: an --rsh stand-in for ssh that runs the remote command on
# this host: drops ssh-style options and the host argument and runs the
# rest through `sh -c`, as sshd would hand it to the user's shell.
# DF_RSH_LOG, if set, receives the options, the host and the command.
opts=
while [ $# -gt 0 ]; do
    case "$1" in
        -[bcDEeFIiJLlmOopQRSWw]) opts="$opts $1 $2"; shift 2 ;;
        -*) opts="$opts $1"; shift ;;
        *) break ;;
    esac
done
if [ -n "$DF_RSH_LOG" ]; then
    printf 'host=%s\n' "$1" >> "$DF_RSH_LOG"
    printf 'opts=%s\n' "$opts" >> "$DF_RSH_LOG"
fi
shift   # the host
[ -n "$DF_RSH_LOG" ] && printf '%s\n' "$*" >> "$DF_RSH_LOG"
exec sh -c "$*"
