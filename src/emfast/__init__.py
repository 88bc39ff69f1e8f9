"""emfast: fast Expectation-Maximization."""

__version__ = "0.1.0"
