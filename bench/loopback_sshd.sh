# shellcheck shell=bash
# bench/loopback_sshd.sh: sourced by the benches that go over ssh on
# loopback (copy_remote.sh, sync.sh).  A real sshd of this machine's
# OpenSSH with its own host and user keys in a directory the caller owns
# (and removes), on a free port of 127.0.0.1; the machine's own sshd and
# ~/.ssh are not touched.
#
#   bench_ssh_keys DIR               host_key, user_key, authorized_keys
#   bench_sshd_config DIR ADDR PORT PIDFILE   an sshd_config on stdout
#   bench_sshd_start DIR             keys, then sshd -D on 127.0.0.1 in
#                                    the background; sets BENCH_SSHD_PID,
#                                    BENCH_SSH_PORT, BENCH_SSHOPT (the
#                                    client options without the port) and
#                                    BENCH_SSH (ssh -p PORT OPTIONS), and
#                                    waits until a login works
#   bench_sshd_stop                  stops that sshd (safe to call twice)

bench_ssh_keys() {
    ssh-keygen -q -t ed25519 -N "" -f "$1/host_key"
    ssh-keygen -q -t ed25519 -N "" -f "$1/user_key"
    cp "$1/user_key.pub" "$1/authorized_keys"
    mkdir -p /run/sshd
}

bench_sshd_config() {
    cat <<CFG
Port $3
ListenAddress $2
HostKey $1/host_key
AuthorizedKeysFile $1/authorized_keys
PidFile $4
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
CFG
}

bench_sshd_start() {
    local dir=$1
    bench_ssh_keys "$dir"
    BENCH_SSH_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    bench_sshd_config "$dir" 127.0.0.1 "$BENCH_SSH_PORT" "$dir/sshd.pid" \
        > "$dir/sshd_config"
    /usr/sbin/sshd -D -f "$dir/sshd_config" &
    BENCH_SSHD_PID=$!
    BENCH_SSHOPT="-i $dir/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
    BENCH_SSH="ssh -p $BENCH_SSH_PORT $BENCH_SSHOPT"
    for _ in $(seq 50); do
        $BENCH_SSH 127.0.0.1 true 2>/dev/null && return 0
        sleep 0.1
    done
    echo "loopback_sshd.sh: no login to the sshd on 127.0.0.1:$BENCH_SSH_PORT" >&2
    return 1
}

bench_sshd_stop() {
    if [ -n "${BENCH_SSHD_PID:-}" ]; then
        kill "$BENCH_SSHD_PID" 2>/dev/null || true
        wait "$BENCH_SSHD_PID" 2>/dev/null || true
        BENCH_SSHD_PID=
    fi
}
