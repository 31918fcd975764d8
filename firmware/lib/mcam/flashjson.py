"""Small JSON files in flash for state that must outlive RTC memory (a power loss empties it).

Written atomically (temp file + rename) and only when something changed, to spare the flash.
"""

import json
import os


def read(path):
    """The JSON object in ``path``; None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj))
    os.rename(tmp, path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
