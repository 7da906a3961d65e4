"""``deeprecall doctor``: which sandbox isolation this machine gives the model's code, and why.

It runs the same probe the local sandbox runs (bubblewrap, then ``unshare``),
checks the Docker engine and the sandbox image, and reports which cloud
sandbox SDKs and credentials are present (set or not, never the value).
``--build-docker-image`` builds the default image offline (root + debootstrap).
Exit status: 0 when local code runs namespace-isolated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from typing import Any

CLOUDS = {  # environment: (SDK module, pip extra, credential env vars)
    "modal": ("modal", "modal", ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")),
    "e2b": ("e2b_code_interpreter", "e2b", ("E2B_API_KEY",)),
    "daytona": ("daytona", "daytona", ("DAYTONA_API_KEY",)),
    "prime": ("prime_sandboxes", "prime", ("PRIME_API_KEY",)),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor", help="show which sandbox isolation this machine gives the model's code, and why")
    parser.add_argument("--python", default=sys.executable, help="interpreter the local worker uses")
    parser.add_argument("--image", default=None, help="Docker image to check (default deeprecall-sandbox:py3)")
    parser.add_argument("--build-docker-image", action="store_true",
                        help="build the default Docker sandbox image offline (needs root and debootstrap)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
    return parser


def local_report(python: str) -> dict[str, Any]:
    from deeprecall.sandboxes import isolation

    found = isolation.detect(python)
    report: dict[str, Any] = {"platform": f"{platform.system()} {platform.release()}", "euid": os.geteuid(),
                              "isolation": "namespace" if found.available else "process", "tool": found.tool,
                              "why": found.reason}
    if not found.available:
        report["fix"] = ("install bubblewrap (apt-get install bubblewrap) or allow unprivileged user namespaces "
                         "(sysctl kernel.unprivileged_userns_clone=1); until then environment='local' falls back "
                         "to process isolation, which does not stop reads of host files or network access")
    return report


def docker_report(image: str | None) -> dict[str, Any]:
    from deeprecall.sandboxes.docker import DEFAULT_IMAGE

    image = image or DEFAULT_IMAGE
    if importlib.util.find_spec("docker") is None:
        return {"ready": False, "why": "the docker package is missing: pip install 'deeprecall[docker]'"}
    import docker

    try:
        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
    except Exception as e:
        return {"ready": False, "why": f"no Docker engine answers: {e}"}
    try:
        client.images.get(image)
    except Exception:
        return {"ready": False, "engine": version, "why": f"image {image} is missing; run "
                "`deeprecall doctor --build-docker-image` (or scripts/services.sh docker)"}
    return {"ready": True, "engine": version, "image": image}


def cloud_report() -> dict[str, Any]:
    report = {}
    for name, (module, extra, env_vars) in CLOUDS.items():
        installed = importlib.util.find_spec(module) is not None
        keys = [v for v in env_vars if os.environ.get(v)]
        report[name] = {"sdk": "installed" if installed else f"missing: pip install 'deeprecall[{extra}]'",
                        "credentials": f"set ({', '.join(keys)})" if keys else f"not in env ({' / '.join(env_vars)})"}
    return report


def run(args: argparse.Namespace) -> int:
    if args.build_docker_image:
        from deeprecall.sandboxes.docker import DEFAULT_IMAGE, build_default_image

        print(f"building {args.image or DEFAULT_IMAGE} with debootstrap (about a minute) ...", file=sys.stderr)
        build_default_image(args.image or DEFAULT_IMAGE)
    report = {"local": local_report(args.python), "docker": docker_report(args.image), "cloud": cloud_report()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        local = report["local"]
        print(f"local:  {local['isolation']} isolation" + (f" via {local['tool']}" if local["tool"] else ""))
        print(f"        why: {local['why']}")
        if "fix" in local:
            print(f"        fix: {local['fix']}")
        docker_state = report["docker"]
        print("docker: " + (f"ready (engine {docker_state['engine']}, image {docker_state['image']})"
                            if docker_state["ready"] else f"not ready: {docker_state['why']}"))
        for name, state in report["cloud"].items():
            print(f"{name + ':':9}{state['sdk']}; credentials {state['credentials']}")
    return 0 if report["local"]["isolation"] == "namespace" else 1
