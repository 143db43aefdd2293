# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The images the roles deploy by default, for the unit and lab tests (`sys.path` gets tests/)."""
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]


def role_images():
    """{variable: image reference} for every *_image default of every role, Jinja resolved against its role's defaults."""
    images = {}
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        defaults = yaml.safe_load(path.read_text()) or {}
        for key, value in defaults.items():
            if key.endswith("_image"):
                images[key] = jinja2.Template(value).render(**defaults)
    return images
