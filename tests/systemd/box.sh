#!/bin/bash
# A throwaway, real systemd (PID 1 and journald) for tests/systemd/test_service.py,
# on machines whose own PID 1 is not systemd (CI containers).
#
#   tests/systemd/box.sh [-n NAME] start [--timeout SEC]   boot it (default 60 s)
#   tests/systemd/box.sh [-n NAME] exec CMD [ARG...]       run CMD inside it
#   tests/systemd/box.sh [-n NAME] cp HOSTPATH BOXPATH     copy a file into it
#   tests/systemd/box.sh [-n NAME] stop                    power it off, remove everything
#
# The host's /lib/systemd/systemd runs as PID 1 in new PID, mount, UTS, IPC and
# cgroup namespaces. Its / is an overlay whose lower layer is the host's root
# and whose upper layer is a tmpfs that exists only in the box's mount
# namespace, so whatever the box writes (units, /var/lib/private, journal files)
# vanishes with it and the host is never changed. /run, /tmp and /dev are
# private, /sys and /proc/sys read-only. The network namespace is the host's:
# a server on the host's 127.0.0.1 is reachable from the box's services.
#
# `start` exits 77 (the test's "skip") with the reason on standard error when
# systemd cannot boot here: not root, no unshare/nsenter/setpriv, no
# /lib/systemd/systemd, no overlayfs, namespaces refused, or no boot in time.
# State: ${REFRESHD_BOX_DIR:-/tmp/refreshd-box}/NAME (console.log is PID 1's
# console). NAME defaults to "refreshd".
set -euo pipefail

SELF=$(readlink -f "$0")
BASE=${REFRESHD_BOX_DIR:-/tmp/refreshd-box}
SYSTEMD=/lib/systemd/systemd
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
name=refreshd

if [ "${1:-}" = -n ]; then
    name=$2
    shift 2
fi
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "box: bad name '$name'" >&2; exit 2; }
state=$BASE/$name
cgname=refreshd-box-$name

die() { echo "box: $*" >&2; exit 1; }
skip() { echo "box: cannot boot systemd here: $*" >&2; exit 77; }

# The start time of a live (not zombie) process, so that a PID reused after the
# box died is never mistaken for it.
proc_start() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    # shellcheck disable=SC2086 # split on purpose: $1 is field 3 (state), ${20} field 22 (start time)
    set -- $s
    [ "$1" != Z ] && [ "$1" != X ] || return 1
    echo "${20}"
}

# The host PID of the box's PID 1, if it still runs.
pid1() {
    local pid start
    [ -r "$state/pid1" ] || return 1
    read -r pid start <"$state/pid1"
    [ "$(proc_start "$pid")" = "$start" ] || return 1
    echo "$pid"
}

# "MOUNTPOINT FSTYPE OPTIONS" of each cgroup file system the host has mounted.
cgroup_mounts() {
    awk '{ for (i = 7; $i != "-"; i++); t = $(i + 1);
           if (t == "cgroup" || t == "cgroup2") print $5, t, $(i + 3) }' /proc/self/mountinfo
}

# For each hierarchy, the directory of the box's own cgroup: below the cgroup
# this script runs in, so that the box's systemd owns a subtree and nothing else.
cgroup_dirs() {
    local mp type opts id ctrls path c ok
    while read -r mp type opts; do
        path=
        if [ "$type" = cgroup2 ]; then
            path=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        else
            while IFS=: read -r id ctrls c; do
                [ "$id" != 0 ] || continue
                ok=1
                for x in ${ctrls//,/ }; do [[ ,$opts, == *,$x,* ]] || ok=0; done
                if [ "$ok" = 1 ]; then path=$c; break; fi
            done </proc/self/cgroup
        fi
        [ -n "$path" ] && echo "$mp${path%/}/$cgname"
    done < <(cgroup_mounts)
}

remove_cgroups() {
    local d left=0
    [ -r "$state/cgroups" ] || return 0
    while read -r d; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$d" ] || left=1
    done <"$state/cgroups"
    return $left
}

cmd_start() {
    local timeout=60 upid pid start i t0 result tool d
    while [ $# -gt 0 ]; do
        case $1 in
        --timeout) timeout=$2; shift 2 ;;
        *) die "start: unknown option $1" ;;
        esac
    done
    [ "$(id -u)" = 0 ] || skip "needs root"
    for tool in unshare nsenter setpriv pivot_root; do
        command -v "$tool" >/dev/null || skip "$tool not found (util-linux)"
    done
    [ -x "$SYSTEMD" ] || skip "$SYSTEMD not found (apt-get install systemd)"
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        skip "the kernel has no overlayfs"
    [ -n "$(cgroup_mounts)" ] || skip "no cgroup file system is mounted"
    if pid=$(pid1); then die "box '$name' already runs (PID $pid); stop it first"; fi

    # leftovers of a box of the same name that was not stopped
    remove_cgroups || true
    rm -rf "$state"
    mkdir -p "$state/root" "$state/rw"
    : >"$state/console.log"

    cgroup_dirs >"$state/cgroups"
    while read -r d; do
        mkdir -p "$d" 2>/dev/null || { remove_cgroups; rm -rf "$state"; skip "cannot create the cgroup $d"; }
        # a v1 cpuset cgroup is unusable until it has CPUs and memory nodes
        if [ -e "$d/cpuset.cpus" ] && [ ! -e "$d/cgroup.controllers" ]; then
            cat "${d%/*}/cpuset.cpus" >"$d/cpuset.cpus" 2>/dev/null || true
            cat "${d%/*}/cpuset.mems" >"$d/cpuset.mems" 2>/dev/null || true
        fi
    done <"$state/cgroups"

    t0=$(date +%s.%N)
    # --kill-child (implies --fork): if unshare dies, so does the whole box
    setsid unshare --pid --mount --uts --ipc --propagation=private --kill-child \
        -- "$SELF" -n "$name" _pid1 </dev/null >>"$state/console.log" 2>&1 &
    upid=$!
    echo "$upid $(proc_start "$upid")" >"$state/unshare"

    pid=
    for ((i = 0; i < 250; i++)); do
        pid=$(cut -d' ' -f1 "/proc/$upid/task/$upid/children" 2>/dev/null) || pid=
        [ -n "$pid" ] && break
        kill -0 "$upid" 2>/dev/null || break
        sleep 0.02
    done
    if [ -z "$pid" ] || ! start=$(proc_start "$pid"); then
        cat "$state/console.log" >&2
        cmd_stop >/dev/null 2>&1 || true
        skip "unshare failed (namespaces not allowed?)"
    fi
    echo "$pid $start" >"$state/pid1"

    # systemd's private bus socket first, then the end of the boot
    for ((i = 0; ; i++)); do
        [ -S "/proc/$pid/root/run/systemd/private" ] && break
        if ! kill -0 "$pid" 2>/dev/null || [ $i -ge $((timeout * 20)) ]; then
            cat "$state/console.log" >&2
            cmd_stop >/dev/null 2>&1 || true
            skip "systemd did not come up within ${timeout}s"
        fi
        sleep 0.05
    done
    result=$(timeout "$timeout" "$SELF" -n "$name" exec systemctl is-system-running --wait 2>/dev/null) || true
    case $result in
    running | degraded) ;;
    *)
        "$SELF" -n "$name" exec systemctl --failed --no-legend --no-pager >&2 || true
        cmd_stop >/dev/null 2>&1 || true
        skip "systemd did not finish booting within ${timeout}s (state '${result:-none}')"
        ;;
    esac
    echo "box: '$name' up in $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }")s" \
        "($result), PID 1 is $pid on the host" >&2
}

# PID 1 of the new PID namespace: join the box's cgroups, then a cgroup
# namespace rooted there, so that systemd sees its own cgroup as the root.
stage_pid1() {
    local d
    while read -r d; do echo 0 >"$d/cgroup.procs"; done <"$state/cgroups"
    exec unshare --cgroup -- "$SELF" -n "$name" _boot
}

stage_boot() {
    local r=$state/root mp type opts o dev
    mount --make-rprivate /
    # copy-on-write /: the upper layer lives in a tmpfs of this namespace only
    mount -t tmpfs -o mode=0755 refreshd-box "$state/rw"
    mkdir -p "$state/rw/upper" "$state/rw/work"
    mount -t overlay -o "lowerdir=/,upperdir=$state/rw/upper,workdir=$state/rw/work" refreshd-box "$r"

    mount -t proc proc "$r/proc"
    mount --bind "$r/proc/sys" "$r/proc/sys"
    mount -o remount,bind,ro "$r/proc/sys"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
    # the host's cgroup layout (pure cgroup2, or v1 hierarchies plus "unified")
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
    else
        mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs "$r/sys/fs/cgroup"
        while read -r mp type opts; do
            [[ $mp == /sys/fs/cgroup/* ]] || continue
            mkdir -p "$r$mp"
            if [ "$type" = cgroup2 ]; then
                mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r$mp"
            else
                o=$(tr , '\n' <<<"$opts" | grep -vxE 'rw|ro|relatime|noatime|nosuid|nodev|noexec' | paste -sd,)
                [[ $o != name=* ]] || o=none,$o
                mount -t cgroup -o "nosuid,nodev,noexec,$o" cgroup "$r$mp"
            fi
        done < <(cgroup_mounts)
        for o in /sys/fs/cgroup/*; do
            [ ! -L "$o" ] || ln -s "$(readlink "$o")" "$r$o" # cpu -> cpu,cpuacct
        done
        mount -o remount,ro,bind "$r/sys/fs/cgroup"
    fi

    # a container's /dev: a few device nodes bound from the host, a new devpts
    mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs "$r/dev"
    for dev in null zero full random urandom tty; do
        touch "$r/dev/$dev"
        mount --bind "/dev/$dev" "$r/dev/$dev"
    done
    mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
    mount -t mqueue -o nosuid,nodev,noexec mqueue "$r/dev/mqueue"
    ln -s /proc/self/fd "$r/dev/fd"
    for o in stdin:0 stdout:1 stderr:2; do ln -s "/proc/self/fd/${o#*:}" "$r/dev/${o%:*}"; done
    touch "$r/dev/console"
    mount --bind "$state/console.log" "$r/dev/console"
    # private /run and /tmp: the box's tmpfiles must never clean the host's /tmp
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"

    # no host units, mounts or identity; a minimal default target
    rm -rf "$r/etc/systemd/system"
    mkdir -p "$r/etc/systemd/system"
    cat >"$r/etc/systemd/system/refreshd-box.target" <<'EOF'
[Unit]
Description=refreshd test box
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
    ln -s refreshd-box.target "$r/etc/systemd/system/default.target"
    echo "# refreshd box: no mounts" >"$r/etc/fstab"
    rm -f "$r/etc/crypttab"
    tr -d - </proc/sys/kernel/random/uuid >"$r/etc/machine-id"
    echo "$name" >"$r/etc/hostname"
    hostname "$name"

    cd "$r"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    # systemd makes / shared on a host but not in a container; LoadCredential=
    # needs it (without it $CREDENTIALS_DIRECTORY comes up empty). The box's
    # mounts have no peers outside, so nothing propagates to the host.
    mount --make-rshared /
    ulimit -Hn "$(cat /proc/sys/fs/nr_open)" 2>/dev/null || true
    # module loading and the clock are the host's: keep them out of reach
    exec env -i container=refreshd-box TERM=dumb PATH="$PATH" \
        setpriv --bounding-set -sys_module,-sys_time "$SYSTEMD"
}

cmd_exec() {
    local pid
    pid=$(pid1) || die "box '$name' is not running"
    [ $# -gt 0 ] || die "exec: no command"
    exec env -u NOTIFY_SOCKET -u INVOCATION_ID -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID \
        -u DBUS_SYSTEM_BUS_ADDRESS -u XDG_RUNTIME_DIR SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 \
        nsenter -t "$pid" -m -u -i -p -C -r -w -- "$@"
}

cmd_cp() {
    local pid dest
    [ $# = 2 ] || die "usage: cp HOSTPATH BOXPATH"
    pid=$(pid1) || die "box '$name' is not running"
    dest=/proc/$pid/root/${2#/}
    [[ $2 != */ ]] || mkdir -p "$dest"
    mkdir -p "$(dirname "$dest")"
    cp -a "$1" "$dest"
}

cmd_stop() {
    local pid upid ustart i
    [ -d "$state" ] || return 0
    if pid=$(pid1); then
        # SIGRTMIN+4 asks systemd to power off; in a PID namespace its final
        # reboot(2) just ends the namespace
        kill -s SIGRTMIN+4 "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            pid1 >/dev/null || break
            sleep 0.1
        done
        if pid=$(pid1); then
            echo "box: '$name' did not power off in 20s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # unshare goes when PID 1 has gone; killing it kills PID 1 (--kill-child),
    # which is the way out when start failed before PID 1 was known
    if [ -r "$state/unshare" ]; then
        read -r upid ustart <"$state/unshare"
        for ((i = 0; i < 100; i++)); do
            [ "$(proc_start "$upid" || true)" = "$ustart" ] || break
            [ $i != 50 ] || kill -KILL "$upid" 2>/dev/null || true
            sleep 0.05
        done
    fi
    for ((i = 0; i < 50; i++)); do
        remove_cgroups && break
        sleep 0.1
    done
    remove_cgroups || echo "box: could not remove the cgroups in $state/cgroups" >&2
    rm -rf "$state"
    rmdir "$BASE" 2>/dev/null || true
}

cmd=${1:-}
shift || true
case $cmd in
start) cmd_start "$@" ;;
exec) cmd_exec "$@" ;;
cp) cmd_cp "$@" ;;
stop) cmd_stop ;;
_pid1) stage_pid1 ;;
_boot) stage_boot ;;
*)
    sed -n '4,7s/^# *//p' "$SELF" >&2
    exit 2
    ;;
esac
