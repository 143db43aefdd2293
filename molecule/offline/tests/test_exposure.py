"""Only Nginx (and SSH) listens on addresses outside the host; the rest stays on the stack's
internal Docker network."""
testinfra_hosts = ["ansible://all"]

ALLOWED_PUBLIC_PORTS = {22, 80, 443}


def _listeners(host):
    out = host.check_output("ss -Hltnu")
    for line in out.splitlines():
        local = line.split()[4]
        address, _, port = local.rpartition(":")
        yield address.strip("[]"), int(port)


def test_nothing_but_nginx_listens_on_public_addresses(host):
    public = {(a, p) for a, p in _listeners(host) if not a.startswith("127.") and a not in ("::1",)}
    assert public, "no public listener at all: Nginx is not published"
    unexpected = {(a, p) for a, p in public if p not in ALLOWED_PUBLIC_PORTS}
    assert not unexpected, f"listening beyond Nginx and SSH: {sorted(unexpected)}"


def test_public_http_is_nginx(host):
    ports = {p for _, p in _listeners(host)}
    assert 80 in ports
    owner = host.check_output("docker ps --filter publish=80 --format '{{.Names}}'")
    assert owner == "nginx"
