"""`python -m gateway` = `mailcam gateway run`, in a lean process (the systemd unit uses this)."""

from gateway.lean import block_optional_imports

block_optional_imports()

from gateway.service import run_service  # noqa: E402

if __name__ == "__main__":
    run_service()
