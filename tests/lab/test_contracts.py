"""Image contracts (tests/lab/contracts/<name>.yml: facts of each official image, with their upstream
sources) against the roles and the lab images.

- every image a role deploys by default has a contract for exactly its pinned tag, and a lab image
  that stands for it (tests/lab/images.yml, by the role's variable);
- every lab image is at least as strict as the image it stands for: the
  same user, exposed ports, declared volumes, health check; the owners and modes of the volumes and
  paths the contract lists; and no binary the official image lacks (a shell, curl, wget). A role that
  relies on something the real image does not have then fails in the lab too.

Needs the lab images built (scripts/test lab does both)."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from image_defaults import role_images  # noqa: E402  pylint: disable=wrong-import-position
CONTRACTS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "tests/lab/contracts").glob("*.yml"))}
LAB_IMAGES = yaml.safe_load((ROOT / "tests/lab/images.yml").read_text())
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize("variable", sorted(role_images()))
def test_every_default_image_has_a_contract_for_its_tag(variable):
    ref = role_images()[variable]
    repo, _, tag = ref.rpartition(":")
    matches = [name for name, c in CONTRACTS.items() if c["image"] == repo]
    assert matches, f"{variable}: no contract in tests/lab/contracts/ for {repo}"
    assert CONTRACTS[matches[0]]["tag"] == tag, (
        f"{variable} pins {tag}, contract {matches[0]}.yml was checked for {CONTRACTS[matches[0]]['tag']}: "
        "check the image's Dockerfile at the new tag and update the contract")


def contract_of(variable):
    repo = role_images()[variable].rpartition(":")[0]
    return next(c for c in CONTRACTS.values() if c["image"] == repo)


def test_every_contract_names_its_sources_and_every_default_image_has_a_lab_image():
    assert all(contract["sources"] for contract in CONTRACTS.values())
    assert sorted(LAB_IMAGES) == sorted(role_images())
    built = {(d / "IMAGE").read_text().split()[0] for d in (ROOT / "tests/lab/images").iterdir() if (d / "IMAGE").is_file()}
    assert set(LAB_IMAGES.values()) <= built, set(LAB_IMAGES.values()) - built


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, check=check, timeout=120)


class Image:
    """A lab image, read without running anything in it (docker create + docker cp)."""

    def __init__(self, ref):
        self.ref, self.config = ref, json.loads(docker("image", "inspect", ref).stdout)[0]["Config"]
        self.container = docker("create", ref).stdout.decode().strip()

    def close(self):
        docker("rm", "-f", self.container, check=False)

    def entry(self, path, follow=False):
        """The tar header of path in the image, None when absent."""
        out = docker("cp", *(["-L"] if follow else []), f"{self.container}:{path}", "-", check=False)
        if out.returncode:
            return None
        with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
            return tar.next()

    def text(self, path):
        out = docker("cp", "-L", f"{self.container}:{path}", "-", check=False)
        if out.returncode:
            return ""
        with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
            return tar.extractfile(tar.next()).read().decode()

    def ids(self, user):
        """uid:gid of a USER value (name or number, optional group) through the image's own files."""
        name, _, group = (user or "0").partition(":")
        passwd = {f[0]: f for f in (line.split(":") for line in self.text("/etc/passwd").splitlines()) if len(f) > 3}
        uid, gid = (passwd[name][2], passwd[name][3]) if name in passwd else (name, "0")
        if not name.isdigit() and name not in passwd:
            uid = f"unknown user {name}"
        if name.isdigit():
            gid = next((f[3] for f in passwd.values() if f[2] == name), "0")
        if group:
            groups = {f[0]: f[2] for f in (line.split(":") for line in self.text("/etc/group").splitlines()) if len(f) > 2}
            gid = groups.get(group, group)
        return f"{uid}:{gid}"

    def has(self, binary):
        if binary.startswith("/"):
            return self.entry(binary, follow=True) is not None
        env = dict(e.split("=", 1) for e in self.config.get("Env") or [])
        return any(self.entry(f"{d}/{binary}", follow=True) is not None for d in env.get("PATH", DEFAULT_PATH).split(":"))


@pytest.fixture(scope="module", params=sorted(LAB_IMAGES))
def pair(request):
    contract, image = contract_of(request.param), Image(LAB_IMAGES[request.param])
    yield contract, image
    image.close()


def test_user(pair):
    contract, image = pair
    assert image.ids(image.config.get("User")) == image.ids(contract["user"])


def test_ports_volumes_and_health_check(pair):
    contract, image = pair
    assert sorted(image.config.get("ExposedPorts") or {}) == sorted(contract["ports"])
    assert sorted(image.config.get("Volumes") or {}) == sorted(contract["volumes"])
    assert (image.config.get("Healthcheck") or {}).get("Test") == contract["healthcheck"]


def test_owners_and_modes(pair):
    contract, image = pair
    wrong = []
    for path, want in {**contract["volumes"], **contract["paths"]}.items():
        entry = image.entry(path)
        got = None if entry is None else (f"{entry.uid}:{entry.gid}", f"{entry.mode & 0o7777:04o}")
        if got is None or got[0] != want["owner"] or (want["mode"] and got[1] != want["mode"]):
            wrong.append((path, want, got))
    assert not wrong, f"{image.ref}: path, contract, lab image: {wrong}"


def test_no_binary_the_official_image_lacks(pair):
    """A lab image may lack a program the official image has (a test then fails: safe), never the reverse."""
    contract, image = pair
    extra = [b for b, present in contract["binaries"].items() if not present and image.has(b)]
    assert not extra, f"{image.ref} has what the official image lacks: {extra}"
