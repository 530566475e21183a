"""Generative models (VAE, GAN, RBM / DBN, HMM families) and their sample-quality metrics.

Where a model lives (the rule): a model whose training objective is generative (a likelihood or its bound, contrastive
divergence, an adversarial game) lives here, in its family's package, and so does what is built directly on that
objective: the DBN's discriminative fine-tuning of its pretrained RBM stack (generative/rbm/dbn.py) and the per-class
HMMs that classify by likelihood (generative/hmm, `per_class`). lab/models holds the models trained by a
discriminative objective alone (classifiers, regressors, multi-task and sequence-to-sequence models) on the
backbones of lab/backbones. A model that merely outputs classes is no reason to move it: its objective decides.
"""
