"""The `sluice` command line: help, effective configuration, and refusal of bad configuration."""

import os
import subprocess

from conftest import TEST_SLUICE_BIN


def run(*args, env=None):
    return subprocess.run([TEST_SLUICE_BIN, *args], capture_output=True, text=True, timeout=30, env=env)


def test_help_documents_every_key():
    out = run("--help")
    assert out.returncode == 0
    for key in ["log.dirs", "listeners", "advertised.listeners", "num.partitions", "log.retention.hours",
                "log.segment.bytes", "auto.create.topics.enable", "message.max.bytes", "pchannels",
                "wal.fsync.policy", "controller.quorum.voters", "node.id"]:
        assert key in out.stdout, key
    for flag in ["--data-dir", "--listen", "--advertise", "--metrics-listen", "--config", "--print-config"]:
        assert flag in out.stdout, flag


def test_print_config_layers_file_env_and_flags(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('log.dirs = "/from/file"\nnum.partitions = 4\n[log.retention]\nhours = 1\n')
    env = dict(os.environ, SLUICE_NUM_PARTITIONS="6")
    out = run("--config", str(config), "--listen", "127.0.0.1:19999", "--print-config", env=env)
    assert out.returncode == 0, out.stderr
    values = dict(line.split(" = ", 1) for line in out.stdout.strip().splitlines())
    assert values["log.dirs"] == '"/from/file"'
    assert values["num.partitions"] == '"6"'  # the environment beats the file
    assert values["listeners"] == '"127.0.0.1:19999"'  # flags beat both
    assert values["advertised.listeners"] == '"127.0.0.1:19999"'
    assert values["log.retention.ms"] == '"3600000"'


def test_unknown_and_invalid_keys_stop_start_up(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('log.dirz = "/x"\n')
    out = run("--config", str(config))
    assert out.returncode == 2
    assert "log.dirz" in out.stderr and "bad.toml" in out.stderr
    out = run("-o", "wal.fsync.policy=sometimes")
    assert out.returncode == 2
    assert "wal.fsync.policy" in out.stderr and "always, interval or never" in out.stderr
    out = run(env=dict(os.environ, SLUICE_PCHANNELS="0"))
    assert out.returncode == 2 and "pchannels" in out.stderr
