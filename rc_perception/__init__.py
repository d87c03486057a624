"""rc_perception: shared pieces of the perception suite (codecs, QoS, node support, demo and replay)."""

__version__ = '0.1.0'
