"""The embedder's facade, :class:`~wasinn.host.host.WasiNnHost` (above both guest ABIs); the other modules
here keep older import paths working (``wasinn.host.state``, ``wasinn.host.named``, ``wasinn.host.limits``)."""
