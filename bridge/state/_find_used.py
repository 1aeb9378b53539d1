"""``find_used_variables``: the variables a function refers to, found by reading its source.

The function's source is parsed; every name it loads that is not one of its own local
names is looked up where Python would look it up (the closure, then the module globals),
and attribute chains on it (``self.model.w``, ``cfg.net``) are followed with ``getattr``.
The first variable or module met along a chain is collected, named after the expression
that reaches it.
"""

from __future__ import annotations

import ast
import functools
import inspect
import types
from typing import Any, Callable, Iterator, Optional, Union

from bridge.state._collection import VarCollection
from bridge.state._module import Module
from bridge.state._variables import BaseVar

__all__ = ["find_used_variables"]

_FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda]
_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_UNRESOLVED = object()  # a name whose value cannot be known without running the function


def find_used_variables(fn: Callable) -> VarCollection:
    """The variables and modules that ``fn``'s source refers to, named by expression.

    ``fn``'s source is read and every expression ``name`` or ``name.attr.attr...`` in it is
    resolved as Python would resolve it when ``fn`` runs: ``fn``'s own parameters and local
    variables are skipped, other names come from ``fn``'s closure, then from its module's
    globals (for a bound method, its first parameter is the object it is bound to). Along
    each attribute chain, the first value that is a variable or a module is collected:

    * a variable reached by ``expr`` is named ``expr`` (``'w'``, ``'cfg.scale'``);
    * a module reached by ``expr`` contributes all its variables, as
      ``module.vars(scope=expr + '.')`` names them (``'model.(Sequential)[0](Linear).w'``),
      even when only one attribute of it is used: a call may use any of them.

    Lambdas and functions defined inside ``fn`` are read too, with their own local names.

    Not found: variables reached through subscripts (``layers[0].w``), through call results
    (``get_model().w``) or passed as arguments, and variables used by other functions that
    ``fn`` calls, since their source is not read. Pass such variables explicitly.

    Args:
      fn: a function, lambda or bound method whose source is available (defined in a file,
        or in a notebook cell).

    Returns:
      A ``VarCollection`` in source order, e.g. for::

          w = bridge.TrainVar(jnp.zeros(3))
          net = bridge.nn.Sequential([bridge.nn.Linear(3, 1)])

          def loss(x):
              return (net(x * w.value) ** 2).mean()

          find_used_variables(loss)
          # {'net.(Sequential)[0](Linear).b': ..., 'net.(Sequential)[0](Linear).w': ...,
          #  'w': ...}

    Raises:
      ValueError: ``fn`` is not a Python function, lambda or bound method (a
        ``functools.partial``, a module instance, a builtin), or its source cannot be read
        (``exec``, an interactive prompt) or no longer matches the running code.
    """
    function, bound = _unwrap(fn)
    node = _find_node(function)
    code = function.__code__
    closure = {}
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:  # a closure variable not assigned yet
            pass
    # A bound method's first parameter is known: it is the object the method is bound to.
    known = {code.co_varnames[0]: bound} if bound is not None and code.co_argcount else {}
    finder = _Finder(closure, function.__globals__)
    finder.visit_function(node, values=known)
    return finder.found


def _unwrap(fn: Any) -> tuple[types.FunctionType, Optional[Any]]:
    """``(function, object it is bound to or None)``, or a ValueError for anything else."""
    if isinstance(fn, types.MethodType) and isinstance(fn.__func__, types.FunctionType):
        return fn.__func__, fn.__self__
    if isinstance(fn, types.FunctionType):
        return fn, None
    hint = ""
    if isinstance(fn, Module):
        hint = " For a module, use its vars()."
    elif isinstance(fn, functools.partial):
        hint = " For a functools.partial, pass the wrapped function (.func)."
    raise ValueError(f"find_used_variables needs a Python function, lambda or bound method "
                     f"whose source it can read, got {type(fn).__name__} {fn!r}.{hint}")


@functools.lru_cache(maxsize=16)
def _parse(source: str) -> ast.Module:
    return ast.parse(source)


def _find_node(function: types.FunctionType) -> _FunctionNode:
    """The ``def`` or ``lambda`` node of ``function`` in the parsed source of its file."""
    code = function.__code__
    where = f"{code.co_name!r} ({code.co_filename}, line {code.co_firstlineno})"
    try:
        lines, _ = inspect.findsource(function)
    except (OSError, TypeError) as e:
        raise ValueError(f"find_used_variables: the source of {where} is not available "
                         f"(defined with exec or at an interactive prompt?).") from e
    source = "".join(lines)
    try:
        tree = _parse(source)
    except SyntaxError as e:
        raise ValueError(f"find_used_variables: the source file of {where} does not parse: "
                         f"{e}") from e
    if code.co_name == "<lambda>":
        node = _find_lambda(tree, code)
    else:
        node = next((n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name == code.co_name and _first_line(n) == code.co_firstlineno),
                    None)
    if node is None:
        raise ValueError(f"find_used_variables: no definition of {where} in its source file; "
                         f"was the file changed after it was imported?")
    return node


def _first_line(node: ast.AST) -> int:
    """The line a code object reports as its first: the first decorator's, if any."""
    decorators = getattr(node, "decorator_list", None)
    return decorators[0].lineno if decorators else node.lineno


def _find_lambda(tree: ast.Module, code: types.CodeType) -> Optional[ast.Lambda]:
    """The lambda of ``code``; when several start on its line, the innermost one spanning
    the source positions of ``code``'s instructions."""
    candidates = [n for n in ast.walk(tree)
                  if isinstance(n, ast.Lambda) and n.lineno == code.co_firstlineno]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    spans = [(line, col, end_line, end_col)
             for line, end_line, col, end_col in code.co_positions()
             if None not in (line, end_line, col, end_col) and (line, col) != (end_line, end_col)]

    def encloses(n: ast.Lambda) -> bool:
        start, end = (n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)
        return all(start <= (a, b) and (c, d) <= end for a, b, c, d in spans)

    inside = [n for n in candidates if encloses(n)] or candidates
    return min(inside, key=lambda n: (n.end_lineno - n.lineno, n.end_col_offset - n.col_offset))


class _Scope:
    """The names one function (or lambda, class body, comprehension) binds itself."""

    def __init__(self, local: set[str], declared_global: set[str] = frozenset(),
                 values: Optional[dict[str, Any]] = None):
        self.local = local
        self.declared_global = declared_global
        self.values = values or {}


def _bound_names(body: list[ast.AST]) -> tuple[set[str], set[str]]:
    """``(local names, names declared global)`` bound by statements of one scope, not
    looking inside the nested scopes (whose own names are theirs)."""
    local: set[str] = set()
    declared_global: set[str] = set()
    declared_nonlocal: set[str] = set()
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            local.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(node.name)
            # Decorators, defaults and bases run in this scope; the body does not.
            stack.extend(getattr(node, "decorator_list", []))
            stack.extend(getattr(node, "bases", []))
            if not isinstance(node, ast.ClassDef):
                stack.extend(node.args.defaults + [d for d in node.args.kw_defaults if d])
            continue
        elif isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults + [d for d in node.args.kw_defaults if d])
            continue
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            stack.append(node.generators[0].iter)
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            local.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            local.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            local.add(node.rest)
        elif isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            declared_nonlocal.update(node.names)
        stack.extend(ast.iter_child_nodes(node))
    return local - declared_global - declared_nonlocal, declared_global


def _parameter_names(args: ast.arguments) -> set[str]:
    every = args.posonlyargs + args.args + args.kwonlyargs
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return {a.arg for a in every}


class _Finder:
    """Walks a function's AST in source order and collects what its names resolve to."""

    def __init__(self, closure: dict[str, Any], module_globals: dict[str, Any]):
        self.closure = closure
        self.globals = module_globals
        self.scopes: list[_Scope] = []
        self.found = VarCollection()

    # ----- scopes ---------------------------------------------------------------------
    def visit_function(self, node: _FunctionNode, values: Optional[dict[str, Any]] = None):
        body = node.body if isinstance(node.body, list) else [node.body]
        local, declared_global = _bound_names(body)
        self.scopes.append(_Scope(local | _parameter_names(node.args), declared_global,
                                  values))
        for statement in body:
            self.visit(statement)
        self.scopes.pop()

    def resolve(self, name: str) -> Any:
        """The value ``name`` has when the function runs, or ``_UNRESOLVED``."""
        for depth in range(len(self.scopes) - 1, -1, -1):
            scope = self.scopes[depth]
            if name in scope.declared_global:
                return self.globals.get(name, _UNRESOLVED)
            if name in scope.values:
                return scope.values[name]
            if name in scope.local:
                return _UNRESOLVED
        if name in self.closure:
            return self.closure[name]
        return self.globals.get(name, _UNRESOLVED)

    # ----- collecting -----------------------------------------------------------------
    def collect(self, expression: str, value: Any) -> bool:
        """Record ``value`` if it is a variable or a module; True if it was."""
        if isinstance(value, BaseVar):
            self.found.update({expression: value})
            return True
        if isinstance(value, Module):
            self.found.update(value.vars(scope=expression + "."))
            return True
        return False

    def follow(self, node: ast.expr) -> tuple[Optional[str], Any]:
        """``(expression, value)`` of a ``name.attr...`` chain, stopping at the first
        variable or module (which is collected); ``(None, _UNRESOLVED)`` if the chain
        does not start at a known name or a link is missing."""
        if isinstance(node, ast.Name):
            value = self.resolve(node.id)
            if value is _UNRESOLVED or self.collect(node.id, value):
                return None, _UNRESOLVED
            return node.id, value
        if isinstance(node, ast.Attribute):
            if not isinstance(node.value, (ast.Name, ast.Attribute)):  # f(x).w, xs[0].w
                self.visit(node.value)
                return None, _UNRESOLVED
            expression, parent = self.follow(node.value)
            if expression is None:
                return None, _UNRESOLVED
            try:
                value = getattr(parent, node.attr)
            except Exception:  # a missing attribute or a failing property: nothing to find
                return None, _UNRESOLVED
            expression = f"{expression}.{node.attr}"
            if self.collect(expression, value):
                return None, _UNRESOLVED
            return expression, value
        self.visit(node)
        return None, _UNRESOLVED

    # ----- visiting -------------------------------------------------------------------
    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.follow(node)
        elif isinstance(node, ast.Attribute):
            # Of a store (``a.b.c = v``), ``a.b`` is still read.
            self.follow(node if isinstance(node.ctx, ast.Load) else node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in (getattr(node, "decorator_list", []) + node.args.defaults
                          + [d for d in node.args.kw_defaults if d]):
                self.visit(child)
            self.visit_function(node)
        elif isinstance(node, ast.ClassDef):
            for child in node.decorator_list + node.bases + [k.value for k in node.keywords]:
                self.visit(child)
            local, declared_global = _bound_names(node.body)
            self.scopes.append(_Scope(local, declared_global))
            for statement in node.body:
                self.visit(statement)
            self.scopes.pop()
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            self.visit_comprehension(node)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)

    def visit_comprehension(self, node: ast.AST) -> None:
        # The first iterable is evaluated outside; the rest sees the comprehension's targets.
        generators = node.generators
        self.visit(generators[0].iter)
        targets = set()
        for generator in generators:
            targets.update(n.id for n in ast.walk(generator.target) if isinstance(n, ast.Name))
        self.scopes.append(_Scope(targets))
        for index, generator in enumerate(generators):
            if index:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        for part in _comprehension_results(node):
            self.visit(part)
        self.scopes.pop()


def _comprehension_results(node: ast.AST) -> Iterator[ast.expr]:
    if isinstance(node, ast.DictComp):
        yield node.key
        yield node.value
    else:
        yield node.elt
