#!/usr/bin/env python3
"""Pack a root filesystem directory into a single-layer OCI image-layout tarball
that `ctr images import` accepts, without any registry or image builder.

    oci_image.py --rootfs DIR --name localhost/pause:local --out pause.tar \
        [--cmd '["/pause"]'] [--env K=V ...] [--user 1000] [--workdir /home/worker]
"""
import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile


def blob(out, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size, info.mode = len(data), 0o644
    out.addfile(info, io.BytesIO(data))
    return {"digest": digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cmd", default=None, help="JSON list")
    ap.add_argument("--entrypoint", default=None, help="JSON list")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="")
    a = ap.parse_args()

    # the layer: an uncompressed tar of the rootfs, written to a temp file (it can be large)
    with tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(a.out))) as layer:
        h = hashlib.sha256()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name in sorted(os.listdir(a.rootfs)):
                t.add(os.path.join(a.rootfs, name), arcname=name)
        layer.seek(0)
        size = 0
        for chunk in iter(lambda: layer.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        layer_digest = "sha256:" + h.hexdigest()

        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env
        cfg = {"Env": env}
        if a.cmd:
            cfg["Cmd"] = json.loads(a.cmd)
        if a.entrypoint:
            cfg["Entrypoint"] = json.loads(a.entrypoint)
        if a.user:
            cfg["User"] = a.user
        if a.workdir:
            cfg["WorkingDir"] = a.workdir
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "tests/k8s/cluster/oci_image.py"}],
        }, sort_keys=True).encode()

        with tarfile.open(a.out + ".tmp", "w") as out:
            info = tarfile.TarInfo("oci-layout")
            data = b'{"imageLayoutVersion":"1.0.0"}'
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo("blobs/sha256/" + layer_digest.split(":")[1])
            info.size, info.mode = size, 0o644
            layer.seek(0)
            out.addfile(info, layer)
            cdesc = blob(out, config)
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cdesc),
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest, "size": size}],
            }, sort_keys=True).encode()
            mdesc = blob(out, manifest)
            index = json.dumps({
                "schemaVersion": 2,
                "manifests": [dict(mediaType="application/vnd.oci.image.manifest.v1+json",
                                   platform={"architecture": "amd64", "os": "linux"},
                                   annotations={
                                       "io.containerd.image.name": a.name,
                                       "org.opencontainers.image.ref.name":
                                           a.name.rsplit(":", 1)[-1]},
                                   **mdesc)],
            }, sort_keys=True).encode()
            info = tarfile.TarInfo("index.json")
            info.size = len(index)
            out.addfile(info, io.BytesIO(index))
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
