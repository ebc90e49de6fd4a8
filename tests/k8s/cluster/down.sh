#!/usr/bin/env bash
# Tear down what up.sh started: stop every process by pid, kill leftover
# containers, unmount what kubelet/containerd mounted, and undo the host changes
# recorded in $STATE/host at `up` time. Logs stay in $STATE/logs.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -d "$STATE/host" ]] || { log "nothing to do: no cluster state in $STATE"; exit 0; }
C="$STATE/containerd"
CACHE_ENTRY="$CACHE/$(cat "$CACHE/current" 2>/dev/null)"
RT="$(cat "$CACHE_ENTRY/runtime" 2>/dev/null || true)"
CTR=""; [[ -n "$RT" && -x "$RT/usr/bin/ctr" ]] && CTR="$RT/usr/bin/ctr"

alive() {  # alive PID: running (not a zombie) and still one of ours (its command line names $STATE)
  [[ -r "/proc/$1/stat" ]] || return 1
  [[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]] || return 1
  tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline" | grep -qF "$STATE"
}
stop() {  # stop NAME [SECS]: SIGTERM, wait, then SIGKILL; by pid file only
  local f="$STATE/pids/$1.pid" secs="${2:-15}" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((secs * 10))); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$1 ($pid) ignored SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null; sleep 0.2; fi
    log "stopped $1 ($pid)"
  fi
  rm -f "$f"
}
kill_pids() { for p in "$@"; do kill -KILL "$p" 2>/dev/null && log "killed leftover pid $p ($(tr '\0' ' ' 2>/dev/null </proc/$p/cmdline | cut -c1-80))"; done; }

# 1. kubelet first, so it does not restart containers we are about to kill
stop kubelet 20
# 2. containers: kill and delete every task in containerd's k8s.io namespace
if [[ -n "$CTR" ]] && [[ -S "$C/containerd.sock" ]]; then
  for id in $("$CTR" --address "$C/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
    "$CTR" --address "$C/containerd.sock" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
  done
  sleep 1
  for id in $("$CTR" --address "$C/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
    "$CTR" --address "$C/containerd.sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1
  done
fi
stop containerd 15
# 3. leftovers: shims started by our containerd (their command line names our socket),
#    then any process still in the k8s.io cgroups that up.sh saw created
shims=()
for d in /proc/[0-9]*; do
  cl="$(tr '\0' ' ' 2>/dev/null < "$d/cmdline")" || continue
  [[ "$cl" == *containerd-shim* && "$cl" == *"$C/containerd.sock"* ]] && shims+=("${d#/proc/}")
done
(( ${#shims[@]} )) && kill_pids "${shims[@]}"
while read -r cg; do
  [[ -n "$cg" && -d "$cg" ]] || continue
  mapfile -t procs < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
  (( ${#procs[@]} )) && kill_pids "${procs[@]}"
done < "$STATE/host/absent-cgroups"
# 4. control plane
stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver 20; stop etcd
# 5. mounts under $STATE (kubelet root-dir bind mount, secret tmpfs, overlay rootfs, shm), deepest first;
#    network namespaces created since up
for attempt in 1 2 3; do
  mapfile -t mnts < <(awk -v s="$STATE" '{ if (index($5, s"/") == 1 || $5 == s) print $5 }' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  (( ${#mnts[@]} )) || break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || { (( attempt == 3 )) && umount -l "$m" && log "lazy-unmounted $m"; }; done
done
if [[ -d /run/netns ]]; then
  for n in $(ls /run/netns); do
    grep -qx "$n" "$STATE/host/netns" 2>/dev/null && continue
    [[ "$n" == cni-* ]] || continue
    umount "/run/netns/$n" 2>/dev/null; rm -f "/run/netns/$n"; log "removed netns $n"
  done
fi
awk -v s="$STATE" 'index($5, s"/") == 1' /proc/self/mountinfo | grep -q . && log "WARNING: mounts remain under $STATE"
# 6. cgroups created since up (rmdir bottom-up; they are empty once their processes are gone)
while read -r cg; do
  [[ -n "$cg" && -d "$cg" ]] || continue
  find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  [[ -d "$cg" ]] && log "WARNING: could not remove cgroup $cg" || true
done < "$STATE/host/absent-cgroups"
# 7. sysctls the kubelet changed
while IFS='=' read -r k v; do
  [[ -n "$k" ]] || continue
  [[ "$(sysctl -n "$k")" == "$v" ]] || { sysctl -qw "$k=$v" && log "restored $k=$v"; }
done < "$STATE/host/sysctls"
# 8. host paths that did not exist before up
while read -r p; do
  [[ -n "$p" && -e "$p" ]] || continue
  if grep -qs " $p[/ ]" /proc/self/mountinfo; then log "WARNING: $p has mounts, left in place"; continue; fi
  rm -rf "$p" && log "removed $p"
done < "$STATE/host/absent-paths"
# 9. state (keep the logs for inspection)
find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs ! -name host -exec rm -rf {} + 2>/dev/null
awk -v s="$STATE" 'index($5, s"/") == 1' /proc/self/mountinfo | grep -q . && { log "some mounts could not be removed"; exit 1; }
mv "$STATE/host" "$STATE/logs/host-snapshot.$(date +%s)"
log "down; logs kept in $STATE/logs"
