"""Arithmetic expressions of a spec (`optimizer.lr = {expr = "c * 2 / sharpness0"}`) and
criteria on a metric (`engine.stop_when = "train_loss < 1e-8"`), parsed safely: Python's
`ast` with a whitelist of nodes, never `eval`. One parse serves NumPy (on the host, at
plan time) and jax.numpy (inside the compiled program)."""

from __future__ import annotations

import ast
import copy
import operator
import sys

import numpy as np

from jaxgd.errors import SpecError

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Pow: operator.pow}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS = ("sqrt", "log", "exp", "min", "max")
ALLOWED = "numbers, names, + - * / ** and " + ", ".join(FUNCTIONS)
COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
# Deeper expressions are refused: parsing, evaluating and tracing one recurse once per level.
MAX_DEPTH = 100


def is_number(value) -> bool:
    """A real number a float64 holds: not a bool, NaN, inf or an integer beyond its range (10**400)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def parse(text: str, where: str) -> ast.expr:
    """The syntax tree of an arithmetic expression, or a SpecError naming `where`."""
    if not isinstance(text, str):
        raise SpecError(f"{where}: got {{expr = {text!r}}}; expected a string such as \"c * 2 / sharpness0\"")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        too_deep = _depth(tree) > MAX_DEPTH
    except SyntaxError as err:
        raise SpecError(f"{where}: {text!r} is not an expression ({err.msg}); use {ALLOWED}") from None
    except (RecursionError, MemoryError):  # what Python's parser raises on deep nesting
        too_deep = True
    if too_deep:
        raise SpecError(f"{where}: {text[:40]!r}... nests deeper than {MAX_DEPTH} levels; write a simpler expression")
    for node in ast.walk(tree):
        if not _allowed(node):
            raise SpecError(f"{where}: {text!r} uses {ast.unparse(node)!r}, which is not allowed; use {ALLOWED}")
    _check_constants(tree, text, where)
    return tree


def _depth(tree: ast.AST) -> int:
    return 1 + max((_depth(child) for child in ast.iter_child_nodes(tree)), default=0)


def _check_constants(tree: ast.expr, text: str, where: str) -> None:
    """Refuse a part without names whose value is not a finite number (`1 / 0`, `log(0)`,
    `10 ** 400`), computed here in floats: evaluated later, it would raise, or as Python
    integers take forever (`10 ** 10 ** 10`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.expr) and not isinstance(node, ast.Constant) and not names(node):
            floats = copy.deepcopy(node)
            for constant in (c for c in ast.walk(floats) if isinstance(c, ast.Constant)):
                constant.value = np.float64(constant.value) if is_number(constant.value) else np.inf
            with np.errstate(all="ignore"):
                value = evaluate(floats, {})
            if not np.isfinite(value):
                raise SpecError(f"{where}: {text!r} has {ast.unparse(node)!r} = {float(value)}; expected a finite number")


def _allowed(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp):
        return type(node.op) in BINARY
    if isinstance(node, ast.UnaryOp):
        return type(node.op) in UNARY
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords:
            return False
        return len(node.args) == 1 if node.func.id in ("sqrt", "log", "exp") else len(node.args) >= 2
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.Attribute):  # a dotted key: optimizer.lr
        return isinstance(node.value, ast.Name)
    return isinstance(node, (ast.Name, ast.Load, *BINARY, *UNARY))


def _name(node: ast.expr) -> str | None:
    """`lr` or `optimizer.lr` for a name or dotted key, else None."""
    if isinstance(node, ast.Name):
        return node.id
    return f"{node.value.id}.{node.attr}" if isinstance(node, ast.Attribute) else None


def names(tree: ast.expr) -> set[str]:
    """The free names and dotted keys of an expression (function names excluded)."""
    if _name(tree) is not None:
        return {_name(tree)}
    children = tree.args if isinstance(tree, ast.Call) else list(ast.iter_child_nodes(tree))
    return set().union(*(names(c) for c in children if isinstance(c, ast.expr)))


def _number(value):
    """A Python int beyond int32 as a float: JAX takes a Python int as an int32 (`c * 10 ** 10 / sharpness0`
    would overflow); smaller ones stay ints (`x ** 2` is an integer power)."""
    return float(value) if isinstance(value, int) and abs(value) > 2**31 - 1 else value


def evaluate(tree: ast.expr, values: dict, xp=np):
    """The expression's value, names read from `values`, functions from `xp` (numpy or jax.numpy)."""
    if isinstance(tree, ast.Constant):
        return _number(tree.value)
    if _name(tree) is not None:
        return values[_name(tree)]
    if isinstance(tree, ast.UnaryOp):
        return UNARY[type(tree.op)](evaluate(tree.operand, values, xp))
    if isinstance(tree, ast.BinOp):
        return _number(BINARY[type(tree.op)](evaluate(tree.left, values, xp), evaluate(tree.right, values, xp)))
    args = [evaluate(a, values, xp) for a in tree.args]
    if tree.func.id in ("min", "max"):
        reduce = xp.minimum if tree.func.id == "min" else xp.maximum
        out = args[0]
        for a in args[1:]:
            out = reduce(out, a)
        return out
    return getattr(xp, tree.func.id)(args[0])


def expression_and_label(theory) -> tuple[str, str]:
    """A theory line of a [plot] table: an expression (or number), its own label, or
    {expr, label} (a long expression reads better in a legend by a name)."""
    return (theory["expr"], theory["label"]) if isinstance(theory, dict) else (str(theory), str(theory))


def criterion(text: str, where: str) -> tuple[str, str, float]:
    """`"train_loss < 1e-8"` -> ("train_loss", "<", 1e-8): a name, a comparison, a number."""
    fail = SpecError(f"{where}: got {text!r}; expected NAME OP NUMBER with OP one of "
                     f"{' '.join(COMPARISONS)}, e.g. \"train_loss < 1e-8\"")
    try:
        tree = ast.parse(str(text).strip(), mode="eval").body
        if not (isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.left, ast.Name)):
            raise fail
        threshold = ast.literal_eval(tree.comparators[0])
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):  # MemoryError: the parser on deep nesting
        raise fail from None
    symbol = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}.get(type(tree.ops[0]))
    if symbol is None or not is_number(threshold):
        raise fail
    return tree.left.id, symbol, float(threshold)


def meets(values, symbol: str, threshold: float):
    """Where `values` meet the criterion (False where they are NaN)."""
    return COMPARISONS[symbol](values, threshold)
