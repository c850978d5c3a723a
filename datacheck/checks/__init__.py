"""Every check, one module per check or family; importing this package registers them all.

Reports list checks in registration order: the modules of REPORT_ORDER first, then every other module of this package
by name, so a new check is one new file here and nothing else.
"""

import importlib
import pkgutil

REPORT_ORDER = ("files", "classes", "duplicates", "quality", "overexposed", "blurry", "labels", "outliers", "bias")
OTHERS = sorted(module.name for module in pkgutil.iter_modules(__path__) if module.name not in REPORT_ORDER)

for name in (*REPORT_ORDER, *OTHERS):
    importlib.import_module(f"{__name__}.{name}")
