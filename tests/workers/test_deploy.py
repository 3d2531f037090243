"""deploy/ agrees with the program: every command exists, every path is the one it reads."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from threatshare import config as config_module
from threatshare.cli import build_parser
from threatshare.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG_PATH = "/etc/threatshare/threatshare.toml"
SECRETS_DIR = "/run/secrets"
K8S = DEPLOY / "kubernetes"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
MANIFESTS = ("workers.yaml", "scheduler.yaml", "ops.yaml")


def subcommands() -> set[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("the CLI has no subcommands")


def parses(arguments: list[str]) -> bool:
    try:
        build_parser().parse_args(["--config", CONFIG_PATH, *arguments])
    except SystemExit:
        return False
    return True


def dockerfile_instruction(name: str) -> list[str]:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith(name + " ")]
    assert len(found) == 1, f"one {name} expected"
    return json.loads(found[0])


def flow_lists(text: str, key: str) -> list[list[str]]:
    """Every ``key: [..]`` flow sequence of a YAML file (deploy/ writes commands that way)."""
    return [json.loads(m) for m in re.findall(rf"^\s*{key}:\s*(\[.*\])\s*$", text, re.M)]


def compose_text() -> str:
    return (DEPLOY / "compose.yaml").read_text()


def threatshare_commands() -> dict[str, list[str]]:
    """Each place deploy/ starts threatshare -> the arguments after ``threatshare``."""
    found: dict[str, list[str]] = {"Dockerfile CMD": dockerfile_instruction("CMD")}
    for i, command in enumerate(flow_lists(compose_text(), "command")):
        if command[0] != "redis-server":
            found[f"compose command {i}"] = command
    for manifest in MANIFESTS:
        for i, args in enumerate(flow_lists((K8S / manifest).read_text(), "args")):
            found[f"{manifest} args {i}"] = args
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert Path(argv[0]).name == "threatshare", line
                found[unit.name] = argv[1:]
    return found


def secret_names_in_compose() -> set[str]:
    top = compose_text().split("\nsecrets:\n", 1)[1].split("\nvolumes:", 1)[0]
    return set(re.findall(r"^  (threatshare_[a-z0-9_]+):$", top, re.M))


def configmap_toml() -> str:
    text = (K8S / "configmap.yaml").read_text()
    block = text.split("threatshare.toml: |\n", 1)[1]
    return "\n".join(line.removeprefix("    ") for line in block.splitlines()) + "\n"


def secret_value(name: str) -> str:
    """A value of the secret ``name`` tells apart; the Redis URL's still a redis:// URL."""
    if name.endswith("redis_url"):
        return f"redis://:value-of-{name}@redis:6379/0"
    return f"value-of-{name}"


def write_secrets(directory: Path, names: set[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(secret_value(name))


class TestCommands:
    def test_image_runs_the_threatshare_command(self) -> None:
        """The image's entrypoint is the `threatshare` console script."""
        assert dockerfile_instruction("ENTRYPOINT") == ["threatshare"]

    def test_every_command_in_deploy_is_a_cli_command(self) -> None:
        """Dockerfile, compose, systemd and Kubernetes only start commands the CLI has, with
        arguments it accepts."""
        commands = threatshare_commands()
        assert len(commands) >= 1 + 2 + 2 + len(UNITS)
        known = subcommands()
        for where, arguments in commands.items():
            assert arguments and arguments[0] in known, f"{where}: {arguments}"
            assert parses(arguments), f"{where}: the CLI refuses {arguments}"

    def test_the_fleet_roles_are_all_deployed(self) -> None:
        """Each way of deploying starts workers and a scheduler (systemd also the single mode)."""
        compose = {c[0] for c in flow_lists(compose_text(), "command")}
        assert {"worker", "scheduler"} <= compose
        units = {
            args[0]
            for name, args in threatshare_commands().items()
            if name in {u.name for u in UNITS}
        }
        assert units == {"worker", "scheduler", "run", "serve"}
        assert "serve" in compose

    def test_parser_check_rejects_unknown_commands(self) -> None:
        """The check above can fail: a command the CLI lacks does not parse."""
        assert not parses(["serve-everything"])
        assert "serve-everything" not in subcommands()


class TestPaths:
    def test_config_path_is_the_one_mounted_everywhere(self) -> None:
        """THREATSHARE_CONFIG names the file that compose, Kubernetes and systemd provide."""
        dockerfile = (DEPLOY / "Dockerfile").read_text()
        assert f"THREATSHARE_CONFIG={CONFIG_PATH}" in dockerfile
        compose = compose_text()
        assert f"THREATSHARE_CONFIG: {CONFIG_PATH}" in compose
        assert f"./threatshare.toml:{CONFIG_PATH}:ro" in compose
        assert (DEPLOY / "threatshare.toml").is_file()
        for manifest in MANIFESTS:
            text = (K8S / manifest).read_text()
            assert f"value: {CONFIG_PATH}" in text
            mount = re.search(r"- name: config\n\s+mountPath: (\S+)", text)
            assert mount is not None
            assert f"{mount.group(1)}/threatshare.toml" == CONFIG_PATH
        assert "threatshare.toml: |" in (K8S / "configmap.yaml").read_text()
        for unit in UNITS:
            assert f"Environment=THREATSHARE_CONFIG={CONFIG_PATH}" in unit.read_text()

    def test_secrets_are_mounted_where_the_config_reads_them(self) -> None:
        """The shipped container configuration reads secrets from where they are mounted."""
        shipped = tomllib.loads((DEPLOY / "threatshare.toml").read_text())
        assert shipped["settings"]["secrets_dir"] == SECRETS_DIR
        for manifest in MANIFESTS:
            text = (K8S / manifest).read_text()
            mount = re.search(r"- name: secrets\n\s+mountPath: (\S+)", text)
            assert mount is not None and mount.group(1) == SECRETS_DIR
        # Compose mounts each short-syntax secret at /run/secrets/<name>: no other target.
        assert "target:" not in compose_text()

    def test_configmap_carries_the_shipped_configuration(self) -> None:
        """Kubernetes and compose run the same configuration."""
        shipped = tomllib.loads((DEPLOY / "threatshare.toml").read_text())
        assert tomllib.loads(configmap_toml()) == shipped

    def test_single_machine_unit_keeps_state_where_the_config_says(self) -> None:
        """The single-machine configuration has no redis_url and its state_dir is the unit's
        StateDirectory, which is where the embedded Redis writes."""
        unit = (DEPLOY / "systemd" / "threatshare.service").read_text()
        state = re.search(r"^StateDirectory=(\S+)$", unit, re.M)
        assert state is not None
        single = tomllib.loads((DEPLOY / "systemd" / "threatshare.toml").read_text())
        assert "redis_url" not in single["settings"]
        assert single["settings"]["state_dir"] == f"/var/lib/{state.group(1)}"
        assert "KillMode=mixed" in unit


class TestSecrets:
    def test_compose_and_kubernetes_provide_the_same_secrets(self) -> None:
        """The secret names of compose and of the Kubernetes Secret are the same set."""
        k8s = set(
            re.findall(r"^  (threatshare_[a-z0-9_]+):", (K8S / "secret.yaml").read_text(), re.M)
        )
        assert secret_names_in_compose() == k8s
        assert len(k8s) == 4
        assert "threatshare_settings__redis_url" in k8s

    def test_shipped_config_loads_with_the_compose_secret_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the secret files compose mounts, the shipped configuration is valid and each
        file fills the secret it is named after."""
        secrets = tmp_path / "secrets"
        write_secrets(secrets, secret_names_in_compose())
        monkeypatch.setenv("THREATSHARE_SETTINGS__SECRETS_DIR", str(secrets))
        config = config_module.load(DEPLOY / "threatshare.toml")
        assert config.zia["prod"].client_secret is not None
        assert (
            config.zia["prod"].client_secret.get_secret_value()
            == "value-of-threatshare_zia__prod__client_secret"
        )
        assert (
            config.mimecast["main"].client_secret.get_secret_value()
            == "value-of-threatshare_mimecast__main__client_secret"
        )
        assert config.smtp is not None and config.smtp.password is not None
        assert config.settings.redis_url is not None
        assert config.settings.redis_url.get_secret_value() == secret_value(
            "threatshare_settings__redis_url"
        )

    def test_kubernetes_secret_volume_layout_is_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Secrets in Kubernetes' volume layout (symlinks into a ..data directory) load too."""
        secrets = tmp_path / "secrets"
        data = secrets / "..2026_11_21_00_00_00.000000000"
        write_secrets(data, secret_names_in_compose())
        (secrets / "..data").symlink_to(data.name)
        for name in secret_names_in_compose():
            (secrets / name).symlink_to(f"..data/{name}")
        monkeypatch.setenv("THREATSHARE_SETTINGS__SECRETS_DIR", str(secrets))
        config = config_module.load(DEPLOY / "threatshare.toml")
        assert config.zia["prod"].client_secret is not None

    def test_shipped_config_needs_its_secrets(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the secret files the shipped configuration is refused, naming what is
        missing: the secrets really come from the files."""
        empty = tmp_path / "empty"
        empty.mkdir()
        monkeypatch.setenv("THREATSHARE_SETTINGS__SECRETS_DIR", str(empty))
        with pytest.raises(ConfigError) as refused:
            config_module.load(DEPLOY / "threatshare.toml")
        problems = "\n".join(refused.value.problems)
        assert "zia.prod.client_secret" in problems
        assert "mimecast.main.client_secret" in problems


def yaml_documents(path: Path) -> list[str]:
    return [doc for doc in path.read_text().split("\n---\n") if doc.strip()]


class TestRedisIsGuarded:
    def test_compose_redis_asks_for_the_password_of_a_secret(self) -> None:
        """Compose starts Redis with an ACL file from a secret the Redis service mounts, and
        every threatshare service gets the Redis URL (with the password) as a secret."""
        text = compose_text()
        (server,) = [c for c in flow_lists(text, "command") if c[0] == "redis-server"]
        acl = server[server.index("--aclfile") + 1]
        assert acl.startswith(f"{SECRETS_DIR}/")
        redis_service = text.split("\n  redis:\n", 1)[1].split("\n  scheduler:", 1)[0]
        assert f"- {Path(acl).name}" in redis_service
        top = text.split("\nsecrets:\n", 1)[1]
        assert f"  {Path(acl).name}:\n    file: ./secrets/{Path(acl).name}" in top
        anchor = text.split("x-threatshare:", 1)[1].split("\nservices:", 1)[0]
        assert "- threatshare_settings__redis_url" in anchor
        assert "ports:" not in redis_service

    def test_kubernetes_redis_reads_its_password_from_a_secret(self) -> None:
        """The Redis StatefulSet's --aclfile is inside the mount of the redis-auth Secret, whose
        key is the file it names."""
        text = (K8S / "redis.yaml").read_text()
        (args,) = flow_lists(text, "args")
        acl = Path(args[args.index("--aclfile") + 1])
        mount = re.search(r"- name: auth\n\s+mountPath: (\S+)", text)
        assert mount is not None and Path(mount.group(1)) == acl.parent
        assert "secretName: redis-auth" in text
        secrets = (K8S / "secret.yaml").read_text()
        assert "name: redis-auth" in secrets and f"{acl.name}: |" in secrets

    def test_network_policy_admits_only_threatshare_pods_to_redis(self) -> None:
        """The NetworkPolicy is applied, selects the Redis pods, and admits on 6379 only pods
        with the label the scheduler, worker and ops pods carry."""
        assert "- redis-network-policy.yaml" in (K8S / "kustomization.yaml").read_text()
        (policy,) = yaml_documents(K8S / "redis-network-policy.yaml")
        assert "kind: NetworkPolicy" in policy
        selector, ingress = policy.split("ingress:", 1)
        assert "app.kubernetes.io/name: threatshare-redis" in selector
        assert "policyTypes: [Ingress]" in selector
        admitted = re.findall(r"app.kubernetes.io/name: (\S+)", ingress)
        assert admitted == ["threatshare"]
        assert "port: 6379" in ingress
        for manifest in ("workers.yaml", "scheduler.yaml", "ops.yaml"):
            pod = (K8S / manifest).read_text().split("template:", 1)[1]
            assert "app.kubernetes.io/name: threatshare\n" in pod

    def test_readme_says_how_to_add_tls(self) -> None:
        """The fleet section of deploy/README.md shows a rediss:// URL and Redis' TLS options."""
        readme = (DEPLOY / "README.md").read_text()
        fleet = readme.split("## How the fleet behaves", 1)[1].split("\n## ", 1)[0]
        assert "rediss://" in fleet and "--tls-port" in fleet
        assert "harmless, but slow" not in readme and "reconciliation" in fleet
