"""The Python SDK installs alone: a fresh virtual environment with nothing but `pip install
sdk/python` imports the client and runs the `countersign` command (issue 17). The extras
(langgraph, langchain, openai-agents, mcp) are installed by `make install` and exercised by
their own tests against the live service."""

import subprocess
import venv
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent / "sdk" / "python"


def test_the_sdk_installs_alone_in_a_fresh_environment(tmp_path):
    # given a virtual environment that has only pip (not this project's packages)
    venv.create(tmp_path / "env", with_pip=True)
    python = tmp_path / "env" / "bin" / "python"

    # when the SDK is installed from its folder (a copy, so no build files land in the repository)
    copy = tmp_path / "sdk"
    subprocess.run(["cp", "-r", str(SDK), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(copy / "build"), *map(str, copy.glob("src/*.egg-info"))], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(copy)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]

    # then the client imports, and the command runs (and says how to use it)
    imported = subprocess.run(
        [str(python), "-c", "import countersign; print(countersign.Countersign.__name__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "Countersign"
    usage = subprocess.run(
        [str(tmp_path / "env" / "bin" / "countersign"), "--help"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 0, usage.stderr
    assert "ask" in usage.stdout
    # and nothing of the server came along
    server = subprocess.run([str(python), "-c", "import django"], capture_output=True, check=False)
    assert server.returncode != 0
