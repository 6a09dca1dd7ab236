"""jaxgd: thousands of gradient-descent runs of two-layer networks at once, as tidy tables
and phase diagrams."""

from jaxgd.api import collect, materialize, resume, run
from jaxgd.host import use_all_cores
from jaxgd.plot import phase_diagram
from jaxgd.registry import activation, constraint, dataset, loss, metric, schedule
from jaxgd.results import Results
from jaxgd.spec import SpecError, load as load_spec

__all__ = ["run", "resume", "collect", "materialize", "phase_diagram", "Results", "SpecError", "load_spec", "use_all_cores",
           "activation", "constraint", "dataset", "loss", "metric", "schedule"]
__version__ = "0.1.0"
