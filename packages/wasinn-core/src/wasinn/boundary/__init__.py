"""What both guest ABIs need at the boundary with wasmtime, written once.

- :mod:`wasinn.boundary.failures`: what a failure in a host call is (the guest's, or a bug in
  wasinn), decided in one place; each ABI encodes it its own way (an errno, an ``error`` resource);
- :mod:`wasinn.boundary.wasmtime_internals`: the only module that touches wasmtime-py's private API:
  the fast trampolines of both ABIs, each with its ``portable`` switch, and the raw store and memory
  accessors.

Below it: :mod:`wasinn.service` and the ground floor; above it, side by side: :mod:`wasinn.abi` (core
modules) and :mod:`wasinn.component` (components).
"""
