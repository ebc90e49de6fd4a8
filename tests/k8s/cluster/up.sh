#!/usr/bin/env bash
# Bring up a real single-node Kubernetes (v1.20 from Debian's `kubernetes` source
# package) on this machine: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (+runc) and kubelet, all bound to 127.0.0.1.
# Needs root. Writes $STATE/admin.kubeconfig (STATE defaults to /tmp/fiber-jupyter-k8s).
# Tear down with down.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
T0=$SECONDS
[[ $(id -u) == 0 ]] || die "up.sh needs root (kubelet, containerd, runc)"
for t in openssl curl jq python3 gcc; do command -v $t >/dev/null || die "'$t' is required on PATH"; done

if [[ -d "$STATE/pids" ]] && compgen -G "$STATE/pids/*.pid" >/dev/null; then
  for f in "$STATE"/pids/*.pid; do
    kill -0 "$(cat "$f")" 2>/dev/null && die "a cluster is already running from $STATE ($(basename "$f" .pid) pid $(cat "$f")); run down.sh first"
  done
fi
grep -q " $STATE[/ ]" /proc/self/mountinfo && die "mounts left under $STATE; run down.sh first"

ENTRY="$(bash "$HERE/provision.sh")" || die "provisioning failed (see above)"
BIN="$ENTRY/bin"; RT="$(cat "$ENTRY/runtime")"
log "binaries: $ENTRY"
export PATH="$BIN:$RT/usr/bin:$RT/usr/sbin:$PATH"

rm -rf "$STATE"; mkdir -p "$STATE"/{pids,logs,pki,host,etcd,kubelet,containerd,runc,cni/net.d,images,plugins}
chmod 700 "$STATE"
# on any failure from here on, tear down what was started (logs stay in $STATE/logs)
UP_OK=""
on_exit() {
  [[ -n "$UP_OK" || -n "${FIBER_K8S_KEEP_ON_FAILURE:-}" ]] && return
  [[ -n "${IMPORT_PID:-}" ]] && kill "$IMPORT_PID" 2>/dev/null
  log "up.sh failed; running down.sh (set FIBER_K8S_KEEP_ON_FAILURE=1 to keep the processes for debugging)"
  bash "$HERE/down.sh" >&2 || true
}
trap on_exit EXIT

# ------------------------------------------------------------ host snapshot (for down.sh)
H="$STATE/host"
for s in vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward; do
  echo "$s=$(sysctl -n "$s")" >> "$H/sysctls"
done
for p in /var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd /run/netns \
         /usr/libexec/kubernetes /opt/containerd /etc/kubernetes; do
  [[ -e "$p" ]] || echo "$p" >> "$H/absent-paths"
done
touch "$H/absent-paths"
for c in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [[ -e "$c/k8s.io" ]] || echo "$c/k8s.io" >> "$H/absent-cgroups"
done
touch "$H/absent-cgroups"
ls /run/netns 2>/dev/null > "$H/netns" || true
log "host snapshot in $H"

# ------------------------------------------------------------ PKI (openssl)
P="$STATE/pki"
( cd "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=fiber-jupyter-k8s-ca" 2>/dev/null
  cert() {  # cert NAME SUBJ [SAN]
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    if [[ -n "${3:-}" ]]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$1.ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' > "$1.ext"
    fi
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=admin"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert node "/O=system:nodes/CN=system:node:localhost"
  cert kubelet-serving "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
  openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  rm -f ./*.csr ./*.ext )
kubeconfig() {  # kubeconfig FILE CERTNAME
  cat > "$1" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: fiber-jupyter-k8s
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$P/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$P/$2.crt", client-key: "$P/$2.key"}
contexts:
- name: fiber-jupyter-k8s
  context: {cluster: fiber-jupyter-k8s, user: $2, namespace: default}
current-context: fiber-jupyter-k8s
EOK
}
kubeconfig "$STATE/admin.kubeconfig" admin
kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
kubeconfig "$STATE/scheduler.kubeconfig" scheduler
kubeconfig "$STATE/kubelet.kubeconfig" node

start() {  # start NAME CMD... ; background, own session, pid in $STATE/pids
  local name="$1"; shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/pids/$name.pid"
}
wait_for() {  # wait_for WHAT SECONDS NAME CMD...
  local what="$1" secs="$2" name="$3"; shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$name" ]] && ! kill -0 "$(cat "$STATE/pids/$name.pid")" 2>/dev/null; then
      tail -30 "$STATE/logs/$name.log" >&2; die "$name exited while waiting for $what (log: $STATE/logs/$name.log)"
    fi
    (( SECONDS < end )) || { [[ -n "$name" ]] && tail -30 "$STATE/logs/$name.log" >&2; die "timed out after ${secs}s waiting for $what"; }
    sleep 0.3
  done
  log "$what ($((SECONDS - T0)) s)"
}
api() { curl -sf --max-time 5 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://127.0.0.1:6443$1"; }

# ------------------------------------------------------------ containerd (+ loopback-only CNI)
C="$STATE/containerd"
cat > "$STATE/cni/net.d/10-fiber-loopback.conflist" <<EOC
{"cniVersion": "0.4.0", "name": "fiber-loopback", "plugins": [{"type": "loopback"}]}
EOC
cat > "$C/config.toml" <<EOC
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RT/usr/sbin/runc"
        Root = "$STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RT/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOC
start containerd containerd --config "$C/config.toml"
wait_for "containerd up" 30 containerd ctr --address "$C/containerd.sock" version

# images: pause (built from the k8s tarball's pause.c) and busybox (busybox-static), no registry
IMG="$STATE/images"
mkdir -p "$IMG/pause-root" "$IMG/busybox-root/bin"
cp "$BIN/pause" "$IMG/pause-root/pause"
python3 "$HERE/oci_image.py" --rootfs "$IMG/pause-root" --name localhost/pause:local --cmd '["/pause"]' --out "$IMG/pause.tar"
cp "$RT/bin/busybox" "$IMG/busybox-root/bin/busybox"
for a in $("$RT/bin/busybox" --list); do [[ "$a" == busybox ]] || ln -sf busybox "$IMG/busybox-root/bin/$a"; done
mkdir -p "$IMG/busybox-root/tmp" "$IMG/busybox-root/etc"
python3 "$HERE/oci_image.py" --rootfs "$IMG/busybox-root" --name localhost/busybox:local --cmd '["/bin/sh"]' --out "$IMG/busybox.tar"
# imported in the background while the control plane starts; waited for before the end
( for t in pause busybox; do
    ctr --address "$C/containerd.sock" -n k8s.io images import "$IMG/$t.tar" >>"$STATE/logs/images.log" 2>&1 \
      || { echo "ctr images import $t failed" >> "$STATE/logs/images.log"; exit 1; }
  done
  # worker image, if it was built before (see worker-image.sh)
  if [[ -f "$CACHE/worker-image/fiber-worker.tar" ]]; then
    ctr --address "$C/containerd.sock" -n k8s.io images import "$CACHE/worker-image/fiber-worker.tar" >>"$STATE/logs/images.log" 2>&1 \
      || { echo "import of fiber-worker.tar failed" >> "$STATE/logs/images.log"; exit 1; }
  fi
  rm -rf "$IMG/pause-root" "$IMG/busybox-root" "$IMG"/*.tar ) &
IMPORT_PID=$!

# ------------------------------------------------------------ etcd
start etcd etcd --name default --data-dir "$STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --quota-backend-bytes 1073741824
wait_for "etcd healthy" 30 etcd curl -sf --max-time 3 http://127.0.0.1:2379/health

# ------------------------------------------------------------ kube-apiserver
start kube-apiserver kube-apiserver --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port=6443 --insecure-port=0 --etcd-servers=http://127.0.0.1:2379 \
  --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --authorization-mode=Node,RBAC --anonymous-auth=false \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.0.0.0/24 \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=Hostname,InternalIP \
  --allow-privileged=true --profiling=false --endpoint-reconciler-type=none
wait_for "kube-apiserver ready" 60 kube-apiserver api /readyz

# ------------------------------------------------------------ controller-manager, scheduler
start kube-controller-manager kube-controller-manager --kubeconfig="$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --flex-volume-plugin-dir="$STATE/plugins/volume" --controllers='*,-nodeipam' --profiling=false
start kube-scheduler kube-scheduler --kubeconfig="$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE/scheduler.kubeconfig" --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --leader-elect=false --profiling=false

# ------------------------------------------------------------ kubelet
cat > "$STATE/kubelet-config.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$P/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$P/kubelet-serving.crt"
tlsPrivateKeyFile: "$P/kubelet-serving.key"
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
volumePluginDir: "$STATE/plugins/volume"
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
EOC
start kubelet kubelet --config="$STATE/kubelet-config.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint="unix://$C/containerd.sock" \
  --root-dir="$STATE/kubelet" --cert-dir="$STATE/pki/kubelet" --hostname-override=localhost \
  --pod-infra-container-image=localhost/pause:local --v=1

node_ready() { api /api/v1/nodes/localhost | jq -e '.status.conditions[] | select(.type=="Ready") | .status=="True"' | grep -q true; }
wait_for "node localhost Ready" 120 kubelet node_ready
wait "$IMPORT_PID" || { cat "$STATE/logs/images.log" >&2; die "image import failed"; }
log "images imported: localhost/pause:local localhost/busybox:local$([[ -f "$CACHE/worker-image/fiber-worker.tar" ]] && echo " fiber-worker:test") ($((SECONDS - T0)) s)"
wait_for "default service account" 60 kube-controller-manager api /api/v1/namespaces/default/serviceaccounts/default
for n in kube-controller-manager kube-scheduler; do kill -0 "$(cat "$STATE/pids/$n.pid")" || { tail -20 "$STATE/logs/$n.log" >&2; die "$n is not running"; }; done

UP_OK=1
log "cluster up in $((SECONDS - T0)) s; down with: $HERE/down.sh"
echo "$STATE/admin.kubeconfig"
