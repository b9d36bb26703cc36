"""Server mode refuses weak secrets (`shekara.settings.check_secrets`), and the Kafka client security settings
become librdkafka and Faust configuration in one place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest

from shekara.settings import (
    DEVELOPMENT_PSEUDONYM_KEY,
    PLACEHOLDER_SECRETS,
    Settings,
    check_secrets,
    dump_with_secrets,
    is_loopback,
)

REPO = Path(__file__).resolve().parents[2]

STRONG: dict[str, Any] = {
    "mode": "server",
    "pseudonym_key": "q7Vd0mKp3LrX9sTz1bNw4yHc6eJa8uFg",  # 32 bytes
    "clickhouse_dsn": "http://shekara:Wr1ter-9f3a77c2@clickhouse:8123/shekara",
    "sink": {"analyst_password": "An4lyst-5be01d9e"},
    "kafka": {"security_protocol": "SASL_PLAINTEXT", "username": "sink", "password": "K4fka-0c8e51aa"},
    "faust": {"web_password": "0ps-1e2d3c4b"},
}


def server(**changes: Any) -> Settings:
    """Strong server settings with `changes` merged in (nested dicts one level deep)."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in STRONG.items()}
    for key, value in changes.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return Settings.model_validate(values)


def only_problem(settings: Settings, **uses: bool) -> str:
    problems = check_secrets(settings, **uses)
    assert len(problems) == 1, problems
    return problems[0]


def test_strong_server_settings_and_embedded_defaults_pass() -> None:
    assert check_secrets(server()) == []
    assert check_secrets(Settings()) == []  # embedded: development key, no passwords, page on loopback


def test_the_development_pseudonym_key_is_refused() -> None:
    assert Settings.model_fields["pseudonym_key"].default.get_secret_value() == DEVELOPMENT_PSEUDONYM_KEY
    problem = only_problem(server(pseudonym_key=DEVELOPMENT_PSEUDONYM_KEY))
    assert problem.startswith("SHEKARA_PSEUDONYM_KEY is the built-in development key")


def test_placeholder_and_short_pseudonym_keys_are_refused() -> None:
    assert "SHEKARA_PSEUDONYM_KEY is a placeholder" in only_problem(
        server(pseudonym_key="change-me-to-a-long-random-secret")
    )
    assert "SHEKARA_PSEUDONYM_KEY is 31 bytes" in only_problem(server(pseudonym_key="k" * 31))
    assert "SHEKARA_PSEUDONYM_KEY is empty" in only_problem(server(pseudonym_key=""))
    assert check_secrets(server(pseudonym_key="k" * 32)) == []
    # Bytes, not characters: 16 Cyrillic letters are 32 bytes.
    assert check_secrets(server(pseudonym_key="ж" * 16)) == []


def test_clickhouse_passwords_must_be_set_and_not_placeholders() -> None:
    dsn = "http://shekara:{}@clickhouse:8123/shekara"
    assert "SHEKARA_CLICKHOUSE_DSN" in only_problem(server(clickhouse_dsn=dsn.format("change-me-writer")))
    assert "SHEKARA_CLICKHOUSE_DSN" in only_problem(server(clickhouse_dsn="http://shekara@clickhouse:8123/shekara"))
    assert "SHEKARA_SINK__ANALYST_PASSWORD is a placeholder" in only_problem(
        server(sink={"analyst_password": "change-me-analyst"})
    )
    assert "SHEKARA_SINK__ANALYST_PASSWORD is empty" in only_problem(server(sink={"analyst_password": ""}))
    # The processors hold no ClickHouse password: they do not check one.
    assert check_secrets(server(sink={"analyst_password": ""}), clickhouse=False) == []


def test_kafka_needs_sasl_a_user_and_a_real_password_in_server_mode() -> None:
    plain = server(kafka={"security_protocol": "PLAINTEXT"})
    assert only_problem(plain).startswith("SHEKARA_KAFKA__SECURITY_PROTOCOL is PLAINTEXT")
    assert "SHEKARA_KAFKA__PASSWORD is a placeholder" in only_problem(
        server(kafka={"password": "change-me-kafka-sink"})
    )
    assert "SHEKARA_KAFKA__PASSWORD is empty" in only_problem(server(kafka={"password": ""}))
    assert "SHEKARA_KAFKA__USERNAME is empty" in only_problem(server(kafka={"username": ""}))


def test_the_ops_page_needs_a_login_in_server_mode_or_off_loopback() -> None:
    assert "SHEKARA_FAUST__WEB_PASSWORD is empty" in only_problem(server(faust={"web_password": ""}))
    assert "placeholder" in only_problem(server(faust={"web_password": "change-me-ops"}))
    assert check_secrets(server(faust={"web_password": ""}), ops_page=False) == []  # the sink serves no page
    assert check_secrets(server(faust={"web_password": "", "web_enabled": False})) == []
    # Embedded: loopback needs no login, any other address does.
    assert check_secrets(Settings.model_validate({"faust": {"web_bind": "::1"}})) == []
    problem = only_problem(Settings.model_validate({"faust": {"web_bind": "0.0.0.0"}}))
    assert problem.startswith("SHEKARA_FAUST__WEB_PASSWORD is empty") and "SHEKARA_FAUST__WEB_BIND=0.0.0.0" in problem
    with_login = {"web_bind": "0.0.0.0", "web_password": "0ps-1e2d3c4b"}
    assert check_secrets(Settings.model_validate({"faust": with_login})) == []


def test_a_metrics_listener_beyond_loopback_needs_a_login() -> None:
    open_bind = Settings.model_validate({"metrics": {"bind": "0.0.0.0"}})
    problem = only_problem(open_bind, metrics=True)
    assert problem.startswith("SHEKARA_METRICS__PASSWORD is empty") and "SHEKARA_METRICS__BIND=0.0.0.0" in problem
    assert "placeholder" in only_problem(
        Settings.model_validate({"metrics": {"bind": "0.0.0.0", "password": "change-me-metrics"}}), metrics=True
    )
    assert (
        check_secrets(
            Settings.model_validate({"metrics": {"bind": "0.0.0.0", "password": "m3trics-9f8e7d"}}), metrics=True
        )
        == []
    )
    assert check_secrets(open_bind) == []  # a process that serves no listener of its own (metrics=False)
    assert check_secrets(Settings(), metrics=True) == []  # loopback


def test_every_problem_is_reported_each_on_one_line() -> None:
    problems = check_secrets(Settings.model_validate({"mode": "server"}))
    names = ["SHEKARA_PSEUDONYM_KEY", "SHEKARA_SINK__ANALYST_PASSWORD", "SHEKARA_KAFKA__", "SHEKARA_FAUST__WEB_"]
    assert len(problems) == len(names)
    for problem, name in zip(problems, names, strict=True):
        assert name in problem and "\n" not in problem


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "ops.example.kz"))


def test_env_example_values_are_all_known_placeholders() -> None:
    values = set()
    for line in (REPO / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            values.add(line.partition("=")[2].strip())
    assert values and values <= PLACEHOLDER_SECRETS, values - PLACEHOLDER_SECRETS


# --- Kafka client security: one helper for librdkafka and for Faust ----------------------------------------


def test_plaintext_adds_nothing_to_the_client_configs() -> None:
    s = Settings(broker_url="kafka://a:1;kafka://b:2")
    config = s.kafka_config()
    # librdkafka's own lines go through the project's logger (shekara.kafka): not a security setting.
    assert config.pop("logger").name == "shekara.kafka"
    assert config == {"bootstrap.servers": "a:1,b:2"}
    assert s.kafka.faust_credentials() is None


def test_sasl_settings_become_librdkafka_and_faust_credentials() -> None:
    s = server()
    config = s.kafka_config()
    assert config.pop("logger").name == "shekara.kafka"
    assert config == {
        "bootstrap.servers": s.bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "sink",
        "sasl.password": "K4fka-0c8e51aa",
    }
    creds = s.kafka.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("sink", "K4fka-0c8e51aa", "SCRAM-SHA-512")
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None
    tls = server(kafka={"security_protocol": "SASL_SSL"})
    assert tls.kafka_config()["security.protocol"] == "SASL_SSL"
    assert tls.kafka.faust_credentials().protocol.value == "SASL_SSL"
    assert "K4fka" not in repr(s.kafka)  # the password stays masked in logs


def test_a_child_process_gets_the_secrets_in_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streams.worker import worker_env

    data = dump_with_secrets(server())
    assert data["kafka"]["password"] == "K4fka-0c8e51aa" and data["faust"]["web_password"] == "0ps-1e2d3c4b"
    env = worker_env(server(data_dir=tmp_path), base={})
    for key in [k for k in os.environ if k.startswith("SHEKARA_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child.kafka.password.get_secret_value() == "K4fka-0c8e51aa"
    assert child.faust.web_password.get_secret_value() == "0ps-1e2d3c4b"
    assert check_secrets(child) == []


# --- the commands refuse to start ---------------------------------------------------------------------------


def strong_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEKARA_")}
    env |= {
        "SHEKARA_CONFIG": str(tmp_path / "absent.toml"),
        "SHEKARA_DATA_DIR": str(tmp_path / "var"),
        "SHEKARA_MODE": "server",
        "SHEKARA_PSEUDONYM_KEY": STRONG["pseudonym_key"],
        "SHEKARA_CLICKHOUSE_DSN": STRONG["clickhouse_dsn"],
        "SHEKARA_SINK__ANALYST_PASSWORD": "An4lyst-5be01d9e",
        "SHEKARA_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SHEKARA_KAFKA__USERNAME": "processors",
        "SHEKARA_KAFKA__PASSWORD": "K4fka-0c8e51aa",
        "SHEKARA_FAUST__WEB_PASSWORD": "0ps-1e2d3c4b",
    }
    return env | overrides


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        (["sink", "--once"], "SHEKARA_PSEUDONYM_KEY", DEVELOPMENT_PSEUDONYM_KEY),
        (["process"], "SHEKARA_FAUST__WEB_PASSWORD", "change-me-ops"),
        (["publish", "events.jsonl"], "SHEKARA_KAFKA__PASSWORD", "change-me-kafka-producer"),
    ],
)
def test_commands_exit_2_with_one_line_naming_the_setting(
    tmp_path: Path, command: list[str], variable: str, value: str
) -> None:
    (tmp_path / "events.jsonl").write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *command],
        env=strong_env(tmp_path, **{variable: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable} "), done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_refuses_too(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.worker"],
        env=strong_env(tmp_path, SHEKARA_KAFKA__SECURITY_PROTOCOL="PLAINTEXT"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: SHEKARA_KAFKA__SECURITY_PROTOCOL is PLAINTEXT: server mode needs SASL"


def test_every_kafka_client_gets_its_config_from_the_one_helper() -> None:
    """A client built with a bare ``bootstrap.servers`` would connect without credentials in server mode."""
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for package in ("shekara", "streams", "sinks", "producers", "schemas", "deploy")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != REPO / "shekara" / "settings.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if '"bootstrap.servers"' in line
    ]
    assert not offenders, f"build confluent-kafka configs with Settings.kafka_config(): {offenders}"
