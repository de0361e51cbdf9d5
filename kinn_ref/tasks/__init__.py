"""Tasks: the heat equation on a KINN mesh, Burgers operator learning, digits, a damped oscillator."""
from .heat import dc_solution, pde_grid, solve_pde_with_kinn

__all__ = ["solve_pde_with_kinn", "pde_grid", "dc_solution"]
