"""shopper: real-time e-commerce personalization where the page never waits for a model."""

__version__ = "0.1.0"
