"""The docker role: the engine runs inside the instance, rotates logs and runs containers."""
import json

import pytest

testinfra_hosts = ["ansible://all"]


def test_engine_is_active_and_enabled(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_daemon_json_rotates_logs(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"]["max-size"] == "10m"
    assert host.check_output("docker info --format '{{.LoggingDriver}}'") == "json-file"


def test_engine_runs_a_container_from_a_loaded_image(host):
    archives = host.check_output("ls /opt/mattermost-ops/images/*.tar 2>/dev/null || true").split()
    if archives:  # offline scenario: the air-gapped archives are mounted into the instance
        host.check_output(f"docker load -q -i {archives[0]}")
    images = host.check_output("docker images --format '{{.Repository}}:{{.Tag}}'").split()
    assert images, "no image is available in the instance's engine"
    # PostgreSQL's image has a shell (its contract says so); others, like Mattermost's, are distroless.
    postgres = next(i for i in images if i.rpartition(":")[0].split("/")[-1] == "postgres")
    out = host.check_output(f"docker run --rm --entrypoint /bin/sh {postgres} -c 'echo hello-from-inner'")
    assert out == "hello-from-inner"


def test_inner_containers_stay_inside_the_instance_cgroup(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["cgroup-parent"].endswith("/engine")


@pytest.mark.parametrize("module", ["docker", "requests"])
def test_python_libraries_for_community_docker(host, module):
    host.run_expect([0], f"/usr/bin/python3 -c 'import {module}'")
