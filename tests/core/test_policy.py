"""Policy model, layering, sources, and every error path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deskcorder.cli import main
from deskcorder.errors import PolicyError
from deskcorder.policy.load import (
    DEFAULT_SOURCE,
    load_policy,
    machine_policy_dir,
    machine_policy_files,
)
from deskcorder.policy.model import Policy

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    loaded = load_policy(machine_dir=tmp_path / "none")
    assert loaded.policy == Policy()
    assert loaded.policy.capture.keystrokes == "redacted"
    assert loaded.policy.capture.mouse_move_hz == 60
    assert loaded.files == []
    assert {src for _, _, src in loaded.effective()} == {DEFAULT_SOURCE}


def test_layers_machine_then_dropins_in_name_order_then_explicit(tmp_path: Path) -> None:
    machine = tmp_path / "etc"
    main_file = write(
        machine / "policy.toml", '[capture]\nmouse_move_hz = 30\nkeystrokes = "off"\n'
    )
    b = write(machine / "policy.d" / "20-b.toml", "[capture]\nmouse_move_hz = 20\n")
    a = write(machine / "policy.d" / "10-a.toml", "[capture]\nmouse_move_hz = 10\n")
    write(machine / "policy.d" / "ignored.txt", "[capture]\nmouse_move_hz = 99\n")
    explicit = write(tmp_path / "mine.toml", "[spool]\nquota_mb = 64\n")
    assert machine_policy_files(machine) == [main_file, a, b]
    loaded = load_policy(explicit, machine_dir=machine)
    p = loaded.policy
    assert p.capture.mouse_move_hz == 20
    assert p.capture.keystrokes == "off"
    assert p.spool.quota_mb == 64
    assert loaded.source_of(["capture", "mouse_move_hz"]) == str(b)
    assert loaded.source_of(["capture", "keystrokes"]) == str(main_file)
    assert loaded.source_of(["spool", "quota_mb"]) == str(explicit)
    assert loaded.source_of(["spool", "on_full"]) == DEFAULT_SOURCE
    assert loaded.files == [str(main_file), str(a), str(b), str(explicit)]


def test_explicit_overrides_machine(tmp_path: Path) -> None:
    write(tmp_path / "etc" / "policy.toml", '[capture]\nkeystrokes = "off"\n')
    mine = write(tmp_path / "p.toml", '[capture]\nkeystrokes = "full"\n')
    assert load_policy(mine, machine_dir=tmp_path / "etc").policy.capture.keystrokes == "full"


def test_machine_dirs_are_fixed_per_os() -> None:
    assert machine_policy_dir("linux") == Path("/etc/deskcorder")
    assert machine_policy_dir("darwin") == Path("/Library/Application Support/deskcorder")
    os.environ["XDG_CONFIG_DIRS"] = "/tmp/evil"  # a user's environment must not redirect it
    try:
        assert machine_policy_dir("linux") == Path("/etc/deskcorder")
    finally:
        del os.environ["XDG_CONFIG_DIRS"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[capture\nmouse = true\n", "TOML syntax error"),
        (
            "[capture]\nmouse_speed = 3\n",
            "capture.mouse_speed: unknown key; expected one of: mouse,",
        ),
        ("[captur]\nmouse = true\n", "captur: unknown key; expected one of: capture,"),
        (
            '[capture]\nmouse_move_hz = "fast"\n',
            "capture.mouse_move_hz: expected a number, got 'fast'",
        ),
        ("[capture]\nmouse = 1\n", "capture.mouse: expected true or false, got 1"),
        ("[capture]\nmouse_move_hz = 5000\n", "capture.mouse_move_hz: expected a value <= 1000"),
        ("[capture]\nmouse_move_hz = -1\n", "capture.mouse_move_hz: expected a value >= 0"),
        ('[capture]\nkeystrokes = "all"\n', "capture.keystrokes: expected one of 'full'"),
        ("[spool]\nquota_mb = 0\n", "spool.quota_mb: expected a value >= 1"),
        ('[exclusions]\ntitles = ["("]\n', "exclusions.titles: invalid regular expression '('"),
        ('[schedule]\nhours = { mon = ["9-5"] }\n', "schedule.hours: mon: '9-5' is not a span"),
        ('[schedule]\nhours = { someday = ["09:00-10:00"] }\n', "unknown weekday 'someday'"),
        ('[schedule]\ntimezone = "Mars/Olympus"\n', "unknown time zone 'Mars/Olympus'"),
        ('[upload]\nendpoint = "ftp://x"\n', "upload.endpoint: 'ftp://x' is not an http(s) URL"),
        (
            '[upload]\nendpoint = "http://c.example"\n',
            "upload: endpoint 'http://c.example' is plain http:// to another host",
        ),
        ("capture = 3\n", "capture: expected a table, got 3"),
    ],
)
def test_bad_policy_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(PolicyError) as info:
        load_policy(path, machine_dir=tmp_path / "none")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert info.value.exit_code == 2


def test_error_names_the_layer_that_set_the_bad_value(tmp_path: Path) -> None:
    machine = tmp_path / "etc"
    bad = write(machine / "policy.d" / "50-bad.toml", "[spool]\nquota_mb = -5\n")
    good = write(tmp_path / "good.toml", '[capture]\nkeystrokes = "off"\n')
    with pytest.raises(PolicyError, match=rf"^{bad}: spool.quota_mb: "):
        load_policy(good, machine_dir=machine)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing.toml: cannot read policy file: No such file"):
        load_policy(tmp_path / "missing.toml", machine_dir=tmp_path)
    a_dir = tmp_path / "adir.toml"
    a_dir.mkdir()
    with pytest.raises(PolicyError, match=r"adir.toml: cannot read policy file"):
        load_policy(a_dir, machine_dir=tmp_path / "none")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[notice]\ntext = "caf\xe9"\n')
    with pytest.raises(PolicyError, match=r"latin.toml: not UTF-8 text at byte"):
        load_policy(latin, machine_dir=tmp_path / "none")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_example_config_loads(config: Path, tmp_path: Path) -> None:
    loaded = load_policy(config, machine_dir=tmp_path / "none")
    assert loaded.files == [str(config)]


def test_example_configs_exist_and_differ(tmp_path: Path) -> None:
    names = {c.name for c in CONFIGS}
    assert {"default.toml", "strict-privacy.toml", "research-lab.toml"} <= names
    none = tmp_path / "none"
    default = load_policy(CONFIGS[0].parent / "default.toml", machine_dir=none).policy
    assert default == Policy()  # the documented default really is the default
    lab = load_policy(CONFIGS[0].parent / "research-lab.toml", machine_dir=none).policy
    assert lab.capture.keystrokes == "full" and lab.capture.screenshots
    strict = load_policy(CONFIGS[0].parent / "strict-privacy.toml", machine_dir=none).policy
    assert strict.capture.keystrokes in ("shortcuts", "off") and not strict.capture.screenshots


def test_digest_changes_with_policy_and_hides_secrets(tmp_path: Path) -> None:
    a = Policy()
    b = load_policy(
        write(tmp_path / "b.toml", '[identity]\norg_key = "s3cret"\n'),
        machine_dir=tmp_path / "none",
    ).policy
    assert a.digest() != b.digest()
    from deskcorder.policy.model import canonical_json

    assert "s3cret" not in canonical_json(b)


def test_cli_policy_check_prints_sources_and_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "p.toml", '[identity]\norg_key = "s3cret"\n[capture]\nmouse = false\n')
    assert main(["policy", "check", "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "policy is valid" in out
    assert "s3cret" not in out
    line = next(x for x in out.splitlines() if "capture.mouse " in x)
    assert "false" in line and f"[{path}]" in line
    assert "[default]" in next(x for x in out.splitlines() if "capture.keyboard" in x)
    assert main(["policy", "check", "--policy", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    row = next(r for r in data["settings"] if r["key"] == "identity.org_key")
    assert row["value"] == "**********" and row["source"] == str(path)


def test_cli_bad_policy_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "p.toml", "[capture]\nmouse_move_hz = 5000\n")
    assert main(["policy", "check", "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"deskcorder: error: {path}: capture.mouse_move_hz:")


def test_cli_run_with_bad_policy_starts_no_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "p.toml", "[capture]\nbogus = 1\n")
    spool = tmp_path / "spool"
    assert main(["run", "--backend", "fake", "--policy", str(path), "--spool", str(spool)]) == 2
    assert not spool.exists()
    assert "capture.bogus: unknown key" in capsys.readouterr().err


def test_policy_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "capture" in schema["properties"]
