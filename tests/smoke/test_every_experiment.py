"""Every preset of conf/experiment is run by a smoke test: by name, or in a list a smoke test derives from what the
experiments build (tests/helpers.experiments_with)."""

import importlib.util
import re
from pathlib import Path

from lab.validate import group_options

SMOKE = Path(__file__).parent
DERIVED_LISTS = ("EXPERIMENTS", "RL_EXPERIMENTS", "SAC_EXPERIMENTS", "GANS", "VAES", "SEQ2SEQ")


def derived() -> set[str]:
    names: set[str] = set()
    for path in sorted(SMOKE.glob("test_*.py")):
        if not re.search(rf"^({'|'.join(DERIVED_LISTS)}) = .*experiments_with\(", path.read_text(), flags=re.M):
            continue
        spec = importlib.util.spec_from_file_location(f"_smoke_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names |= {e for key in DERIVED_LISTS for e in getattr(module, key, [])}
    return names


def test_every_experiment_is_run_by_a_smoke_test():
    # a preset named in an override (`experiment=<name>`) of another smoke test; a name alone may be a refusal's
    text = "\n".join(p.read_text() for p in SMOKE.glob("test_*.py") if p.name != Path(__file__).name)
    by_name = {e for e in group_options("experiment") if re.search(rf"experiment={e}\b", text)}
    lists = derived()
    assert {"ppo_cartpole", "sac_pendulum", "gan_mnist", "vae_mnist", "cnn_mnist"} <= lists  # the lists are read
    assert set(group_options("experiment")) - by_name - lists == set()
