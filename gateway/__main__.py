"""`python -m gateway` = `mailcam gateway run`."""

from gateway.cli import run_service

if __name__ == "__main__":
    run_service()
