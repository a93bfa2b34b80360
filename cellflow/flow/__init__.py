"""The engine: tensors in, tensors out, no AnnData.

- :mod:`~cellflow.flow.paths`: probability paths :math:`x_t` between paired samples and their
  conditional velocities :math:`u_t`;
- :mod:`~cellflow.flow.matchers`: a path joined with a minibatch coupling, by method name;
- :mod:`~cellflow.flow.networks`, :mod:`~cellflow.flow.unet`: the vector fields;
- :mod:`~cellflow.flow.solvers`, :mod:`~cellflow.flow.likelihood`: ODE/SDE integration and
  log-likelihoods;
- :mod:`~cellflow.flow.geodesics`, :mod:`~cellflow.flow.riemannian_metrics`: metric flow
  matching (OT-MFM).
"""
