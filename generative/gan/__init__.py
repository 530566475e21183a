"""GANs: MLP and DCGAN, non-saturating / hinge / WGAN-GP losses, class-conditional option, generator EMA."""

from generative.gan.module import GAN

__all__ = ["GAN"]
