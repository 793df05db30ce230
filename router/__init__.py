"""flow-router: a traffic-weighted execution router for versioned workflows."""

__version__ = "0.1.0"
