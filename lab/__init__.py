"""lab: Hydra-composed PyTorch Lightning experiments (supervised, generative, RL)."""

from omegaconf import OmegaConf

from lab.paths import ROOT

__version__ = "0.1.0"

# `${lab_root:}` in conf/paths: the checkout, so data/ and logs/ do not depend on the working directory.
if not OmegaConf.has_resolver("lab_root"):
    OmegaConf.register_new_resolver("lab_root", lambda: str(ROOT))
