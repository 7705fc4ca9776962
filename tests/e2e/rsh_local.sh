#!/bin/sh
# rsh_local.sh: an --rsh stand-in for ssh that runs the remote command on
# this host: drops the host argument (and any ssh-style options before
# it) and runs the rest through `sh -c`, as sshd would hand it to the
# user's shell.  DF_RSH_LOG, if set, receives the command line.
while [ $# -gt 0 ]; do
    case "$1" in
        -*) shift ;;
        *) break ;;
    esac
done
[ -n "$DF_RSH_LOG" ] && printf 'host=%s\n' "$1" >> "$DF_RSH_LOG"
shift   # the host
[ -n "$DF_RSH_LOG" ] && printf '%s\n' "$*" >> "$DF_RSH_LOG"
exec sh -c "$*"
