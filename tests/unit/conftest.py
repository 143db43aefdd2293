"""Make `ansible_collections.mattermost_ops.stack` importable: under ansible-test the checkout already sits in an
ansible_collections tree; in a plain checkout scripts/lib.sh links it at .collections/ (see ansible.cfg)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_TREE = next((p.parent for p in ROOT.parents if p.name == "ansible_collections"), ROOT / ".collections")
if str(_TREE) not in sys.path:
    sys.path.insert(0, str(_TREE))
