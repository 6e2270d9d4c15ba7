"""`python -m aslora_cli`: the `aslora` program (used to start child processes with this interpreter)."""

from aslora_cli.main import app

if __name__ == "__main__":
    app()
