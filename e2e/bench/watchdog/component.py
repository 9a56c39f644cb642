#!/usr/bin/env python3
"""The watchdog benchmark's component (e2e/bench/watchdog.sh): one Namespace, CONFIGMAPS
ConfigMaps and SECRETS Secrets in it, each with a `value` the edits change and a payload
of about PAYLOAD_BYTES that nobody changes.

usage: component.py NAMESPACE CONFIGMAPS SECRETS PAYLOAD_BYTES OUTDIR

Writes OUTDIR/component/part-NNN.yaml (what `idp-lab apply -f` gets: at most 500
documents a file, since idp-lab's YAML parser takes at most 1024 documents from one file)
and OUTDIR/desired.json (each object's desired `value`, for the heal check).
"""

import base64
import json
import sys
from pathlib import Path

PER_FILE = 500


def payload(i, size):
    lines, n = [], 0
    while n < size:
        line = f"setting-{len(lines):03d}: value-{i:04d}-{len(lines):03d}-abcdefghijklmnopqrstuvwxyz"
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines) + "\n"


def block(text, indent):
    pad = " " * indent
    return "|\n" + "".join(pad + line + "\n" for line in text.splitlines())


def main():
    ns, configmaps, secrets, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"]
    desired = {"configmaps": {}, "secrets": {}}
    for i in range(configmaps):
        name = f"cm-{i:04d}"
        value = f"desired-{i:04d}"
        desired["configmaps"][name] = value
        docs.append(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"  labels:\n    bench.idp-lab.dev/set: watchdog\n"
            f"data:\n  value: {value}\n  config.yaml: {block(payload(i, size), 4)}"
        )
    for i in range(secrets):
        name = f"secret-{i:04d}"
        value = base64.b64encode(f"secret-{i:04d}".encode()).decode()
        desired["secrets"][name] = value
        blob = base64.b64encode(payload(i, size // 2).encode()).decode()
        docs.append(
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"  labels:\n    bench.idp-lab.dev/set: watchdog\ntype: Opaque\n"
            f"data:\n  value: {value}\n  blob: {blob}\n"
        )
    folder = out / "component"
    folder.mkdir()
    for part in range(0, len(docs), PER_FILE):
        (folder / f"part-{part // PER_FILE:03d}.yaml").write_text("---\n".join(docs[part : part + PER_FILE]))
    (out / "desired.json").write_text(json.dumps(desired))


if __name__ == "__main__":
    main()
