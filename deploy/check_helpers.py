"""Helpers for deploy/check.sh (run with the check venv's python: needs PyYAML).

  extract-toml OUTDIR FILE...   write every ConfigMap data key ending in .toml
                                to OUTDIR, print the written paths
  grace                         check that every stop timeout is above the
                                server.shutdown_grace of the config it runs
"""

import pathlib
import re
import sys
import tomllib

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent
UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def seconds(text):
    """A humantime duration ("30s", "1m 30s", "250ms") in seconds."""
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(text))
    if not parts or re.sub(r"[\d\sa-z]", "", str(text)):
        raise ValueError(f"cannot read duration {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)


def grace_of(toml_text):
    return seconds(tomllib.loads(toml_text).get("server", {}).get("shutdown_grace", "30s"))


def configmap_tomls(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    yield doc["metadata"]["name"], key, value


def extract_toml(outdir, files):
    out = pathlib.Path(outdir)
    for f in map(pathlib.Path, files):
        for name, key, text in configmap_tomls(f):
            target = out / f"{f.parent.name}-{f.stem}-configmap-{name}-{key}"
            target.write_text(text)
            print(target)


def pod_specs(doc):
    spec = (doc or {}).get("spec") or {}
    if "template" in spec:
        yield spec["template"].get("spec") or {}


def grace():
    problems = []
    # Kubernetes: the Pod's terminationGracePeriodSeconds must cover the
    # longest preStop sleep plus shutdown_grace of the ConfigMap in its file.
    for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        tomls = list(configmap_tomls(f))
        if not tomls:
            continue
        need = max(grace_of(text) for _, _, text in tomls)
        for doc in yaml.safe_load_all(f.read_text()):
            for pod in pod_specs(doc):
                tgps = pod.get("terminationGracePeriodSeconds", 30)
                for c in pod.get("containers", []):
                    pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
                    if c.get("name") == "wristband" and tgps <= need + pre.get("seconds", 0):
                        problems.append(
                            f"{f.relative_to(DEPLOY.parent)}: {doc['metadata']['name']}: "
                            f"terminationGracePeriodSeconds {tgps} <= preStop "
                            f"{pre.get('seconds', 0)}s + shutdown_grace {need}s")
    # systemd: TimeoutStopSec above shutdown_grace.
    unit = (DEPLOY / "systemd" / "wristband.service").read_text()
    m = re.search(r"^TimeoutStopSec=(.+)$", unit, re.M)
    need = grace_of((DEPLOY / "systemd" / "wristband.toml").read_text())
    if not m or seconds(m.group(1)) <= need:
        problems.append(f"deploy/systemd/wristband.service: TimeoutStopSec must exceed shutdown_grace {need}s")
    # compose: stop_grace_period above shutdown_grace.
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    need = grace_of((DEPLOY / "compose" / "wristband.toml").read_text())
    for name, svc in compose["services"].items():
        if "wristband" in name and seconds(svc.get("stop_grace_period", "10s")) <= need:
            problems.append(f"deploy/compose/compose.yaml: {name}: stop_grace_period must exceed shutdown_grace {need}s")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["extract-toml"]:
        extract_toml(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["grace"]:
        sys.exit(grace())
    else:
        sys.exit(__doc__)
