"""The README's two set-up commands, which CI runs as written: the ```bash blocks of its
"Set-up" section, the main job first, then the tests. Fails if they cannot be found.

    python3 .ci/readme_commands.py README.md 0    # the main job
    python3 .ci/readme_commands.py README.md 1    # the tests
"""

import re
import sys
from pathlib import Path

SECTION = re.compile(r"^## Set-up\b.*?\n(.*?)(?=^## |\Z)", re.S | re.M)
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def setup_commands(readme: str) -> list[str]:
    section = SECTION.search(readme)
    if section is None:
        raise ValueError("README.md has no '## Set-up' section")
    blocks = [block.strip() for block in BASH_BLOCK.findall(section.group(1))]
    if len(blocks) != 2 or not all(blocks):
        raise ValueError(f"README.md's Set-up section has {len(blocks)} bash blocks; expected 2: the main job, the tests")
    return blocks


if __name__ == "__main__":
    try:
        print(setup_commands(Path(sys.argv[1]).read_text())[int(sys.argv[2])])
    except ValueError as err:
        sys.exit(f"CI: {err}")
