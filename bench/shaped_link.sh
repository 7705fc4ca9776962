# shellcheck shell=bash
# bench/shaped_link.sh: sourced by the benches that copy over a slow link
# (copy_remote.sh, fs_aware.sh); needs bench/loopback_sshd.sh sourced
# first.  Two network namespaces of their own (names carry this shell's
# pid, so two benches never share them) joined by a veth pair with
# link-local addresses (169.254.77.1 in A, .2 in B), the sender's egress
# (A -> B) shaped with tc tbf, and an sshd inside B with the keys of
# bench_ssh_keys.  The machine's own interfaces, sshd and ~/.ssh are not
# touched.
#
#   shaped_link_up DIR RATE   RATE as tc spells it (20mbit); keys in DIR
#                             (made there when missing); sets SHAPED_A
#                             (prefix that runs a command in A),
#                             SHAPED_HOST (B's address) and SHAPED_SSH
#                             (the ssh command line, options included),
#                             and waits until a login from A works
#   shaped_link_down          stops that sshd, deletes both namespaces
#                             (safe to call twice, or when up failed
#                             half way)

SHAPED_HOST=169.254.77.2
SHAPED_NS_A=dfbA$$
SHAPED_NS_B=dfbB$$
SHAPED_DIR=

shaped_link_up() {
    local dir=$1 rate=$2
    SHAPED_DIR=$dir
    [ -f "$dir/user_key" ] || bench_ssh_keys "$dir"
    ip netns add "$SHAPED_NS_A"
    ip netns add "$SHAPED_NS_B"
    ip link add "$SHAPED_NS_A" type veth peer name "$SHAPED_NS_B"
    ip link set "$SHAPED_NS_A" netns "$SHAPED_NS_A"
    ip link set "$SHAPED_NS_B" netns "$SHAPED_NS_B"
    ip -n "$SHAPED_NS_A" addr add 169.254.77.1/24 dev "$SHAPED_NS_A"
    ip -n "$SHAPED_NS_B" addr add "$SHAPED_HOST/24" dev "$SHAPED_NS_B"
    ip -n "$SHAPED_NS_A" link set "$SHAPED_NS_A" up
    ip -n "$SHAPED_NS_B" link set "$SHAPED_NS_B" up
    ip -n "$SHAPED_NS_A" link set lo up
    ip -n "$SHAPED_NS_B" link set lo up
    ip netns exec "$SHAPED_NS_A" tc qdisc add dev "$SHAPED_NS_A" root \
        tbf rate "$rate" burst 32kb latency 400ms
    bench_sshd_config "$dir" "$SHAPED_HOST" 22 "$dir/ns_sshd.pid" \
        > "$dir/ns_sshd_config"
    ip netns exec "$SHAPED_NS_B" /usr/sbin/sshd -f "$dir/ns_sshd_config"
    SHAPED_A="ip netns exec $SHAPED_NS_A"
    SHAPED_SSH="ssh -i $dir/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
    for _ in $(seq 50); do
        # shellcheck disable=SC2086  # command lines, split into words
        $SHAPED_A $SHAPED_SSH "$SHAPED_HOST" true 2>/dev/null && return 0
        sleep 0.1
    done
    echo "shaped_link.sh: no login to the sshd on $SHAPED_HOST in $SHAPED_NS_B" >&2
    return 1
}

shaped_link_down() {
    if [ -n "$SHAPED_DIR" ] && [ -f "$SHAPED_DIR/ns_sshd.pid" ]; then
        kill "$(cat "$SHAPED_DIR/ns_sshd.pid")" 2>/dev/null || true
        rm -f "$SHAPED_DIR/ns_sshd.pid"
    fi
    # Deleting a namespace takes its end of the veth pair, and so the pair.
    ip netns del "$SHAPED_NS_A" 2>/dev/null || true
    ip netns del "$SHAPED_NS_B" 2>/dev/null || true
    # A pair made but not yet moved into A is still here.
    ip link del "$SHAPED_NS_A" 2>/dev/null || true
}
