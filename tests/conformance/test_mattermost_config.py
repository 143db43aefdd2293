"""Every MM_* variable the collection sets (roles, inventories, Molecule, test plays, the lab double)
names a setting of Mattermost's published admin config type (npm @mattermost/types, lib/config.d.ts,
pinned in package.json as the release nearest below the Mattermost pin). Mattermost ignores a
misspelled variable silently; here it fails."""
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG_TS = HERE / "node_modules/@mattermost/types/lib/config.d.ts"
SCANNED = ["roles", "inventories", "molecule", "playbooks", "tests/integration", "tests/lab/images", "loadtest", "tools"]
# Variables of the image, not of the config: tests/lab/contracts/mattermost.yml.
NOT_CONFIG = {"MM_INSTALL_TYPE"}


def admin_config_variables():
    text = CONFIG_TS.read_text()
    types = {m.group(1): dict(re.findall(r"^\s+(\w+)\??: ([\w<>\[\], |']+);", m.group(2), re.M))
             for m in re.finditer(r"^export type (\w+) = \{\n(.*?)^\};", text, re.M | re.S)}
    names = set()
    for section, type_name in types["AdminConfig"].items():
        for key in types.get(type_name.strip(), {}):
            names.add(f"MM_{section}_{key}".upper())
    return names


def variables_we_set():
    found = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "node_modules" not in path.parts and path.suffix in {".yml", ".yaml", ".j2", ".py", ".js", ""}:
                for name in re.findall(r"\bMM_[A-Z0-9]+_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")):
                    found.setdefault(name, str(path.relative_to(ROOT)))
    return found


KNOWN = admin_config_variables()
SET = variables_we_set()


def test_the_published_type_was_read():
    assert len(KNOWN) > 500 and "MM_SQLSETTINGS_DATASOURCE" in KNOWN
    # The seed lab's misspelling (the real name ends in ...MILLISECONDS) is not a setting; Bleve is gone in v11.
    assert "MM_SQLSETTINGS_CONNMAXLIFETIME" not in KNOWN and "MM_BLEVESETTINGS_INDEXDIR" not in KNOWN
    assert len(SET) > 20


@pytest.mark.parametrize("name", sorted(set(SET) - NOT_CONFIG))
def test_every_variable_is_a_mattermost_setting(name):
    assert name in KNOWN, f"{name} (in {SET[name]}) is not in @mattermost/types AdminConfig: Mattermost would ignore it"
