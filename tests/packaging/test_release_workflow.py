"""The release workflow cannot run here; what can be checked is that it is a valid GitHub
Actions workflow, that it builds and smoke-tests on all three OSes through scripts that
exist, and that those scripts and the secrets they read agree with it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.frozen import PACKAGE_LINUX, PACKAGING_VENV, REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
WINDOWS_BUILD = REPO / "packaging" / "windows" / "build.ps1"
MACOS_BUILD = REPO / "packaging" / "macos" / "build.sh"
SMOKE_TEST = REPO / "packaging" / "smoke_test.py"


def load() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


@pytest.fixture(scope="module")
def check_jsonschema() -> Path:
    """check-jsonschema from the packaging tools (pyproject's `packaging` extra), which
    ships GitHub's workflow schema, so validating needs no network."""
    prepare = subprocess.run(
        [str(PACKAGE_LINUX), "--prepare-only"], capture_output=True, text=True, timeout=1200
    )
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    tool = PACKAGING_VENV / "bin" / "check-jsonschema"
    assert tool.is_file()
    return tool


def validate(tool: Path, workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflow_matches_githubs_schema(check_jsonschema: Path, tmp_path: Path) -> None:
    valid = validate(check_jsonschema, WORKFLOW)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # The validator does reject a broken workflow (a job with nowhere to run).
    broken = tmp_path / "release.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ${{ matrix.os }}", ""))
    assert validate(check_jsonschema, broken).returncode != 0


def test_it_builds_on_linux_windows_and_macos_and_publishes_on_tags() -> None:
    workflow = load()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers["push"]["tags"] == ["v*"]
    build = workflow["jobs"]["build"]
    runners = [entry["os"] for entry in build["strategy"]["matrix"]["include"]]
    for family in ("ubuntu-", "windows-", "macos-"):
        assert any(runner.startswith(family) for runner in runners), family
    release = workflow["jobs"]["release"]
    assert release["needs"] == "build"
    assert "gh release create" in steps_text(release)


def test_each_os_runs_a_script_of_this_repository_and_smoke_tests() -> None:
    text = steps_text(load()["jobs"]["build"])
    assert "scripts/package-linux --out dist" in text
    assert "packaging\\windows\\build.ps1" in text
    assert "packaging/macos/build.sh --out dist" in text
    assert "packaging/smoke_test.py /usr/bin/postroom" in text
    # Windows and macOS smoke-test inside their build scripts, on the installed artifact.
    for script in (WINDOWS_BUILD, MACOS_BUILD):
        body = script.read_text(encoding="utf-8")
        assert "smoke_test.py" in body and "--windowed" in body, script.name
    for path in (PACKAGE_LINUX, WINDOWS_BUILD, MACOS_BUILD, SMOKE_TEST):
        assert path.is_file(), path
    assert (REPO / "packaging" / "windows" / "postroom.iss").is_file()


def test_the_secrets_the_workflow_passes_are_the_ones_the_scripts_read() -> None:
    build = load()["jobs"]["build"]
    passed: dict[str, set[str]] = {}
    for step in build["steps"]:
        for name, value in (step.get("env") or {}).items():
            if "secrets." in str(value):
                passed.setdefault(step["if"], set()).add(name)
    windows = passed["runner.os == 'Windows'"]
    macos = passed["runner.os == 'macOS'"]
    assert windows == set(re.findall(r"\$env:(WINDOWS_\w+)", WINDOWS_BUILD.read_text()))
    macos_script = MACOS_BUILD.read_text()
    assert macos == set(re.findall(r"\$\{?((?:MACOS|APPLE)_\w+)", macos_script))
    # Signing is optional: each script signs only when its certificate is there.
    assert "if ($env:WINDOWS_CERTIFICATE)" in WINDOWS_BUILD.read_text()
    assert "if [[ -n ${MACOS_CERTIFICATE:-} ]]" in macos_script
    assert "notarytool submit" in macos_script


def test_the_shell_scripts_parse() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for script in (PACKAGE_LINUX, MACOS_BUILD):
        parsed = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
